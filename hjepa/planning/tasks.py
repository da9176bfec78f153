"""Start/goal pairs at given room-graph distances, drawn from fixed evaluation seeds."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..data.rooms import RoomsEnv

__all__ = ["Tasks", "sample_tasks"]

_MARGIN = 0.15  # keep starts and goals this far from walls (room widths)


@dataclass
class Tasks:
    """``starts, goals (M, 2)`` world positions and ``distance (M,)`` their room-graph distance."""

    starts: np.ndarray
    goals: np.ndarray
    distance: np.ndarray

    def __len__(self) -> int:
        return len(self.starts)


def _point_in(room: np.ndarray, env: RoomsEnv, rng: np.random.Generator) -> np.ndarray:
    r, c = np.divmod(room, env.cols)
    return np.stack([c + rng.uniform(_MARGIN, 1 - _MARGIN, len(room)), r + rng.uniform(_MARGIN, 1 - _MARGIN, len(room))], 1)


def sample_tasks(env: RoomsEnv, distances: list[int], episodes: int, seed: int, min_separation: float = 0.3) -> Tasks:
    """``episodes`` start/goal pairs for each room-graph distance in ``distances``.

    The start room is uniform among rooms that have a room at that distance, the goal room uniform
    among those; positions are uniform inside the rooms (``min_separation`` apart). Each distance
    uses its own stream ``(seed, d)``, so adding a distance leaves the others' tasks unchanged.
    """
    starts, goals, dist = [], [], []
    top = int(env.room_distances.max())
    for d in distances:
        if not 0 <= d <= top:
            raise ValueError(f"eval.distances: room-graph distance {d} does not occur in this map "
                             f"(its largest is {top})")
        rng = np.random.default_rng([seed, d])
        pairs = np.argwhere(env.room_distances == d)  # (P, 2) start room, goal room
        from_rooms = np.unique(pairs[:, 0])
        s_room = rng.choice(from_rooms, episodes)
        g_room = np.array([rng.choice(pairs[pairs[:, 0] == r, 1]) for r in s_room])
        s, g = _point_in(s_room, env, rng), _point_in(g_room, env, rng)
        close = np.linalg.norm(s - g, axis=1) < min_separation
        while close.any():
            g[close] = _point_in(g_room[close], env, rng)
            close = np.linalg.norm(s - g, axis=1) < min_separation
        starts.append(s), goals.append(g), dist.append(np.full(episodes, d))
    return Tasks(np.concatenate(starts), np.concatenate(goals), np.concatenate(dist))


def sample_maze_tasks(batch, distances: list[int], episodes: int, seed: int, min_separation: float = 0.5) -> Tasks:
    """``episodes`` start/goal pairs for each maze-cell distance in ``distances`` (PointMaze).

    ``batch``: a ``hjepa.envs.pointmaze.PointMazeBatch`` (free cells, their BFS distances, the env's
    position noise). The start cell is uniform among cells that have a cell at that distance, the
    goal cell uniform among those; positions are cell centres plus the environment's own uniform
    noise (±0.25 cells), at least ``min_separation`` metres apart (more than the 0.45 success radius):
    distances from 1 (neighbouring cells) up.
    Each distance uses its own stream ``(seed, d)``.
    """
    starts, goals, dist = [], [], []
    top = int(batch.distances.max())
    for d in distances:
        if not 1 <= d <= top:
            raise ValueError(f"eval.distances: maze-cell distance {d} does not occur in this maze (choose 1 .. {top}; "
                             "at 0 start and goal share a cell and lie within the 0.45 m success radius)")
        rng = np.random.default_rng([seed, d])
        pairs = np.argwhere(batch.distances == d)  # (P, 2) start cell, goal cell (indices into batch.cells)
        s_cell = rng.choice(np.unique(pairs[:, 0]), episodes)
        g_cell = np.array([rng.choice(pairs[pairs[:, 0] == c, 1]) for c in s_cell])

        def place(cells):
            return batch.cell_centres(batch.cells[cells]) + rng.uniform(-batch.noise, batch.noise, (len(cells), 2))

        s, g = place(s_cell), place(g_cell)
        close = np.linalg.norm(s - g, axis=1) < min_separation
        while close.any():  # neighbouring cells: both redrawn (cells one apart are >= 0.5 m apart already)
            s[close], g[close] = place(s_cell[close]), place(g_cell[close])
            close = np.linalg.norm(s - g, axis=1) < min_separation
        starts.append(s), goals.append(g), dist.append(np.full(episodes, d))
    return Tasks(np.concatenate(starts), np.concatenate(goals), np.concatenate(dist))
