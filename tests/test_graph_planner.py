"""planner=graph: shortest paths through remembered states, waypoints, stall pruning, held summaries."""

from types import SimpleNamespace

import numpy as np
import pytest
import torch

import hjepa
from hjepa.planning.goals import encode_held
from hjepa.planning.graph import GraphPlanner, WaypointGraph, held_summary


class _SquaredDistance:
    """A stand-in model whose energy is the squared Euclidean distance of 2-D latents."""

    @staticmethod
    def distance(a, b):
        return (a - b).square().sum(-1)


def _u_corridor(step: float = 0.1):
    """Nodes along a U: down the left arm (x=0), along the bottom, up the right arm (x=1); the arms
    are 1 apart, far more than an edge, so the only route from one tip to the other is the U."""
    arm = np.arange(0, 2 + 1e-9, step)
    left = np.stack([np.zeros_like(arm), arm[::-1]], 1)
    bottom = np.stack([np.arange(step, 1, step), np.zeros(len(np.arange(step, 1, step)))], 1)
    right = np.stack([np.ones_like(arm), arm], 1)
    return torch.tensor(np.concatenate([left, bottom, right]), dtype=torch.float32)


def test_route_goes_around_the_u_and_lengths_add_up():
    z = _u_corridor()
    g = WaypointGraph(_SquaredDistance(), [z], level=0, quantile=0.05)
    assert 0.01 <= g.tau < 0.05  # only neighbours 0.1 apart (energy 0.01) are joined
    start, goal = torch.tensor([[0.0, 2.0]]), torch.tensor([[1.0, 2.0]])
    path, length = g.route(g.energies_to(start)[0], g.energies_to(goal)[0])
    pts = z[path].numpy()
    assert pts[:, 1].min() == pytest.approx(0.0)  # it reaches the bottom of the U
    assert len(path) >= 45  # 4 units of corridor in steps of 0.1 (ties may cut a corner or an end node)
    hops = np.concatenate([[[0.0, 2.0]], pts, [[1.0, 2.0]]])
    assert length == pytest.approx(np.square(np.diff(hops, axis=0)).sum(), abs=1e-6)  # the energies of its hops
    assert np.square(np.diff(hops, axis=0)).sum(1).max() < g.tau + 1e-6  # only graph edges (and the ends' links)


def test_nearest_neighbour_edges_join_a_sparse_gap():
    """A 0.1-spaced line with a 0.3 gap in its middle: the quantile edges (neighbours 0.1 apart)
    leave it in two pieces; ``neighbours=4`` also joins each node to its four nearest (for x=1.0: 0.9,
    0.8, 0.7 and 1.3), which bridges the gap both ways, and keeps every quantile edge."""
    xs = np.concatenate([np.arange(0, 1.0001, 0.1), np.arange(1.3, 2.3001, 0.1)])
    z = torch.tensor(np.stack([xs, np.zeros_like(xs)], 1), dtype=torch.float32)
    quantile_only = WaypointGraph(_SquaredDistance(), [z], level=0, quantile=0.1)
    assert 0.01 < quantile_only.tau <= 0.04  # every 0.1 neighbour pair, not the 0.3 gap (0.09)
    pairs0 = set(zip(quantile_only.rows.tolist(), quantile_only.cols.tolist()))
    assert (9, 10) in pairs0 and (10, 11) not in pairs0  # x=1.0 and x=1.3 (nodes 10, 11) are not joined
    knn = WaypointGraph(_SquaredDistance(), [z], level=0, quantile=0.1, neighbours=4)
    pairs = set(zip(knn.rows.tolist(), knn.cols.tolist()))
    assert (10, 11) in pairs and (11, 10) in pairs
    assert pairs > pairs0 and knn.tau == quantile_only.tau


def test_banned_nodes_force_the_other_corridor():
    """Two corridors from left to right, y=0 (shorter) and y=1; banning the short one's middle
    sends the route through the long one."""
    xs = np.arange(0, 1.0001, 0.1)
    low = np.stack([xs, np.zeros_like(xs)], 1)
    high = np.stack([xs, np.ones_like(xs)], 1)
    sides = np.stack([np.zeros(9), np.arange(0.1, 0.95, 0.1)], 1)
    sides2 = sides + [1.0, 0.0]
    z = torch.tensor(np.concatenate([low, high, sides, sides2]), dtype=torch.float32)
    g = WaypointGraph(_SquaredDistance(), [z], level=0, quantile=0.055)
    assert 0.0101 <= g.tau <= 0.04  # neighbours 0.1 apart only
    e_s, e_g = g.energies_to(torch.tensor([[0.0, 0.0]]))[0], g.energies_to(torch.tensor([[1.0, 0.0]]))[0]
    path, _ = g.route(e_s, e_g)
    assert (z[path][:, 1] == 0).all()  # the straight corridor
    banned = np.zeros(g.n, bool)
    banned[4:7] = True  # x = 0.4 .. 0.6 on y = 0
    path, _ = g.route(e_s, e_g, banned)
    assert z[path][:, 1].max() == pytest.approx(1.0) and not banned[path].any()


def test_held_summary_equals_the_held_goal_latents():
    torch.manual_seed(0)
    for depth in (2, 3):
        cfg = hjepa.compose([f"model.depth={depth}", "model.stride=2", "model.latent_dim=16", "model.pred_dim=32",
                             "model.encoder_width=8"])
        m = hjepa.build_model(cfg, obs_shape=(3, 16, 16), action_dim=2).eval()
        frames = torch.rand(3, 3, 16, 16)
        z = encode_held(m, frames, 2)
        with torch.no_grad():
            for k in range(1, depth):
                torch.testing.assert_close(held_summary(m, z[0], k), z[k])


# ------------------------------------------------------------------ end to end on a tiny trained model
@pytest.fixture(scope="module")
def trained_d2(tmp_path_factory):
    from hjepa.train import Trainer

    root = tmp_path_factory.mktemp("graph")
    over = ["data.grid=[3,3]", "data.layout=maze", "data.num_train_episodes=8", "data.num_eval_episodes=4",
            "data.episode_len=24", "data.clip_len=16", "data.batch_size=4", "model.latent_dim=16",
            "model.pred_dim=32", "model.encoder_width=8", "eval.num_clips=8", "train.steps=3",
            "train.eval_every=3", "train.checkpoint_every=3", "train.progress=false", "tracking.enabled=false",
            "model.depth=2", f"data.cache_dir={root / 'cache'}"]
    Trainer(hjepa.compose(over, out_dir=str(root / "d2"))).run()
    return root / "d2"


def _plan_cfg(run, planner, tmp_path, *extra):
    from pathlib import Path

    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from hjepa.planning.config import register_plan_configs

    register_plan_configs()
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(Path(hjepa.__file__).parent / "conf_plan"), version_base="1.3"):
        return compose(config_name="plan", overrides=[f"run={run}", f"planner={planner}", f"out_dir={tmp_path}",
                                                      "tracking.enabled=false", "eval.episodes=2", "eval.distances=[0,1]",
                                                      "eval.max_steps=6", "planner.samples=8", "planner.iterations=2",
                                                      *extra])


@pytest.mark.parametrize("extra", [[], ["planner.graph_level=0"]])
def test_graph_planner_runs_end_to_end(trained_d2, tmp_path, extra):
    from hjepa.planning.cli import plan

    cfg = _plan_cfg(trained_d2, "graph", tmp_path, "planner.graph_nodes=64", "planner.graph_lookahead=4",
                    "eval.energy_map=false", *extra)
    res = plan(cfg)
    row = res["by_distance"]["1"]
    assert row["episodes"] == 2 and row["model_evals"] > 0
    assert res["graph_encoded_frames"] == 64 * 8  # 64 remembered frames, each held for the 8-frame shortest clip
    assert 0.0 <= res["graph_no_route_fraction"] <= 1.0  # re-plans that found no route and aimed at the goal
    assert (tmp_path / "filmstrip.png").stat().st_size > 0
    if extra:
        return
    again = plan(_plan_cfg(trained_d2, "graph", tmp_path, "planner.graph_nodes=64", "planner.graph_lookahead=4",
                           "eval.energy_map=false", *extra))
    for d, row in res["by_distance"].items():  # same seed, same episodes (timings aside)
        for key in ("success", "mean_steps", "final_distance", "model_evals"):
            assert again["by_distance"][d][key] == row[key], (d, key)


def test_stalled_route_bans_its_first_nodes(trained_d2):
    """No progress over STALL_PLANS re-plans bans the route's first nodes for that episode only."""
    from hjepa.data.rooms import RoomsEnv
    from hjepa.planning import graph as graph_mod

    run = hjepa.load_run(str(trained_d2))
    env = RoomsEnv((3, 3), 0.4, 0.12, 32, layout="maze")
    cfg = SimpleNamespace(optimizer="cem", samples=8, iterations=1, elites=2, temperature=0.05, init_std=1.0,
                          min_std=0.05, horizon=4, replan_every=2, cost="sum", graph_level=-1, graph_nodes=64,
                          graph_quantile=0.05, graph_lookahead=2, graph_neighbours=0, graph_cost="graph")
    p = GraphPlanner(env, cfg, 0, run.model, 2, 16)
    p.attach_memory(*graph_mod.memory_frames(run.cfg.data, 64, 0))
    p.reset(np.array([[0.5, 0.5], [0.5, 0.5]]), np.array([[2.5, 2.5], [2.5, 2.5]]))
    e_now = p.graph.energies_to(encode_held(run.model, torch.from_numpy(env.render(np.array([[0.5, 0.5]])))
                                            .float().div(255), 2)[1])[0]
    for _ in range(graph_mod.STALL_PLANS + 1):  # the same place every re-plan: no progress
        p._waypoint(0, e_now)
    assert p.pruned[0] == 1 and p.banned[0].sum() >= 1
    assert p.pruned[1] == 0 and not p.banned[1].any()


def test_graph_planner_needs_a_memory_and_a_valid_level(trained_d2):
    from hjepa.data.rooms import RoomsEnv
    from hjepa.planning.planners import PlanningError

    run = hjepa.load_run(str(trained_d2))
    env = RoomsEnv((3, 3), 0.4, 0.12, 32, layout="maze")
    cfg = SimpleNamespace(optimizer="cem", samples=8, iterations=1, elites=2, temperature=0.05, init_std=1.0,
                          min_std=0.05, horizon=4, replan_every=2, cost="sum", graph_level=2, graph_nodes=64,
                          graph_quantile=0.05, graph_lookahead=2, graph_neighbours=0, graph_cost="graph")
    with pytest.raises(PlanningError, match="graph_level=2: this model has levels 0..1"):
        GraphPlanner(env, cfg, 0, run.model, 2, 16)
    cfg.graph_level = -1
    p = GraphPlanner(env, cfg, 0, run.model, 2, 16)
    with pytest.raises(PlanningError, match="needs a memory"):
        p.reset(np.array([[0.5, 0.5]]), np.array([[2.5, 2.5]]))


def test_memory_comes_from_the_training_split_of_npz_data_too(tmp_path):
    from omegaconf import OmegaConf

    from hjepa.planning.graph import memory_frames

    rng = np.random.default_rng(0)
    obs = rng.integers(0, 255, (10, 6, 3, 8, 8), dtype=np.uint8)
    state = rng.random((10, 6, 2)).astype(np.float32)
    np.savez(tmp_path / "d.npz", obs=obs, actions=np.zeros((10, 6, 2), np.float32), state=state,
             factor_names=np.array(["pos_x", "pos_y"]))
    cfg = OmegaConf.merge(hjepa.compose(["data=npz", f"data.path={tmp_path / 'd.npz'}", "data.clip_len=4",
                                         "model.depth=1"]).data)
    frames, pos = memory_frames(cfg, 50, 0)
    assert frames.shape == (50, 3, 8, 8) and pos.shape == (50, 2)
    for f, p in zip(frames, pos):
        e, t = np.argwhere((obs == f).all(axis=(2, 3, 4)))[0]
        assert e < 8  # 2 of 10 episodes are held out for evaluation (data.eval_fraction): never remembered
        np.testing.assert_allclose(p, state[e, t])  # each frame's position is its own state
