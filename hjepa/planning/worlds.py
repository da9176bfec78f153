"""Planning worlds: what ``episodes.run_episodes`` and the planners act in, behind one interface.

A ``World`` holds a batch of ``E`` episodes. ``reset(starts, goals)`` places them and returns their
observations and positions; ``step(actions, active)`` advances the active ones; ``success()`` says
which have reached their goal (the world's own rule). Observations are what the model was trained
on — uint8 frames ``(E, C, H, W)`` or float state vectors ``(E, D)`` — and ``to_model`` turns them
into the model's input exactly as the training data loader does (frames / 255, vectors as they are).

* ``RoomsWorld`` — hjepa's own rooms env (stateless: the world is the agents' positions).
* ``PointMazeWorld`` — gymnasium-robotics' PointMaze (``hjepa/envs/pointmaze.py``).

``as_world`` turns a bare ``RoomsEnv`` into a ``RoomsWorld`` so that older callers keep working.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from ..data.rooms import RoomsEnv
from .tasks import Tasks, sample_tasks

__all__ = ["World", "RoomsWorld", "as_world"]


class World:
    """The interface (see the module docstring). Positions are ``(E, 2)`` world coordinates."""

    name = "world"
    action_dim = 2
    distance_label = "distance"
    default_max_steps = 150

    def reset(self, starts: np.ndarray, goals: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        raise NotImplementedError

    def step(self, actions: np.ndarray, active: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Advance the ``active (E,)`` episodes by ``actions (E, A)``; the others stay as they are."""
        raise NotImplementedError

    def success(self) -> np.ndarray:
        """``(E,)`` bool: the episode has reached its goal now."""
        raise NotImplementedError

    def goal_frames(self, goals: np.ndarray) -> np.ndarray:
        """Observations of the agent resting at each goal ``(M, 2)`` → ``(M, *obs)``."""
        raise NotImplementedError

    def goal_set(self, goals: np.ndarray) -> np.ndarray:
        """Every observation that counts as being at each goal: ``(M, G, *obs)``, the resting one
        (``goal_frames``) first. Planners score a predicted state by its nearest member. Here: the
        resting observation alone (G = 1)."""
        return self.goal_frames(goals)[:, None]

    def straight_action(self, pos: np.ndarray, goals: np.ndarray) -> np.ndarray:
        """``(E, A)`` actions that head from ``pos`` straight for ``goals``, ignoring walls."""
        raise NotImplementedError

    def sample_tasks(self, distances: list[int] | None, episodes: int, seed: int) -> Tasks:
        raise NotImplementedError

    def max_distance(self) -> int:
        raise NotImplementedError

    def background(self, size: int = 192) -> tuple[np.ndarray, tuple[float, float, float, float]]:
        """The empty map as an ``(S, S, 3)`` image and its ``extent`` (left, right, bottom, top) for
        ``imshow(origin="upper")`` in world coordinates."""
        raise NotImplementedError

    def to_model(self, obs: np.ndarray, device=None) -> Tensor:
        """Observations as the model's float input (uint8 frames / 255, vectors unchanged)."""
        t = torch.from_numpy(np.ascontiguousarray(obs))
        t = t.float().div_(255) if t.dtype == torch.uint8 else t.float()
        return t.to(device) if device is not None else t

    def close(self) -> None:
        pass


class RoomsWorld(World):
    """The rooms env: success = within ``success_radius`` room widths of the goal."""

    name = "rooms"
    distance_label = "room-graph distance from start to goal (doorways to cross)"

    def __init__(self, env: RoomsEnv, success_radius: float = 0.1):
        self.env, self.success_radius = env, success_radius

    def reset(self, starts, goals):
        self.goals = goals
        self.pos = starts.copy()
        return self.env.render(self.pos), self.pos

    def step(self, actions, active):
        self.pos = np.where(active[:, None], self.env.step(self.pos, actions), self.pos)
        return self.env.render(self.pos), self.pos

    def success(self):
        return np.linalg.norm(self.pos - self.goals, axis=1) < self.success_radius

    def goal_frames(self, goals):
        return self.env.render(goals)

    def straight_action(self, pos, goals):
        return np.clip((goals - pos) / self.env.max_speed, -1, 1).astype(np.float32)

    def sample_tasks(self, distances, episodes, seed):
        top = self.max_distance()
        return sample_tasks(self.env, list(distances) if distances is not None else list(range(top + 1)), episodes, seed)

    def max_distance(self):
        return int(self.env.room_distances.max())

    def background(self, size=192):
        e = self.env
        hi = RoomsEnv((e.rows, e.cols), e.door_width, e.max_speed, size, layout=e.layout, layout_seed=e.layout_seed)
        return hi._background.transpose(1, 2, 0), (0, e.cols, 0, e.rows)


def as_world(env, success_radius: float = 0.1) -> World:
    """A ``World`` as it is, a bare ``RoomsEnv`` wrapped in a ``RoomsWorld``."""
    if isinstance(env, World):
        return env
    if isinstance(env, RoomsEnv):
        return RoomsWorld(env, success_radius)
    raise TypeError(f"not a planning world: {type(env).__name__}")


class PointMazeWorld(World):
    """gymnasium-robotics' PointMaze: success = the environment's own flag (ball within 0.45 m of
    the goal), distances = shortest paths in maze cells, positions in metres.

    ``env_id`` (or ``maze=umaze|medium|large``), ``obs=pixels|state`` and ``image_size`` must match
    the model's ``data.*``; ``action_repeat``: environment steps per planned action.
    """

    name = "pointmaze"
    distance_label = "maze-cell distance from start to goal (shortest path, cells)"

    GOAL_SPEEDS = (1.5, 3.0)  # m/s, 8 directions each, with goal_velocity="any" (training data: median speed 1.6)

    def __init__(self, env_id: str, obs: str = "pixels", image_size: int = 64, action_repeat: int = 1,
                 goal_velocity: str = "rest"):
        """``goal_velocity``: ``rest`` — the goal is the ball resting there; ``any`` (``obs=state``
        only) — the goal is its position at any velocity, as the environment's success flag has it:
        the goal set holds ``(x_g, y_g, v)`` for v = 0 and ``GOAL_SPEEDS`` in 8 directions."""
        from ..envs.pointmaze import PointMazeBatch

        if goal_velocity not in ("rest", "any"):
            raise ValueError(f"goal_velocity={goal_velocity!r}: choose rest or any")
        if goal_velocity == "any" and obs != "state":
            raise ValueError("goal_velocity=any needs state observations (a single frame shows no velocity)")
        self.goal_velocity = goal_velocity
        self.batch = PointMazeBatch(env_id, obs, image_size, action_repeat)
        # the environment's own time limit, in planned (repeated) actions
        self.default_max_steps = max(1, self.batch.max_episode_steps // self.batch.action_repeat)

    def reset(self, starts, goals):
        obs = self.batch.reset(starts, goals)
        return obs, self.batch.positions

    def step(self, actions, active):
        obs = self.batch.step(actions, active)
        return obs, self.batch.positions

    def success(self):
        return self.batch.succeeded.copy()

    def goal_frames(self, goals):
        return self.batch.goal_observations(goals)

    def goal_set(self, goals):
        rest = self.batch.goal_observations(goals)
        if self.goal_velocity == "rest":
            return rest[:, None]
        angles = np.linspace(0, 2 * np.pi, 8, endpoint=False)
        vel = [(0.0, 0.0)] + [(s * np.cos(a), s * np.sin(a)) for s in self.GOAL_SPEEDS for a in angles]
        out = np.repeat(rest[:, None], len(vel), 1)
        out[:, :, 2:4] = np.asarray(vel, np.float32)  # state (x, y, x_dot, y_dot)
        return out

    def straight_action(self, pos, goals):
        """Full force along the straight line to the goal (the ball's inertia is ignored too)."""
        d = goals - pos
        n = np.linalg.norm(d, axis=1, keepdims=True)
        return (d / np.maximum(n, 1e-9) * np.minimum(1.0, 2.0 * n)).astype(np.float32)

    def max_distance(self):
        return int(self.batch.distances.max())

    def sample_tasks(self, distances, episodes, seed):
        from .tasks import sample_maze_tasks

        if distances is None:  # four tiers spread from 1 cell to the farthest pair
            distances = sorted({int(round(x)) for x in np.linspace(1, self.max_distance(), 4)})
        return sample_maze_tasks(self.batch, list(distances), episodes, seed)

    def background(self, size=192):
        return self.batch.background(size), self.batch.extent()

    def close(self):
        self.batch.close()
