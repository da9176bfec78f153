"""experiments/level_readouts.py: the logged linear probe beside quadratic and k-NN readouts."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).parents[1] / "experiments"))
import level_readouts  # noqa: E402

import hjepa  # noqa: E402
from hjepa.evaluation import probe_r2  # noqa: E402
from hjepa.train import train  # noqa: E402


def _circle(n_ep: int = 16, t: int = 32):
    """Latents on a circle (cos φ, sin φ); targets φ-dependent but not linear in the latent."""
    g = torch.Generator().manual_seed(0)
    phi = torch.rand(n_ep, t, generator=g) * 2 * torch.pi
    z = torch.stack([phi.cos(), phi.sin()], -1)
    y = torch.stack([(2 * phi).cos(), phi.cos()], -1)  # cos 2φ = cos²φ − sin²φ: quadratic in z; cos φ: linear
    return z, y, torch.arange(n_ep)[:, None].expand(n_ep, t)


def test_knn_and_quadratic_find_what_the_linear_probe_misses():
    z, y, ep = _circle()
    lin = probe_r2(z, y, ep)
    quad = probe_r2(level_readouts.with_products(z), y, ep)
    knn = level_readouts.knn_r2(z, y, ep, k=5)
    assert lin[0] < 0.05 and lin[1] > 0.99  # cos 2φ is invisible linearly, cos φ is the first axis
    assert quad[0] > 0.99 and knn[0] > 0.95 and knn[1] > 0.95
    assert level_readouts.with_products(z).shape == (16, 32, 2 + 3)


def test_change_over_var_is_two_for_white_noise_and_small_for_a_slow_coordinate():
    g = torch.Generator().manual_seed(0)
    noise = torch.randn(64, 200, 1, generator=g)
    t = torch.arange(200.0)[None, :, None]
    slow = torch.sin(t / 50 + torch.rand(64, 1, 1, generator=g) * 6.28)  # ρ = cos(1/50): 2(1 − ρ) = 4e-4
    r = level_readouts.change_over_var(torch.cat([noise, slow], -1))
    assert r[0].item() == pytest.approx(2.0, abs=0.05) and r[1].item() == pytest.approx(4e-4, rel=0.2)


def test_readouts_of_a_run_match_its_logged_probe(tmp_path):
    pytest.importorskip("gymnasium", reason="needs the simulators: pip install -e '.[envs]'")
    small = ["data.num_train_episodes=4", "data.num_eval_episodes=8", "data.episode_len=16", "data.clip_len=8",
             "data.batch_size=4", "data.workers=1", "data.image_size=16", "eval.num_clips=16", "model.pred_dim=32",
             "model.encoder_width=8", "model.stride=2", "train.steps=2", "train.progress=false",
             "tracking.enabled=false", "optim.warmup_steps=1", f"data.cache_dir={tmp_path}"]
    cfg = hjepa.compose(["experiment=pendulum", *small], out_dir=str(tmp_path / "run"))
    metrics = train(cfg)
    run = hjepa.load_run(tmp_path / "run")
    r = level_readouts.readouts(run, level=1, k=3)
    assert set(r) == {"ridge", "quadratic", "knn", "std", "ridge_products", "change_over_var"}
    assert len(r["std"]) == len(r["change_over_var"]) == 8  # level 1 is 8 wide
    assert list(r["ridge_products"]) == ["cos_theta*sin_theta", "cos_theta*theta_dot", "sin_theta*theta_dot"]
    assert all(np.isfinite(v) and v <= 1.0 for v in r["ridge_products"].values())
    for name in ("cos_theta", "sin_theta", "theta_dot"):
        assert r["ridge"][name] == pytest.approx(metrics[f"eval/level1/probe_r2/{name}"], abs=1e-4)
        assert np.isfinite(r["quadratic"][name]) and r["knn"][name] <= 1.0
    with pytest.raises(ValueError, match="levels 0..1"):
        level_readouts.readouts(run, level=2)


def test_cli_names_a_missing_run_without_a_traceback(tmp_path, capsys):
    assert level_readouts.main([str(tmp_path / "nothing")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and "does not exist" in err
