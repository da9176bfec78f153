"""Torch datasets over generated or user trajectories, on-disk caching and deterministic sampling."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf
from torch.utils.data import DataLoader, Dataset, Sampler

from .trajectories import DataValidationError, Trajectories

__all__ = ["ClipDataset", "StepBatchSampler", "DataBundle", "build_data", "load_npz", "ENVS", "register_env"]


# name -> generator(cfg, num_episodes, seed) -> Trajectories
ENVS: dict[str, Callable[..., Trajectories]] = {}
# name -> the packages whose versions are part of its cache key (the simulators behind it)
ENV_PACKAGES: dict[str, tuple[str, ...]] = {}


def register_env(name: str, packages: tuple[str, ...] = ()):
    """Decorator registering a generator ``fn(cfg, num_episodes, seed) -> Trajectories``; the
    versions of ``packages`` (when installed, else ``-``) enter the cache key of its data."""

    def wrap(fn):
        ENVS[name] = fn
        ENV_PACKAGES[name] = tuple(packages)
        return fn

    return wrap


@register_env("rooms")
def _rooms(cfg, num_episodes: int, seed: int) -> Trajectories:
    from .rooms import generate_rooms

    return generate_rooms(num_episodes, cfg.episode_len, seed, grid=tuple(cfg.grid), door_width=cfg.door_width,
                          max_speed=cfg.max_speed, image_size=cfg.image_size, action_noise=cfg.action_noise,
                          layout=cfg.layout, layout_seed=cfg.layout_seed)


@register_env("multiscale")
def _multiscale(cfg, num_episodes: int, seed: int) -> Trajectories:
    from .multiscale import generate_multiscale

    return generate_multiscale(num_episodes, cfg.episode_len, seed, num_objects=cfg.num_objects,
                               regime_period=cfg.regime_period, speed=cfg.speed, image_size=cfg.image_size,
                               gravity_strength=cfg.gravity)


@register_env("ou")
def _ou(cfg, num_episodes: int, seed: int) -> Trajectories:
    from .ou import generate_ou

    return generate_ou(num_episodes, cfg.episode_len, seed, taus=list(cfg.taus), obs_dim=cfg.obs_dim,
                       obs_noise=cfg.obs_noise, mix_seed=cfg.mix_seed, pushed=list(cfg.pushed), push=cfg.push)


@register_env("gym", packages=("gymnasium", "gymnasium-robotics", "mujoco"))
def _gym(cfg, num_episodes: int, seed: int) -> Trajectories:
    from ..envs.gym_data import generate_gym

    return generate_gym(num_episodes, cfg.episode_len, seed, env_id=cfg.env_id, obs=cfg.obs, policy=cfg.policy,
                        persistence=cfg.persistence, action_repeat=cfg.action_repeat, image_size=cfg.image_size,
                        workers=cfg.workers)


# --------------------------------------------------------------------------- caching
_GEN_KEYS_EXCLUDED = {"batch_size", "clip_len", "cache_dir", "num_train_episodes", "num_eval_episodes", "seed",
                      "workers"}


def _simulator_versions(name: str) -> dict[str, str]:
    """Versions of the packages registered behind ``data.name`` (part of the cache key)."""
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for pkg in ENV_PACKAGES.get(name, ()):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = "-"
    return out


def _cache_key(cfg, split: str, num_episodes: int, seed: int) -> str:
    settings = {k: v for k, v in OmegaConf.to_container(cfg, resolve=True).items() if k not in _GEN_KEYS_EXCLUDED}
    settings.update(split=split, num_episodes=num_episodes, seed=seed, version=1, **_simulator_versions(cfg.name))
    digest = hashlib.sha1(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]
    return f"{cfg.name}-{split}-{digest}.npz"


def _save_npz_atomic(path: Path, traj: Trajectories) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp.npz")
    os.close(fd)
    try:
        np.savez(tmp, obs=traj.obs, actions=traj.actions, state=traj.state,
                 factor_names=np.array(traj.factor_names))
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def load_npz(path: str | os.PathLike, source: str | None = None) -> Trajectories:
    """Load and validate trajectories from ``.npz`` (``obs``, ``actions``, optional ``state``,
    ``factor_names``). Never unpickles objects."""
    path = Path(path)
    source = source or str(path)
    if not path.exists():
        raise DataValidationError(f"{source}: file not found; set data.path to an existing .npz file")
    try:
        with np.load(path, allow_pickle=False) as f:
            arrays = {k: f[k] for k in f.files}
    except (ValueError, OSError, EOFError, zipfile.BadZipFile, zlib.error) as e:
        raise DataValidationError(f"{source}: not a readable .npz archive ({e}); regenerate or re-export it") from e
    missing = [k for k in ("obs", "actions") if k not in arrays]
    if missing:
        raise DataValidationError(f"{source}: missing array(s) {missing}; an hjepa dataset needs 'obs' and "
                                  f"'actions' (and optionally 'state'), found {sorted(arrays)}")
    obs, actions = arrays["obs"], arrays["actions"].astype(np.float32, copy=False)
    if obs.ndim == 3 and np.issubdtype(obs.dtype, np.floating):
        obs = obs.astype(np.float32, copy=False)
    state = arrays.get("state")
    if state is None:
        state = np.zeros((*obs.shape[:2], 0), np.float32)
    state = state.astype(np.float32, copy=False) if state.ndim == 3 else state
    names = [str(n) for n in arrays["factor_names"]] if "factor_names" in arrays else \
        [f"factor_{i}" for i in range(state.shape[-1] if state.ndim == 3 else 0)]
    try:
        return Trajectories(obs, actions, state, names)
    except DataValidationError as e:
        raise DataValidationError(str(e).replace("dataset:", f"{source}:", 1)) from None


def generate_or_load(cfg, split: str, num_episodes: int, seed: int) -> Trajectories:
    """Generated trajectories, cached under ``cfg.cache_dir`` keyed by the generation settings."""
    if cfg.name not in ENVS:
        raise DataValidationError(f"unknown data.name={cfg.name!r}; available: {sorted(ENVS) + ['npz']}")
    path = Path(cfg.cache_dir) / _cache_key(cfg, split, num_episodes, seed)
    if path.exists():
        try:
            return load_npz(path)
        except DataValidationError:
            path.unlink(missing_ok=True)  # a corrupt cache entry is regenerated, not trusted
    traj = ENVS[cfg.name](cfg, num_episodes, seed)
    _save_npz_atomic(path, traj)
    return traj


# --------------------------------------------------------------------------- torch side
class ClipDataset(Dataset):
    """Every window of ``clip_len`` consecutive steps of every episode.

    Item: dict with ``obs (T, C, H, W)`` float32 in [0, 1] (or ``(T, D)``), ``actions (T, A)``,
    ``state (T, F)``, ``episode`` and ``start`` indices.
    """

    def __init__(self, traj: Trajectories, clip_len: int, stride: int = 1):
        if traj.episode_len < clip_len:
            raise DataValidationError(f"episodes have {traj.episode_len} steps, fewer than data.clip_len={clip_len}: "
                                      "lower data.clip_len (the model needs 2 steps at its top level) or use longer "
                                      "episodes")
        self.traj, self.clip_len = traj, clip_len
        self.obs = torch.from_numpy(np.ascontiguousarray(traj.obs))
        self.actions = torch.from_numpy(np.ascontiguousarray(traj.actions))
        self.state = torch.from_numpy(np.ascontiguousarray(traj.state))
        self.starts_per_ep = (traj.episode_len - clip_len) // stride + 1
        self.stride = stride

    def __len__(self) -> int:
        return self.traj.num_episodes * self.starts_per_ep

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        ep, k = divmod(int(i), self.starts_per_ep)
        s = k * self.stride
        sl = slice(s, s + self.clip_len)
        obs = self.obs[ep, sl]
        obs = obs.float().div_(255.0) if obs.dtype == torch.uint8 else obs
        return {"obs": obs, "actions": self.actions[ep, sl], "state": self.state[ep, sl],
                "episode": torch.tensor(ep), "start": torch.tensor(s)}

    @property
    def obs_shape(self) -> tuple[int, ...]:
        return tuple(self.obs.shape[2:])

    @property
    def action_dim(self) -> int:
        return int(self.actions.shape[-1])

    @property
    def factor_names(self) -> list[str]:
        return self.traj.factor_names


class StepBatchSampler(Sampler[list[int]]):
    """Batches drawn as a pure function of ``(seed, step)``: exact resume needs only the step.

    Under DDP every rank draws the same global batch and keeps its ``rank::world_size`` slice.
    """

    def __init__(self, n: int, batch_size: int, seed: int, start_step: int = 0, num_steps: int | None = None,
                 rank: int = 0, world_size: int = 1):
        self.n, self.batch_size, self.seed = n, batch_size, seed
        self.start_step, self.num_steps = start_step, num_steps
        self.rank, self.world_size = rank, world_size

    def batch_indices(self, step: int) -> list[int]:
        g = torch.Generator().manual_seed(hash((self.seed, step)) & (2**63 - 1))  # ints hash deterministically
        idx = torch.randint(0, self.n, (self.batch_size,), generator=g)
        return idx[self.rank::self.world_size].tolist()

    def __iter__(self) -> Iterator[list[int]]:
        step = self.start_step
        while self.num_steps is None or step < self.start_step + self.num_steps:
            yield self.batch_indices(step)
            step += 1

    def __len__(self) -> int:
        if self.num_steps is None:
            raise TypeError("an endless StepBatchSampler has no length")
        return self.num_steps


@dataclass
class DataBundle:
    train: ClipDataset
    eval: ClipDataset
    obs_shape: tuple[int, ...]
    action_dim: int
    factor_names: list[str]

    def train_loader(self, seed: int, start_step: int = 0, num_steps: int | None = None,
                     rank: int = 0, world_size: int = 1) -> DataLoader:
        sampler = StepBatchSampler(len(self.train), self.train_batch_size, seed, start_step, num_steps,
                                   rank, world_size)
        return DataLoader(self.train, batch_sampler=sampler, num_workers=0)

    def eval_batch(self, num_clips: int, seed: int = 12345) -> dict[str, torch.Tensor]:
        """A fixed held-out batch (same clips at every evaluation): episodes spread evenly."""
        return _fixed_batch(self.eval, num_clips, seed)

    def train_batch(self, num_clips: int, seed: int = 12345) -> dict[str, torch.Tensor]:
        """A fixed batch of training clips (the same on every rank; the training sampler's RNG is not used)."""
        return _fixed_batch(self.train, num_clips, seed)

    train_batch_size: int = 32


def build_data(cfg: DictConfig) -> DataBundle:
    """Train/eval datasets from the ``data`` config group (generated and cached, or ``npz``)."""
    d = cfg.data if "data" in cfg else cfg
    if d.name == "npz":
        traj = load_npz(d.path, source=f"data.path={d.path}")
        n_eval = max(2, int(round(traj.num_episodes * d.eval_fraction)))
        if traj.num_episodes - n_eval < 1:
            raise DataValidationError(f"data.path={d.path}: {traj.num_episodes} episode(s) is too few to hold out "
                                      f"{n_eval} for evaluation; provide more episodes")
        train, ev = traj.split(traj.num_episodes - n_eval)
    else:
        train = generate_or_load(d, "train", d.num_train_episodes, d.seed)
        ev = generate_or_load(d, "eval", d.num_eval_episodes, d.seed + 7919)
    tr_ds, ev_ds = ClipDataset(train, d.clip_len), ClipDataset(ev, d.clip_len, stride=max(1, d.clip_len // 2))
    return DataBundle(tr_ds, ev_ds, tr_ds.obs_shape, tr_ds.action_dim, train.factor_names,
                      train_batch_size=d.batch_size)


def _fixed_batch(ds: ClipDataset, num_clips: int, seed: int) -> dict[str, torch.Tensor]:
    """``num_clips`` clips of ``ds`` drawn without replacement by ``seed``, stacked into one batch."""
    g = torch.Generator().manual_seed(seed)
    idx = torch.randperm(len(ds), generator=g)[: min(num_clips, len(ds))].tolist()
    items = [ds[i] for i in idx]
    return {k: torch.stack([it[k] for it in items]) for k in items[0]}
