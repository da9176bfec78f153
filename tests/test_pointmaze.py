"""PointMaze (gymnasium-robotics, MuJoCo) as a planning world: geometry, world semantics, episodes."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch

import hjepa
from hjepa.envs.pointmaze import cell_distances, maze_cells
from hjepa.planning.episodes import run_episodes, summarise
from hjepa.planning.planners import PlanningError, build_planner

U_MAZE = [[1, 1, 1, 1, 1],
          [1, 0, 0, 0, 1],
          [1, 1, 1, 0, 1],
          [1, 0, 0, 0, 1],
          [1, 1, 1, 1, 1]]


def test_bfs_cell_distances_on_umaze_are_known():
    cells = maze_cells(U_MAZE)
    assert cells.tolist() == [[1, 1], [1, 2], [1, 3], [2, 3], [3, 1], [3, 2], [3, 3]]
    d = cell_distances(U_MAZE)
    # from the top-left cell along the U: 0 1 2 3 6 5 4 (the bottom-left cell is the far end)
    assert d[0].tolist() == [0, 1, 2, 3, 6, 5, 4]
    assert d.max() == 6 and (d == d.T).all()
    # the wall between the two arms: (1, 1) and (3, 1) are two rows apart but six cells by the path
    assert d[0, 4] == 6


def test_bfs_marks_unreachable_cells():
    d = cell_distances([[1, 1, 1, 1], [1, 0, 1, 0], [1, 1, 1, 1]])
    assert d.tolist() == [[0, -1], [-1, 0]]


# ------------------------------------------------------------------ the world (needs the simulators)
@pytest.fixture(scope="module")
def umaze_pixels():
    pytest.importorskip("gymnasium_robotics")
    from hjepa.planning.worlds import PointMazeWorld

    w = PointMazeWorld("PointMaze_UMaze-v3", "pixels", 32, action_repeat=10)
    yield w
    w.close()


@pytest.fixture(scope="module")
def umaze_state():
    pytest.importorskip("gymnasium_robotics")
    from hjepa.planning.worlds import PointMazeWorld

    w = PointMazeWorld("PointMaze_UMaze-v3", "state", action_repeat=10)
    yield w
    w.close()


def test_umaze_world_geometry_and_time_limit(umaze_state):
    b = umaze_state.batch
    assert umaze_state.max_distance() == 6
    # cell (1, 1) is the top-left free cell: centre (-1.5, 1.0) in the 5x5 UMaze of 1 m cells
    np.testing.assert_allclose(b.cell_centres(np.array([[1, 1], [3, 3]])), [[-1.0, 1.0], [1.0, -1.0]])
    assert b.noise == pytest.approx(0.25)
    assert umaze_state.default_max_steps == 300 // 10  # the env's own limit, in repeated actions


def test_ball_at_the_goal_succeeds_and_far_away_does_not(umaze_state):
    goals = np.array([[1.0, -1.0], [1.0, -1.0]])
    starts = np.array([[1.2, -0.9], [-1.0, 1.0]])  # 0.22 m from the goal; the other arm of the U
    obs, pos = umaze_state.reset(starts, goals)
    assert umaze_state.success().tolist() == [True, False]
    np.testing.assert_allclose(obs, [[1.2, -0.9, 0, 0], [-1.0, 1.0, 0, 0]], atol=1e-6)
    obs, pos = umaze_state.step(np.zeros((2, 2), np.float32), np.array([True, True]))
    assert umaze_state.success().tolist() == [True, False]  # info["success"] of the environment itself


def test_step_moves_the_active_balls_only_and_walls_stop_them(umaze_state):
    starts = np.array([[-1.0, 1.0], [-1.0, 1.0], [-1.0, 1.0]])
    goals = np.array([[1.0, -1.0]] * 3)
    umaze_state.reset(starts, goals)
    act = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, -1.0]], np.float32)
    obs, pos = umaze_state.step(act, np.array([True, False, True]))
    # 10 steps (0.1 s) of full force east from rest: 0.130 m at 2.36 m/s (measured with MuJoCo)
    assert 0.12 < pos[0, 0] - (-1.0) < 0.14 and abs(pos[0, 1] - 1.0) < 1e-6
    assert 2.2 < obs[0, 2] < 2.5 and abs(obs[0, 3]) < 1e-6
    np.testing.assert_array_equal(pos[1], starts[1])  # inactive: untouched
    for _ in range(5):  # the wall below the top arm holds the third ball inside its cell
        obs, pos = umaze_state.step(act, np.array([False, False, True]))
    assert 0.5 < pos[2, 1] < 1.0


def test_goal_frame_is_the_render_of_a_ball_resting_at_the_goal(umaze_pixels):
    goals = np.array([[1.0, -1.0], [-1.1, 1.1]])
    frames = umaze_pixels.goal_frames(goals)
    assert frames.shape == (2, 3, 32, 32) and frames.dtype == np.uint8
    obs, _ = umaze_pixels.reset(goals.copy(), goals)
    np.testing.assert_array_equal(obs, frames)
    assert np.abs(frames[0].astype(int) - frames[1].astype(int)).sum() > 0  # the ball is visible
    bg, extent = umaze_pixels.background(64)
    assert bg.shape == (64, 64, 3) and extent == (-2.5, 2.5, -2.5, 2.5)


def test_goal_state_vector_is_the_goal_at_rest(umaze_state):
    np.testing.assert_array_equal(umaze_state.goal_frames(np.array([[0.5, -1.0]])), [[0.5, -1.0, 0.0, 0.0]])
    np.testing.assert_array_equal(umaze_state.goal_set(np.array([[0.5, -1.0]])), [[[0.5, -1.0, 0.0, 0.0]]])


def test_goal_at_any_velocity_is_the_position_with_a_set_of_velocities():
    pytest.importorskip("gymnasium_robotics")
    from hjepa.planning.worlds import PointMazeWorld

    w = PointMazeWorld("PointMaze_UMaze-v3", "state", action_repeat=10, goal_velocity="any")
    try:
        s = w.goal_set(np.array([[0.5, -1.0], [-1.0, 1.0]]))
    finally:
        w.close()
    assert s.shape == (2, 17, 4)
    np.testing.assert_array_equal(s[:, 0], [[0.5, -1.0, 0, 0], [-1.0, 1.0, 0, 0]])  # the resting goal first
    np.testing.assert_array_equal(s[1, :, :2], np.tile([-1.0, 1.0], (17, 1)))  # every member at the goal position
    np.testing.assert_allclose(sorted(np.linalg.norm(s[0, :, 2:], axis=1).round(6)), [0.0] + [1.5] * 8 + [3.0] * 8)
    with pytest.raises(ValueError, match="state observations"):
        PointMazeWorld("PointMaze_UMaze-v3", "pixels", 32, goal_velocity="any")


def test_maze_tasks_sit_at_their_bfs_distance_and_are_fixed_by_seed(umaze_state):
    b = umaze_state.batch
    t = umaze_state.sample_tasks([1, 3, 6], 6, seed=1)
    cell = {tuple(c): k for k, c in enumerate(b.cells)}
    for s, g, d in zip(t.starts, t.goals, t.distance):
        cs, cg = cell[tuple(b.maze.cell_xy_to_rowcol(s))], cell[tuple(b.maze.cell_xy_to_rowcol(g))]
        assert b.distances[cs, cg] == d
        assert np.linalg.norm(s - g) >= 0.5
    assert np.array_equal(umaze_state.sample_tasks([3], 6, seed=1).goals, t.goals[6:12])
    assert not np.array_equal(umaze_state.sample_tasks([3], 6, seed=2).goals, t.goals[6:12])
    for bad in (0, 7):  # 0: start and goal would share a cell, inside the success radius
        with pytest.raises(ValueError, match="does not occur"):
            umaze_state.sample_tasks([bad], 1, 0)
    assert umaze_state.sample_tasks(None, 1, 0).distance.tolist() == [1, 3, 4, 6]  # default tiers


def test_model_free_episodes_on_umaze(umaze_state):
    """Straight reaches a goal one cell away, and cannot cross the wall of the U (distance 6 is
    two rows below); random is reproducible; the oracle is rooms-only."""
    tasks = umaze_state.sample_tasks([1, 6], 4, seed=0)
    res = run_episodes(umaze_state, build_planner("straight", umaze_state, SimpleNamespace(), 0), tasks, 30)
    by = summarise(res)
    assert by["1"]["success"] == 1.0 and by["6"]["success"] == 0.0
    assert res.paths.shape == (8, 31, 2)
    r1 = run_episodes(umaze_state, build_planner("random", umaze_state, SimpleNamespace(), 3), tasks, 5)
    r2 = run_episodes(umaze_state, build_planner("random", umaze_state, SimpleNamespace(), 3), tasks, 5)
    assert np.array_equal(r1.paths, r2.paths) and not np.allclose(r1.paths[:, 1], r1.paths[:, 0])
    with pytest.raises(PlanningError, match="rooms world only"):
        build_planner("oracle", umaze_state, SimpleNamespace(optimizer="cem", samples=4, iterations=1, elites=2,
                                                             temperature=0.1, init_std=1.0, min_std=0.1, horizon=2,
                                                             replan_every=1, oracle_cost="euclidean"), 0)


def _planner_cfg(**kw):
    base = dict(name="flat", optimizer="cem", samples=8, iterations=2, elites=2, temperature=0.05, init_std=1.0,
                min_std=0.05, horizon=4, top_horizon=2, replan_every=2, cost="sum", goal_weight=1.0, macro="held",
                lower_windows=1, subgoals="predicted", oracle_cost="euclidean")
    base.update(kw)
    return SimpleNamespace(**base)


@pytest.mark.parametrize("name", ["flat", "hierarchical"])
def test_model_planners_run_on_umaze_state_vectors(umaze_state, name):
    """An (untrained) depth-2 model on 4-d state vectors plans in PointMaze: the budget is counted,
    the episode is seeded."""
    torch.manual_seed(0)
    cfg = hjepa.compose(["data=ou", "model.encoder=mlp", "model.depth=2", "model.latent_dim=8", "model.pred_dim=16", "model.stride=2"])
    model = hjepa.build_model(cfg, obs_shape=(4,), action_dim=2).eval()
    tasks = umaze_state.sample_tasks([1], 2, seed=0)
    runs = [run_episodes(umaze_state, build_planner(name, umaze_state, _planner_cfg(name=name), 0, model, 2, 8),
                         tasks, 4) for _ in range(2)]
    assert (runs[0].model_evals > 0).all() and (runs[0].plan_seconds > 0).all()
    np.testing.assert_array_equal(runs[0].paths, runs[1].paths)
    if name == "flat":  # one plan per 2 steps taken (re-plan every 2) x 8 samples x 4 steps x 2 iterations
        plans = np.ceil(runs[0].steps / 2)
        assert runs[0].model_evals.tolist() == (plans * 8 * 4 * 2).tolist()


def _plan_cfg(tmp_path, *overrides):
    from pathlib import Path

    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from hjepa.planning.config import register_plan_configs

    register_plan_configs()
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(Path(hjepa.__file__).parent / "conf_plan"), version_base="1.3"):
        return compose(config_name="plan", overrides=[f"out_dir={tmp_path}", "tracking.enabled=false", *overrides])


def test_hjepa_plan_in_pointmaze_end_to_end(tmp_path):
    pytest.importorskip("gymnasium_robotics")
    from hjepa.planning.cli import plan

    res = plan(_plan_cfg(tmp_path, "env=pointmaze", "env.maze=umaze", "env.image_size=32", "planner=straight",
                         "eval.episodes=3", "eval.distances=[1,6]"))
    assert res["by_distance"]["1"]["success"] == 1.0 and res["by_distance"]["6"]["success"] == 0.0
    assert res["by_distance"]["6"]["mean_steps"] == 30  # the env's 300-step limit / action_repeat 10
    for f in ("plan_results.json", "success_vs_distance.png", "filmstrip.png", "episodes.gif"):
        assert (tmp_path / f).stat().st_size > 0
    assert not (tmp_path / "world_energy.png").exists()
    from hjepa.config import ConfigError

    with pytest.raises(ConfigError, match=r"eval.distances.*choose 1 \.\. 6"):
        plan(_plan_cfg(tmp_path, "env=pointmaze", "env.maze=umaze", "env.obs=state", "planner=random",
                       "eval.distances=[0]"))


def test_pointmaze_config_errors_name_the_key():
    from hjepa.config import ConfigError
    from hjepa.planning.config import validate_plan_config

    for over, key in ((["env=pointmaze", "env.maze=huge"], "env.maze"), (["env=pointmaze", "env.obs=depth"], "env.obs"),
                      (["env=pointmaze", "env.action_repeat=0"], "env.action_repeat"), (["eval.max_steps=0"], "eval.max_steps"),
                      (["planner.graph_neighbours=-1"], "planner.graph_neighbours")):
        with pytest.raises(ConfigError, match=key):
            validate_plan_config(_plan_cfg("/tmp", *over))


@pytest.fixture(scope="module")
def umaze_state_run(tmp_path_factory):
    """A depth-2 model trained a few steps on PointMaze UMaze state vectors (data=gym)."""
    pytest.importorskip("gymnasium_robotics")
    from hjepa.train import Trainer

    root = tmp_path_factory.mktemp("pm")
    cfg = hjepa.compose(["data=gym", "data.env_id=PointMaze_UMaze-v3", "data.obs=state", "data.action_repeat=10",
                         "data.num_train_episodes=4", "data.num_eval_episodes=4", "data.episode_len=16",
                         "data.clip_len=8", "data.batch_size=4", "data.workers=1", f"data.cache_dir={root / 'cache'}",
                         "model.encoder=mlp", "model.depth=2", "model.stride=2", "model.latent_dim=16",
                         "model.pred_dim=32", "eval.num_clips=8", "train.steps=2", "train.eval_every=2",
                         "train.checkpoint_every=2", "train.progress=false", "tracking.enabled=false",
                         "optim.warmup_steps=1"], out_dir=str(root / "run"))
    Trainer(cfg).run()
    return root / "run"


@pytest.mark.parametrize("planner", ["flat", "hierarchical"])
def test_hjepa_plan_takes_the_pointmaze_world_from_the_run(umaze_state_run, tmp_path, planner):
    """run= a data=gym PointMaze model: the world (maze, obs=state, action_repeat) comes from its data
    config — env.* is ignored — and the planner acts end to end with its budget counted."""
    from hjepa.planning.cli import plan

    over = [f"run={umaze_state_run}", f"planner={planner}", "env.grid=[2,2]", "eval.episodes=2", "eval.distances=[1,6]",
            "eval.max_steps=4", "planner.samples=8", "planner.iterations=2", "planner.horizon=4", "threads=1"]
    res = plan(_plan_cfg(tmp_path, *over))
    assert set(res["by_distance"]) == {"1", "6"}
    assert all(r["model_evals"] > 0 and r["episodes"] == 2 for r in res["by_distance"].values())
    assert res["by_distance"]["6"]["mean_steps"] == 4  # a goal six cells away is not reached in 4 steps
    assert (tmp_path / "filmstrip.png").stat().st_size > 0


def test_pointmaze_presets_differ_in_depth_only():
    d2, d1 = hjepa.compose(["experiment=pointmaze"]), hjepa.compose(["experiment=pointmaze_flat"])
    assert d2.data.name == d1.data.name == "gym" and d2.data.env_id == "PointMaze_Medium-v3" and d2.data.obs == "state"
    assert (d2.model.depth, d1.model.depth) == (2, 1)
    assert list(d2.model.geometry_weight) == [10.0, 10.0] and list(d1.model.geometry_weight) == [10.0]
    assert d2.train.steps == d1.train.steps == 3000 and d2.data == d1.data


def test_goal_at_any_velocity_plans_end_to_end(umaze_state_run, tmp_path):
    """eval.goal_velocity=any: every model planner scores against the goal set and runs; on pixels it
    is a clear config error."""
    from hjepa.config import ConfigError
    from hjepa.planning.cli import plan

    for planner in ("flat", "hierarchical", "graph"):
        over = [f"run={umaze_state_run}", f"planner={planner}", "eval.goal_velocity=any", "eval.episodes=2",
                "eval.distances=[1]", "eval.max_steps=3", "planner.samples=8", "planner.iterations=2",
                "planner.horizon=4", "planner.graph_nodes=32", "threads=1"]
        res = plan(_plan_cfg(tmp_path / planner, *over))
        assert res["by_distance"]["1"]["episodes"] == 2 and res["by_distance"]["1"]["model_evals"] > 0
    with pytest.raises(ConfigError, match="eval.goal_velocity.*state observations"):
        plan(_plan_cfg(tmp_path, "env=pointmaze", "env.maze=umaze", "env.obs=pixels", "planner=random",
                       "eval.goal_velocity=any"))


def test_velocity_trap_script_energies_to_the_goal_set_are_never_higher(umaze_state_run, capsys):
    """experiments/pointmaze_velocity_trap.py: 16 held actions, true and predicted energies; the goal
    set contains the resting goal, so every energy to its nearest member is <= the energy to rest."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "experiments" / "pointmaze_velocity_trap.py"
    spec = importlib.util.spec_from_file_location("velocity_trap", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    tables = {}
    for gv in ("rest", "any"):
        mod.main([str(umaze_state_run), "--start", "1.0", "-1.0", "--goal", "-1.1", "1.1", "--horizon", "3",
                  "--goal-velocity", gv])
        rows = [ln.split("|") for ln in capsys.readouterr().out.splitlines()[2:]]
        assert len(rows) == 16
        tables[gv] = {r[0].strip(): [float(x) for x in (r[3] + r[4]).split()] for r in rows}  # action -> 4 energies
    assert tables["rest"].keys() == tables["any"].keys()
    for action, rest in tables["rest"].items():
        assert all(a <= r + 1e-6 for a, r in zip(tables["any"][action], rest)), action
    assert any(a < r - 1e-6 for act in tables["rest"] for a, r in zip(tables["any"][act], tables["rest"][act]))
