"""Config composition and start-up validation: the offending key and the allowed values."""

import subprocess
import sys

import pytest

from hjepa.api import compose
from hjepa.config import ConfigError, level_strides, min_clip_len


def test_default_config_composes_with_contract_keys():
    cfg = compose()
    assert cfg.data.name == "rooms" and cfg.model.depth == 2 and cfg.regularizer.name == "sigreg"
    assert cfg.train.steps > 0 and cfg.seed == 0
    assert level_strides(cfg.model) == [1, 4]
    assert min_clip_len(cfg.model) == 8 <= cfg.data.clip_len


def test_overrides_reach_typed_fields():
    cfg = compose(["model.depth=3", "regularizer=ema", "data=multiscale", "train.steps=7", "seed=3"])
    assert cfg.model.depth == 3 and cfg.regularizer.name == "ema" and cfg.data.name == "multiscale"
    assert cfg.regularizer.seed == 3  # interpolated from the top-level seed
    assert level_strides(cfg.model) == [1, 4, 4]


@pytest.mark.parametrize("overrides,key,fragment", [
    (["model.depth=0"], "model.depth", ">= 1"),
    (["model.depth=3", "model.strides=[4]"], "model.strides", "2 value(s)"),
    (["model.depth=3", "data.clip_len=16"], "data.clip_len", "minimum length is 32"),
    (["regularizer.per_level=[sigreg,bogus]"], "regularizer.per_level[1]", "sigreg"),
    (["optim.lr=-0.001"], "optim.lr", "positive"),
    (["model.topdown=sideways"], "model.topdown", "last, pred, none"),
    (["model.loss_weights=[1.0]"], "model.loss_weights", "2 values"),
    (["model.summarizer=middle"], "model.summarizer", "latents, last, frames"),
    (["model.summarizer_hidden=-1"], "model.summarizer_hidden", ">= 0"),
    (["model.topdown_rank=0"], "model.topdown_rank", ">= 1"),
    (["model.pred_zero_init=[true]"], "model.pred_zero_init", "needs 2 values"),
])
def test_invalid_configs_name_key_and_allowed_values(overrides, key, fragment):
    with pytest.raises(ConfigError) as e:
        compose(overrides)
    assert e.value.key == key
    assert key in str(e.value) and fragment in str(e.value)


@pytest.mark.parametrize("args,fragment", [
    (["model.depth=0"], "model.depth=0"),
    (["model.depth=3", "data.clip_len=16"], "the minimum length is 32"),
    (["optim.lr=-1"], "optim.lr=-1"),
    (["regularizer=bogus"], "regularizer"),
])
def test_cli_rejects_bad_config_without_traceback(tmp_path, args, fragment):
    proc = subprocess.run([sys.executable, "-m", "hjepa.train", *args, "train.steps=1"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0
    assert fragment in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "mlflow.db").exists()  # nothing started for a rejected config


@pytest.mark.parametrize("overrides,key", [
    (["data=npz"], "data.path"),
    (["model.latent_dim=???"], "model.latent_dim"),
    (["optim.lr=???"], "optim.lr"),
    (["train.steps=???", "regularizer.weight=???"], "regularizer.weight"),  # the first, sorted; both named
    (["~data"], "data"),  # a whole group removed
])
def test_missing_mandatory_values_are_config_errors(overrides, key):
    with pytest.raises(ConfigError) as e:
        compose(overrides)
    assert e.value.key == key and e.value.value == "???"
    assert str(e.value).startswith(f"invalid config: {key}='???' — a value is required")
    if len(overrides) == 2:
        assert "also missing: train.steps" in str(e.value)
    if key == "data":
        assert "e.g. data=rooms|multiscale|ou|gym|npz" in str(e.value)


def test_cli_missing_data_path_is_one_clear_line(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "hjepa.train", "data=npz"], cwd=tmp_path, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip() == ("hjepa-train: error: invalid config: data.path='???' — a value is required: set it "
                                   "on the command line, e.g. data.path=my_episodes.npz (see docs/data.md)")
    assert not (tmp_path / "mlflow.db").exists()


def test_analyze_reports_a_stored_config_with_a_missing_value(tmp_path, capsys):
    from omegaconf import OmegaConf

    from hjepa.analyze import main as analyze_main
    from hjepa.checkpoint import save_checkpoint

    cfg = OmegaConf.create(OmegaConf.to_container(compose(), resolve=True))
    cfg.data.path = "???"
    save_checkpoint({"model": {}, "config": OmegaConf.to_yaml(cfg), "data": {"obs_shape": [3, 32, 32],
                     "action_dim": 2}}, tmp_path / "run" / "checkpoints", 5)
    assert analyze_main([f"run={tmp_path / 'run'}", "--no-log"]) == 2
    assert capsys.readouterr().err.strip().startswith(
        "hjepa-analyze: error: invalid config: data.path='???' — a value is required")


def test_analyze_names_a_stored_config_key_this_hjepa_does_not_know(tmp_path, capsys):
    from omegaconf import OmegaConf

    from hjepa.analyze import main as analyze_main
    from hjepa.checkpoint import save_checkpoint

    cfg = OmegaConf.create(OmegaConf.to_container(compose(), resolve=True))
    cfg.model.some_future_option = True
    save_checkpoint({"model": {}, "config": OmegaConf.to_yaml(cfg), "data": {"obs_shape": [3, 32, 32],
                     "action_dim": 2}}, tmp_path / "run" / "checkpoints", 5)
    assert analyze_main([f"run={tmp_path / 'run'}", "--no-log"]) == 1  # a checkpoint error (config errors: 2)
    err = capsys.readouterr().err.strip()
    assert err.startswith("hjepa-analyze: error:") and "model.some_future_option" in err
    assert "Traceback" not in err and "newer or modified hjepa" in err


def test_npz_clip_len_is_checked_against_the_file_not_data_episode_len():
    cfg = compose(["data=npz", "data.path=episodes.npz", "data.clip_len=80"])  # data.episode_len (64) plays no role
    assert cfg.data.clip_len == 80
    with pytest.raises(ConfigError, match="data.episode_len"):
        compose(["data.clip_len=80"])  # a generated env: episodes must hold a clip
