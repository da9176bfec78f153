"""Typed configuration of ``hjepa-plan`` (registered in Hydra's ConfigStore, validated at start-up)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import List, Optional

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING

from ..config import ConfigError, TrackingConfig, check_at_least, check_choices, check_no_missing_values

__all__ = ["PlannerConfig", "PlanEvalConfig", "PlanWorldConfig", "PlanEnvConfig", "PointMazeEnvConfig", "PlanConfig",
           "register_plan_configs", "validate_plan_config"]


@dataclass
class PlannerConfig:
    name: str = "flat"  # flat | hierarchical | oracle | random | straight
    optimizer: str = "cem"  # cem | mppi
    samples: int = 128  # candidates per episode and iteration
    iterations: int = 4
    elites: int = 16  # CEM
    temperature: float = 0.05  # MPPI
    init_std: float = 1.0
    min_std: float = 0.05
    horizon: int = 12  # flat / oracle planning horizon (primitive steps)
    top_horizon: int = 4  # hierarchical: steps of the top level's own clock
    replan_every: int = 2  # execute this many actions of each plan
    cost: str = "sum"  # sum (mean over the predicted steps: get there early) | terminal (last step only)
    goal_weight: float = 1.0  # hierarchical: weight of a lower level's own energy to the goal
    macro: str = "held"  # hierarchical: search macro-actions as held primitive chunks | in the learned latent space
    lower_windows: int = 1  # hierarchical: a lower level plans this many steps of the clock above
    subgoals: str = "predicted"  # hierarchical: the top level's first predicted latent | the goal's own top latent
    #                              (ablation: no top-level search; lower rollouts are scored by the top energy to the goal)
    oracle_cost: str = "euclidean"  # oracle: euclidean | doorways
    graph_level: int = -1  # graph: whose energy links remembered states (-1 = the top level, 0 = flat distances)
    graph_nodes: int = 3000  # graph: frames drawn from the model's training data (seed: eval.planner_seed, else eval.seed)
    graph_quantile: float = 0.01  # graph: edges join node pairs whose energy is below this quantile of all pairs
    graph_lookahead: int = 20  # graph: the waypoint handed to level 0 is this many hops along the shortest path
    graph_neighbours: int = 0  # graph: also join each node to this many lowest-energy nodes (0: the quantile alone)
    graph_cost: str = "graph"  # graph: level-0 rollouts scored by the graph level's energy of each predicted state
    #                            held still (graph) | by the level-0 energy to the waypoint's level-0 latent (level0)


@dataclass
class PlanEvalConfig:
    episodes: int = 50  # per distance (room-graph, or maze cells in PointMaze)
    seed: int = 0  # start/goal pairs, and the planner's sampling unless planner_seed is set
    goal_velocity: str = "rest"  # rest: the goal is the agent resting there | any (PointMaze from state): its
    #                              position at any velocity, scored by the nearest of a set of goal states
    planner_seed: Optional[int] = None  # the planner's own draws (optimiser samples, random actions, the graph's
    #                                     memory) apart from the tasks: the same episodes under other draws
    distances: Optional[List[int]] = None  # default: rooms 0 .. the map's largest; PointMaze 4 tiers 1 .. largest
    max_steps: Optional[int] = None  # default: rooms 150; PointMaze the env's time limit / action_repeat
    success_radius: float = 0.1  # room widths (rooms; PointMaze uses its own 0.45 m)
    batch_episodes: int = 0  # episodes planned together (0 = all)
    filmstrip_episodes: int = 4  # filmstrip.png: one episode per distance; failures.png: failed episodes, farthest first
    energy_map: bool = True  # rooms, with a model: world-state energy maps + per-level Spearman with geodesic distance
    goal: Optional[List[float]] = None  # plan one episode to this world position [x, y] instead
    start: Optional[List[float]] = None  # ...from here (default: the centre of room 0)


@dataclass
class PlanWorldConfig:
    """The planning world (``env=rooms|pointmaze``); with ``run=`` it is taken from the run's data config."""

    name: str = "rooms"


@dataclass
class PlanEnvConfig(PlanWorldConfig):
    """``env=rooms`` (default): hjepa's rooms maze."""

    name: str = "rooms"
    grid: List[int] = field(default_factory=lambda: [3, 3])
    layout: str = "maze"
    layout_seed: int = 0
    door_width: float = 0.4
    max_speed: float = 0.12
    image_size: int = 32


@dataclass
class PointMazeEnvConfig(PlanWorldConfig):
    """``env=pointmaze``: gymnasium-robotics' PointMaze (needs ``pip install -e '.[envs]'``)."""

    name: str = "pointmaze"
    maze: str = "medium"  # umaze | medium | large
    obs: str = "pixels"  # pixels | state (what a model was trained on)
    image_size: int = 64
    action_repeat: int = 10  # environment steps per planned action


@dataclass
class PlanConfig:
    run: Optional[str] = None  # MLflow run id | checkpoint | run dir (needed by flat/hierarchical)
    planner: PlannerConfig = field(default_factory=PlannerConfig)
    eval: PlanEvalConfig = field(default_factory=PlanEvalConfig)
    env: PlanWorldConfig = MISSING  # env=rooms (default) | pointmaze
    tracking: TrackingConfig = field(default_factory=lambda: TrackingConfig(experiment="hjepa-plan"))
    device: str = "cpu"
    threads: int = 0
    out_dir: str = "."


def register_plan_configs() -> None:
    cs = ConfigStore.instance()
    cs.store(name="hjepa_plan_schema", node=PlanConfig)
    cs.store(group="env", name="rooms", node=PlanEnvConfig)
    cs.store(group="env", name="pointmaze", node=PointMazeEnvConfig)
    for name in ("flat", "hierarchical", "graph", "oracle", "random", "straight"):
        cs.store(group="planner", name=name, node=PlannerConfig(name=name))
    cs.store(group="planner", name="oracle_doorways", node=PlannerConfig(name="oracle", oracle_cost="doorways"))


def validate_plan_config(cfg) -> None:
    from .optimizers import OPTIMIZERS
    from .planners import PLANNERS

    check_no_missing_values(cfg)
    p, e = cfg.planner, cfg.eval
    check_choices((("planner.name", p.name, tuple(PLANNERS)), ("planner.optimizer", p.optimizer, tuple(OPTIMIZERS)),
                              ("planner.cost", p.cost, ("terminal", "sum")), ("planner.macro", p.macro, ("held", "latent")),
                              ("planner.subgoals", p.subgoals, ("predicted", "goal")),
                              ("planner.oracle_cost", p.oracle_cost, ("euclidean", "doorways")),
                   ("planner.graph_cost", p.graph_cost, ("graph", "level0")),
                   ("eval.goal_velocity", e.goal_velocity, ("rest", "any"))))
    check_at_least((("planner.graph_nodes", p.graph_nodes, 2), ("planner.graph_lookahead", p.graph_lookahead, 1),
                    ("planner.graph_neighbours", p.graph_neighbours, 0),
                    ("planner.samples", p.samples, 2), ("planner.iterations", p.iterations, 1),
                         ("planner.elites", p.elites, 1), ("planner.horizon", p.horizon, 1),
                         ("planner.top_horizon", p.top_horizon, 1), ("planner.replan_every", p.replan_every, 1),
                         ("eval.episodes", e.episodes, 1)))
    if e.max_steps is not None:
        check_at_least((("eval.max_steps", e.max_steps, 1),))
    check_choices((("env", cfg.env.name, ("rooms", "pointmaze")),))
    if cfg.env.name == "pointmaze":
        from ..envs.pointmaze import MAZES

        check_choices((("env.maze", cfg.env.maze, tuple(MAZES)), ("env.obs", cfg.env.obs, ("pixels", "state"))))
        check_at_least((("env.action_repeat", cfg.env.action_repeat, 1), ("env.image_size", cfg.env.image_size, 8)))
    if p.replan_every > p.horizon:
        raise ConfigError("planner.replan_every", p.replan_every, f"must be <= planner.horizon={p.horizon}")
    if not 0 < e.success_radius < 1:
        raise ConfigError("eval.success_radius", e.success_radius, "must lie in (0, 1) room widths")
    if not 0 < p.graph_quantile < 1:
        raise ConfigError("planner.graph_quantile", p.graph_quantile, "must lie in (0, 1)")
    if p.temperature <= 0:
        raise ConfigError("planner.temperature", p.temperature, "must be > 0")
