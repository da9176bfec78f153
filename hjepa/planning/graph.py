"""Waypoint graphs: long-horizon planning by shortest paths through remembered states.

Greedy descent on an energy to the goal stalls where the energy has local minima — behind a wall,
the energy through the wall is lower than around it. Measured with the depth-2 maze model and the
true simulator as the dynamics, descending the top level's energy (rank correlation 0.99 with the
geodesic distance) reaches 70% of goals 3 rooms away and 0% at 5 (docs/planning.md). The energy is
accurate *locally*, so a graph of states a short energy apart composes local distances into
global ones, the idea of search on the replay buffer (Eysenbach et al., 2019):

1. **Memory.** ``planner.graph_nodes`` frames drawn (seeded) from the model's own training data,
   encoded held still (``goals.encode_held``) at every level.
2. **Graph.** An edge joins two nodes whose level-``planner.graph_level`` energy is below ``τ``, the
   ``planner.graph_quantile`` quantile of all pairwise energies; its weight is that energy. All-pairs
   shortest paths (Dijkstra, scipy) are computed once.
3. **Waypoints.** Each re-plan attaches the current frame and the goal to the nodes within ``τ``
   (or the nearest if none), follows the shortest path, and hands the node
   ``planner.graph_lookahead`` hops ahead (the goal itself once the path is no longer than that)
   to level-0 MPC, which plans toward that node's level-0 latent exactly like the flat
   planner plans toward a goal.

``planner.graph_level`` picks which level's energy defines the graph: the top level (default; the
hierarchy supplies the long-range geometry) or level 0 (the same planner with flat distances — the
ablation that tells whether the hierarchy is what helps). Encoding the memory costs
``graph_nodes × min_clip_len`` frames through the encoders once per planner (``graph_encoded_frames``
in ``plan_results.json``); the per-step search budget is the flat planner's.
"""

from __future__ import annotations

import numpy as np
import torch
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import dijkstra
from einops import rearrange, repeat
from torch import Tensor

from .goals import encode_held
from .planners import PLANNERS, FlatPlanner, PlanningError, set_distance

__all__ = ["WaypointGraph", "GraphPlanner", "memory_frames", "held_summary"]


def held_summary(model, z0: Tensor, k: int) -> Tensor:
    """Level-``k`` latent of a level-0 state held still: ``z0 (B, D_0)`` → ``(B, D_k)``.

    Each level above 0 summarises its window of ``s_j`` identical lower latents, as when a goal
    frame is held still (``goals.encode_held``; equal to it for a true level-0 latent). Applied to
    *predicted* level-0 latents it scores an imagined state with a higher level's energy.
    """
    raw = z0
    for j in range(1, k + 1):
        lvl = model.levels[j]
        src = repeat(raw, "b d -> b s d", s=model.strides[j])
        raw = lvl.encode_target(src, lvl.encoder(src))[:, -1]
    return model.levels[k].normalize_target(raw[:, None])[:, 0] if k else raw


def memory_frames(data_cfg, n: int, seed: int) -> tuple[np.ndarray, np.ndarray | None]:
    """``n`` frames ``(n, *obs)`` uint8/float drawn from the training split of ``data_cfg`` and their
    positions ``(n, 2)`` when the data's first two factors are positions (for drawing), else None."""
    from ..data.dataset import build_data

    tr = build_data(data_cfg).train.traj  # generated (cached) or the user's npz, its training split
    rng = np.random.default_rng(seed)
    ep = rng.integers(0, tr.num_episodes, n)
    t = rng.integers(0, tr.episode_len, n)
    names = [f.lower() for f in tr.factor_names[:2]]
    pos = tr.state[ep, t, :2] if names in (["pos_x", "pos_y"], ["x", "y"]) else None
    return tr.obs[ep, t], pos


class WaypointGraph:
    """Nodes' latents ``[(N, D_k)]`` per level and the level-``level`` graph: an undirected edge,
    weighted by its energy, joins every pair whose energy is below ``τ`` (the ``quantile`` of all
    pairwise energies)."""

    def __init__(self, model, latents: list[Tensor], level: int, quantile: float, neighbours: int = 0):
        """``neighbours`` > 0 also joins every node to its ``neighbours`` lowest-energy nodes (both
        directions), so that sparsely visited states are not left in pieces of their own."""
        self.model, self.latents, self.level = model, latents, level
        z = latents[level]
        self.n = len(z)
        with torch.no_grad():
            energy = model.distance(z[:, None], z[None]).float().cpu().numpy()  # (N, N)
        np.fill_diagonal(energy, np.inf)
        self.tau = float(np.quantile(energy[np.isfinite(energy)], quantile))
        linked = energy < self.tau
        if neighbours > 0:
            knn = np.argsort(energy, axis=1)[:, :min(neighbours, self.n - 1)]  # (N, k), never a node itself
            linked[np.repeat(np.arange(self.n), knn.shape[1]), knn.ravel()] = True
            linked |= linked.T
        self.rows, self.cols = np.nonzero(linked)  # both directions
        self.weights = np.maximum(energy[self.rows, self.cols], 1e-9)

    def energies_to(self, z: Tensor) -> np.ndarray:
        """Level-``level`` energy from each query latent ``(B, D)`` to every node: ``(B, N)``."""
        with torch.no_grad():
            return self.model.distance(z[:, None], self.latents[self.level][None]).float().cpu().numpy()

    def attach(self, e: np.ndarray, banned: np.ndarray, nearest: int = 3) -> np.ndarray:
        """Nodes a query with node energies ``e (N,)`` links to: those within ``τ`` and the
        ``nearest`` closest; never a ``banned`` node."""
        e = np.where(banned, np.inf, e)
        return np.union1d(np.flatnonzero(e < self.tau), np.argsort(e)[:nearest])

    def route(self, e_now: np.ndarray, e_goal: np.ndarray, banned: np.ndarray | None = None) -> tuple[list[int], float]:
        """Shortest path (Dijkstra) from the current state to the goal through the graph without the
        ``banned (N,)`` nodes: ``(node ids in order, length)``; ``([], inf)`` when there is none.
        The two ends attach through their own energies to the nodes (``attach``)."""
        banned = np.zeros(self.n, bool) if banned is None else banned
        for nearest in (3, 32):  # a second try bridges the ends to more nodes (a graph in pieces)
            path, length = self._route(e_now, e_goal, banned, nearest)
            if path:
                break
        return path, length

    def _route(self, e_now, e_goal, banned, nearest):
        src, dst = self.attach(e_now, banned, nearest), self.attach(e_goal, banned, nearest)
        keep = ~(banned[self.rows] | banned[self.cols])
        s, g = self.n, self.n + 1  # virtual nodes: the current state and the goal
        rows = np.concatenate([self.rows[keep], np.full(len(src), s), dst])
        cols = np.concatenate([self.cols[keep], src, np.full(len(dst), g)])
        w = np.concatenate([self.weights[keep], np.maximum(e_now[src], 1e-9), np.maximum(e_goal[dst], 1e-9)])
        dist, pred = dijkstra(csr_matrix((w, (rows, cols)), shape=(self.n + 2, self.n + 2)), indices=s,
                              return_predecessors=True)
        if not np.isfinite(dist[g]):
            return [], float("inf")
        path, v = [], int(pred[g])
        while v != s:
            path.append(v)
            v = int(pred[v])
        return path[::-1], float(dist[g])


STALL_PLANS, STALL_PROGRESS = 4, 0.1


class GraphPlanner(FlatPlanner):
    """Level-0 MPC toward waypoints found by shortest paths in a graph of remembered states."""

    name = "graph"

    def __init__(self, env, cfg, seed, model, action_dim, clip_len):
        super().__init__(env, cfg, seed, model, action_dim, clip_len)
        level = cfg.graph_level if cfg.graph_level >= 0 else model.depth + cfg.graph_level
        if not 0 <= level < model.depth:
            raise PlanningError(f"planner.graph_level={cfg.graph_level}: this model has levels 0..{model.depth - 1} "
                                "(-1 = the top level)")
        self.graph_level, self.graph = level, None
        self.graph_encoded_frames = 0
        self.replans = self.no_route = 0  # over all episodes: re-plans, and those with no route (the goal is the waypoint)

    def attach_memory(self, frames: np.ndarray, positions: np.ndarray | None) -> None:
        """Encode the memory and build the graph (once per planner)."""
        parts = [encode_held(self.model, self.world.to_model(frames[i: i + 256], self.device), self.action_dim)
                 for i in range(0, len(frames), 256)]
        latents = [torch.cat([p[k] for p in parts]) for k in range(self.model.depth)]
        self.graph = WaypointGraph(self.model, latents, self.graph_level, self.cfg.graph_quantile,
                                   self.cfg.graph_neighbours)
        self.node_pos = positions
        self.graph_encoded_frames = len(frames) * self.model.min_clip_len()

    def reset(self, starts, goals):
        super().reset(starts, goals)
        if self.graph is None:
            raise PlanningError("planner=graph needs a memory: hjepa-plan attaches the run's training data")
        sets = self.goal_sets[self.graph_level]  # (E, G, D): each node's energy to the nearest member
        self.goal_energy = np.min([self.graph.energies_to(sets[:, j]) for j in range(sets.shape[1])], 0)  # (E, N)
        self._sub = np.full((len(goals), 2), np.nan)
        self.banned = np.zeros((len(goals), self.graph.n), bool)
        self.route_lengths: list[list[float]] = [[] for _ in goals]
        self.pruned = np.zeros(len(goals), int)

    def plan(self, idx, hist):
        frames = self.world.to_model(hist.frames[idx, -1], self.device)  # uint8 frames / 255, state vectors as they are
        now = encode_held(self.model, frames, self.action_dim)[self.graph_level]
        e_now = self.graph.energies_to(now)
        w = np.array([self._waypoint(i, e_now[r]) for r, i in enumerate(idx)])  # -1: the goal itself
        if self.node_pos is not None:
            self._sub[idx] = np.where(w[:, None] < 0, self.goals[idx], self.node_pos[w])
        # the waypoints at level 0 (what the flat planner aims at) and at the graph's level (its cost), as
        # sets (n, G, D): the goal's own set, or one node repeated
        at_goal = torch.from_numpy(w < 0).to(self.device)[:, None, None]
        self._waypoint_latents = [torch.where(at_goal, self.goal_sets[k][idx], self.graph.latents[k][w][:, None])
                                  for k in (0, self.graph_level)]
        return super().plan(idx, hist)

    def level0_target(self, idx):
        return self._waypoint_latents[0]

    def _waypoint(self, i: int, e_now: np.ndarray) -> int:
        """Episode ``i``'s next waypoint node (-1: the goal itself). When the route has not shortened
        by ``STALL_PROGRESS`` over the last ``STALL_PLANS`` re-plans, the agent is stuck on an edge
        the world does not have (two states that look alike across a wall): the route's first
        ``planner.graph_lookahead`` nodes are banned for this episode and the route recomputed.
        With no route at all (the graph in pieces), the goal itself is the waypoint: counted in
        ``no_route`` (``planner.graph_neighbours`` joins the pieces)."""
        path, length = self.graph.route(e_now, self.goal_energy[i], self.banned[i])
        hist = self.route_lengths[i]
        hist.append(length)
        if len(hist) > STALL_PLANS and np.isfinite(length) and length > (1 - STALL_PROGRESS) * hist[-1 - STALL_PLANS]:
            first = path[: self.cfg.graph_lookahead]
            self.banned[i, first] = True  # and their graph neighbours: the look-alike cluster the edge came from
            self.banned[i, self.graph.cols[np.isin(self.graph.rows, first)]] = True
            self.pruned[i] += 1
            hist.clear()
            path, _ = self.graph.route(e_now, self.goal_energy[i], self.banned[i])
        self.replans += 1
        self.no_route += not path
        la = self.cfg.graph_lookahead
        return -1 if len(path) <= la else path[la]

    def energy(self, k: int, pred: Tensor, goal: Tensor) -> Tensor:
        """``planner.graph_cost=graph``: the graph level's energy of each predicted level-0 latent,
        held still, to the waypoint; ``level0``: the flat planner's level-0 energy."""
        if k != 0 or self.graph_level == 0 or self.cfg.graph_cost == "level0":
            return super().energy(k, pred, goal)
        n, c, h, _ = pred.shape
        up = held_summary(self.model, rearrange(pred, "n c h d -> (n c h) d"), self.graph_level)
        e = set_distance(self.model, rearrange(up, "(n c h) d -> n c h d", n=n, c=c), self._waypoint_latents[1])
        return e[..., -1] if self.cfg.cost == "terminal" else e.mean(-1)

    def subgoals(self):
        return None if self.node_pos is None else self._sub


PLANNERS["graph"] = GraphPlanner
