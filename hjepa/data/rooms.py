"""The rooms environment: a point mass in a grid of rooms joined by doorways.

World coordinates: the map is ``[0, cols] × [0, rows]``, each room a unit square. Interior walls
lie on the integer lines ``x = 1..cols-1`` and ``y = 1..rows-1``; each wall segment between two
adjacent rooms has one doorway of width ``door_width`` centred on the segment. Motion is
integrated axis by axis (x, then y), so a move crosses a wall only at a known coordinate, and a
crossing outside a doorway is stopped just before the wall. Everything is vectorised over
episodes in numpy and deterministic given the seed.

Factors (``state``): ``pos_x, pos_y, vel_x, vel_y, room_id`` — position and velocity are fast
factors, the room (``row * cols + col``) a slow one.
"""

from __future__ import annotations

import numpy as np

from .trajectories import Trajectories

__all__ = ["RoomsEnv", "generate_rooms", "ROOMS_FACTORS"]

ROOMS_FACTORS = ["pos_x", "pos_y", "vel_x", "vel_y", "room_id"]
_WALL_EPS = 1e-3


class RoomsEnv:
    """Vectorised rooms dynamics and renderer (``n`` independent point masses)."""

    def __init__(self, grid: tuple[int, int] = (2, 2), door_width: float = 0.4, max_speed: float = 0.12,
                 image_size: int = 32, agent_radius_px: float = 1.6):
        self.rows, self.cols = int(grid[0]), int(grid[1])
        if self.rows < 1 or self.cols < 1:
            raise ValueError(f"rooms grid must be at least 1x1, got {grid}")
        if not 0 < door_width < 1:
            raise ValueError(f"door_width must lie in (0, 1), got {door_width}")
        if not 0 < max_speed < 0.5:
            raise ValueError(f"max_speed must lie in (0, 0.5) room widths per step, got {max_speed}")
        self.door_width, self.max_speed = door_width, max_speed
        self.image_size, self.agent_radius_px = image_size, agent_radius_px
        self._background = self._render_background()

    # ----------------------------------------------------------------- geometry
    def in_door(self, along: np.ndarray) -> np.ndarray:
        """Whether a wall crossing at coordinate ``along`` (the other axis) passes a doorway."""
        return np.abs(along - (np.floor(along) + 0.5)) < self.door_width / 2

    def room_id(self, pos: np.ndarray) -> np.ndarray:
        col = np.clip(np.floor(pos[..., 0]), 0, self.cols - 1)
        row = np.clip(np.floor(pos[..., 1]), 0, self.rows - 1)
        return (row * self.cols + col).astype(np.int64)

    def _move_axis(self, pos: np.ndarray, delta: np.ndarray, axis: int) -> np.ndarray:
        """Move coordinate ``axis`` of ``pos`` ``(n, 2)`` by ``delta`` ``(n,)``, stopping at walls."""
        limit = self.cols if axis == 0 else self.rows
        other = pos[:, 1 - axis]
        old = pos[:, axis]
        new = np.clip(old + delta, _WALL_EPS, limit - _WALL_EPS)
        # |delta| < 0.5 so at most one interior wall line lies between old and new
        lo, hi = np.minimum(old, new), np.maximum(old, new)
        wall = np.floor(hi)
        crosses = (wall > lo) & (wall >= 1) & (wall <= limit - 1)
        blocked = crosses & ~self.in_door(other)
        stop = np.where(new > old, wall - _WALL_EPS, wall + _WALL_EPS)
        out = pos.copy()
        out[:, axis] = np.where(blocked, stop, new)
        return out

    def step(self, pos: np.ndarray, action: np.ndarray) -> np.ndarray:
        """Next positions for actions in ``[-1, 1]²`` (velocity commands scaled by ``max_speed``)."""
        delta = np.clip(action, -1.0, 1.0) * self.max_speed
        pos = self._move_axis(pos, delta[:, 0], 0)
        return self._move_axis(pos, delta[:, 1], 1)

    def doorways(self) -> np.ndarray:
        """Centres of every doorway, ``(K, 2)``."""
        d = [(c, r + 0.5) for c in range(1, self.cols) for r in range(self.rows)]
        d += [(c + 0.5, r) for r in range(1, self.rows) for c in range(self.cols)]
        return np.asarray(d, dtype=np.float64).reshape(-1, 2)

    # ----------------------------------------------------------------- rendering
    def world_to_pixel(self, pos: np.ndarray) -> np.ndarray:
        """Pixel coordinates (column, row) of world positions; y points up in the world."""
        s = self.image_size
        px = pos[..., 0] / self.cols * s
        py = (1 - pos[..., 1] / self.rows) * s
        return np.stack([px, py], -1)

    def _render_background(self) -> np.ndarray:
        s = self.image_size
        centres = (np.arange(s) + 0.5) / s
        wx = centres * self.cols  # world x of pixel columns
        wy = (1 - centres) * self.rows  # world y of pixel rows
        half_px_x, half_px_y = self.cols / s * 0.6, self.rows / s * 0.6
        img = np.full((3, s, s), 0.82, dtype=np.float32)
        gx, gy = np.meshgrid(wx, wy)  # (s, s): [row, col]
        for c in range(1, self.cols):
            mask = (np.abs(gx - c) < half_px_x) & ~self.in_door(gy)
            img[:, mask] = 0.1
        for r in range(1, self.rows):
            mask = (np.abs(gy - r) < half_px_y) & ~self.in_door(gx)
            img[:, mask] = 0.1
        border = (gx < half_px_x) | (gx > self.cols - half_px_x) | (gy < half_px_y) | (gy > self.rows - half_px_y)
        img[:, border] = 0.1
        return img

    def render(self, pos: np.ndarray) -> np.ndarray:
        """Frames ``(..., 3, S, S)`` uint8 for positions ``(..., 2)``: walls dark, agent red disc."""
        lead = pos.shape[:-1]
        p = self.world_to_pixel(pos.reshape(-1, 2))  # (n, 2)
        s = self.image_size
        grid = np.arange(s) + 0.5
        d2 = (grid[None, None, :] - p[:, 0, None, None]) ** 2 + (grid[None, :, None] - p[:, 1, None, None]) ** 2
        disc = np.clip(self.agent_radius_px + 0.5 - np.sqrt(d2), 0.0, 1.0).astype(np.float32)  # (n, s, s)
        colour = np.array([0.9, 0.1, 0.1], dtype=np.float32)[None, :, None, None]
        img = self._background[None] * (1 - disc[:, None]) + colour * disc[:, None]
        return (img * 255 + 0.5).astype(np.uint8).reshape(*lead, 3, s, s)


def _exploration_actions(env: RoomsEnv, pos: np.ndarray, target: np.ndarray, rng: np.random.Generator,
                         noise: float) -> np.ndarray:
    """Head for ``target`` with noise: the random policy that crosses doorways."""
    d = target - pos
    d = d / np.maximum(np.linalg.norm(d, axis=1, keepdims=True), 1e-6)
    a = d * rng.uniform(0.4, 1.0, size=(len(pos), 1)) + noise * rng.normal(size=pos.shape)
    return np.clip(a, -1.0, 1.0)


def generate_rooms(num_episodes: int, episode_len: int, seed: int, *, grid=(2, 2), door_width: float = 0.4,
                   max_speed: float = 0.12, image_size: int = 32, action_noise: float = 0.5,
                   retarget_prob: float = 0.05) -> Trajectories:
    """Roll out the exploration policy: each point mass picks a waypoint — a doorway of its room
    (two thirds of the time) or a random point — and heads there with noisy velocity commands,
    re-drawing the waypoint when it is reached or, at random, with ``retarget_prob`` per step.

    Returns ``obs (N, L, 3, S, S)`` uint8, ``actions (N, L, 2)``, ``state (N, L, 5)``; the last
    action of each episode is drawn but has no observed consequence.
    """
    env = RoomsEnv(tuple(grid), door_width, max_speed, image_size)
    rng = np.random.default_rng(seed)
    n = num_episodes
    pos = np.stack([rng.uniform(0.15, env.cols - 0.15, n), rng.uniform(0.15, env.rows - 0.15, n)], 1)
    doors = env.doorways()

    door_normal = np.where(doors[:, :1] == np.round(doors[:, :1]), [[1.0, 0.0]], [[0.0, 1.0]])

    def new_targets(mask: np.ndarray) -> None:
        """Waypoints: 2/3 of the time just through a doorway of the current room, else anywhere."""
        idx = np.flatnonzero(mask)
        if idx.size == 0:
            return
        k = idx.size
        rand_pt = np.stack([rng.uniform(0.1, env.cols - 0.1, k), rng.uniform(0.1, env.rows - 0.1, k)], 1)
        if len(doors):
            p = pos[idx]
            # a doorway is adjacent when the agent is within one room width of it on both axes
            adj = (np.abs(doors[None] - p[:, None]) < np.where(door_normal[None] > 0, 1.0, 0.5)).all(-1)
            choice = np.array([rng.choice(np.flatnonzero(row)) if row.any() else -1 for row in adj])
            ok = choice >= 0
            d = doors[np.maximum(choice, 0)]
            nrm = door_normal[np.maximum(choice, 0)]
            side = np.sign(((d - p) * nrm).sum(1, keepdims=True) + 1e-9)  # through, away from us
            door_pt = d + side * nrm * 0.3
            use_door = ok & (rng.uniform(size=k) < 2 / 3)
            rand_pt = np.where(use_door[:, None], door_pt, rand_pt)
        target[idx] = rand_pt

    target = np.zeros_like(pos)
    new_targets(np.ones(n, bool))
    positions = np.zeros((n, episode_len, 2))
    actions = np.zeros((n, episode_len, 2), dtype=np.float32)
    for t in range(episode_len):
        positions[:, t] = pos
        reached = np.linalg.norm(target - pos, axis=1) < 0.1
        new_targets(reached | (rng.uniform(size=n) < retarget_prob))
        a = _exploration_actions(env, pos, target, rng, action_noise)
        actions[:, t] = a
        pos = env.step(pos, a)
    vel = np.zeros_like(positions)
    vel[:, 1:] = (positions[:, 1:] - positions[:, :-1]) / max_speed  # velocity seen in frames t-1 -> t
    state = np.concatenate([positions, vel, env.room_id(positions)[..., None]], -1).astype(np.float32)
    obs = env.render(positions)
    return Trajectories(obs, actions, state, list(ROOMS_FACTORS))
