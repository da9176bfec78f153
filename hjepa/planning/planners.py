"""Planners: model-predictive control toward a goal, chosen by name (``planner=...``).

Every planner sees the same loop (``episodes.run_episodes``) in any planning world
(``worlds.py``): at each step it gets the history of observations, positions and actions of the active episodes and returns their next actions. MPC planners
re-plan every ``replan_every`` steps, execute the first actions of the plan in between, and warm
start from the shifted previous plan.

* ``flat``: level-0 rollouts of a trained model, cost = level-0 energy to the goal's latent.
* ``hierarchical``: the top level plans on its own clock toward the goal's top-level latent; the
  first latent it predicts is the subgoal of the level below, which plans toward it (scored
  through the upper level's energy of the summarised lower rollout), down to primitive actions.
* ``oracle`` (rooms only): the same optimiser with the true simulator as the model; ``planner.oracle_cost=
  euclidean`` (distance to the goal: greedy planning at its best) or ``doorways`` (the next doorway
  of the shortest room path as subgoal: the upper bound).
* ``random``: uniform random actions. ``straight``: heads straight for the goal, ignoring walls.
"""

from __future__ import annotations

import time

import numpy as np
import torch
from einops import rearrange, repeat
from torch import Tensor

from ..data.rooms import RoomsEnv
from ..models import HJEPA
from .goals import encode_held
from .optimizers import build_optimizer
from .rollout import CandidateRollout
from .worlds import RoomsWorld, World, as_world

__all__ = ["PLANNERS", "build_planner", "History", "Planner", "PlanningError"]


class PlanningError(ValueError):
    """A planner cannot run with this model or these settings; the message says why and what to do."""


class History:
    """What the agents have seen: ``frames (E, T, *obs)`` (uint8 images or float state vectors),
    ``pos (E, T, 2)``, ``actions (E, T−1, A)``."""

    def __init__(self, frames: np.ndarray, pos: np.ndarray, action_dim: int):
        self.frames, self.pos = frames[:, None], pos[:, None]
        self.actions = np.zeros((len(pos), 0, action_dim), np.float32)

    def append(self, frames: np.ndarray, pos: np.ndarray, actions: np.ndarray) -> None:
        self.frames = np.concatenate([self.frames, frames[:, None]], 1)
        self.pos = np.concatenate([self.pos, pos[:, None]], 1)
        self.actions = np.concatenate([self.actions, actions[:, None].astype(np.float32)], 1)

    @property
    def steps(self) -> int:
        return self.pos.shape[1] - 1

    def window(self, idx: np.ndarray, length: int) -> tuple[np.ndarray, np.ndarray]:
        """The last ``length`` frames and actions of episodes ``idx`` (the first frame repeated
        before the start, with zero actions): ``(n, L, C, H, W)``, ``(n, L, A)``, where action
        ``L−1`` — the one to be planned — is zero."""
        f, a = self.frames[idx], self.actions[idx]
        t = f.shape[1]
        if t < length:
            f = np.concatenate([repeat(f[:, :1], "n 1 ... -> n k ...", k=length - t), f], 1)
            a = np.concatenate([np.zeros((len(idx), length - t, a.shape[2]), a.dtype), a], 1)
        f, a = f[:, -length:], a[:, -(length - 1):] if length > 1 else a[:, :0]
        return f, np.concatenate([a, np.zeros((len(idx), 1, a.shape[2]), a.dtype)], 1)


class Planner:
    """Base: per-episode model evaluations and planning seconds, seeded randomness."""

    name = "base"

    def __init__(self, env: "World | RoomsEnv", cfg, seed: int):
        self.world = as_world(env)
        self.env = self.world.env if isinstance(self.world, RoomsWorld) else None  # rooms only (oracle)
        self.cfg, self.seed = cfg, seed

    def reset(self, starts: np.ndarray, goals: np.ndarray) -> None:
        self.goals = goals
        self.evals = np.zeros(len(goals))
        self.seconds = np.zeros(len(goals))
        self.gen = torch.Generator().manual_seed(self.seed)
        self.rng = np.random.default_rng(self.seed)

    def act(self, hist: History, active: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def subgoals(self) -> np.ndarray | None:
        """World positions the planner is heading for now (for drawing), or None."""
        return None


class RandomPlanner(Planner):
    name = "random"

    def act(self, hist, active):
        return self.rng.uniform(-1, 1, size=(len(active), self.world.action_dim)).astype(np.float32)


class StraightPlanner(Planner):
    name = "straight"

    def act(self, hist, active):
        return self.world.straight_action(hist.pos[:, -1], self.goals)


class MPCPlanner(Planner):
    """Receding-horizon planning with a sampling optimiser; subclasses give ``plan(idx, hist)``."""

    def __init__(self, env, cfg, seed):
        super().__init__(env, cfg, seed)
        p = cfg
        self.opt = build_optimizer(p.optimizer, samples=p.samples, iterations=p.iterations, elites=p.elites,
                                   temperature=p.temperature, init_std=p.init_std, min_std=p.min_std)
        self.horizon, self.replan_every = p.horizon, p.replan_every
        if not 1 <= p.replan_every <= p.horizon:
            raise PlanningError(f"planner.replan_every={p.replan_every} must lie in [1, planner.horizon={p.horizon}]")

    def reset(self, starts, goals):
        super().reset(starts, goals)
        e = len(goals)
        self.plan_buf = np.zeros((e, self.horizon, 2), np.float32)
        self.cursor = np.full(e, self.replan_every)  # forces a plan on the first step
        self.mean, self.std = self.opt.initial(e, self.horizon, 2)

    def act(self, hist, active):
        need = np.flatnonzero(active & (self.cursor >= self.replan_every))
        if len(need):
            t0 = time.perf_counter()
            with torch.no_grad():
                actions, evals = self.plan(need, hist)
            self.seconds[need] += (time.perf_counter() - t0) / len(need)  # batched: a share each
            self.evals[need] += evals / len(need)
            self.plan_buf[need] = actions
            self.cursor[need] = 0
        out = self.plan_buf[np.arange(len(active)), np.minimum(self.cursor, self.horizon - 1)]
        self.cursor += 1
        return out

    def _optimize(self, idx: np.ndarray, cost, horizon: int, key: str = "mean") -> tuple[Tensor, Tensor]:
        """Run the optimiser for episodes ``idx`` warm-started from their shifted previous plan
        (state ``key``); returns ``(best actions (n, H, A), best cost (n,))``."""
        store = getattr(self, key, None)
        if store is None or store.shape[1] != horizon:
            store, _ = self.opt.initial(len(self.goals), horizon, 2)
            setattr(self, key, store)
        shift = min(self.replan_every, horizon)
        mean = torch.cat([store[idx, shift:], torch.zeros(len(idx), shift, 2)], 1)
        std = torch.full_like(mean, self.opt.init_std)
        res = self.opt.optimize(cost, mean, std, self.gen)
        store[idx] = res.mean
        return res.actions, res.cost


class OraclePlanner(MPCPlanner):
    """The optimiser with the true simulator as the world model (positions known exactly)."""

    name = "oracle"

    def __init__(self, env, cfg, seed):
        super().__init__(env, cfg, seed)
        if self.env is None:
            raise PlanningError(f"planner=oracle simulates the rooms world only (this world: {self.world.name}); "
                                "use planner=flat|hierarchical|random|straight here")
        if cfg.oracle_cost not in ("euclidean", "doorways"):
            raise PlanningError(f"planner.oracle_cost={cfg.oracle_cost!r}: choose euclidean or doorways")
        self.cost_kind = cfg.oracle_cost
        self._targets = None

    def target_points(self, pos: np.ndarray, goals: np.ndarray) -> np.ndarray:
        """The goal (euclidean), or the next doorway of the shortest room path, pushed a quarter
        room into the next room so that reaching it means crossing (doorways)."""
        if self.cost_kind == "euclidean":
            return goals
        env, out = self.env, goals.copy()
        rooms, g_rooms = env.room_id(pos), env.room_id(goals)
        for i, (r, g) in enumerate(zip(rooms, g_rooms)):
            if r != g:
                nxt = env.room_path(int(r), int(g))[1]
                door = env.door_between(int(r), int(nxt))
                out[i] = door + 0.25 * np.sign(env.room_centre(nxt) - env.room_centre(r))
        return out

    def plan(self, idx, hist):
        pos = hist.pos[idx, -1]
        target = self.target_points(pos, self.goals[idx])
        self._targets = target
        sum_cost = self.cfg.cost == "sum"
        evals = 0

        def cost(cand: Tensor) -> Tensor:
            nonlocal evals
            n, k, h, _ = cand.shape
            p = repeat(pos, "n d -> (n k) d", k=k)
            a = rearrange(cand.numpy(), "n k h a -> (n k) h a")
            tgt = repeat(target, "n d -> (n k) d", k=k)
            total = np.zeros(n * k)
            for t in range(h):
                p = self.env.step(p, a[:, t])
                if sum_cost or t == h - 1:
                    total += np.linalg.norm(p - tgt, axis=1)
            evals += n * k * h
            return torch.from_numpy(rearrange(total, "(n k) -> n k", n=n)).float()

        actions, _ = self._optimize(idx, cost, self.horizon)
        return actions.numpy(), evals

    def subgoals(self):
        return self._targets


def set_distance(model: HJEPA, pred: Tensor, goal: Tensor) -> Tensor:
    """``D`` of predicted latents ``(n, N, H, D)`` to ``goal (n, D)``, or to the nearest member of a
    goal set ``(n, G, D)`` (one member at a time: memory as for one goal): ``(n, N, H)``."""
    goal = goal[:, None] if goal.dim() == 2 else goal
    e = model.distance(pred, goal[:, 0, None, None])
    for j in range(1, goal.shape[1]):
        e = torch.minimum(e, model.distance(pred, goal[:, j, None, None]))
    return e


class _ModelPlanner(MPCPlanner):
    """Shared by the latent planners: the model, goal latents, encoding of the observed history."""

    def __init__(self, env, cfg, seed, model: HJEPA, action_dim: int, clip_len: int):
        super().__init__(env, cfg, seed)
        self.model, self.action_dim, self.clip_len = model.eval(), action_dim, clip_len
        self.device = next(model.parameters()).device

    def reset(self, starts, goals):
        super().reset(starts, goals)
        frames = self.world.goal_set(goals)  # (E, G, *obs): the resting goal first
        e = frames.shape[0]
        flat = self.world.to_model(rearrange(frames, "e g ... -> (e g) ..."), self.device)
        self.goal_sets = [rearrange(z, "(e g) d -> e g d", e=e) for z in encode_held(self.model, flat, self.action_dim)]

    @torch.no_grad()
    def encode_history(self, idx: np.ndarray, hist: History, length: int):
        """Latents, macro-actions and top-down contexts of the last ``length`` observed steps."""
        f, a = hist.window(idx, length)
        obs = self.world.to_model(f, self.device)
        zs, _, acts = self.model.encode(obs, torch.from_numpy(a).to(self.device))
        _, ctxs = self.model.predict(zs, acts)
        return zs, acts, ctxs

    def energy(self, k: int, pred: Tensor, goal: Tensor) -> Tensor:
        """Level-k energy of predicted latents ``(n, N, H, D)`` to ``goal (n, D)``, or to the nearest
        member of a goal set ``(n, G, D)`` at each step: ``(n, N)`` (``planner.cost=terminal``: the
        last step; ``sum``: the mean over steps)."""
        e = set_distance(self.model, pred, goal)
        return e[..., -1] if self.cfg.cost == "terminal" else e.mean(-1)


class FlatPlanner(_ModelPlanner):
    """Level-0 latent MPC (works on a model of any depth: the upper levels only supply context)."""

    name = "flat"

    def plan(self, idx, hist):
        m = self.model
        length = m.min_clip_len()
        zs, acts, ctxs = self.encode_history(idx, hist, length)
        roll = CandidateRollout(m, 0)
        roll.prefix(zs[0], acts[0][:, :-1], ctxs[0])
        goal = self.level0_target(idx)
        actions, _ = self._optimize(idx, lambda c: self.energy(0, roll.imagine(c.to(self.device)), goal).cpu(),
                                    self.horizon)
        return actions.numpy(), roll.evals

    def level0_target(self, idx: np.ndarray) -> Tensor:
        """What episodes ``idx`` plan toward at level 0: their goal sets ``(n, G, D_0)``."""
        return self.goal_sets[0][idx]


def future_macro_actions(model: HJEPA, k: int, primitive: Tensor) -> Tensor:
    """Level-k macro-actions of future primitive actions ``(B, L, A)`` (``L`` a multiple of
    ``span_k``) starting right after the current frame: ``(B, L / span_k, A_k)``; entry τ drives
    the level-k transition from the window ending now (+τ) to the next."""
    a = primitive
    for j in range(1, k + 1):
        s = model.strides[j]
        pad = torch.cat([a.new_zeros(a.shape[0], s - 1, a.shape[2]), a], 1)
        a = model.levels[j].macro_actions(pad, a.shape[1] // s)
    return a


class HierarchicalPlanner(_ModelPlanner):
    """Top-down subgoal planning for a model of depth ≥ 2.

    Macro-actions (``planner.macro``) are searched by default as primitive action chunks
    (``held``) — one action held for each step of the level (``span_k`` frames) — encoded by the
    level's own action encoder(s). Every candidate is then an executable action sequence of the
    kind the action encoder was trained on, and the search space stays ``2·H_k``-dimensional.
    The ablation ``latent`` searches the learned macro-action space (``A_k`` dims per step)
    directly, standardised by the statistics of encoded random chunks and bounded to ±3 standard
    deviations: larger, and its candidates need not be realisable by any primitive sequence.
    """

    name = "hierarchical"

    def __init__(self, env, cfg, seed, model, action_dim, clip_len):
        if model.depth < 2:
            raise PlanningError("planner=hierarchical needs a model of depth >= 2 (this run has depth 1): "
                                "train one with model.depth=2, or use planner=flat")
        super().__init__(env, cfg, seed, model, action_dim, clip_len)
        if model.levels[1].uses_frames:
            raise PlanningError("planner=hierarchical scores lower rollouts through the upper level's summariser: "
                                "it needs model.summarizer=latents")
        if cfg.lower_windows < 1:
            raise PlanningError(f"planner.lower_windows={cfg.lower_windows} must be >= 1")
        if cfg.replan_every > model.strides[1]:
            raise PlanningError(f"planner.replan_every={cfg.replan_every}: the hierarchical planner's primitive plan "
                                f"spans one level-1 step ({model.strides[1]} actions); use a value <= {model.strides[1]}")
        if cfg.macro not in ("held", "latent"):
            raise PlanningError(f"planner.macro={cfg.macro!r}: choose held or latent")
        if cfg.subgoals not in ("predicted", "goal"):
            raise PlanningError(f"planner.subgoals={cfg.subgoals!r}: choose predicted or goal")
        self.top_horizon = cfg.top_horizon
        self._plan_horizons = [cfg.lower_windows * model.strides[k + 1] for k in range(model.depth - 1)] + [cfg.top_horizon]
        self.latent_opt = build_optimizer(cfg.optimizer, samples=cfg.samples, iterations=cfg.iterations,
                                          elites=cfg.elites, temperature=cfg.temperature, init_std=1.0,
                                          min_std=cfg.min_std, low=-3.0, high=3.0)
        self._macro_stats = self._latent_macro_stats() if cfg.macro == "latent" else None

    @torch.no_grad()
    def _latent_macro_stats(self) -> list[tuple[Tensor, Tensor] | None]:
        """Mean and std per dimension of level-k macro-actions of random held chunks (the ``latent`` search's scale)."""
        g = torch.Generator().manual_seed(self.seed)
        out: list[tuple[Tensor, Tensor] | None] = [None]
        for k in range(1, self.model.depth):
            prim = torch.rand(512, 1, 2, generator=g) * 2 - 1
            prim = repeat(prim, "b 1 a -> b (h s) a", h=2, s=self.model.spans[k]).to(self.device)
            mac = future_macro_actions(self.model, k, prim)[:, 0]
            out.append((mac.mean(0), mac.std(0).clamp_min(1e-3)))
        return out

    def _searches_latent(self, k: int) -> bool:
        return self._macro_stats is not None and k > 0

    def _to_macro(self, k: int, cand: Tensor) -> Tensor:
        """Candidates ``(n, N, H, ·)`` → level-k actions ``(n, N, H, A_k)`` for the level's rollout."""
        if self._searches_latent(k):
            mean, std = self._macro_stats[k]
            return mean + std * cand
        n = cand.shape[0]
        prim = repeat(cand, "n k h a -> (n k) (h s) a", s=self.model.spans[k])
        macro = future_macro_actions(self.model, k, prim) if k > 0 else prim
        return rearrange(macro, "(n k) h a -> n k h a", n=n)

    def reset(self, starts, goals):
        super().reset(starts, goals)
        dims = [self.model.levels[k].action_dim if self._searches_latent(k) else 2 for k in range(self.model.depth)]
        self.level_means = [torch.zeros(len(goals), h, a) for h, a in zip(self._plan_horizons, dims)]

    def _level_plan(self, k: int, idx, zs, acts, ctxs, subgoal: Tensor | None) -> tuple[Tensor, Tensor, int]:
        """Plan at level k: held actions ``(n, H_k, 2)``; returns (best, first predicted latent of the
        best, evaluations). Cost: energy to the goal at level k (weighted by ``goal_weight`` below the
        top) plus, below the top, the level-(k+1) energy of the summarised rollout to ``subgoal``."""
        m = self.model
        h = self._plan_horizons[k]
        span = m.spans[k]
        roll = CandidateRollout(m, k)
        roll.prefix(zs[k], acts[k][:, :-1], ctxs[k])
        goal = self.goal_sets[k][idx]
        w = 1.0 if subgoal is None else self.cfg.goal_weight
        cache: dict[str, Tensor] = {}

        def cost(cand: Tensor) -> Tensor:
            n = cand.shape[0]
            pred = roll.imagine(self._to_macro(k, cand.to(self.device)))  # (n, N, H, D)
            total = w * self.energy(k, pred, goal) if w else 0.0
            if subgoal is not None:  # the upper level's energy of each summarised window of the rollout
                summary = m.levels[k + 1].encoder(rearrange(pred, "n k h d -> (n k) h d"))  # (nN, windows, D)
                up = set_distance(m, rearrange(summary, "(n k) w d -> n k w d", n=n), subgoal)
                total = total + (up[..., -1] if self.cfg.cost == "terminal" else up.mean(-1))
            cache["pred"] = pred
            return total.cpu()

        mean = self.level_means[k]
        shift = min(self.replan_every // span, h) if span <= self.replan_every else 0
        init = torch.cat([mean[idx, shift:], torch.zeros(len(idx), shift, mean.shape[2])], 1)
        opt = self.latent_opt if self._searches_latent(k) else self.opt
        res = opt.optimize(cost, init, torch.full_like(init, opt.init_std), self.gen)
        mean[idx] = res.mean
        # the first latent the best plan predicts: the subgoal handed down
        first = self._first_latent(k, roll, res.actions)
        return res.actions, first, roll.evals

    @torch.no_grad()
    def _first_latent(self, k, roll: CandidateRollout, best: Tensor) -> Tensor:
        macro = self._to_macro(k, best[:, None].to(self.device))  # (n, 1, H, A_k)
        ev = roll.evals
        out = roll.imagine(macro[:, :, :1])[:, 0, 0]
        roll.evals = ev  # read-out of the chosen plan, not search: not counted
        return out

    def plan(self, idx, hist):
        m = self.model
        zs, acts, ctxs = self.encode_history(idx, hist, m.min_clip_len())
        subgoal, evals = None, 0
        top = m.depth - 1
        if self.cfg.subgoals == "goal":  # ablation: no search at the top, it hands down the goal itself
            subgoal, top = self.goal_sets[top][idx], top - 1
        for k in reversed(range(top + 1)):
            best, subgoal, n_eval = self._level_plan(k, idx, zs, acts, ctxs, subgoal)
            evals += n_eval
        actions = best.numpy()  # level 0: (n, s_1, 2) primitive actions
        if actions.shape[1] < self.horizon:
            actions = np.concatenate([actions, np.zeros((len(idx), self.horizon - actions.shape[1], 2), np.float32)], 1)
        return actions[:, : self.horizon], evals


PLANNERS = {"flat": FlatPlanner, "hierarchical": HierarchicalPlanner, "oracle": OraclePlanner,
            "random": RandomPlanner, "straight": StraightPlanner}
MODEL_PLANNERS = ("flat", "hierarchical", "graph")


def build_planner(name: str, env: "World | RoomsEnv", cfg, seed: int, model: HJEPA | None = None, action_dim: int = 2,
                  clip_len: int = 0) -> Planner:
    if name not in PLANNERS:
        raise PlanningError(f"unknown planner {name!r}; choose one of {', '.join(PLANNERS)}")
    if name in MODEL_PLANNERS:
        if model is None:
            raise PlanningError(f"planner={name} plans with a trained model: pass run=<MLflow run id | checkpoint "
                                "| run dir>")
        return PLANNERS[name](env, cfg, seed, model, action_dim, clip_len)
    return PLANNERS[name](env, cfg, seed)
