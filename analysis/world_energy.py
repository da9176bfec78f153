"""World-state energy maps: does a level's latent distance to a goal follow the walls?

For a goal position in a rooms world, render the agent at every free position of a regular grid
over the map, encode each frame *held still* (:func:`hjepa.planning.encode_held`, the same goal
encoding a planner uses) and compute, per level ``k``, the model's energy
``model.distance(z_k(frame), z_k(goal frame))``. A level whose energy rises with the geodesic
(through-doorway) distance to the goal supports greedy latent planning; one that only has a narrow
well at the goal, or that cuts through walls, does not. The summary number is the Spearman rank
correlation between the energy and :meth:`RoomsEnv.geodesic_distance` over the free positions.

Library use (e.g. in a planning report)::

    from analysis.world_energy import world_energy_map, geodesic_spearman, plot_world_energy, rooms_env
    run = hjepa.load_run("<run id | checkpoint | run dir>")
    env = rooms_env(run.cfg.data)
    m = world_energy_map(run.model, env, goal=(0.5, 0.5), action_dim=2)
    m.energy[k]          # (ny, nx) energy at level k, NaN inside walls
    m.spearman           # [rho_k per level]
    plot_world_energy(m, env).savefig("world_energy.png")
    geodesic_spearman(run.model, env, action_dim=2)   # per level, averaged over fixed goals
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import torch
from scipy.stats import spearmanr

from hjepa.data.rooms import RoomsEnv
from hjepa.planning import encode_held

__all__ = ["WorldEnergyMap", "free_grid", "world_energy_map", "latent_energy_map", "geodesic_spearman",
           "default_goals", "plot_world_energy", "rooms_env", "model_latents"]

# latents of agent positions: ``(N, 2)`` world positions -> per level ``(N, D_k)``
LatentFn = Callable[[np.ndarray], Sequence[torch.Tensor]]
DistanceFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass
class WorldEnergyMap:
    """Per-level energy to a goal over a grid of agent positions.

    ``xs (nx,)``, ``ys (ny,)`` grid coordinates (room widths); ``free (ny, nx)`` positions outside
    walls; ``energy[k] (ny, nx)`` and ``geodesic (ny, nx)`` (NaN inside walls); ``goal (2,)``;
    ``spearman[k]`` rank correlation of ``energy[k]`` with ``geodesic`` over the free positions.
    """

    xs: np.ndarray
    ys: np.ndarray
    free: np.ndarray
    goal: np.ndarray
    energy: list[np.ndarray]
    geodesic: np.ndarray
    spearman: list[float]

    @property
    def depth(self) -> int:
        return len(self.energy)


def rooms_env(data_cfg) -> RoomsEnv:
    """The ``RoomsEnv`` a ``data=rooms`` config generates its episodes in."""
    if getattr(data_cfg, "name", None) != "rooms":
        raise ValueError(f"world energy maps need a rooms world (data=rooms); this run used data={data_cfg.name}")
    return RoomsEnv(tuple(data_cfg.grid), data_cfg.door_width, data_cfg.max_speed, data_cfg.image_size,
                    layout=data_cfg.get("layout", "open"), layout_seed=data_cfg.get("layout_seed", 0))


def free_grid(env: RoomsEnv, spacing: float = 0.05) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A grid of cell centres every ``spacing`` room widths: ``xs (nx,)``, ``ys (ny,)`` and
    ``free (ny, nx)``, False where the agent's centre would sit on a drawn wall (within the
    renderer's wall half-thickness of a closed wall segment or of the outer border)."""
    if not 0 < spacing <= 0.5:
        raise ValueError(f"grid spacing must lie in (0, 0.5] room widths, got {spacing}")
    xs = np.arange(spacing / 2, env.cols, spacing)
    ys = np.arange(spacing / 2, env.rows, spacing)
    gx, gy = np.meshgrid(xs, ys)  # (ny, nx)
    half_x, half_y = env.cols / env.image_size * 0.6, env.rows / env.image_size * 0.6
    free = (gx > half_x) & (gx < env.cols - half_x) & (gy > half_y) & (gy < env.rows - half_y)
    for c in range(1, env.cols):
        free &= ~((np.abs(gx - c) < half_x) & ~env.passable(0, np.full_like(gy, c), gy))
    for r in range(1, env.rows):
        free &= ~((np.abs(gy - r) < half_y) & ~env.passable(1, np.full_like(gx, r), gx))
    return xs, ys, free


def default_goals(env: RoomsEnv) -> np.ndarray:
    """Fixed evaluation goals ``(G, 2)``: the centres of the corner rooms and of the middle room."""
    rooms = sorted({0, env.cols - 1, env.num_rooms - env.cols, env.num_rooms - 1,
                    (env.rows // 2) * env.cols + env.cols // 2})
    return env.room_centre(np.array(rooms))


def model_latents(model, env: RoomsEnv, action_dim: int, batch_size: int = 256) -> LatentFn:
    """Latents of the agent held still at each position: the target-branch latent of every level."""
    device = next(model.parameters()).device

    def fn(pos: np.ndarray) -> list[torch.Tensor]:
        was_training = model.training
        model.eval()
        chunks: list[list[torch.Tensor]] = []
        for i in range(0, len(pos), batch_size):
            frames = torch.from_numpy(env.render(pos[i: i + batch_size])).to(device).float().div_(255.0)
            chunks.append([z.float().cpu() for z in encode_held(model, frames, action_dim)])
        model.train(was_training)
        return [torch.cat([c[k] for c in chunks]) for k in range(len(chunks[0]))]

    return fn


def _spearman(a: np.ndarray, b: np.ndarray) -> float:
    if np.ptp(a) == 0 or np.ptp(b) == 0:
        return 0.0  # a constant energy carries no ranking at all
    return float(spearmanr(a, b).statistic)


def latent_energy_map(latents: LatentFn, distance: DistanceFn, env: RoomsEnv, goal, spacing: float = 0.05,
                      cache: tuple | None = None) -> WorldEnergyMap:
    """The energy map of any position → latents function (a model, or an oracle in tests).

    ``cache`` = ``(xs, ys, free, [(N, D_k)])`` reuses latents already computed for the free grid.
    """
    goal = np.asarray(goal, np.float64).reshape(2)
    if not (0 < goal[0] < env.cols and 0 < goal[1] < env.rows):
        raise ValueError(f"goal {goal.tolist()} lies outside the {env.rows}x{env.cols} rooms map")
    if cache is None:
        xs, ys, free = free_grid(env, spacing)
        gx, gy = np.meshgrid(xs, ys)
        zs = latents(np.stack([gx[free], gy[free]], 1))
    else:
        xs, ys, free, zs = cache
        gx, gy = np.meshgrid(xs, ys)
    pos = np.stack([gx[free], gy[free]], 1)
    z_goal = latents(goal[None])
    geo = np.full(free.shape, np.nan)
    geo[free] = env.geodesic_distance(pos, goal)
    energies, rhos = [], []
    for k in range(len(zs)):
        e = distance(zs[k], z_goal[k].expand_as(zs[k])).double().numpy()
        grid = np.full(free.shape, np.nan)
        grid[free] = e
        energies.append(grid)
        rhos.append(_spearman(e, geo[free]))
    return WorldEnergyMap(xs, ys, free, goal, energies, geo, rhos)


def world_energy_map(model, env: RoomsEnv, goal, action_dim: int, spacing: float = 0.05,
                     batch_size: int = 256) -> WorldEnergyMap:
    """Per-level energy ``model.distance`` between the held-still latents of every free position and
    of ``goal`` (world coordinates, room widths)."""
    return latent_energy_map(model_latents(model, env, action_dim, batch_size), model.distance, env, goal, spacing)


def geodesic_spearman(model, env: RoomsEnv, action_dim: int, goals=None, spacing: float = 0.1,
                      batch_size: int = 256, latents: LatentFn | None = None,
                      distance: DistanceFn | None = None) -> tuple[list[float], list[WorldEnergyMap]]:
    """Spearman correlation of each level's energy with the geodesic distance, averaged over fixed
    ``goals`` (default :func:`default_goals`); the grid's latents are computed once.

    Returns ``([mean rho_k per level], [one WorldEnergyMap per goal])``.
    """
    goals = default_goals(env) if goals is None else np.asarray(goals, np.float64).reshape(-1, 2)
    latents = latents or model_latents(model, env, action_dim, batch_size)
    distance = distance or model.distance
    xs, ys, free = free_grid(env, spacing)
    gx, gy = np.meshgrid(xs, ys)
    cache = (xs, ys, free, latents(np.stack([gx[free], gy[free]], 1)))
    maps = [latent_energy_map(latents, distance, env, g, spacing, cache=cache) for g in goals]
    return [float(np.mean([m.spearman[k] for m in maps])) for k in range(maps[0].depth)], maps


def _draw_walls(ax, env: RoomsEnv) -> None:
    kw = dict(color="black", lw=2.0, solid_capstyle="butt")
    ax.plot([0, env.cols, env.cols, 0, 0], [0, 0, env.rows, env.rows, 0], **kw)
    h = env.door_width / 2
    for c in range(1, env.cols):
        for r in range(env.rows):
            if env.v_open[c - 1, r]:
                ax.plot([c, c], [r, r + 0.5 - h], **kw)
                ax.plot([c, c], [r + 0.5 + h, r + 1], **kw)
            else:
                ax.plot([c, c], [r, r + 1], **kw)
    for r in range(1, env.rows):
        for c in range(env.cols):
            if env.h_open[r - 1, c]:
                ax.plot([c, c + 0.5 - h], [r, r], **kw)
                ax.plot([c + 0.5 + h, c + 1], [r, r], **kw)
            else:
                ax.plot([c, c + 1], [r, r], **kw)


def plot_world_energy(maps: WorldEnergyMap | Sequence[WorldEnergyMap], env: RoomsEnv, title: str = ""):
    """Heat maps (rows: goals, columns: levels + the geodesic distance) with walls and the goal drawn."""
    import matplotlib.pyplot as plt

    maps = [maps] if isinstance(maps, WorldEnergyMap) else list(maps)
    ncol = maps[0].depth + 1
    fig, axes = plt.subplots(len(maps), ncol, figsize=(3.2 * ncol, 3.0 * len(maps)), squeeze=False)
    for i, m in enumerate(maps):
        extent = (0, env.cols, 0, env.rows)
        panels = [(m.energy[k], f"level {k}: energy  ρ_geo={m.spearman[k]:+.2f}") for k in range(m.depth)]
        panels.append((m.geodesic, "geodesic distance"))
        for j, (img, name) in enumerate(panels):
            ax = axes[i, j]
            im = ax.imshow(img, origin="lower", extent=extent, cmap="viridis", interpolation="nearest")
            fig.colorbar(im, ax=ax, fraction=0.046, pad=0.03)
            _draw_walls(ax, env)
            ax.plot(*m.goal, marker="*", color="red", ms=13, mec="white")
            ax.set_title(name, fontsize=9)
            ax.set_xticks([])
            ax.set_yticks([])
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig
