"""``hjepa-plan``: evaluate a planner in a planning world (rooms, or PointMaze), by distance to the goal.

    hjepa-plan run=<MLflow run id | checkpoint | run dir> planner=hierarchical
    hjepa-plan planner=oracle planner.oracle_cost=doorways          # no model needed
    hjepa-plan env=pointmaze env.maze=medium planner=straight       # PointMaze (maze-cell distances)
    hjepa-plan -m run=<id> planner=flat,hierarchical,oracle,random,straight

Logs an MLflow run (experiment ``hjepa-plan``) tagged with the model's run id, writes
``plan_results.json``, ``success_vs_distance.png`` (every planner evaluated in the same sweep
directory so far, one line each), ``filmstrip.png`` and ``episodes.gif`` to the output directory,
and prints as its last line one JSON object ``{"planner": ..., "by_distance": {...}}``.
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf

from ..config import ConfigError
from ..data.rooms import RoomsEnv
from ..envs.gym_env import is_pointmaze
from .config import register_plan_configs, validate_plan_config
from .episodes import run_episodes, summarise
from .planners import PlanningError, build_planner
from .tasks import Tasks
from .worlds import PointMazeWorld, RoomsWorld, World

__all__ = ["plan", "main", "model_run_id", "env_for", "world_for"]

log = logging.getLogger("hjepa.plan")


def env_for(cfg: DictConfig, run=None) -> RoomsEnv:
    """The rooms env: the run's rooms data config when planning with a model, else ``env.*``."""
    if run is not None:
        d = run.cfg.data
        return RoomsEnv(tuple(d.grid), d.door_width, d.max_speed, d.image_size,
                        layout=d.get("layout", "open"), layout_seed=d.get("layout_seed", 0))
    e = cfg.env
    return RoomsEnv(tuple(e.grid), e.door_width, e.max_speed, e.image_size, layout=e.layout, layout_seed=e.layout_seed)


def world_for(cfg: DictConfig, run=None) -> World:
    """The planning world: from the run's data config when planning with a model (``data=rooms``,
    or ``data=gym`` with a ``PointMaze_*`` id), else from ``env=rooms|pointmaze``."""
    if run is not None:
        d = run.cfg.data
        if d.name == "rooms":
            return _rooms(cfg, env_for(cfg, run))
        if d.name == "gym" and is_pointmaze(str(d.get("env_id", ""))):
            return _pointmaze(cfg, str(d.env_id), str(d.get("obs", "pixels")), int(d.image_size),
                              int(d.get("action_repeat", 1)))
        raise PlanningError(f"hjepa-plan plans in the rooms world or PointMaze; run {cfg.run} was trained on "
                            f"data={d.name}{' ' + str(d.get('env_id')) if d.get('env_id') else ''}: train on "
                            "data=rooms or data=gym data.env_id=PointMaze_Medium-v3 (or UMaze / Large)")
    if cfg.env.name == "pointmaze":
        from ..envs.pointmaze import maze_env_id

        e = cfg.env
        return _pointmaze(cfg, maze_env_id(e.maze), e.obs, e.image_size, e.action_repeat)
    return _rooms(cfg, env_for(cfg))


def _check_goal_velocity(cfg: DictConfig, obs: str) -> None:
    """``eval.goal_velocity=any`` varies the goal's velocity, which only a state vector shows."""
    if cfg.eval.goal_velocity == "any" and obs != "state":
        raise ConfigError("eval.goal_velocity", "any", f"needs state observations (PointMaze with data.obs=state); "
                          f"this world's are {obs}, and a single frame shows no velocity: use rest")


def _rooms(cfg: DictConfig, env: RoomsEnv) -> RoomsWorld:
    _check_goal_velocity(cfg, "rooms frames")
    return RoomsWorld(env, cfg.eval.success_radius)


def _pointmaze(cfg: DictConfig, env_id: str, obs: str, image_size: int, action_repeat: int) -> PointMazeWorld:
    _check_goal_velocity(cfg, obs)
    return PointMazeWorld(env_id, obs, image_size, action_repeat, cfg.eval.goal_velocity)


def model_run_id(ref: str | None, ckpt: Path | None) -> str:
    """The MLflow run id of the model: the reference itself, or the ``run.json`` beside its checkpoints."""
    import re

    if ref and re.match(r"^[0-9a-f]{32}$", str(ref)):
        return str(ref)
    if ckpt is not None:
        for d in (ckpt.parent.parent, ckpt.parent):
            info = d / "run.json"
            if info.is_file():
                return json.loads(info.read_text()).get("mlflow_run_id") or ""
    return ""


def _tasks(cfg: DictConfig, world: World) -> Tasks:
    e = cfg.eval
    if e.goal is not None and isinstance(world, PointMazeWorld):
        return _maze_task(cfg, world)
    if e.goal is not None:
        env = world.env
        goal = np.asarray(e.goal, np.float64)
        start = np.asarray(e.start if e.start is not None else [0.5, 0.5], np.float64)
        for key, p in (("eval.goal", goal), ("eval.start", start)):
            if p.shape != (2,) or not (0 < p[0] < env.cols and 0 < p[1] < env.rows):
                raise ConfigError(key, list(p), f"must be a world position [x, y] inside the map "
                                                f"(0, {env.cols}) x (0, {env.rows}) (room widths)")
        d = env.room_distances[env.room_id(start), env.room_id(goal)]
        return Tasks(start[None], goal[None], np.array([d]))
    try:
        return world.sample_tasks(list(e.distances) if e.distances is not None else None, e.episodes, e.seed)
    except ValueError as err:  # a tier the map does not have: a user error, named by its key
        raise ConfigError("eval.distances", list(e.distances or []), str(err).removeprefix("eval.distances: ")) from None


def _maze_task(cfg: DictConfig, world: PointMazeWorld) -> Tasks:
    """One PointMaze episode from ``eval.start`` (default: the first free cell's centre) to ``eval.goal``."""
    b, e = world.batch, cfg.eval
    goal = np.asarray(e.goal, np.float64)
    start = np.asarray(e.start, np.float64) if e.start is not None else b.cell_centres(b.cells[:1])[0]
    idx = []
    for key, p in (("eval.goal", goal), ("eval.start", start)):
        rc = b.maze.cell_xy_to_rowcol(p) if p.shape == (2,) else None
        hit = np.flatnonzero((b.cells == rc).all(1)) if rc is not None else []
        if len(hit) == 0:
            lo, hi = b.extent()[0], b.extent()[1]
            raise ConfigError(key, [float(x) for x in p.ravel()], f"must be a position [x, y] (metres, within "
                                                                   f"({lo}, {hi})) inside a free cell of the maze")
        idx.append(int(hit[0]))
    return Tasks(start[None], goal[None], np.array([b.distances[idx[1], idx[0]]]))


def _energy_maps(model, env: RoomsEnv, action_dim: int, title: str):
    """Per-level Spearman of the energy to fixed goals with the geodesic distance, and the heat maps."""
    import matplotlib

    matplotlib.use("Agg")
    from analysis.world_energy import geodesic_spearman, plot_world_energy

    rhos, maps = geodesic_spearman(model, env, action_dim)
    return rhos, plot_world_energy(maps[:3], env, title=title)


def _label(p) -> str:
    if p.name == "oracle":
        return f"oracle ({p.oracle_cost})"
    if p.name in ("random", "straight"):
        return p.name
    return f"{p.name} ({p.optimizer})"


def plan(cfg: DictConfig) -> dict:
    """Run the evaluation ``cfg`` describes; returns the result dict (also written and logged)."""
    from tqdm.auto import tqdm

    from ..api import load_run
    from ..tracking import Tracker, flatten
    from . import report

    validate_plan_config(cfg)
    if cfg.threads > 0:
        torch.set_num_threads(cfg.threads)
    out = Path(cfg.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    run = load_run(cfg.run, device=cfg.device) if cfg.run else None
    world = world_for(cfg, run)
    tasks = _tasks(cfg, world)
    max_steps = cfg.eval.max_steps if cfg.eval.max_steps is not None else world.default_max_steps
    model = run.model if run is not None else None
    action_dim = int(run.model.levels[0].action_dim) if run is not None else 2
    clip_len = int(run.cfg.data.clip_len) if run is not None else 0
    planner_seed = cfg.eval.seed if cfg.eval.planner_seed is None else cfg.eval.planner_seed
    planner = build_planner(cfg.planner.name, world, cfg.planner, planner_seed, model, action_dim, clip_len)
    if hasattr(planner, "attach_memory"):  # planner=graph: remembered states from the model's training data
        from .graph import memory_frames

        planner.attach_memory(*memory_frames(run.cfg.data, cfg.planner.graph_nodes, planner_seed))
    with tqdm(total=None, desc=f"hjepa-plan {cfg.planner.name}", unit="step", disable=not sys.stderr.isatty()) as bar:
        res = run_episodes(world, planner, tasks, max_steps, cfg.eval.success_radius,
                           cfg.eval.batch_episodes, progress=bar)
    by_d = summarise(res)
    label = _label(cfg.planner)
    mid = model_run_id(cfg.run, run.path if run is not None else None)
    result = {"planner": cfg.planner.name, "label": label, "model_run_id": mid, "by_distance": by_d,
              "distance_label": world.distance_label, "config": OmegaConf.to_container(cfg, resolve=True)}
    if hasattr(planner, "graph_encoded_frames"):  # planner=graph: the one-off cost of encoding its memory
        result["graph_encoded_frames"] = planner.graph_encoded_frames
        result["graph_no_route_fraction"] = planner.no_route / max(planner.replans, 1)  # re-plans aimed at the goal
    (out / report.RESULTS_FILE).write_text(json.dumps(result, indent=1))
    # figures: this planner plus every other planner evaluated beside it (a multirun's sibling jobs)
    siblings = sorted(out.parent.glob(f"*/{report.RESULTS_FILE}")) if (out.parent / "multirun.yaml").exists() else []
    curves = report.load_results([*siblings, out / report.RESULTS_FILE])
    figs = [report.plot_success(curves, out / "success_vs_distance.png", title=f"model {mid or cfg.run or '-'}",
                                xlabel=world.distance_label),
            report.plot_filmstrip(world, res, out / "filmstrip.png", cfg.eval.filmstrip_episodes, label),
            report.plot_filmstrip(world, res, out / "failures.png", cfg.eval.filmstrip_episodes,
                                  f"{label}: failed episodes", failed=True),
            report.write_gif(world, res, out / "episodes.gif", cfg.eval.filmstrip_episodes, label=label)]
    if run is not None and cfg.eval.energy_map and not isinstance(world, RoomsWorld):
        log.warning("world-state energy maps are drawn for the rooms world only: skipped in %s", world.name)
    elif run is not None and cfg.eval.energy_map:
        rhos, fig = _energy_maps(run.model, world.env, action_dim, f"world-state energy to fixed goals — model {mid or cfg.run}")
        fig.savefig(out / "world_energy.png", dpi=90)
        import matplotlib.pyplot as plt

        plt.close(fig)
        figs.append(out / "world_energy.png")
        result["geodesic_spearman"] = rhos
    tracker = Tracker(cfg.tracking.enabled, cfg.tracking.uri, cfg.tracking.experiment)
    tracker.start(run_name=cfg.tracking.run_name or label,
                  tags={"hjepa.model_run_id": mid, "hjepa.planner": cfg.planner.name, "hjepa.kind": "planning"})
    tracker.log_params(flatten(OmegaConf.to_container(cfg, resolve=True)))
    for d, row in by_d.items():
        tracker.log_metrics({f"plan/d{d}/{k}": float(v) for k, v in row.items()}, step=0)
    tracker.log_metrics({"plan/success": float(res.success.mean()),
                         **{f"plan/level{k}/geodesic_spearman": r for k, r in enumerate(result.get("geodesic_spearman", []))}},
                        step=0)
    for f in figs:
        if f is not None:  # failures.png: only when an episode failed
            tracker.log_artifact(f)
    tracker.log_artifact(out / report.RESULTS_FILE)
    tracker.end()
    world.close()
    result["mlflow_run_id"] = tracker.run_id
    return result


def _print_table(result: dict) -> None:
    print(f"\n{result['label']}  (model run {result['model_run_id'] or '-'})")
    if "geodesic_spearman" in result:
        print("energy-to-goal rank correlation with geodesic distance, per level: "
              + ", ".join(f"L{k} {r:+.2f}" for k, r in enumerate(result["geodesic_spearman"])))
    print(f"{'dist':>4} {'success':>8} {'episodes':>8} {'steps':>6} {'evals/ep':>10} {'plan s/ep':>9}")
    for d, r in sorted(result["by_distance"].items(), key=lambda kv: int(kv[0])):
        print(f"{d:>4} {100 * r['success']:>7.0f}% {r['episodes']:>8} {r['mean_steps']:>6.1f} "
              f"{r['model_evals']:>10.0f} {r['plan_seconds']:>9.2f}")


def _hydra_main(cfg: DictConfig) -> None:
    from ..checkpoint import CheckpointError
    from ..envs.gym_env import EnvsMissingError

    logging.basicConfig(level=logging.WARNING, format="[%(name)s] %(message)s")
    try:
        result = plan(cfg)
    except (ConfigError, CheckpointError, PlanningError, EnvsMissingError) as e:
        print(f"hjepa-plan: error: {e}", file=sys.stderr, flush=True)
        sys.exit(2)
    _print_table(result)
    print(json.dumps({"planner": result["planner"], "by_distance": result["by_distance"]}), flush=True)


def main() -> None:
    """Console entry point ``hjepa-plan``."""
    import hydra

    register_plan_configs()
    conf_dir = str(Path(__file__).resolve().parent.parent / "conf_plan")
    hydra.main(config_path=conf_dir, config_name="plan", version_base="1.3")(_hydra_main)()


if __name__ == "__main__":
    main()
