"""``data=gym``: episodes of any registered gymnasium environment, under an exploration policy.

Each episode is one fixed-length run of the simulator: ``obs[t]`` is observed, ``actions[t]`` is
applied (``action_repeat`` simulator steps) and leads to ``obs[t + 1]``, as everywhere in hjepa.
The environment's terminal and time-limit flags are ignored — hjepa trains on fixed-length clips,
and the simulators here stay well defined past them (a fallen CartPole pole keeps swinging, a
MountainCar at the flag stays there) — so ``data.episode_len`` alone sets the length.

Observations: ``data.obs=pixels`` renders ``rgb_array`` frames resized (box filter) to
``data.image_size`` square; ``data.obs=state`` uses the observation vector itself. The true state
(the observation vector) is kept as named factors for probes (``hjepa.envs.gym_env.factor_names``).

Actions: a continuous ``Box`` is stored in ``[-1, 1]`` per dimension and mapped linearly onto the
environment's bounds before stepping; a ``Discrete(n)`` space is stored one-hot. Policies:

* ``uniform``: i.i.d. uniform actions every step;
* ``smooth``: actions that persist and drift — continuous ``a[t] = ρ a[t−1] + √(1−ρ²) ε``,
  ``ε ~ N(0, 1)``, clipped to ``[-1, 1]`` (``ρ = data.persistence``), discrete: repeat the previous
  action with probability ``ρ``, else draw a new one — so trajectories travel instead of dithering.

Episode ``i`` is seeded by ``(seed, i)`` alone, so the data do not depend on ``data.workers``.
"""

from __future__ import annotations

import math
import os
from concurrent.futures import ProcessPoolExecutor, as_completed
from multiprocessing import get_all_start_methods, get_context

import numpy as np

from ..data.trajectories import DataValidationError, Trajectories
from .gym_env import factor_names, make_env, require_envs, state_vector

__all__ = ["generate_gym", "ActionCodec", "exploration_actions", "rollout_episode", "resize_frame"]


class ActionCodec:
    """Stored actions ↔ environment actions. ``dim``: width of the stored action vector."""

    def __init__(self, space):
        from gymnasium import spaces

        if isinstance(space, spaces.Discrete):
            self.discrete, self.n, self.dim = True, int(space.n), int(space.n)
            self.start = int(space.start)
        elif isinstance(space, spaces.Box):
            self.discrete, self.dim = False, int(np.prod(space.shape))
            self.low, self.high, self.shape = space.low.astype(np.float64), space.high.astype(np.float64), space.shape
            if not (np.isfinite(self.low).all() and np.isfinite(self.high).all()):
                raise DataValidationError("data=gym: the environment's action Box is unbounded; exploration needs "
                                          "finite action bounds")
        else:
            raise DataValidationError(f"data=gym: action space {space} is not supported (Box or Discrete only)")

    def to_env(self, a: np.ndarray):
        """One stored action ``(dim,)`` → what ``env.step`` takes."""
        if self.discrete:
            return int(np.argmax(a)) + self.start
        return (self.low + (np.clip(a, -1, 1) + 1) / 2 * (self.high - self.low)).reshape(self.shape).astype(np.float32)


def exploration_actions(codec: ActionCodec, length: int, policy: str, persistence: float,
                        rng: np.random.Generator) -> np.ndarray:
    """``(length, dim)`` float32 stored actions of one episode (``uniform`` or ``smooth``)."""
    if codec.discrete:
        idx = rng.integers(0, codec.n, length)
        if policy == "smooth":
            keep = rng.random(length) < persistence
            for t in range(1, length):
                if keep[t]:
                    idx[t] = idx[t - 1]
        return np.eye(codec.n, dtype=np.float32)[idx]
    if policy == "uniform":
        return rng.uniform(-1, 1, (length, codec.dim)).astype(np.float32)
    a = np.empty((length, codec.dim))
    a[0] = rng.uniform(-1, 1, codec.dim)
    noise = rng.standard_normal((length, codec.dim))
    for t in range(1, length):
        a[t] = persistence * a[t - 1] + math.sqrt(1 - persistence ** 2) * noise[t]
    return np.clip(a, -1, 1).astype(np.float32)


def resize_frame(frame: np.ndarray, size: int) -> np.ndarray:
    """``(H, W, 3)`` uint8 → ``(3, size, size)`` uint8 (box filter: each pixel averages its area)."""
    from PIL import Image

    img = Image.fromarray(np.ascontiguousarray(frame[..., :3]))
    if img.size != (size, size):
        img = img.resize((size, size), Image.BOX)
    return np.asarray(img, np.uint8).transpose(2, 0, 1)


def rollout_episode(env, codec: ActionCodec, actions: np.ndarray, seed: int, pixels: bool, image_size: int,
                    action_repeat: int) -> tuple[np.ndarray, np.ndarray]:
    """Run one episode: ``obs (L, 3, S, S)`` uint8 or ``(L, D)`` float32, ``state (L, D)`` float32."""
    import warnings

    raw, _ = env.reset(seed=seed)
    sim = env.unwrapped  # past the time limit and terminal flags: fixed-length episodes
    frames, states = [], []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for t in range(len(actions)):
            states.append(state_vector(raw))
            if pixels:
                frames.append(resize_frame(sim.render(), image_size))
            if t == len(actions) - 1:
                break
            a = codec.to_env(actions[t])
            for _ in range(action_repeat):
                raw = sim.step(a)[0]
    state = np.asarray(states, np.float32)
    return (np.stack(frames) if pixels else state.copy()), state


def _episodes(spec: dict, episode_ids: list[int]) -> list[tuple[int, np.ndarray, np.ndarray, np.ndarray]]:
    """Worker: episodes ``episode_ids`` of ``spec`` (each seeded by ``(seed, i)``)."""
    env = make_env(spec["env_id"], spec["image_size"], render=spec["pixels"])
    codec = ActionCodec(env.action_space)
    out = []
    for i in episode_ids:
        rng = np.random.default_rng([spec["seed"], i])
        acts = exploration_actions(codec, spec["episode_len"], spec["policy"], spec["persistence"], rng)
        env.action_space.seed(int(rng.integers(2**31)))
        obs, state = rollout_episode(env, codec, acts, int(rng.integers(2**31)), spec["pixels"],
                                     spec["image_size"], spec["action_repeat"])
        out.append((i, obs, acts, state))
    env.close()
    return out


def default_workers() -> int:
    return max(1, min(8, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1))


def generate_gym(num_episodes: int, episode_len: int, seed: int, *, env_id: str, obs: str = "pixels",
                 policy: str = "smooth", persistence: float = 0.9, action_repeat: int = 1, image_size: int = 32,
                 workers: int = 0, progress: bool = True) -> Trajectories:
    """``num_episodes`` episodes of ``env_id``; ``workers`` processes (0: one per core, at most 8).

    Returns ``obs (N, L, 3, S, S)`` uint8 (pixels) or ``(N, L, D)`` float32 (state), ``actions
    (N, L, A)`` float32, ``state (N, L, D)`` float32 named by ``factor_names``.
    """
    from tqdm.auto import tqdm

    require_envs("gymnasium")
    if obs not in ("pixels", "state"):
        raise DataValidationError(f"data.obs={obs!r}: choose pixels or state")
    spec = dict(env_id=env_id, pixels=obs == "pixels", policy=policy, persistence=persistence,
                action_repeat=action_repeat, image_size=image_size, episode_len=episode_len, seed=seed)
    workers = min(workers or default_workers(), num_episodes)
    chunks = [c.tolist() for c in np.array_split(np.arange(num_episodes), max(1, workers * 4)) if len(c)]
    results: list = [None] * num_episodes
    bar = tqdm(total=num_episodes, desc=f"data=gym {env_id} ({obs})", unit="episode", disable=not progress,
               leave=False)
    if workers <= 1:
        for c in chunks:
            for r in _episodes(spec, c):
                results[r[0]] = r
            bar.update(len(c))
    else:  # the parent never renders (no GL context to inherit), so fork is safe where it exists
        ctx = get_context("fork" if "fork" in get_all_start_methods() else "spawn")
        with ProcessPoolExecutor(workers, mp_context=ctx) as pool:
            futures = {pool.submit(_episodes, spec, c): len(c) for c in chunks}
            for f in as_completed(futures):
                for r in f.result():
                    results[r[0]] = r
                bar.update(futures[f])
    bar.close()
    obs_arr = np.stack([r[1] for r in results])
    actions = np.stack([r[2] for r in results])
    state = np.stack([r[3] for r in results])
    if not np.isfinite(state).all():
        raise DataValidationError(f"data.env_id={env_id}: the simulator produced non-finite states; shorten "
                                  "data.episode_len or lower data.action_repeat")
    return Trajectories(obs_arr, actions, state, factor_names(env_id, state.shape[-1]))
