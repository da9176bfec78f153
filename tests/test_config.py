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
