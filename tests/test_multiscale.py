"""The multiscale bouncing environment: shapes, determinism, physics, timescales, rendering, registry."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from omegaconf import OmegaConf

from hjepa.config import MultiscaleDataConfig
from hjepa.data import ENVS, build_data
from hjepa.data.multiscale import (BALL_RADIUS, GRAVITY_DIRECTIONS, generate_multiscale, multiscale_factor_names,
                                   regime_colours)

N_EP, EP_LEN, PERIOD = 400, 128, 50


@pytest.fixture(scope="module")
def big():
    """Many episodes at the default settings (the run-length and physics statistics need them)."""
    return generate_multiscale(N_EP, EP_LEN, seed=11, regime_period=PERIOD)


def _cols(traj, prefix):
    idx = [i for i, n in enumerate(traj.factor_names) if n.startswith(prefix)]
    return traj.state[..., idx]


def _col(traj, name):
    return traj.state[..., traj.factor_names.index(name)]


def _hue(traj):
    return np.mod(np.arctan2(_col(traj, "slow_hue_sin"), _col(traj, "slow_hue_cos")) / (2 * np.pi), 1.0)


# --------------------------------------------------------------------------- shapes, names, determinism
@pytest.mark.parametrize("num_objects,image_size", [(1, 16), (2, 32), (3, 24)])
def test_shapes_and_dtypes(num_objects, image_size):
    tr = generate_multiscale(5, 17, seed=0, num_objects=num_objects, image_size=image_size)
    f = 4 * num_objects + 5
    assert tr.obs.shape == (5, 17, 3, image_size, image_size) and tr.obs.dtype == np.uint8
    assert tr.actions.shape == (5, 17, 2) and tr.actions.dtype == np.float32
    assert tr.state.shape == (5, 17, f) and tr.state.dtype == np.float32
    assert len(tr.factor_names) == f and tr.factor_names == multiscale_factor_names(num_objects)
    assert np.abs(tr.actions).max() <= 1.0
    assert tr.actions.std() > 0.3  # actions really vary
    assert np.isfinite(tr.state).all()


def test_factor_names_have_timescale_prefixes():
    names = multiscale_factor_names(2)
    assert all(n.startswith(("fast_", "slow_")) for n in names)
    assert [n for n in names if n.startswith("fast_")] == [
        "fast_x0", "fast_y0", "fast_vx0", "fast_vy0", "fast_x1", "fast_y1", "fast_vx1", "fast_vy1"]
    assert {"slow_gravity_x", "slow_gravity_y", "slow_hue_cos", "slow_hue_sin", "slow_regime_id"} <= set(names)


@settings(max_examples=6, deadline=None)
@given(seed=st.integers(0, 2**31 - 1))
def test_deterministic_per_seed(seed):
    a = generate_multiscale(4, 40, seed)
    b = generate_multiscale(4, 40, seed)
    c = generate_multiscale(4, 40, seed + 1)
    for x, y in ((a.obs, b.obs), (a.actions, b.actions), (a.state, b.state)):
        np.testing.assert_array_equal(x, y)
    assert a.factor_names == b.factor_names
    assert not np.array_equal(a.state, c.state)
    assert not np.array_equal(a.obs, c.obs)
    assert not np.array_equal(a.actions, c.actions)


def test_invalid_arguments_raise():
    with pytest.raises(ValueError, match="num_objects"):
        generate_multiscale(2, 10, 0, num_objects=0)
    with pytest.raises(ValueError, match="regime_period"):
        generate_multiscale(2, 10, 0, regime_period=0)
    with pytest.raises(ValueError, match="speed"):
        generate_multiscale(2, 10, 0, speed=0.5)


# --------------------------------------------------------------------------- physics
def test_balls_stay_inside_the_box(big):
    for i in range(2):
        xy = big.state[..., [big.factor_names.index(f"fast_x{i}"), big.factor_names.index(f"fast_y{i}")]]
        assert xy.min() >= BALL_RADIUS - 1e-6 and xy.max() <= 1 - BALL_RADIUS + 1e-6
        # and they use the whole box, not a corner of it
        assert xy.min() < BALL_RADIUS + 0.02 and xy.max() > 1 - BALL_RADIUS - 0.02


def test_velocity_is_the_displacement_from_the_previous_frame(big):
    for i in range(2):
        pos = np.stack([_col(big, f"fast_x{i}"), _col(big, f"fast_y{i}")], -1).astype(np.float64)
        vel = np.stack([_col(big, f"fast_vx{i}"), _col(big, f"fast_vy{i}")], -1).astype(np.float64)
        np.testing.assert_allclose(vel[:, 1:] * 0.08, pos[:, 1:] - pos[:, :-1], atol=2e-6)
        speed = np.linalg.norm(vel, axis=-1)
        assert 0.7 < speed.mean() < 2.0 and speed.max() <= 3.0 + 1e-4  # fast, capped at 3x speed


def test_fast_factors_change_every_step(big):
    fast = _cols(big, "fast_")
    changed = (np.diff(fast, axis=1) != 0)
    pos_changed = changed[..., [0, 1]].any(-1)  # ball 0 position
    assert pos_changed.mean() > 0.999
    # a fast factor's mean run length is ~1 step, far below the slow regime's
    assert changed.mean() > 0.95


def test_gravity_bends_trajectories(big):
    """Away from the walls, the velocity change of a ball not thrust by the actions is gravity:
    along the regime's gravity direction, ~0.12 speed per step, and nothing across it."""
    g = _cols(big, "slow_gravity_").astype(np.float64)
    pos = np.stack([_col(big, "fast_x1"), _col(big, "fast_y1")], -1)
    vel = np.stack([_col(big, "fast_vx1"), _col(big, "fast_vy1")], -1).astype(np.float64)
    acc = vel[:, 2:] - vel[:, 1:-1]  # Δv over frames t -> t+1, driven by the regime at t
    gt = g[:, 1:-1]
    free = ((pos[:, 1:-1] > 0.3) & (pos[:, 1:-1] < 0.7)).all(-1) & ((pos[:, 2:] > 0.3) & (pos[:, 2:] < 0.7)).all(-1)
    along = (acc * gt).sum(-1)[free]
    perp = (acc * gt[..., ::-1] * [1, -1]).sum(-1)[free]
    assert free.sum() > 5000
    assert 0.08 < along.mean() < 0.14
    assert abs(perp.mean()) < 0.01
    # and balls gather on the gravity side of the box
    assert ((pos - 0.5) * g).sum(-1).mean() > 0.05


def test_actions_thrust_ball_zero_only(big):
    """The env is action-conditioned: ball 0's velocity change follows actions[t], ball 1's does not."""
    a = big.actions[:, 1:-1].astype(np.float64)
    for i, lo, hi in ((0, 0.7, 1.0), (1, -0.05, 0.05)):
        pos = np.stack([_col(big, f"fast_x{i}"), _col(big, f"fast_y{i}")], -1)
        vel = np.stack([_col(big, f"fast_vx{i}"), _col(big, f"fast_vy{i}")], -1).astype(np.float64)
        free = ((pos[:, 1:-1] > 0.3) & (pos[:, 1:-1] < 0.7)).all(-1) & ((pos[:, 2:] > 0.3) & (pos[:, 2:] < 0.7)).all(-1)
        acc = vel[:, 2:] - vel[:, 1:-1]  # no bounce in between: velocity change = gravity + thrust
        for ax in range(2):
            corr = np.corrcoef(acc[..., ax][free], a[..., ax][free])[0, 1]
            assert lo < corr < hi, (i, ax, corr)


# --------------------------------------------------------------------------- timescales
def test_slow_factors_are_piecewise_constant_with_mean_run_length_near_regime_period(big):
    slow = _cols(big, "slow_")
    switch = (np.diff(slow, axis=1) != 0).any(-1)  # (N, L-1)
    # every switch moves the hue and the gravity direction, and counts one more regime
    hue_changed = (np.diff(_cols(big, "slow_hue_"), axis=1) != 0).any(-1)
    grav_changed = (np.diff(_cols(big, "slow_gravity_"), axis=1) != 0).any(-1)
    np.testing.assert_array_equal(hue_changed, switch)
    np.testing.assert_array_equal(grav_changed, switch)
    rid = _col(big, "slow_regime_id")
    np.testing.assert_array_equal(np.diff(rid, axis=1), switch.astype(np.float32))
    assert (rid[:, 0] == 0).all()
    # mean run length, censoring-aware: observed steps per switch (the geometric MLE)
    mean_run = switch.size / switch.sum()
    assert abs(mean_run - PERIOD) < 0.12 * PERIOD, mean_run
    # the per-episode switch count is Binomial(L-1, 1/period): its variance says switches are random
    counts = switch.sum(1)
    p = 1 / PERIOD
    assert abs(counts.var() / ((EP_LEN - 1) * p * (1 - p)) - 1) < 0.3
    # the hue turns by a quarter to three quarters of a turn at each switch
    dh = np.mod(np.diff(_hue(big), axis=1)[switch], 1.0)
    assert dh.min() > 0.24 and dh.max() < 0.76
    # gravity stays one of the four directions
    g = _cols(big, "slow_gravity_").reshape(-1, 2).astype(np.float64)
    assert np.abs(g[:, None] - GRAVITY_DIRECTIONS[None]).max(-1).min(-1).max() < 1e-6
    assert len(np.unique(g, axis=0)) == 4


@pytest.mark.parametrize("period", [8, 25])
def test_run_length_follows_regime_period(period):
    tr = generate_multiscale(60, 200, seed=3, regime_period=period, image_size=8)
    switch = (np.diff(_cols(tr, "slow_"), axis=1) != 0).any(-1)
    assert abs(switch.size / switch.sum() - period) < 0.12 * period


def test_slow_factors_are_visible_in_the_frames(big):
    """The background of every frame is the regime's background colour, so a frame alone tells the hue."""
    n = 40
    hue = _hue(big)[:n].astype(np.float64)
    _, bg = regime_colours(hue, 2)
    bg_u8 = (bg.astype(np.float32) * 255 + 0.5).astype(np.uint8)  # (n, L, 3)
    corner = big.obs[:n, :, :, 0, 0]  # a ball covers a corner pixel only rarely
    match = (np.abs(corner.astype(int) - bg_u8.astype(int)) <= 1).all(-1)
    assert match.mean() > 0.97
    # and frames of different regimes differ in mean colour by far more than within a regime
    mean_rgb = big.obs[:n].reshape(n, EP_LEN, 3, -1).mean(-1)
    rid = _col(big, "slow_regime_id")[:n]
    dcol = np.abs(np.diff(mean_rgb, axis=1)).sum(-1)
    switch = np.diff(rid, axis=1) > 0
    assert np.median(dcol[switch]) > 5 * np.median(dcol[~switch])


def test_rendered_ball_centroids_match_state_positions(big):
    """Colour-weighted centroid of each ball (pixels assigned to the nearest ball, weight = how much
    of the ball's own regime colour a pixel holds over the background) = its state position."""
    n, s, r_px = 60, big.obs.shape[-1], BALL_RADIUS * big.obs.shape[-1]
    obs = big.obs[:n].reshape(-1, 3, s, s).astype(np.float64)
    hue = _hue(big)[:n].reshape(-1).astype(np.float64)
    balls, bg = regime_colours(hue, 2)
    bg_u8 = (bg.astype(np.float32) * 255 + 0.5).astype(np.uint8).astype(np.float64)
    centres = []
    for i in range(2):
        x, y = _col(big, f"fast_x{i}")[:n].reshape(-1), _col(big, f"fast_y{i}")[:n].reshape(-1)
        centres.append(np.stack([x * s, (1 - y) * s], -1))  # (M, 2) pixel (column, row)
    centres = np.stack(centres, 1).astype(np.float64)  # (M, 2, 2)
    sep = np.linalg.norm(centres[:, 0] - centres[:, 1], axis=-1) > 2 * r_px + 3
    assert sep.mean() > 0.7
    grid = np.arange(s) + 0.5
    gx, gy = np.meshgrid(grid, grid)  # [row, col]
    errs = []
    for m in np.flatnonzero(sep)[::3]:
        d = np.stack([(gx - c[0]) ** 2 + (gy - c[1]) ** 2 for c in centres[m]])
        owner = d.argmin(0)
        for i in range(2):
            col = balls[m, i] * 255 - bg_u8[m]
            alpha = np.tensordot(col, obs[m] - bg_u8[m][:, None, None], axes=(0, 0)) / (col @ col)
            w = np.clip(alpha, 0, 1) * (owner == i)
            assert w.sum() == pytest.approx(np.pi * r_px ** 2, rel=0.1)  # the whole disc, in its colour
            cen = np.array([(w * gx).sum(), (w * gy).sum()]) / w.sum()
            errs.append(np.linalg.norm(cen - centres[m, i]))
    errs = np.array(errs)
    assert len(errs) > 1000
    assert errs.max() < 0.5, errs.max()
    assert errs.mean() < 0.1


# --------------------------------------------------------------------------- registry and caching
def test_builds_through_the_registry(tmp_path):
    cfg = OmegaConf.structured(MultiscaleDataConfig(cache_dir=str(tmp_path), num_train_episodes=6,
                                                    num_eval_episodes=3, episode_len=40, clip_len=16,
                                                    batch_size=4))
    bundle = build_data(OmegaConf.create({"data": cfg}))
    assert bundle.obs_shape == (3, 32, 32) and bundle.action_dim == 2
    assert bundle.factor_names == multiscale_factor_names(2)
    assert len(bundle.train) == 6 * (40 - 16 + 1)
    item = bundle.train[0]
    assert item["obs"].shape == (16, 3, 32, 32) and item["state"].shape == (16, 13)
    assert 0.0 <= float(item["obs"].min()) and float(item["obs"].max()) <= 1.0
    # generated with the config's settings and seeds, and cached
    direct = generate_multiscale(6, 40, seed=cfg.seed)
    np.testing.assert_array_equal(bundle.train.traj.state, direct.state)
    np.testing.assert_array_equal(bundle.train.traj.obs, direct.obs)
    assert not np.array_equal(bundle.eval.traj.state[:3], direct.state[:3])  # eval uses another seed
    files = sorted(p.name for p in tmp_path.glob("*.npz"))
    assert len(files) == 2 and all(f.startswith("multiscale-") for f in files)
    again = build_data(cfg)  # the data config itself works too, and comes from the cache
    np.testing.assert_array_equal(again.train.traj.obs, bundle.train.traj.obs)


def test_registry_passes_env_settings(tmp_path):
    cfg = OmegaConf.structured(MultiscaleDataConfig(cache_dir=str(tmp_path), num_objects=3, image_size=24,
                                                    regime_period=5, speed=0.05, episode_len=60))
    tr = ENVS["multiscale"](cfg, 20, 1)
    assert tr.obs.shape == (20, 60, 3, 24, 24)
    assert tr.factor_names == multiscale_factor_names(3)
    switch = (np.diff(_cols(tr, "slow_"), axis=1) != 0).any(-1)
    assert 3 < switch.size / switch.sum() < 8  # regime_period=5 reached the generator
    pos = np.stack([_col(tr, "fast_x0"), _col(tr, "fast_y0")], -1).astype(np.float64)
    vel = np.stack([_col(tr, "fast_vx0"), _col(tr, "fast_vy0")], -1).astype(np.float64)
    np.testing.assert_allclose(vel[:, 1:] * 0.05, np.diff(pos, axis=1), atol=2e-6)  # speed=0.05 reached it
    assert 0.035 < np.median(np.linalg.norm(np.diff(pos, axis=1), axis=-1)) < 0.075
