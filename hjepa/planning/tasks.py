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
