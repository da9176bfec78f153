"""World-state energy maps: geodesic rank correlation, grid masking, shapes, and a model end to end."""

import numpy as np
import pytest
import torch

from analysis.world_energy import (free_grid, geodesic_spearman, latent_energy_map, plot_world_energy,
                                   world_energy_map)
from hjepa.data.rooms import RoomsEnv


def oracle(pos):
    """A 'latent' that is the position itself: its distance is the Euclidean one."""
    return [torch.as_tensor(pos, dtype=torch.float32)]


def sqdist(a, b):
    return (a - b).square().mean(-1)


def test_euclidean_oracle_is_geodesic_in_the_open_layout_but_not_in_the_maze():
    open_env, maze = RoomsEnv((3, 3), layout="open"), RoomsEnv((3, 3), layout="maze", layout_seed=0)
    rho_open, _ = geodesic_spearman(None, open_env, 2, latents=oracle, distance=sqdist)
    rho_maze, maps = geodesic_spearman(None, maze, 2, latents=oracle, distance=sqdist)
    assert rho_open[0] > 0.9
    assert rho_maze[0] < rho_open[0] - 0.2
    assert len(maps) == 5  # four corner rooms and the middle one
    # a goal behind the closed wall of room 0 -> 3: Euclidean energy is far from the geodesic
    m = latent_energy_map(oracle, sqdist, maze, (0.5, 1.5), spacing=0.1)
    assert m.spearman[0] < 0.5


def test_geodesic_latent_scores_one():
    maze = RoomsEnv((3, 3), layout="maze", layout_seed=0)
    goal = np.array([2.5, 2.5])

    def geo_latent(pos):
        return [torch.as_tensor(maze.geodesic_distance(pos, goal), dtype=torch.float64)[:, None]]

    m = latent_energy_map(geo_latent, sqdist, maze, goal, spacing=0.1)
    assert m.spearman[0] == pytest.approx(1.0)


def test_grid_shapes_and_walls_masked():
    maze = RoomsEnv((3, 3), layout="maze", layout_seed=0)
    xs, ys, free = free_grid(maze, 0.05)
    assert xs.shape == (60,) and ys.shape == (60,) and free.shape == (60, 60)
    ix = lambda x: int(np.argmin(np.abs(xs - x)))  # noqa: E731
    assert not free[ix(1.5), ix(0.99)]  # on the closed wall x=1 between rooms 0/3 row 1 (y=1.5)
    assert free[ix(0.5), ix(0.99)]  # the open doorway of wall x=1 in row 0
    assert not free[ix(0.02), ix(1.5)]  # the outer border
    assert free[ix(1.5), ix(1.5)]  # a room centre
    assert 0.8 < free.mean() < 0.99
    m = latent_energy_map(oracle, sqdist, maze, (1.5, 1.5), spacing=0.05)
    assert m.energy[0].shape == (60, 60) and np.isnan(m.energy[0][~free]).all()
    assert np.isfinite(m.energy[0][free]).all() and np.isfinite(m.geodesic[free]).all()
    with pytest.raises(ValueError, match="outside"):
        latent_energy_map(oracle, sqdist, maze, (3.5, 0.5))


def test_model_energy_map_end_to_end(tmp_path):
    import hjepa

    cfg = hjepa.compose(["data.grid=[3,3]", "data.layout=maze", "model.depth=2", "data.clip_len=8",
                         "model.stride=2", "model.latent_dim=8", "model.encoder_width=4", "model.pred_dim=16",
                         "model.pred_heads=2"])
    torch.manual_seed(0)
    model = hjepa.build_model(cfg, obs_shape=(3, 32, 32), action_dim=2)
    env = RoomsEnv((3, 3), layout="maze", layout_seed=0)
    m = world_energy_map(model, env, (0.625, 0.625), action_dim=2, spacing=0.25)  # the goal is a grid cell
    assert m.depth == 2 and m.energy[1].shape == m.free.shape == (12, 12)
    assert all(-1 <= r <= 1 for r in m.spearman)
    for k in range(2):  # the goal's own frame has the goal's latent: zero energy there, positive elsewhere
        at_goal = m.energy[k][np.argmin(np.abs(m.ys - 0.625)), np.argmin(np.abs(m.xs - 0.625))]
        assert at_goal < 1e-3 * np.nanmedian(m.energy[k]) and np.nanmedian(m.energy[k]) > 0
    fig = plot_world_energy([m, m], env, title="t")
    assert len(fig.axes) == 2 * 3 + 2 * 3  # panels + colour bars
    fig.savefig(tmp_path / "w.png")
    assert (tmp_path / "w.png").stat().st_size > 1000
