"""data=gym: gymnasium simulators as data (classic control headless, PointMaze on MuJoCo), the
missing-extra error, and the reference probes every run reports beside its own."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

import hjepa
from hjepa.config import ConfigError
from hjepa.data import DataValidationError, build_data
from hjepa.data.dataset import _cache_key
from hjepa.reference_probes import raw_features, reference_probes
from hjepa.train import train

gym = pytest.importorskip("gymnasium", reason="needs the simulators: pip install -e '.[envs]'")
from hjepa.envs.gym_data import ActionCodec, exploration_actions, generate_gym  # noqa: E402

CLASSIC = {"Pendulum-v1": (1, ["cos_theta", "sin_theta", "theta_dot"]),
           "CartPole-v1": (2, ["cart_x", "cart_x_dot", "pole_theta", "pole_theta_dot"]),
           "Acrobot-v1": (3, ["cos_theta1", "sin_theta1", "cos_theta2", "sin_theta2", "theta1_dot", "theta2_dot"]),
           "MountainCarContinuous-v0": (1, ["position", "velocity"])}


@pytest.mark.parametrize("env_id", sorted(CLASSIC))
def test_classic_control_pixels_shapes_actions_and_factors(env_id):
    adim, names = CLASSIC[env_id]
    tr = generate_gym(3, 12, 0, env_id=env_id, image_size=24, workers=1, progress=False)
    assert tr.obs.shape == (3, 12, 3, 24, 24) and tr.obs.dtype == np.uint8
    assert tr.actions.shape == (3, 12, adim) and tr.state.shape == (3, 12, len(names))
    assert tr.factor_names == names
    assert 0 < tr.obs.std()  # something is drawn (not a blank frame)
    assert np.abs(tr.actions).max() <= 1.0
    if env_id in ("CartPole-v1", "Acrobot-v1"):  # discrete: one-hot
        assert np.array_equal(tr.actions.sum(-1), np.ones((3, 12)))
        assert set(np.unique(tr.actions)) == {0.0, 1.0}
    assert not np.array_equal(tr.obs[:, 0], tr.obs[:, -1])  # the episode moves


def test_pendulum_state_is_the_true_physics():
    """cos² + sin² = 1, and θ̇ matches the finite difference of the angle (dt = 0.05 s)."""
    tr = generate_gym(2, 20, 3, env_id="Pendulum-v1", obs="state", workers=1, progress=False)
    c, s, w = tr.state[..., 0], tr.state[..., 1], tr.state[..., 2]
    np.testing.assert_allclose(c ** 2 + s ** 2, 1.0, atol=1e-5)
    dtheta = np.angle(np.exp(1j * (np.arctan2(s[:, 1:], c[:, 1:]) - np.arctan2(s[:, :-1], c[:, :-1]))))
    np.testing.assert_allclose(dtheta / 0.05, w[:, 1:], atol=1e-3)  # semi-implicit Euler: θ += θ̇_new·dt
    assert np.array_equal(tr.obs, tr.state)  # data.obs=state: the observation is the state vector


def test_action_codec_maps_to_the_env_bounds():
    from gymnasium import spaces

    box = ActionCodec(spaces.Box(-2.0, 2.0, (1,)))
    np.testing.assert_allclose(box.to_env(np.array([-1.0])), [-2.0])
    np.testing.assert_allclose(box.to_env(np.array([0.5])), [1.0])
    np.testing.assert_allclose(box.to_env(np.array([3.0])), [2.0])  # clipped
    disc = ActionCodec(spaces.Discrete(3))
    assert disc.dim == 3 and disc.to_env(np.array([0, 0, 1.0])) == 2
    with pytest.raises(DataValidationError, match="unbounded"):
        ActionCodec(spaces.Box(-np.inf, np.inf, (2,)))


def test_smooth_policy_persists_and_uniform_does_not():
    from gymnasium import spaces

    codec, rng = ActionCodec(spaces.Box(-1.0, 1.0, (1,))), np.random.default_rng(0)
    lag1 = lambda a: np.corrcoef(a[:-1, 0], a[1:, 0])[0, 1]  # noqa: E731
    smooth = exploration_actions(codec, 4000, "smooth", 0.9, rng)
    uniform = exploration_actions(codec, 4000, "uniform", 0.9, rng)
    assert lag1(smooth) > 0.8 and abs(lag1(uniform)) < 0.1
    assert smooth.std() > 0.4  # still spans the bounds
    d = exploration_actions(ActionCodec(spaces.Discrete(4)), 4000, "smooth", 0.9, rng).argmax(-1)
    assert 0.85 < (d[1:] == d[:-1]).mean() < 0.97  # repeat w.p. 0.9, plus a 1/4 chance of redrawing the same


def test_episodes_do_not_depend_on_the_number_of_workers():
    a = generate_gym(4, 10, 5, env_id="Pendulum-v1", image_size=16, workers=1, progress=False)
    b = generate_gym(4, 10, 5, env_id="Pendulum-v1", image_size=16, workers=2, progress=False)
    c = generate_gym(4, 10, 6, env_id="Pendulum-v1", image_size=16, workers=1, progress=False)
    assert np.array_equal(a.obs, b.obs) and np.array_equal(a.actions, b.actions)
    assert not np.array_equal(a.obs, c.obs)


def test_pointmaze_pixels_top_down_and_state():
    pytest.importorskip("gymnasium_robotics")
    tr = generate_gym(2, 10, 0, env_id="PointMaze_UMaze-v3", image_size=32, workers=1, progress=False)
    assert tr.obs.shape == (2, 10, 3, 32, 32) and tr.factor_names == ["x", "y", "x_dot", "y_dot"]
    assert tr.actions.shape == (2, 10, 2)
    # top-down: the maze's outer wall frames the image, so the border rows are wall-coloured and equal
    top = tr.obs[0, 0, :, 0].astype(int)
    assert np.abs(top - top[:, :1]).max() < 30
    st = generate_gym(2, 10, 0, env_id="PointMaze_UMaze-v3", obs="state", workers=1, progress=False)
    assert st.obs.shape == (2, 10, 4)
    np.testing.assert_allclose(st.state, tr.state)  # same seeds: the same physics with or without rendering


def test_unknown_env_id_names_similar_ones():
    with pytest.raises(DataValidationError, match=r"not a registered gymnasium id.*Pendulum-v1"):
        generate_gym(1, 4, 0, env_id="Pendulum-v9", workers=1, progress=False)


def test_cache_key_has_simulator_versions_and_ignores_workers(tmp_path):
    cfg = hjepa.compose(["data=gym", f"data.cache_dir={tmp_path}"]).data
    k = _cache_key(cfg, "train", 4, 0)
    cfg.workers = 3
    assert _cache_key(cfg, "train", 4, 0) == k
    cfg.persistence = 0.5
    assert _cache_key(cfg, "train", 4, 0) != k


@pytest.mark.parametrize("override, fragment", [("data.obs=video", "allowed values: pixels, state"),
                                                ("data.policy=greedy", "allowed values: smooth, uniform"),
                                                ("data.persistence=1.0", "must lie in [0, 1)"),
                                                ("data.action_repeat=0", "must be >= 1")])
def test_invalid_gym_config_is_rejected(override, fragment):
    with pytest.raises(ConfigError, match=fragment.replace("[", r"\[").replace(")", r"\)")):
        hjepa.compose(["data=gym", override])


def test_missing_extra_is_a_clear_error_without_traceback(tmp_path):
    """With gymnasium unimportable, hjepa-train data=gym exits 2 naming the install command."""
    blocker = tmp_path / "site" / "sitecustomize.py"
    blocker.parent.mkdir()
    blocker.write_text(textwrap.dedent("""
        import sys
        class _Block:
            def find_spec(self, name, path=None, target=None):
                if name.split('.')[0] in ('gymnasium', 'gymnasium_robotics', 'mujoco'):
                    raise ImportError(f"No module named {name!r}")
        sys.meta_path.insert(0, _Block())
    """))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(blocker.parent), str(Path(__file__).resolve().parents[1])]),
           "HJEPA_CACHE": str(tmp_path / "cache")}
    p = subprocess.run([sys.executable, "-m", "hjepa.train", "data=gym", "tracking.enabled=false", "train.steps=1",
                        f"hydra.run.dir={tmp_path / 'run'}"], env=env, capture_output=True, text=True, timeout=300)
    assert p.returncode == 2, p.stderr[-2000:]
    assert "pip install -e '.[envs]'" in p.stderr and "Traceback" not in p.stderr


# --------------------------------------------------------------------------- end to end (CI's small versions)
TRAIN_SMALL = ["data.num_train_episodes=4", "data.num_eval_episodes=4", "data.episode_len=16", "data.clip_len=8",
               "data.batch_size=4", "data.workers=1", "eval.num_clips=8", "model.latent_dim=16", "model.pred_dim=32",
               "model.encoder_width=8", "train.steps=2", "train.progress=false", "tracking.enabled=false",
               "model.stride=2", "optim.warmup_steps=1"]


@pytest.mark.parametrize("env_id, obs", [("Pendulum-v1", "pixels"), ("CartPole-v1", "pixels"), ("Acrobot-v1", "pixels"),
                                         ("MountainCarContinuous-v0", "pixels"), ("PointMaze_Medium-v3", "pixels"),
                                         ("PointMaze_UMaze-v3", "state")])
def test_trains_end_to_end(env_id, obs, tmp_path):
    if env_id.startswith("PointMaze"):
        pytest.importorskip("gymnasium_robotics")
    enc = ["model.encoder=mlp"] if obs == "state" else []
    cfg = hjepa.compose(["data=gym", f"data.env_id={env_id}", f"data.obs={obs}", "data.image_size=16",
                         f"data.cache_dir={tmp_path}", *TRAIN_SMALL, *enc], out_dir=str(tmp_path / "run"))
    metrics = train(cfg)
    names = CLASSIC.get(env_id, (2, ["x", "y", "x_dot", "y_dot"]))[1]
    for k in (0, 1):
        for name in names:
            for key in (f"eval/level{k}/probe_r2/{name}", f"eval/reference/random_encoder/level{k}/probe_r2/{name}",
                        f"eval/reference/raw_{'pixels' if obs == 'pixels' else 'obs'}/level{k}/probe_r2/{name}"):
                assert np.isfinite(metrics[key]), key
    assert np.isfinite(metrics["train/loss"])


# --------------------------------------------------------------------------- reference probes
def test_raw_features_concatenate_each_window_in_time_order():
    obs = torch.arange(2 * 4 * 1 * 2 * 2, dtype=torch.float32).reshape(2, 4, 1, 2, 2)
    f = raw_features(obs, span=2, steps=2, pool=1)  # pool 1: the frame mean
    assert f.shape == (2, 2, 2)
    assert f[0, 0].tolist() == [1.5, 5.5] and f[0, 1].tolist() == [9.5, 13.5]
    assert raw_features(torch.zeros(3, 6, 5), span=3, steps=2).shape == (3, 2, 15)


def test_reference_probes_read_a_pixel_factor_and_miss_noise(tmp_path):
    """A factor that is the frame brightness is read from raw pixels (R² ≈ 1); pure noise is not."""
    cfg = hjepa.compose(["data=rooms", "model.depth=2", "model.stride=2", "model.latent_dim=8", "model.pred_dim=16",
                         "model.encoder_width=8", f"data.cache_dir={tmp_path}"])
    g = torch.Generator().manual_seed(0)
    b, t = 32, 8
    level = torch.rand(b, t, 1, 1, 1, 1, generator=g)
    obs = level.expand(b, t, 1, 3, 16, 16).reshape(b, t, 3, 16, 16).clone()
    state = torch.cat([level.reshape(b, t, 1), torch.randn(b, t, 1, generator=g)], -1)
    batch = {"obs": obs, "actions": torch.zeros(b, t, 2), "state": state, "episode": torch.arange(b)}
    out = reference_probes(cfg, batch, ["brightness", "noise"], (3, 16, 16), 2)
    assert out["eval/reference/raw_pixels/level0/probe_r2/brightness"] > 0.99
    assert out["eval/reference/raw_pixels/level1/probe_r2/brightness"] > 0.99
    assert out["eval/reference/raw_pixels/level0/probe_r2/noise"] < 0.1
    assert out["eval/reference/random_encoder/level0/probe_r2/noise"] < 0.1
    assert set(k.split("/")[2] for k in out) == {"random_encoder", "raw_pixels"}


def test_build_data_from_config(tmp_path):
    cfg = hjepa.compose(["data=gym", "data.env_id=Acrobot-v1", "data.num_train_episodes=2", "data.num_eval_episodes=2",
                         "data.episode_len=8", "data.clip_len=8", "data.image_size=16", "data.workers=1",
                         f"data.cache_dir={tmp_path}", "model.depth=1"])
    data = build_data(cfg)
    assert data.obs_shape == (3, 16, 16) and data.action_dim == 3
    assert len(list(tmp_path.glob("gym-*.npz"))) == 2  # both splits cached
