"""PointMaze (gymnasium-robotics, MuJoCo) as a batch of episodes for planning.

``PointMazeBatch`` simulates ``E`` episodes with one environment (built by ``gym_env.make_env``):
each episode's MuJoCo state (ball position, velocity and the solver's warm start) is kept here and
loaded before its step, so the episodes are independent and the physics, the success flag
(``info["success"]``: ball within 0.45 of the goal) and the renders are the environment's own.
An action is repeated ``action_repeat`` environment steps (one recorded step of ``data=gym``).

Maze geometry: ``maze_cells`` lists the free cells of ``maze.maze_map`` and ``cell_distances``
their shortest-path lengths in cells (BFS over 4-neighbours), the distance tiers of the benchmark.
"""

from __future__ import annotations

from collections import deque

import numpy as np

from .gym_env import make_env

__all__ = ["MAZES", "SUCCESS_RADIUS", "PointMazeBatch", "maze_cells", "cell_distances", "maze_env_id"]

MAZES = {"umaze": "PointMaze_UMaze-v3", "medium": "PointMaze_Medium-v3", "large": "PointMaze_Large-v3"}
SUCCESS_RADIUS = 0.45  # gymnasium-robotics' own goal radius (metres)


def maze_env_id(maze: str) -> str:
    """``umaze|medium|large`` → the gymnasium id."""
    if maze not in MAZES:
        raise ValueError(f"unknown maze {maze!r}; choose one of {', '.join(MAZES)}")
    return MAZES[maze]


def maze_cells(maze_map) -> np.ndarray:
    """Free cells ``(F, 2)`` as (row, col), row-major (every entry but 1 is free: 0, 'r', 'g', 'c')."""
    return np.array([(i, j) for i, row in enumerate(maze_map) for j, v in enumerate(row) if v != 1], dtype=int)


def cell_distances(maze_map) -> np.ndarray:
    """Shortest-path lengths in cells between the free cells of ``maze_map`` (order of ``maze_cells``):
    ``(F, F)`` int, BFS over the 4-neighbourhood; -1 where unreachable."""
    cells = maze_cells(maze_map)
    index = {tuple(c): k for k, c in enumerate(cells)}
    out = np.full((len(cells), len(cells)), -1, dtype=int)
    for s, c in enumerate(cells):
        out[s, s] = 0
        queue = deque([tuple(c)])
        while queue:
            r, q = queue.popleft()
            for nb in ((r + 1, q), (r - 1, q), (r, q + 1), (r, q - 1)):
                k = index.get(nb)
                if k is not None and out[s, k] < 0:
                    out[s, k] = out[s, index[(r, q)]] + 1
                    queue.append(nb)
    return out


class PointMazeBatch:
    """``E`` PointMaze episodes in one environment.

    ``obs``: ``pixels`` → uint8 frames ``(E, 3, S, S)`` rendered top-down (goal marker hidden);
    ``state`` → float32 ``(E, 4)`` = (x, y, ẋ, ẏ), the environment's observation vector.
    """

    def __init__(self, env_id: str, obs: str = "pixels", image_size: int = 64, action_repeat: int = 1):
        if obs not in ("pixels", "state"):
            raise ValueError(f"obs={obs!r}: choose pixels or state")
        self.env_id, self.obs_kind, self.image_size = env_id, obs, int(image_size)
        self.action_repeat = int(action_repeat)
        self.env = make_env(env_id, self.image_size, render=obs == "pixels")
        self.env.reset(seed=0)
        self.u = self.env.unwrapped
        self.maze = self.u.maze
        self.cells = maze_cells(self.maze.maze_map)
        self.distances = cell_distances(self.maze.maze_map)
        self.max_episode_steps = int(self.env.spec.max_episode_steps or 1000)
        self._bg_env = None

    # ------------------------------------------------------------------ geometry
    @property
    def noise(self) -> float:
        """Half-width of the uniform position noise around a cell centre (metres): the env's own."""
        return float(self.u.position_noise_range * self.maze.maze_size_scaling)

    def cell_centres(self, cells: np.ndarray) -> np.ndarray:
        """``(M, 2)`` (row, col) → ``(M, 2)`` world (x, y) of the cells' centres."""
        return np.stack([self.maze.cell_rowcol_to_xy(np.asarray(c)) for c in cells]).astype(np.float64)

    def extent(self) -> tuple[float, float, float, float]:
        """What the top-down camera frames (left, right, bottom, top), metres: the maze's larger side."""
        half = 0.5 * max(self.maze.map_length, self.maze.map_width) * self.maze.maze_size_scaling
        return (-half, half, -half, half)

    # ------------------------------------------------------------------ simulation
    def _load(self, i: int) -> None:
        d = self.u.point_env.data
        d.qacc_warmstart[:] = self.warm[i]
        self.u.point_env.set_state(self.qpos[i], self.qvel[i])
        self.u.goal = self.goals[i].copy()

    def _save(self, i: int) -> None:
        d = self.u.point_env.data
        self.qpos[i], self.qvel[i], self.warm[i] = d.qpos, d.qvel, d.qacc_warmstart

    def reset(self, starts: np.ndarray, goals: np.ndarray) -> np.ndarray:
        """Balls at rest at ``starts (E, 2)``, goals ``(E, 2)``; returns the observations."""
        e = len(starts)
        nv = self.u.point_env.model.nv
        self.goals = np.asarray(goals, np.float64).copy()
        self.qpos = np.asarray(starts, np.float64).copy()
        self.qvel = np.zeros((e, nv))
        self.warm = np.zeros((e, nv))
        self.succeeded = np.linalg.norm(self.qpos - self.goals, axis=1) <= SUCCESS_RADIUS  # as env.reset's info
        return self.observe(np.arange(e))

    def step(self, actions: np.ndarray, active: np.ndarray) -> np.ndarray:
        """Each active episode repeats its action ``action_repeat`` steps, stopping at the first
        step whose ``info["success"]`` is True; returns all observations ``(E, *obs)``."""
        self.succeeded = np.zeros(len(self.qpos), bool)
        for i in np.flatnonzero(active):
            self._load(i)
            a = np.asarray(actions[i], np.float64)
            for _ in range(self.action_repeat):
                info = self.u.step(a)[-1]
                if info["success"]:
                    self.succeeded[i] = True
                    break
            self._save(i)
        return self.observe(np.arange(len(self.qpos)))

    @property
    def positions(self) -> np.ndarray:
        return self.qpos[:, :2].copy()

    def observe(self, idx: np.ndarray) -> np.ndarray:
        if self.obs_kind == "state":
            return np.concatenate([self.qpos[idx], self.qvel[idx]], 1).astype(np.float32)
        return self.render_at(self.qpos[idx], self.qvel[idx])

    def render_at(self, pos: np.ndarray, vel: np.ndarray | None = None, env=None) -> np.ndarray:
        """Frames ``(M, 3, S, S)`` uint8 with the ball at ``pos (M, 2)`` (velocity ``vel``, default 0)."""
        env = env or self.env
        pe = env.unwrapped.point_env
        vel = np.zeros_like(pos) if vel is None else vel
        out = []
        for p, v in zip(pos, vel):
            pe.set_state(np.asarray(p, np.float64), np.asarray(v, np.float64))  # mj_forward inside
            out.append(env.render().transpose(2, 0, 1))
        return np.stack(out).astype(np.uint8)

    def goal_observations(self, goals: np.ndarray) -> np.ndarray:
        """What the model sees with the ball resting at each goal: a render (pixels) or (x, y, 0, 0)."""
        goals = np.asarray(goals, np.float64)
        if self.obs_kind == "state":
            return np.concatenate([goals, np.zeros_like(goals)], 1).astype(np.float32)
        saved = self._snapshot()
        frames = self.render_at(goals)
        self._restore(saved)
        return frames

    def background(self, size: int = 192) -> np.ndarray:
        """The empty maze from above ``(S, S, 3)`` (the ball parked far outside the view)."""
        if self._bg_env is None:
            self._bg_env = make_env(self.env_id, size)
            self._bg_env.reset(seed=0)
        return self.render_at(np.array([[1e3, 1e3]]), env=self._bg_env)[0].transpose(1, 2, 0)

    def _snapshot(self):
        d = self.u.point_env.data
        return d.qpos.copy(), d.qvel.copy()

    def _restore(self, s) -> None:
        self.u.point_env.set_state(*s)

    def close(self) -> None:
        self.env.close()
        if self._bg_env is not None:
            self._bg_env.close()
