"""experiment=slow_regime: the multiscale gravity regime at the top of a depth-2 model (docs/timescales.md)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import hjepa
from hjepa.models import build_hjepa
from hjepa.train import train

SMALL = ["data.num_train_episodes=4", "data.num_eval_episodes=4", "data.episode_len=40", "data.image_size=16",
         "data.batch_size=4", "eval.num_clips=8", "model.pred_dim=32", "model.encoder_width=8", "train.steps=2",
         "train.eval_every=2", "eval.reference_probes=false", "train.progress=false", "tracking.enabled=false", "optim.warmup_steps=1"]


def test_slow_regime_preset_builds_the_measured_model():
    cfg = hjepa.compose(["experiment=slow_regime"])
    assert (cfg.data.name, cfg.data.gravity, cfg.data.clip_len, cfg.model.encoder_norm) == ("multiscale", 0.5, 32, "none")
    assert (cfg.model.depth, cfg.model.stride, list(cfg.model.latent_dims)) == (2, 16, [64, 8])
    assert (cfg.train.steps, cfg.model.topdown_detach) == (6000, False)
    model = build_hjepa(cfg.model, cfg.regularizer, (3, 32, 32), 2)
    lvl0, lvl1 = model.levels
    assert (lvl0.predictor.history, lvl1.predictor.history) == (2, 0)
    assert model.strides == [1, 16] and lvl1.predictor.out.out_features == 8


@pytest.mark.parametrize("detach", [False, True])
def test_level0_loss_trains_level1_through_the_context(detach):
    """With topdown_detach=false (the preset), level 0's prediction error reaches level 1's
    encoder (its summariser); with true, it does not."""
    cfg = hjepa.compose(["experiment=slow_regime", "model.pred_dim=32", "model.encoder_width=8",
                         f"model.topdown_detach={str(detach).lower()}"])
    torch.manual_seed(0)
    model = build_hjepa(cfg.model, cfg.regularizer, (3, 16, 16), 2)
    out = model(torch.rand(2, 32, 3, 16, 16), torch.rand(2, 32, 2) * 2 - 1)
    level0_loss = model.distance(out.pred[0][:, :-1], out.target[0][:, 1:]).mean()
    level0_loss.backward()
    grads = [p.grad for p in model.levels[1].encoder.parameters()]
    reached = any(g is not None and g.abs().sum() > 0 for g in grads)
    assert reached is not detach


@pytest.mark.parametrize("depth", [2, 1])
def test_slow_regime_and_its_flat_baseline_train_end_to_end(depth, tmp_path):
    extra = [] if depth == 2 else ["model.depth=1", "model.pred_history=null"]
    cfg = hjepa.compose(["experiment=slow_regime", f"data.cache_dir={tmp_path}", *SMALL, *extra],
                        out_dir=str(tmp_path / "run"))
    metrics = train(cfg)
    for k in range(depth):
        for name in ("slow_gravity_x", "slow_gravity_y"):
            assert np.isfinite(metrics[f"eval/level{k}/probe_r2/{name}"])
    assert np.isfinite(metrics["train/loss"])


@pytest.mark.slow
def test_slow_regime_full_run_reads_gravity_at_level1(tmp_path):
    """The measured run (docs/timescales.md, seed 0): about 22 min on one thread. Level 1 read gravity
    at 0.63 / 0.68 (x / y) there and its level 0 at 0.33 / 0.42; the issue's 0.7 is not reached."""
    cfg = hjepa.compose(["experiment=slow_regime", "train.progress=false", "tracking.enabled=false"],
                        out_dir=str(tmp_path / "run"))
    m = train(cfg)
    l1x, l1y = m["eval/level1/probe_r2/slow_gravity_x"], m["eval/level1/probe_r2/slow_gravity_y"]
    assert l1x >= 0.5 and l1y >= 0.6
    assert l1x > m["eval/level0/probe_r2/slow_gravity_x"] + 0.15 and l1y > m["eval/level0/probe_r2/slow_gravity_y"] + 0.15
