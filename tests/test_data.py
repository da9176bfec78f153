"""The rooms environment and the dataset layer: walls, determinism, rendering, caching, npz loading,
deterministic batch sampling and clip datasets."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from omegaconf import OmegaConf

from hjepa.config import NpzDataConfig, RoomsDataConfig
from hjepa.data import ENVS, ClipDataset, DataValidationError, StepBatchSampler, Trajectories, build_data, load_npz
from hjepa.data.dataset import _cache_key
from hjepa.data.rooms import ROOMS_FACTORS, RoomsEnv, generate_rooms

EPS = 1e-3  # how far before a wall a blocked move stops (rooms._WALL_EPS)


def in_door(along: np.ndarray, door_width: float) -> np.ndarray:
    """Independent statement of the geometry: a doorway is centred on each unit wall segment."""
    return np.abs(along - np.floor(along) - 0.5) < door_width / 2


def room_cfg(tmp_path, **kw) -> RoomsDataConfig:
    base = dict(cache_dir=str(tmp_path), num_train_episodes=6, num_eval_episodes=2, episode_len=24, clip_len=8,
                batch_size=4)
    base.update(kw)
    return OmegaConf.structured(RoomsDataConfig(**base))


# --------------------------------------------------------------------------- (a) walls
@st.composite
def rooms_step_case(draw):
    rows, cols = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    door_width = draw(st.floats(0.05, 0.95))
    max_speed = draw(st.floats(0.01, 0.49))
    n = draw(st.integers(1, 12))

    def coord(limit):
        anywhere = st.floats(0.0, float(limit))
        near_wall = st.tuples(st.integers(0, limit), st.floats(-0.6, 0.6)).map(lambda t: t[0] + t[1])
        return st.one_of(anywhere, near_wall).map(lambda v: float(np.clip(v, EPS, limit - EPS)))

    pos = draw(st.lists(st.tuples(coord(cols), coord(rows)), min_size=n, max_size=n))
    act = draw(st.lists(st.tuples(st.floats(-1.5, 1.5), st.floats(-1.5, 1.5)), min_size=n, max_size=n))
    return (rows, cols), door_width, max_speed, np.array(pos, dtype=np.float64), np.array(act, dtype=np.float64)


def _check_axis_move(old, new, other, delta, limit, door_width):
    """One axis of a step: a room change along the axis happens only through a doorway (judged at
    the other coordinate at the time of that axis' move), moves are never blocked needlessly, and
    a blocked move stops just before the wall, on its own side."""
    intended = np.clip(old + delta, EPS, limit - EPS)
    door = in_door(other, door_width)
    assert (new > 0).all() and (new < limit).all()
    changed = np.floor(new) != np.floor(old)
    assert (door[changed]).all(), "crossed a wall outside a doorway"
    assert (np.abs(np.floor(new) - np.floor(old)) <= 1).all()
    wants_cross = np.floor(intended) != np.floor(old)
    free = ~wants_cross | door
    np.testing.assert_allclose(new[free], intended[free], rtol=0, atol=1e-12)
    blocked = ~free
    wall = np.where(intended > old, np.floor(intended), np.floor(old))[blocked]
    assert (np.floor(new[blocked]) == np.floor(old[blocked])).all()
    np.testing.assert_allclose(np.abs(new[blocked] - wall), EPS, atol=1e-9)


@settings(max_examples=300, deadline=None)
@given(rooms_step_case())
def test_step_never_crosses_a_wall_outside_a_doorway(case):
    grid, door_width, max_speed, pos, act = case
    env = RoomsEnv(grid, door_width=door_width, max_speed=max_speed, image_size=8)
    out = env.step(pos.copy(), act)
    delta = np.clip(act, -1, 1) * max_speed
    # x moves first (crossing vertical walls at the old y), then y (crossing horizontal walls at the new x)
    _check_axis_move(pos[:, 0], out[:, 0], pos[:, 1], delta[:, 0], env.cols, door_width)
    _check_axis_move(pos[:, 1], out[:, 1], out[:, 0], delta[:, 1], env.rows, door_width)
    rid = env.room_id(out)
    np.testing.assert_array_equal(rid, np.floor(out[:, 1]) * env.cols + np.floor(out[:, 0]))


def test_step_blocks_and_passes_known_cases():
    env = RoomsEnv((2, 2), door_width=0.4, max_speed=0.12, image_size=8)
    pos = np.array([[0.95, 0.2],  # wall x=1 at y=0.2: blocked
                    [0.95, 0.5],  # doorway of x=1 at y=0.5: passes
                    [0.5, 1.05],  # wall y=1 going down at x=0.5: doorway, passes
                    [0.2, 1.05]])  # wall y=1 at x=0.2: blocked
    act = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, -1.0], [0.0, -1.0]])
    out = env.step(pos, act)
    np.testing.assert_allclose(out, [[1 - EPS, 0.2], [1.07, 0.5], [0.5, 0.93], [0.2, 1 + EPS]], atol=1e-12)


@settings(max_examples=12, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), rows=st.integers(1, 3), cols=st.integers(1, 3),
       door_width=st.floats(0.1, 0.8), noise=st.floats(0.0, 1.5))
def test_generated_trajectories_cross_walls_only_at_doorways(seed, rows, cols, door_width, noise):
    tr = generate_rooms(16, 60, seed, grid=(rows, cols), door_width=door_width, image_size=8, action_noise=noise)
    p = tr.state[..., :2].astype(np.float64)
    x0, y0, x1, y1 = p[:, :-1, 0], p[:, :-1, 1], p[:, 1:, 0], p[:, 1:, 1]
    cross_x = np.floor(x0) != np.floor(x1)
    cross_y = np.floor(y0) != np.floor(y1)
    assert in_door(y0[cross_x], door_width).all()  # x moved first, at the old y
    assert in_door(x1[cross_y], door_width).all()  # then y, at the new x
    assert (p[..., 0] > 0).all() and (p[..., 0] < cols).all() and (p[..., 1] > 0).all() and (p[..., 1] < rows).all()
    rid = tr.state[..., 4]
    np.testing.assert_array_equal(rid, np.floor(p[..., 1]) * cols + np.floor(p[..., 0]))
    # velocity factor: displacement t-1 -> t in units of max_speed, bounded by the action limit
    np.testing.assert_allclose(tr.state[:, 1:, 2:4] * 0.12, p[:, 1:] - p[:, :-1], atol=1e-5)
    assert np.abs(tr.state[..., 2:4]).max() <= 1 + 1e-5


# --------------------------------------------------------------------------- (b) determinism
@settings(max_examples=5, deadline=None)
@given(seed=st.integers(0, 2**31 - 1))
def test_rooms_deterministic_per_seed(seed):
    a, b, c = generate_rooms(5, 30, seed), generate_rooms(5, 30, seed), generate_rooms(5, 30, seed + 1)
    for x, y in ((a.obs, b.obs), (a.actions, b.actions), (a.state, b.state)):
        np.testing.assert_array_equal(x, y)
    assert a.factor_names == ROOMS_FACTORS
    assert not np.array_equal(a.state, c.state)
    assert not np.array_equal(a.obs, c.obs)
    assert not np.array_equal(a.actions, c.actions)


def test_rooms_shapes_and_dtypes():
    tr = generate_rooms(3, 20, 0, grid=(2, 3), image_size=24)
    assert tr.obs.shape == (3, 20, 3, 24, 24) and tr.obs.dtype == np.uint8
    assert tr.actions.shape == (3, 20, 2) and tr.actions.dtype == np.float32
    assert tr.state.shape == (3, 20, 5) and tr.state.dtype == np.float32
    assert np.abs(tr.actions).max() <= 1.0


# --------------------------------------------------------------------------- (c) frames match states
@pytest.mark.parametrize("grid,image_size", [((2, 2), 32), ((3, 2), 48)])
def test_red_disc_centroid_matches_state(grid, image_size):
    env = RoomsEnv(grid, image_size=image_size)
    tr = generate_rooms(24, 64, 5, grid=grid, image_size=image_size)
    obs = tr.obs.reshape(-1, 3, image_size, image_size).astype(np.float64)
    pos = tr.state[..., :2].reshape(-1, 2).astype(np.float64)
    target = env.world_to_pixel(pos)  # (M, 2) column, row
    # the background (grey, dark walls) has R == G; the agent's red adds 0.8 alpha to R - G
    alpha = (obs[:, 0] - obs[:, 1]) / (0.8 * 255)
    assert alpha.min() > -0.01
    grid_c = np.arange(image_size) + 0.5
    w = alpha.sum((1, 2))
    cx = (alpha * grid_c[None, None, :]).sum((1, 2)) / w
    cy = (alpha * grid_c[None, :, None]).sum((1, 2)) / w
    margin = env.agent_radius_px + 1
    inside = ((target > margin) & (target < image_size - margin)).all(-1)  # disc not cut by the frame edge
    assert inside.mean() > 0.8
    err = np.hypot(cx - target[:, 0], cy - target[:, 1])[inside]
    assert err.max() < 0.5, err.max()
    np.testing.assert_allclose(w[inside], np.pi * env.agent_radius_px ** 2, rtol=0.1)


def test_background_shows_walls_and_doorways():
    env = RoomsEnv((2, 2), door_width=0.4, image_size=32)
    bg = env.render(np.array([[0.5, 0.5]]))[0, 0].astype(int)  # red channel of one frame
    # the vertical wall x=1 is pixel column 16 (±1): dark outside the doorways, light in them
    col = bg[:, 15:17].min(1)
    rows_world = (1 - (np.arange(32) + 0.5) / 32) * 2
    door_rows = in_door(rows_world, 0.4)
    assert (col[~door_rows] < 60).all() and (col[door_rows] > 180).all()


# --------------------------------------------------------------------------- (d) exploration
def test_exploration_policy_crosses_doorways():
    tr = generate_rooms(64, 64, 2)
    rid = tr.state[..., 4]
    changed = (np.diff(rid, axis=1) != 0).any(1)
    assert changed.mean() > 0.8
    assert set(np.unique(rid).astype(int)) == {0, 1, 2, 3}
    # not stuck in a single crossing: many episodes visit three or more rooms
    visited = np.array([len(np.unique(r)) for r in rid])
    assert (visited >= 3).mean() > 0.3


# --------------------------------------------------------------------------- (e) caching
def test_second_build_loads_from_cache(tmp_path, monkeypatch):
    cfg = room_cfg(tmp_path)
    first = build_data(cfg)
    files = sorted(tmp_path.glob("*.npz"))
    assert len(files) == 2 and {f.name.split("-")[1] for f in files} == {"train", "eval"}
    mtimes = [f.stat().st_mtime_ns for f in files]

    def boom(*a, **k):
        raise AssertionError("generator called although the cache holds the data")

    monkeypatch.setitem(ENVS, "rooms", boom)
    second = build_data(OmegaConf.create({"data": cfg, "seed": 99}))
    for a, b in ((first.train.traj, second.train.traj), (first.eval.traj, second.eval.traj)):
        np.testing.assert_array_equal(a.obs, b.obs)
        np.testing.assert_array_equal(a.actions, b.actions)
        np.testing.assert_array_equal(a.state, b.state)
        assert a.factor_names == b.factor_names
    assert [f.stat().st_mtime_ns for f in sorted(tmp_path.glob("*.npz"))] == mtimes
    # batch size and clip length are not generation settings: still served from the cache
    build_data(room_cfg(tmp_path, batch_size=16, clip_len=12))


@pytest.mark.parametrize("change", [dict(grid=[3, 2]), dict(door_width=0.3), dict(episode_len=25),
                                    dict(max_speed=0.1), dict(action_noise=0.2), dict(image_size=16),
                                    dict(seed=1), dict(num_train_episodes=7)])
def test_cache_key_changes_with_generation_settings(tmp_path, monkeypatch, change):
    build_data(room_cfg(tmp_path))
    calls = []
    real = ENVS["rooms"]
    monkeypatch.setitem(ENVS, "rooms", lambda *a: calls.append(a) or real(*a))
    bundle = build_data(room_cfg(tmp_path, **change))
    assert len(calls) >= 1  # regenerated, not served the stale cache
    if "grid" in change:
        assert bundle.train.traj.state[..., 4].max() > 3  # six rooms now
    if "image_size" in change:
        assert bundle.obs_shape == (3, 16, 16)


def test_cache_key_ignores_training_only_settings(tmp_path):
    base = room_cfg(tmp_path)
    key = _cache_key(base, "train", 6, 0)
    for change in (dict(batch_size=64), dict(clip_len=4), dict(cache_dir=str(tmp_path / "elsewhere"))):
        assert _cache_key(room_cfg(tmp_path, **change), "train", 6, 0) == key
    assert _cache_key(base, "eval", 6, 0) != key
    assert _cache_key(base, "train", 7, 0) != key
    assert _cache_key(base, "train", 6, 1) != key
    assert _cache_key(room_cfg(tmp_path, door_width=0.41), "train", 6, 0) != key
    assert _cache_key(room_cfg(tmp_path, grid=[2, 3]), "train", 6, 0) != key


@pytest.mark.parametrize("corruption", ["garbage", "truncated", "empty"])
def test_corrupt_cache_file_is_regenerated(tmp_path, monkeypatch, corruption):
    cfg = room_cfg(tmp_path)
    first = build_data(cfg)
    train_file = next(tmp_path.glob("rooms-train-*.npz"))
    good = train_file.read_bytes()
    train_file.write_bytes({"garbage": b"not an npz at all" * 20, "truncated": good[: len(good) // 2],
                            "empty": b""}[corruption])
    calls = []
    real = ENVS["rooms"]
    monkeypatch.setitem(ENVS, "rooms", lambda *a: calls.append(a) or real(*a))
    second = build_data(cfg)
    assert len(calls) == 1  # only the corrupt train split was regenerated
    np.testing.assert_array_equal(second.train.traj.obs, first.train.traj.obs)
    reloaded = load_npz(train_file)  # and the cache file is whole again
    np.testing.assert_array_equal(reloaded.state, first.train.traj.state)


# --------------------------------------------------------------------------- (f) user npz
def _valid_arrays(n=6, L=10, image=True):
    rng = np.random.default_rng(0)
    obs = rng.integers(0, 256, (n, L, 3, 8, 8), dtype=np.uint8) if image else \
        rng.normal(size=(n, L, 5)).astype(np.float32)
    return dict(obs=obs, actions=rng.uniform(-1, 1, (n, L, 2)).astype(np.float32),
                state=rng.normal(size=(n, L, 3)).astype(np.float32))


def _bad(kind):
    a = _valid_arrays()
    if kind == "missing_actions":
        del a["actions"]
    elif kind == "obs_4d":
        a["obs"] = a["obs"][:, :, 0]
    elif kind == "length_mismatch":
        a["actions"] = a["actions"][:, :7]
    elif kind == "episode_mismatch":
        a["state"] = a["state"][:4]
    elif kind == "nan_actions":
        a["actions"][2, 3, 1] = np.nan
    elif kind == "float_images":
        a["obs"] = a["obs"].astype(np.float32) / 255
    elif kind == "int_vectors":
        a["obs"] = np.ones((6, 10, 5), dtype=np.int64)
    elif kind == "names_mismatch":
        a["factor_names"] = np.array(["a", "b"])
    return a


@pytest.mark.parametrize("kind,needles", [
    ("missing_actions", ["missing array(s) ['actions']", "'obs'"]),
    ("obs_4d", ["'obs' must have shape (N, L, C, H, W)", "(6, 10, 8, 8)"]),
    ("length_mismatch", ["must agree on (num_episodes, episode_len)", "(6, 7)"]),
    ("episode_mismatch", ["must agree on (num_episodes, episode_len)", "(4, 10)"]),
    ("nan_actions", ["'actions' contains NaN"]),
    ("float_images", ["image 'obs' must be uint8", "float32"]),
    ("int_vectors", ["'obs' must be a float array", "int64"]),
    ("names_mismatch", ["2 factor names for 3 state columns"]),
])
def test_load_npz_rejects_bad_arrays(tmp_path, kind, needles):
    path = tmp_path / f"{kind}.npz"
    np.savez(path, **_bad(kind))
    with pytest.raises(DataValidationError) as e:
        load_npz(path)
    msg = str(e.value)
    assert str(path) in msg  # says which file
    for needle in needles:
        assert needle in msg, msg


def test_length_mismatch_names_only_the_arrays_given(tmp_path):
    a = _valid_arrays()
    del a["state"]
    a["actions"] = a["actions"][:, :7]
    np.savez(tmp_path / "episodes.npz", **a)
    with pytest.raises(DataValidationError) as e:
        load_npz(tmp_path / "episodes.npz")
    msg = str(e.value)
    assert "obs (6, 10), actions (6, 7) must agree on (num_episodes, episode_len): actions does not match obs" in msg
    assert "state" not in msg.split("episodes.npz")[1] and "docs/data.md" in msg


def test_load_npz_missing_file(tmp_path):
    with pytest.raises(DataValidationError, match="file not found"):
        load_npz(tmp_path / "nope.npz")
    cfg = OmegaConf.structured(NpzDataConfig(path=str(tmp_path / "nope.npz")))
    with pytest.raises(DataValidationError, match=r"data\.path=.*nope\.npz: file not found"):
        build_data(cfg)


@pytest.mark.parametrize("content", [b"garbage bytes" * 10, "truncated"])
def test_load_npz_unreadable_archive(tmp_path, content):
    path = tmp_path / "broken.npz"
    if content == "truncated":
        np.savez(tmp_path / "whole.npz", **_valid_arrays())
        content = (tmp_path / "whole.npz").read_bytes()[:300]
    path.write_bytes(content)
    with pytest.raises(DataValidationError, match="not a readable .npz archive"):
        load_npz(path)


def test_load_npz_refuses_pickled_objects(tmp_path):
    a = _valid_arrays()
    a["state"] = np.empty((6, 10, 3), dtype=object)
    path = tmp_path / "obj.npz"
    np.savez(path, **a)
    with pytest.raises(DataValidationError):
        load_npz(path)


def test_user_vector_npz_end_to_end(tmp_path):
    a = _valid_arrays(n=20, L=12, image=False)
    a["obs"] = a["obs"].astype(np.float64)  # float64 vectors are accepted and stored as float32
    a["factor_names"] = np.array(["u", "v", "w"])
    path = tmp_path / "user.npz"
    np.savez(path, **a)
    cfg = OmegaConf.structured(NpzDataConfig(path=str(path), clip_len=6, batch_size=4, eval_fraction=0.25))
    bundle = build_data(OmegaConf.create({"data": cfg}))
    assert bundle.obs_shape == (5,) and bundle.action_dim == 2 and bundle.factor_names == ["u", "v", "w"]
    assert bundle.train.traj.num_episodes == 15 and bundle.eval.traj.num_episodes == 5
    item = bundle.train[len(bundle.train) - 1]
    assert item["obs"].dtype == torch.float32 and item["obs"].shape == (6, 5)
    np.testing.assert_allclose(item["obs"].numpy(), a["obs"][14, 6:12], rtol=1e-6)  # not rescaled
    np.testing.assert_array_equal(item["actions"].numpy(), a["actions"][14, 6:12])
    np.testing.assert_array_equal(bundle.eval.traj.state, a["state"][15:])
    batch = next(iter(bundle.train_loader(seed=0, num_steps=1)))
    assert batch["obs"].shape == (4, 6, 5) and batch["state"].shape == (4, 6, 3)


def test_user_npz_without_state(tmp_path):
    a = _valid_arrays(n=8, L=10)
    del a["state"]
    path = tmp_path / "nostate.npz"
    np.savez(path, **a)
    tr = load_npz(path)
    assert tr.state.shape == (8, 10, 0) and tr.factor_names == []
    bundle = build_data(OmegaConf.structured(NpzDataConfig(path=str(path), clip_len=4)))
    assert bundle.obs_shape == (3, 8, 8) and bundle.eval.traj.num_episodes == 2


def test_user_npz_too_few_episodes(tmp_path):
    path = tmp_path / "two.npz"
    np.savez(path, **_valid_arrays(n=2))
    with pytest.raises(DataValidationError, match="too few"):
        build_data(OmegaConf.structured(NpzDataConfig(path=str(path), clip_len=4)))


# --------------------------------------------------------------------------- (g) batch sampler
@settings(max_examples=40, deadline=None)
@given(n=st.integers(1, 500), batch_size=st.integers(1, 40), seed=st.integers(0, 10**6),
       step=st.integers(0, 10**5))
def test_sampler_is_a_function_of_seed_and_step(n, batch_size, seed, step):
    a = StepBatchSampler(n, batch_size, seed).batch_indices(step)
    b = StepBatchSampler(n, batch_size, seed, start_step=17).batch_indices(step)
    assert a == b and len(a) == batch_size
    assert all(0 <= i < n for i in a)
    if n >= 50 and batch_size >= 8:
        assert StepBatchSampler(n, batch_size, seed).batch_indices(step + 1) != a
        assert StepBatchSampler(n, batch_size, seed + 1).batch_indices(step) != a


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10**6), total=st.integers(1, 30), data=st.data())
def test_sampler_resume_reproduces_the_tail(seed, total, data):
    k = data.draw(st.integers(0, total))
    full = list(StepBatchSampler(100, 8, seed, num_steps=total))
    resumed = list(StepBatchSampler(100, 8, seed, start_step=k, num_steps=total - k))
    assert len(full) == total and resumed == full[k:]


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10**6), step=st.integers(0, 10**4), half=st.integers(1, 20))
def test_sampler_rank_slices_interleave_to_the_global_batch(seed, step, half):
    bs = 2 * half
    glob = StepBatchSampler(1000, bs, seed).batch_indices(step)
    r0 = StepBatchSampler(1000, bs, seed, rank=0, world_size=2).batch_indices(step)
    r1 = StepBatchSampler(1000, bs, seed, rank=1, world_size=2).batch_indices(step)
    assert len(r0) == len(r1) == half
    merged = [i for pair in zip(r0, r1) for i in pair]
    assert merged == glob


def test_sampler_length():
    assert len(StepBatchSampler(10, 4, 0, num_steps=7)) == 7
    with pytest.raises(TypeError):
        len(StepBatchSampler(10, 4, 0))
    endless = iter(StepBatchSampler(10, 4, 0))
    assert len([next(endless) for _ in range(50)]) == 50


def test_train_loader_resumes_exactly(tmp_path):
    bundle = build_data(room_cfg(tmp_path))
    full = [b["obs"] for b in bundle.train_loader(seed=3, num_steps=6)]
    tail = [b["obs"] for b in bundle.train_loader(seed=3, start_step=4, num_steps=2)]
    assert len(full) == 6 and full[0].shape == (4, 8, 3, 32, 32)
    for x, y in zip(full[4:], tail):
        assert torch.equal(x, y)
    other = [b["obs"] for b in bundle.train_loader(seed=4, num_steps=1)]
    assert not torch.equal(other[0], full[0])
    ev1, ev2 = bundle.eval_batch(8), bundle.eval_batch(8)
    assert torch.equal(ev1["obs"], ev2["obs"]) and ev1["obs"].shape[0] == 8


# --------------------------------------------------------------------------- (h) clip dataset
def test_clip_dataset_items():
    tr = generate_rooms(3, 20, 1, image_size=16)
    ds = ClipDataset(tr, clip_len=8)
    assert len(ds) == 3 * 13
    assert ds.obs_shape == (3, 16, 16) and ds.action_dim == 2 and ds.factor_names == ROOMS_FACTORS
    for i, (ep, s) in ((0, (0, 0)), (12, (0, 12)), (13, (1, 0)), (len(ds) - 1, (2, 12))):
        item = ds[i]
        assert int(item["episode"]) == ep and int(item["start"]) == s
        assert item["obs"].shape == (8, 3, 16, 16) and item["obs"].dtype == torch.float32
        assert item["actions"].shape == (8, 2) and item["actions"].dtype == torch.float32
        assert item["state"].shape == (8, 5) and item["state"].dtype == torch.float32
        assert 0.0 <= float(item["obs"].min()) and float(item["obs"].max()) <= 1.0
        np.testing.assert_allclose(item["obs"].numpy(), tr.obs[ep, s:s + 8] / 255.0, rtol=0, atol=1e-6)
        np.testing.assert_array_equal(item["state"].numpy(), tr.state[ep, s:s + 8])
        np.testing.assert_array_equal(item["actions"].numpy(), tr.actions[ep, s:s + 8])
    ds[0]["obs"].mul_(0)  # items are copies: the dataset is not modified through them
    assert float(ds[0]["obs"].max()) > 0.5


def test_clip_dataset_stride_and_errors():
    tr = generate_rooms(2, 20, 1, image_size=8)
    ds = ClipDataset(tr, clip_len=8, stride=4)
    assert len(ds) == 2 * 4  # starts 0, 4, 8, 12
    assert [int(ds[i]["start"]) for i in range(4)] == [0, 4, 8, 12]
    assert int(ds[4]["episode"]) == 1
    with pytest.raises(DataValidationError, match="clip_len=21"):
        ClipDataset(tr, clip_len=21)


def test_trajectories_split():
    tr = generate_rooms(5, 10, 0, image_size=8)
    a, b = tr.split(3)
    assert a.num_episodes == 3 and b.num_episodes == 2 and a.episode_len == 10
    np.testing.assert_array_equal(b.state, tr.state[3:])
    with pytest.raises(DataValidationError, match="factor names"):
        Trajectories(tr.obs, tr.actions, tr.state, ["a"])
