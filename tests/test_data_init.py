"""model.data_init_levels: the chosen level's latents start standardised on training clips (hjepa/models/data_init.py)."""

from __future__ import annotations

import pytest
import torch
from einops import rearrange

import hjepa
from hjepa.api import build_model
from hjepa.config import ConfigError
from hjepa.data import build_data
from hjepa.models.data_init import output_layer, standardize_levels
from hjepa.models.encoders import BatchStandardize
from hjepa.train import Trainer, train

from .conftest import TINY


def _fresh_model(tmp_path, *extra, clips=16):
    """An untrained model of the tiny config (seed 0) and a batch of its training clips."""
    cfg = hjepa.compose([*TINY, f"data.cache_dir={tmp_path}", *extra])
    data = build_data(cfg)
    torch.manual_seed(0)
    return build_model(cfg, data), data.train_batch(clips)


def _latent_std(model, batch, k):
    with torch.no_grad():
        z = model.encode(batch["obs"], batch["actions"])[0][k]
    z = rearrange(z, "b t d -> (b t) d")
    return z.mean(0), z.std(0)


@pytest.mark.parametrize("extra", [
    [],                                                          # conv encoder, WindowEncoder summariser, depth 2
    ["model.encoder=vit", "model.depth=3", "model.stride=2"],    # ViT, three levels
    ["model.summarizer=last", "model.summarizer_hidden=0"],      # a linear tick summariser
    ["regularizer.name=ema"],                                    # EMA targets: reset to the rescaled encoders
])
def test_every_level_starts_at_mean_zero_std_one(extra, tmp_path):
    model, batch = _fresh_model(tmp_path, *extra)
    before = _latent_std(model, batch, 0)[1].median().item()
    report = standardize_levels(model, batch["obs"], batch["actions"])
    if output_layer(model.levels[0].encoder) is not None:  # (a level above reports its std on the rescaled level below)
        assert report[0][0] == pytest.approx(before, rel=1e-4)
    for k in range(model.depth):
        mean, std = _latent_std(model, batch, k)
        if output_layer(model.levels[k].encoder) is None:  # ends in BatchStandardize: left as it was
            continue
        assert mean.abs().max().item() < 1e-3 and std.sub(1).abs().max().item() < 1e-3, k
        assert report[k][1] == pytest.approx(1.0, abs=1e-3)
        tgt = model.levels[k].target
        if tgt is not None:  # the EMA copy equals its online encoder again
            for a, b in zip(tgt.module.state_dict().values(), model.levels[k].encoder.state_dict().values()):
                assert torch.equal(a, b)
    assert model.training  # the mode is restored


def test_only_the_chosen_levels_are_rescaled(tmp_path):
    model, batch = _fresh_model(tmp_path)  # depth 2
    top = {k: v.clone() for k, v in model.levels[1].state_dict().items()}
    report = standardize_levels(model, batch["obs"], batch["actions"], levels=1)
    assert len(report) == 1 and _latent_std(model, batch, 0)[1].sub(1).abs().max().item() < 1e-3
    assert all(torch.equal(v, model.levels[1].state_dict()[k]) for k, v in top.items())
    assert _latent_std(model, batch, 1)[1].sub(1).abs().max().item() > 0.1  # level 1 not standardised


def test_only_an_affine_change_of_each_latent(tmp_path):
    """The rescaled latent is (z − μ)/σ of the old one, sample by sample (level 0; level 1 reads it)."""
    model, batch = _fresh_model(tmp_path, "model.depth=1", clips=8)
    with torch.no_grad():
        z_old = model.encode(batch["obs"], batch["actions"])[0][0]
    mean, std = (t for t in _latent_std(model, batch, 0))
    standardize_levels(model, batch["obs"], batch["actions"])
    with torch.no_grad():
        z_new = model.encode(batch["obs"], batch["actions"])[0][0]
    torch.testing.assert_close(z_new, (z_old - mean) / std, atol=1e-4, rtol=1e-4)


def test_a_chosen_starting_std(tmp_path):
    model, batch = _fresh_model(tmp_path, "model.depth=1")
    report = standardize_levels(model, batch["obs"], batch["actions"], std=0.1)
    mean, std = _latent_std(model, batch, 0)
    assert report[0][1] == pytest.approx(0.1, rel=1e-3) and std.sub(0.1).abs().max().item() < 1e-4
    assert mean.abs().max().item() < 1e-4


def test_output_layer_skips_batch_standardised_encoders():
    enc = torch.nn.Sequential(torch.nn.Linear(4, 3), BatchStandardize(3))
    assert output_layer(enc) is None
    lin = torch.nn.Sequential(torch.nn.Linear(4, 5), torch.nn.GELU(), torch.nn.Linear(5, 3))
    assert output_layer(lin) is lin[2]
    with pytest.raises(ValueError, match="no nn.Linear"):
        output_layer(torch.nn.Conv2d(1, 1, 1))


def test_the_trainer_standardises_a_fresh_run_and_not_a_resumed_one(tmp_path):
    common = [*TINY, f"data.cache_dir={tmp_path}", "tracking.enabled=false", "train.steps=2", "model.data_init_levels=2"]
    cfg = hjepa.compose(common, out_dir=str(tmp_path / "run"))
    trainer = Trainer(cfg)
    trainer.prepare()
    batch = trainer.data.train_batch(64)
    for k in range(trainer.model.depth):
        mean, std = _latent_std(trainer.model, batch, k)
        assert std.sub(1).abs().max().item() < 1e-3 and mean.abs().max().item() < 1e-3
    trainer.run()
    # resuming must load the saved weights, not standardise again
    cfg2 = hjepa.compose([*common, "train.resume=true"], out_dir=str(tmp_path / "run"))
    resumed = Trainer(cfg2)
    resumed.prepare()
    for a, b in zip(resumed.model.state_dict().values(), trainer.model.state_dict().values()):
        assert torch.equal(a, b)


def test_off_by_default_and_same_seed_same_run(tmp_path):
    cfg = hjepa.compose([*TINY, f"data.cache_dir={tmp_path}"])
    assert cfg.model.data_init_levels == 0
    runs = []
    for i in range(2):
        c = hjepa.compose([*TINY, f"data.cache_dir={tmp_path}", "tracking.enabled=false", "train.steps=3",
                           "model.data_init_levels=2", "eval.reference_probes=false"], out_dir=str(tmp_path / f"r{i}"))
        runs.append(train(c)["train/loss"])
    assert runs[0] == runs[1]


def test_data_init_with_init_from_or_a_negative_count_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="model.init_from=some/run.pt loads trained weights"):
        hjepa.compose([*TINY, "model.data_init_levels=2", "model.init_from=some/run.pt"])
    with pytest.raises(ConfigError, match="must be >= 0"):
        hjepa.compose([*TINY, "model.data_init_levels=-1"])
    with pytest.raises(ConfigError, match="model.data_init_std"):
        hjepa.compose([*TINY, "model.data_init_std=0"])


def test_data_init_needs_an_hjepa(tmp_path):
    cfg = hjepa.compose([*TINY, f"data.cache_dir={tmp_path}", "tracking.enabled=false", "train.steps=1",
                         "model.data_init_levels=2", "objective=masked"], out_dir=str(tmp_path / "run"))
    with pytest.raises(ConfigError, match="drop model.data_init_levels"):
        Trainer(cfg).prepare()
