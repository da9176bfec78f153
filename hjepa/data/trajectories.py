"""The in-memory form every environment returns, and its validation."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["Trajectories", "DataValidationError"]


class DataValidationError(ValueError):
    """A dataset does not have the shapes or dtypes hjepa needs; the message says what to fix."""


@dataclass
class Trajectories:
    """A batch of episodes.

    obs      ``(N, L, C, H, W)`` uint8 frames (or ``(N, L, D)`` float32 vectors)
    actions  ``(N, L, A)`` float32 — ``actions[:, t]`` is applied after observing ``obs[:, t]``
             and leads to ``obs[:, t + 1]``
    state    ``(N, L, F)`` float32 ground-truth factors (evaluation only, never trained on)
    factor_names  ``F`` names; multi-timescale envs prefix them ``fast_`` / ``slow_``
    """

    obs: np.ndarray
    actions: np.ndarray
    state: np.ndarray
    factor_names: list[str]

    def __post_init__(self) -> None:
        self.validate()

    @property
    def num_episodes(self) -> int:
        return int(self.obs.shape[0])

    @property
    def episode_len(self) -> int:
        return int(self.obs.shape[1])

    def validate(self, source: str = "dataset") -> None:
        obs, act, st = self.obs, self.actions, self.state
        if obs.ndim not in (3, 5):
            raise DataValidationError(
                f"{source}: 'obs' must have shape (N, L, C, H, W) for images or (N, L, D) for "
                f"vectors, got {obs.shape}")
        if act.ndim != 3:
            raise DataValidationError(f"{source}: 'actions' must have shape (N, L, A), got {act.shape}")
        if st.ndim != 3:
            raise DataValidationError(f"{source}: 'state' must have shape (N, L, F), got {st.shape}")
        # 'state' is named only when it was given (an npz without it gets an empty (N, L, 0) one)
        given = [("obs", obs), ("actions", act)] + ([("state", st)] if st.shape[2] or st.shape[:2] != obs.shape[:2]
                                                    else [])
        differ = [name for name, arr in given[1:] if arr.shape[:2] != obs.shape[:2]]
        if differ:
            shapes = ", ".join(f"{name} {tuple(arr.shape[:2])}" for name, arr in given)
            raise DataValidationError(
                f"{source}: {shapes} must agree on (num_episodes, episode_len): {' and '.join(differ)} "
                f"{'does' if len(differ) == 1 else 'do'} not match obs; give one row per episode and one entry per "
                "step (see docs/data.md)")
        if len(self.factor_names) != st.shape[2]:
            raise DataValidationError(
                f"{source}: {len(self.factor_names)} factor names for {st.shape[2]} state columns")
        if obs.ndim == 5 and obs.dtype != np.uint8:
            raise DataValidationError(f"{source}: image 'obs' must be uint8 in [0, 255], got {obs.dtype}")
        for name, arr in (("actions", act), ("state", st)) + ((("obs", obs),) if obs.ndim == 3 else ()):
            if not np.issubdtype(arr.dtype, np.floating):
                raise DataValidationError(f"{source}: '{name}' must be a float array, got {arr.dtype}")
            if not np.isfinite(arr).all():
                raise DataValidationError(f"{source}: '{name}' contains NaN or inf values")

    def split(self, n_first: int) -> tuple["Trajectories", "Trajectories"]:
        """The first ``n_first`` episodes and the rest."""
        a = Trajectories(self.obs[:n_first], self.actions[:n_first], self.state[:n_first], self.factor_names)
        b = Trajectories(self.obs[n_first:], self.actions[n_first:], self.state[n_first:], self.factor_names)
        return a, b
