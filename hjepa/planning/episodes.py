"""The environment loop: planners act in a planning world (``worlds.py``), vectorised over episodes."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .planners import History, Planner
from .tasks import Tasks
from .worlds import World, as_world

__all__ = ["EpisodeResults", "run_episodes", "summarise"]


@dataclass
class EpisodeResults:
    """Per episode: ``success``, ``steps`` (to success, else the step budget), ``final_distance``
    (Euclidean, world units: room widths or metres), ``model_evals`` and ``plan_seconds``; ``paths (M, T+1, 2)`` and
    ``subgoal_paths (M, T, 2)`` (NaN where a planner has none) for drawing."""

    distance: np.ndarray
    success: np.ndarray
    steps: np.ndarray
    final_distance: np.ndarray
    model_evals: np.ndarray
    plan_seconds: np.ndarray
    paths: np.ndarray
    subgoal_paths: np.ndarray
    goals: np.ndarray = field(default_factory=lambda: np.zeros((0, 2)))


def run_episodes(env: "World | RoomsEnv", planner: Planner, tasks: Tasks, max_steps: int,
                 success_radius: float = 0.1, batch_episodes: int = 0, progress=None) -> EpisodeResults:
    """Run every task to success or ``max_steps``; ``batch_episodes`` > 0 runs them in chunks of
    that many (memory), else all at once. An episode stops (the agent stays put) once it succeeds.
    ``env``: a ``World``, or a bare ``RoomsEnv`` (success within ``success_radius`` room widths)."""
    world = as_world(env, success_radius)
    m = len(tasks)
    chunk = batch_episodes or m
    parts = []
    for lo in range(0, m, chunk):
        sl = slice(lo, min(lo + chunk, m))
        parts.append(_run_chunk(world, planner, tasks.starts[sl], tasks.goals[sl], max_steps, progress))
    cat = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    return EpisodeResults(distance=tasks.distance, goals=tasks.goals, **cat)


def _run_chunk(world: World, planner, starts, goals, max_steps, progress):
    e = len(starts)
    planner.reset(starts, goals)
    obs, pos = world.reset(starts, goals)
    hist = History(obs, pos, world.action_dim)
    success = world.success().copy()
    steps = np.where(success, 0, max_steps)
    sub = np.full((e, max_steps, 2), np.nan)
    for t in range(max_steps):
        active = ~success
        if not active.any():
            break
        a = np.where(active[:, None], planner.act(hist, active), 0.0).astype(np.float32)
        sg = planner.subgoals()
        if sg is not None and len(sg) == e:
            sub[:, t] = sg
        obs, pos = world.step(a, active)
        hist.append(obs, pos, a)
        reached = active & world.success()
        steps[reached] = t + 1
        success |= reached
        if progress is not None:
            progress.update(1)
    paths = hist.pos
    if paths.shape[1] < max_steps + 1:  # everyone succeeded early: the agents stay put
        paths = np.concatenate([paths, np.repeat(paths[:, -1:], max_steps + 1 - paths.shape[1], 1)], 1)
    return dict(success=success, steps=steps, final_distance=np.linalg.norm(pos - goals, axis=1),
                model_evals=planner.evals.copy(), plan_seconds=planner.seconds.copy(), paths=paths,
                subgoal_paths=sub)


def summarise(res: EpisodeResults) -> dict[str, dict[str, float]]:
    """Per distance (room-graph or maze-cell): success rate, episodes, mean steps, mean final distance, and mean
    model evaluations and planning seconds per episode."""
    out = {}
    for d in np.unique(res.distance):
        s = res.distance == d
        out[str(int(d))] = {"success": float(res.success[s].mean()), "episodes": int(s.sum()),
                            "mean_steps": float(res.steps[s].mean()),
                            "final_distance": float(res.final_distance[s].mean()),
                            "model_evals": float(res.model_evals[s].mean()),
                            "plan_seconds": float(res.plan_seconds[s].mean())}
    return out
