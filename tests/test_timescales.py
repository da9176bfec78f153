"""data=ou, per-level latent widths / regulariser weights, and theory/bridge.py's pieces."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

import hjepa
from hjepa.config import ConfigError, OuDataConfig, validate_config
from hjepa.data import ENVS, DataValidationError, build_data
from hjepa.data.ou import generate_ou, mixing_matrix, ou_factor_names, pushed_response
from theory import bridge, multiscale as ms


# --------------------------------------------------------------------------- data=ou
def test_shapes_names_and_determinism():
    tr = generate_ou(6, 40, seed=3, taus=[1, 4, 16], obs_dim=8)
    assert tr.obs.shape == (6, 40, 8) and tr.obs.dtype == np.float32
    assert tr.actions.shape == (6, 40, 1) and not tr.actions.any()  # no pushes: one zero channel
    assert tr.state.shape == (6, 40, 3) and tr.factor_names == ["tau_1", "tau_4", "tau_16"]
    again = generate_ou(6, 40, seed=3, taus=[1, 4, 16], obs_dim=8)
    np.testing.assert_array_equal(tr.obs, again.obs)
    other = generate_ou(6, 40, seed=4, taus=[1, 4, 16], obs_dim=8)
    assert not np.allclose(tr.state, other.state)
    assert ou_factor_names([2.5, 64.0]) == ["tau_2.5", "tau_64"]


def test_components_are_the_theory_simulator_exactly():
    """Same seed → the state is theory.multiscale.simulate_ou's paths, bit for bit (float32)."""
    taus = np.array([1.0, 4.0, 16.0])
    tr = generate_ou(5, 30, seed=11, taus=taus)
    ref = ms.simulate_ou(taus, 30, 5, rng=np.random.default_rng(11))
    np.testing.assert_array_equal(tr.state, ref.astype(np.float32))


def test_observations_are_the_fixed_linear_mix_plus_noise():
    tr = generate_ou(200, 64, seed=0, taus=[1, 8, 64], obs_dim=16, obs_noise=0.1, mix_seed=5)
    w = mixing_matrix(16, 3, 5)
    resid = tr.obs - np.einsum("nlk,dk->nld", tr.state, w)
    assert resid.std() == pytest.approx(0.1, rel=0.03)  # exactly the observation noise
    assert abs(np.corrcoef(resid[..., 0].ravel(), tr.state[..., 0].ravel())[0, 1]) < 0.02
    # the eval split (another seed) shares the map: least squares recovers the same W
    ev = generate_ou(200, 64, seed=99, taus=[1, 8, 64], obs_dim=16, obs_noise=0.1, mix_seed=5)
    w_hat = np.linalg.lstsq(ev.state.reshape(-1, 3), ev.obs.reshape(-1, 16), rcond=None)[0].T
    np.testing.assert_allclose(w_hat, w, atol=0.01)


def test_components_have_their_time_constants():
    taus = np.array([1.0, 4.0, 16.0])
    tr = generate_ou(64, 400, seed=2, taus=taus)
    for h in (1, 4):
        corr, _ = ms.empirical_predictability(tr.state.astype(np.float64), h)
        se = ms.autocorrelation_standard_error(taus, h, 400 - h, 64)
        assert np.all(np.abs(corr - np.exp(-h / taus)) < 5 * se + 0.005)


def test_actions_push_their_components():
    tr = generate_ou(64, 200, seed=1, taus=[4, 64], pushed=[1], push=0.5)
    assert tr.actions.shape == (64, 200, 1) and np.abs(tr.actions).max() <= 1 and tr.actions.std() > 0.5
    free = ms.simulate_ou(np.array([4.0, 64.0]), 200, 64, rng=np.random.default_rng(1))
    np.testing.assert_allclose(tr.state[..., 0], free[..., 0], atol=1e-6)  # the unpushed one is untouched
    pushed = tr.state[..., 1] - free[..., 1]
    want = pushed_response(tr.actions.astype(np.float64), np.exp(-1 / 64), 0.5)[..., 0]
    np.testing.assert_allclose(pushed, want, atol=1e-5)
    # y[t+1] − φ y[t] = push · a[t]
    np.testing.assert_allclose(pushed[:, 1:] - np.exp(-1 / 64) * pushed[:, :-1], 0.5 * tr.actions[:, :-1, 0],
                               atol=1e-5)


@pytest.mark.parametrize("kw,msg", [({"taus": []}, "positive time constants"), ({"taus": [1, -2]}, "positive"),
                                    ({"pushed": [5]}, "component indices"), ({"pushed": [0, 0]}, "distinct")])
def test_bad_settings_are_named(kw, msg):
    with pytest.raises(DataValidationError, match=msg):
        generate_ou(2, 10, seed=0, **kw)


def test_registered_and_built_from_config(tmp_path):
    assert "ou" in ENVS
    cfg = hjepa.compose(["data=ou", "model.encoder=mlp", "data.num_train_episodes=4", "data.num_eval_episodes=4",
                         "data.episode_len=40", f"data.cache_dir={tmp_path}"])
    assert OmegaConf.get_type(cfg.data) is OuDataConfig
    data = build_data(cfg)
    assert data.obs_shape == (32,) and data.action_dim == 1
    assert data.factor_names == ["tau_1", "tau_4", "tau_16", "tau_64", "tau_256"]


# --------------------------------------------------------------------------- per-level widths and λ
def _model(overrides, tmp_path):
    cfg = hjepa.compose(["data=ou", "model.encoder=mlp", "model.depth=3", "data.num_train_episodes=4",
                         "data.num_eval_episodes=4", "data.episode_len=40", f"data.cache_dir={tmp_path}", *overrides])
    data = build_data(cfg)
    return hjepa.build_model(cfg, data), data


def test_latent_dims_per_level(tmp_path):
    model, data = _model(["model.latent_dims=[24,8,3]"], tmp_path)
    b = data.eval_batch(4)
    out = model(b["obs"], b["actions"])
    assert [tuple(z.shape) for z in out.z] == [(4, 32, 24), (4, 8, 8), (4, 2, 3)]
    assert [tuple(p.shape) for p in out.pred] == [(4, 32, 24), (4, 8, 8), (4, 2, 3)]
    assert out.ctx[0].shape[-1] == 8 and out.ctx[1].shape[-1] == 3 and out.ctx[2] is None
    short, _ = _model(["model.depth=2", "model.latent_dims=[24,8,3]"], tmp_path)  # extras are ignored
    assert [z.shape[-1] for z in short(b["obs"], b["actions"]).z] == [24, 8]
    default, _ = _model([], tmp_path)
    assert {z.shape[-1] for z in default(b["obs"], b["actions"]).z} == {64}


def test_per_level_weight_enters_the_loss(tmp_path):
    torch.manual_seed(0)
    model, data = _model(["regularizer.per_level_weight=[0.1,0.5,1.0]"], tmp_path)
    assert model.reg_weights == [0.1, 0.5, 1.0]
    b = data.eval_batch(4)
    res = model.losses(model(b["obs"], b["actions"]))
    want = sum((1 - lam) * p + lam * r for lam, p, r in zip([0.1, 0.5, 1.0], res.pred, res.reg))
    assert float(res.total.detach()) == pytest.approx(float(want), rel=1e-5)


def test_slowness_term_known_value_and_in_the_loss(tmp_path):
    from hjepa.models.hjepa import slowness_loss

    z = torch.arange(12.0).reshape(1, 4, 3)  # every step adds 3 to every dimension
    assert float(slowness_loss(z)) == pytest.approx(9.0)
    assert float(slowness_loss(torch.ones(2, 5, 4))) == 0.0
    torch.manual_seed(0)
    model, data = _model(["model.slowness_weight=[0,2,0.5]"], tmp_path)
    b = data.eval_batch(4)
    out = model(b["obs"], b["actions"])
    res = model.losses(out)
    assert res.slowness[0] is None
    lam = model.reg_weights
    base = sum((1 - lam[k]) * res.pred[k] + lam[k] * res.reg[k] for k in range(3))
    want = (base + 2 * slowness_loss(out.z[1]) + 0.5 * slowness_loss(out.z[2])).detach()
    assert float(res.total.detach()) == pytest.approx(float(want), rel=1e-5)
    assert float(res.slowness[1]) == pytest.approx(float(slowness_loss(out.z[1]).detach()), rel=1e-6)
    short, _ = _model(["model.depth=2", "model.slowness_weight=[0,2,0.5]"], tmp_path)  # extras are ignored
    assert short.slowness_weight == [0.0, 2.0]


@pytest.mark.parametrize("override,key", [("model.latent_dims=[8,8]", "model.latent_dims"),
                                          ("model.slowness_weight=[0,1]", "model.slowness_weight"),
                                          ("model.slowness_weight=[0,1,-1]", "model.slowness_weight"),
                                          ("model.latent_dims=[8,0,4]", "model.latent_dims"),
                                          ("regularizer.per_level_weight=[0.1]", "regularizer.per_level_weight"),
                                          ("regularizer.per_level_weight=[0.1,1.5,0.1]",
                                           "regularizer.per_level_weight[1]")])
def test_bad_per_level_values_are_rejected(override, key):
    with pytest.raises(ConfigError) as e:
        hjepa.compose(["model.depth=3", override])
    assert e.value.key == key


# --------------------------------------------------------------------------- bridge pieces
def test_level_factors_at_clock_reads_the_named_frame():
    state = torch.arange(16, dtype=torch.float32).reshape(1, 16, 1)
    assert bridge.level_factors_at_clock(state, 4, 4, "last")[0, :, 0].tolist() == [3, 7, 11, 15]
    assert bridge.level_factors_at_clock(state, 4, 4, "first")[0, :, 0].tolist() == [0, 4, 8, 12]
    assert bridge.level_factors_at_clock(state, 4, 4, "mean")[0, :, 0].tolist() == [1.5, 5.5, 9.5, 13.5]
    with pytest.raises(ValueError, match="last, first, mean"):
        bridge.level_factors_at_clock(state, 4, 4, "middle")


def test_theory_prediction_for_the_issue_setting():
    keep, frac = bridge.theory_prediction([1, 4, 16, 64, 256], [1, 4, 4])
    np.testing.assert_array_equal(keep, [[1, 1, 1, 1, 1], [0, 1, 1, 1, 1], [0, 0, 1, 1, 1]])
    assert frac[1, 0] == pytest.approx(np.exp(-8)) and frac[2, 4] == pytest.approx(np.exp(-2 * 16 / 256))


def test_separation_checks_pass_on_theory_and_fail_on_the_issue_baseline():
    taus, spans = [1, 4, 16, 64, 256], [1, 4, 16]
    _, frac = bridge.theory_prediction(taus, [1, 4, 4])
    ideal = np.where(frac > 0.5, 0.95, frac)  # kept cells decoded, the rest at the theory's fraction
    assert [c.passed for c in bridge.separation_checks(ideal, taus, spans)] == [True, True, True]
    issue = np.array([[0.97, 0.98, 0.98, 0.99, 0.99], [0.87, 0.83, 0.86, 0.89, 0.88],
                      [0.53, 0.63, 0.72, 0.15, 0.86]])  # issue #9's measurement
    keep, drop, order = bridge.separation_checks(issue, taus, spans)
    assert not keep.passed and "0.150 (L2/τ=64)" in keep.measured
    assert not drop.passed and "0.870 (L1/τ=1)" in drop.measured
    assert not order.passed and "L2/τ=16>L2/τ=64" in order.measured


def test_online_target_trains_the_target_side(tmp_path):
    """``regularizer.target=online``: the loss's gradient reaches the encoder through the target
    too (LeJEPA); the default stop-gradient target gets none."""
    grads = {}
    for mode in ("stopgrad", "online"):
        torch.manual_seed(0)
        model, data = _model(["model.depth=2", f"regularizer.target={mode}"], tmp_path)
        b = data.eval_batch(4)
        out = model(b["obs"], b["actions"])
        assert out.target[1].requires_grad == (mode == "online")
        # the level-1 prediction loss alone, with the predictor's input detached: only the target path is left
        z_in = out.z[1].detach()
        pred = model.levels[1].predictor(z_in, out.actions[1].detach(), None)
        loss = model.distance(pred[:, :-1], out.target[1][:, 1:]).mean()
        enc = [p for p in model.levels[1].encoder.parameters()]
        g = torch.autograd.grad(loss, enc, allow_unused=True)
        grads[mode] = sum(float(x.abs().sum()) for x in g if x is not None)
    assert grads["stopgrad"] == 0.0 and grads["online"] > 1e-3
