"""Typed configuration: dataclasses registered with Hydra's ConfigStore, validated at start-up.

Groups: ``data`` (rooms, multiscale, ou, npz), ``model``, ``regularizer`` (sigreg, ema, vicreg, none),
``optim``, ``experiment`` (YAML files in ``hjepa/conf/experiment``). The primary config is
``hjepa/conf/config.yaml``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, List, Optional

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, DictConfig, OmegaConf

from .paths import cache_root

__all__ = [
    "DataConfig", "RoomsDataConfig", "MultiscaleDataConfig", "NpzDataConfig", "OuDataConfig",
    "ModelConfig", "RegularizerConfig", "OptimConfig", "TrainConfig", "EvalConfig",
    "TrackingConfig", "Config", "ConfigError", "register_configs", "validate_config", "check_no_missing_values",
    "check_choices", "check_at_least",
    "level_strides", "min_clip_len", "level_regularizers", "level_latent_dims", "level_slowness_weights", "level_reg_weights", "ENCODERS",
    "TOPDOWN_MODES", "PRED_LOSSES", "SUMMARIZERS", "TARGET_MODES", "TARGET_NORMS", "ObjectiveConfig",
    "MaskedObjectiveConfig", "PixelObjectiveConfig", "ContrastiveObjectiveConfig",
]

ENCODERS = ("conv", "vit", "mlp", "linear", "tubelet")
TOPDOWN_MODES = ("last", "pred", "none")
TOPDOWN_CONDITIONING = ("add", "film", "gain")
PRED_LOSSES = ("l2", "l1", "smooth_l1")
SUMMARIZERS = ("latents", "last", "frames")
TARGET_MODES = ("ema", "stopgrad", "online")
TARGET_NORMS = ("none", "layer", "batch")


class ConfigError(ValueError):
    """An invalid configuration value: names the key, the value and what is allowed."""

    def __init__(self, key: str, value: Any, allowed: str):
        super().__init__(f"invalid config: {key}={value!r} — {allowed}")
        self.key, self.value, self.allowed = key, value, allowed


# --------------------------------------------------------------------------- data
@dataclass
class DataConfig:
    name: str = MISSING
    clip_len: int = 32  # frames per training clip (>= 2·Π strides; 32 allows depth 3 at stride 4)
    episode_len: int = 64  # frames per generated episode
    num_train_episodes: int = 512
    num_eval_episodes: int = 64
    batch_size: int = 16  # clips per step (global batch under DDP)
    seed: int = 0  # generation seed (independent of the training seed)
    cache_dir: str = "${hjepa.cache_dir:}"  # $HJEPA_CACHE, else $XDG_CACHE_HOME/hjepa, else ~/.cache/hjepa
    image_size: int = 32


@dataclass
class RoomsDataConfig(DataConfig):
    name: str = "rooms"
    grid: List[int] = field(default_factory=lambda: [2, 2])  # rows, cols
    door_width: float = 0.4
    max_speed: float = 0.12
    action_noise: float = 0.5
    layout: str = "open"  # open: a doorway in every wall | maze: doorways only on a spanning tree of the rooms
    layout_seed: int = 0  # which spanning tree (maze layout)


@dataclass
class MultiscaleDataConfig(DataConfig):
    name: str = "multiscale"
    episode_len: int = 128
    num_objects: int = 2
    regime_period: int = 50  # mean steps between slow-regime switches
    speed: float = 0.08
    gravity: float = 0.12  # acceleration per step along the regime's gravity direction, as a fraction of speed


@dataclass
class OuDataConfig(DataConfig):
    """Vectors mixing OU components of time constants ``taus`` (``hjepa/data/ou.py``)."""

    name: str = "ou"
    episode_len: int = 128
    taus: List[float] = field(default_factory=lambda: [1.0, 4.0, 16.0, 64.0, 256.0])
    obs_dim: int = 32
    obs_noise: float = 0.1  # std of the white observation noise (each obs dim has variance ≈ 1)
    mix_seed: int = 0  # seed of the fixed mixing map, shared by the train and eval splits
    pushed: List[int] = field(default_factory=list)  # components an action channel pushes (none: zero actions)
    push: float = 0.5  # a unit action's push on its component per step


@dataclass
class GymDataConfig(DataConfig):
    """Episodes of any registered gymnasium environment (``hjepa/envs/gym_data.py``; ``.[envs]`` extra)."""

    name: str = "gym"
    env_id: str = "Pendulum-v1"  # any registered id: Pendulum-v1, CartPole-v1, PointMaze_Medium-v3, ...
    obs: str = "pixels"  # pixels: render() resized to image_size | state: the observation vector
    policy: str = "smooth"  # smooth: persistent drifting actions | uniform: i.i.d. uniform actions
    persistence: float = 0.9  # smooth: AR(1) coefficient (continuous) / repeat probability (discrete)
    action_repeat: int = 1  # simulator steps per recorded step (the same action)
    workers: int = 0  # generating processes (0: one per core, at most 8); not part of the cache key


@dataclass
class NpzDataConfig(DataConfig):
    """User data: an ``.npz`` with ``obs``, ``actions`` and optional ``state`` arrays."""

    name: str = "npz"
    path: str = MISSING
    eval_fraction: float = 0.1


# --------------------------------------------------------------------------- model
@dataclass
class ModelConfig:
    depth: int = 2  # number of levels; 1 = a flat action-conditioned JEPA
    stride: int = 4  # default clock ratio between consecutive levels
    strides: Optional[List[int]] = None  # one per level above 0; overrides `stride`
    latent_dim: int = 64  # width of every level's latent (D_k)
    latent_dims: Optional[List[int]] = None  # width per level from level 0 (>= depth values; extras ignored, so one list serves a depth sweep); overrides latent_dim
    encoder: str = "conv"  # level-0 frame encoder: conv | vit | mlp (vector observations) | tubelet (space-time ViT)
    encoder_width: int = 32  # conv channels / ViT width
    encoder_norm: str = "group"  # conv encoder normalisation: group | none
    encoder_out_norm: Optional[str] = None  # none | batch (standardise latents over the batch); default: batch for EMA levels
    patch_size: int = 8  # ViT patch size (tubelet: its spatial size)
    tubelet_frames: int = 2  # tubelet encoder: frames per tubelet (objective=masked and model.encoder=tubelet)
    vit_layers: int = 2
    pred_dim: int = 128  # temporal predictor width
    pred_layers: int = 2
    pred_heads: int = 4
    pred_zero_init: Optional[List[bool]] = None  # per level: its predictor's read-out starts at zero (ẑ = 0), so at step 0
    #   its prediction loss sends no gradient into the encoders below it; default: PyTorch's init at every level
    action_dim_k: int = 16  # macro-action width at levels >= 1
    macro_action_norm: str = "none"  # none | layer: LayerNorm over each window of lower actions (hjepa <= 0.1; it
    #                                   erases the direction of a held 2-D action, so it is off by default)
    summarizer: str = "latents"  # levels >= 1 summarise a window of lower latents (latents), the window's
    # last lower latent (last: the level's clock tick), or re-encode raw frames (frames)
    summarizer_hidden: int = 256  # hidden width of the latents/last summariser MLP; 0: one linear map
    topdown: str = "last"  # last | pred | none: what the level above passes down
    topdown_detach: bool = True  # no gradient from level k-1's loss into level k through context
    topdown_conditioning: str = "add"  # add | film | gain: how the context enters the lower predictor — added to its
    #   input tokens, added and scaling them (FiLM: a slow latent modulates the lower dynamics), or only scaling them
    topdown_rank: Optional[int] = None  # the context enters the lower predictor through a rank-r linear bottleneck
    #   (r numbers per step, each a linear read-out of the upper latent); default: a full-rank map
    detach_bottom_up: bool = False  # level k's loss does not train level k-1's encoder
    pred_loss: str = "l2"  # l2 | l1 | smooth_l1
    target_norm: str = "none"  # loss-target normalisation: none | layer (I-JEPA) | batch
    loss_weights: Optional[List[float]] = None  # w_k, default all 1
    rollout_horizon: Optional[List[int]] = None  # H_k autoregressive rollout steps, default all 0
    idm_weight: Optional[List[float]] = None  # per level: linear inverse-dynamics term (the raw actions of each transition
    #                                         from the latents around it; hjepa/models/inverse_dynamics.py), default all 0
    slowness_weight: Optional[List[float]] = None  # per level from level 0: slow-feature term mean (z[n+1] − z[n])² of
    #                 the level's own latents (docs/timescales.md); default all 0; extras ignored (one list serves a depth sweep)
    pred_history: Optional[List[int]] = None  # per level: steps of its own past the predictor sees (1 = Markov: the
    #                                          latent must carry what the next one depends on); default all 0 = the whole clip
    attention_backend: str = "auto"  # auto | sdpa | xformers
    init_from: Optional[str] = None  # checkpoint path or MLflow run id to initialise weights
    freeze_level0: bool = False  # level 0's encoder gets no gradient (e.g. after init_from a masked run)
    data_init_levels: int = 0  # before step 0 of a fresh run, rescale the encoder output of levels 0 … n−1 so their latents
    #   start at mean 0, std data_init_std per dimension on training clips (hjepa/models/data_init.py); 0: off;
    #   not with init_from
    data_init_std: float = 1.0  # the per-dimension std those latents start at
    # temporal-distance (HILP) geometry of the latents, hjepa/models/geometry.py; weight 0 = off
    geometry_weight: Optional[List[float]] = None  # per level, default all 0
    geometry_discount: float = 0.95  # γ per step of each level's own clock
    geometry_expectile: float = 0.9  # τ of the expectile regression
    geometry_self_goal: float = 0.2  # fraction of goals equal to the state itself
    geometry_random_goal: float = 0.3  # fraction of goals from other clips/steps of the batch (rest: same clip's future)


# --------------------------------------------------------------------------- regulariser
@dataclass
class RegularizerConfig:
    name: str = "sigreg"  # sigreg | ema | vicreg | none
    weight: float = 0.1  # λ; sigreg uses (1-λ)·pred + λ·SIGReg, others pred + λ·reg
    per_level: Optional[List[str]] = None  # a name per level, overrides `name` level by level
    per_level_weight: Optional[List[float]] = None  # λ_k per level from level 0 (>= depth values; extras ignored); overrides `weight`
    target: Optional[str] = None  # ema | stopgrad | online (gradient through the target, LeJEPA); default: ema for `ema`, else stopgrad
    ema_momentum: float = 0.996  # start value, ramped to ema_momentum_end
    ema_momentum_end: float = 1.0
    num_directions: int = 256
    num_knots: int = 17
    t_max: float = 3.0
    std_target: float = 1.0
    cov_weight: float = 0.04
    seed: int = "${seed}"  # type: ignore[assignment]


# --------------------------------------------------------------------------- objective
@dataclass
class ObjectiveConfig:
    """What the model is trained to do; ``next_step`` (the default) is latent next-step prediction."""

    name: str = "next_step"  # next_step | masked | pixel | contrastive


@dataclass
class MaskedObjectiveConfig(ObjectiveConfig):
    """V-JEPA masked prediction of space-time tubelet tokens (level 0 only, see docs/objectives.md)."""

    name: str = "masked"
    mask: str = "multiblock"  # multiblock | random (random tubes)
    mask_ratio: float = 0.9  # fraction of the spatial tokens masked (the same in every tubelet of a clip)
    block_scales: List[float] = field(default_factory=lambda: [0.15, 0.7])  # short- and long-range block areas
    aspect_ratio: List[float] = field(default_factory=lambda: [0.75, 1.5])
    pred_width: int = 32  # the narrow predictor
    pred_layers: int = 1
    loss: str = "l1"  # l1 | l2 | smooth_l1
    target_layer_norm: Optional[bool] = None  # layer-norm the target tokens; default: true for EMA targets


@dataclass
class PixelObjectiveConfig(ObjectiveConfig):
    """The generative baseline: the next-step predictor's output is decoded to the next frame's pixels."""

    name: str = "pixel"
    decoder_width: int = 32
    use_regularizer: bool = False  # add the configured regulariser to the pixel loss


@dataclass
class ContrastiveObjectiveConfig(ObjectiveConfig):
    """CPC-style InfoNCE between predicted and actual next latents, in-batch negatives."""

    name: str = "contrastive"
    temperature: float = 0.1
    use_regularizer: bool = False


@dataclass
class OptimConfig:
    lr: float = 1e-3
    weight_decay: float = 0.05
    betas: List[float] = field(default_factory=lambda: [0.9, 0.99])
    warmup_steps: int = 30
    min_lr_ratio: float = 0.05
    grad_clip: float = 1.0


@dataclass
class TrainConfig:
    steps: int = 300
    log_every: int = 10
    eval_every: int = 100
    checkpoint_every: int = 100
    keep_checkpoints: int = 2
    resume: bool = False
    max_nonfinite: int = 5  # consecutive non-finite losses tolerated (skipped) before stopping
    threads: int = 0  # torch CPU threads; 0 = leave torch's default
    device: str = "auto"
    progress: bool = True
    collapse_alarm_ratio: float = 0.2  # warn when RankMe < ratio · its first eval value
    collapse_stop: bool = False
    precision: str = "fp32"  # fp32 | bf16 (autocast; losses, norms and optimizer state stay float32)
    compile: bool = False  # torch.compile the forward + loss (backward compiled with it)
    compile_mode: str = "default"  # default | reduce-overhead (CUDA graphs) | max-autotune-no-cudagraphs
    channels_last: bool = False  # conv encoder in channels-last memory layout
    data_on_device: str = "auto"  # auto | true | false: keep the training data on the device (auto: if it fits)
    keep_host_memory: bool = True  # CPU, glibc: malloc keeps freed blocks for the next step (no page faults)


@dataclass
class EvalConfig:
    num_clips: int = 256  # held-out clips per evaluation (capped by what the eval episodes hold)
    probe_l2: Optional[float] = None  # ridge strength of the probes; None = chosen on a validation split
    rollout_horizon: int = 4  # steps of each level's own clock for eval/level{k}/rollout_error_norm
    reference_probes: bool = True  # final evaluation: probes of a random encoder and of raw pixels, same protocol


@dataclass
class TrackingConfig:
    uri: Optional[str] = None  # default: $MLFLOW_TRACKING_URI, else sqlite:///mlflow.db
    experiment: str = "hjepa"
    run_name: Optional[str] = None
    enabled: bool = True


@dataclass
class Config:
    data: DataConfig = MISSING
    model: ModelConfig = MISSING
    regularizer: RegularizerConfig = MISSING
    optim: OptimConfig = MISSING
    objective: ObjectiveConfig = MISSING
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    seed: int = 0
    out_dir: str = "."  # checkpoints go to <out_dir>/checkpoints; Hydra sets cwd per job


def register_resolvers() -> None:
    """``${hjepa.cache_dir:}``: the per-user cache root (``hjepa.paths.cache_root``), read when resolved."""
    OmegaConf.register_new_resolver("hjepa.cache_dir", lambda: str(cache_root()), replace=True)


register_resolvers()


def register_configs() -> None:
    register_resolvers()
    cs = ConfigStore.instance()
    cs.store(name="hjepa_schema", node=Config)
    cs.store(group="data", name="rooms", node=RoomsDataConfig)
    cs.store(group="data", name="multiscale", node=MultiscaleDataConfig)
    cs.store(group="data", name="npz", node=NpzDataConfig)
    cs.store(group="data", name="ou", node=OuDataConfig)
    cs.store(group="data", name="gym", node=GymDataConfig)
    cs.store(group="model", name="default", node=ModelConfig)
    cs.store(group="model", name="flat", node=ModelConfig(depth=1))
    for name in ("sigreg", "ema", "vicreg", "none"):
        weight = {"sigreg": 0.1, "vicreg": 1.0}.get(name, 0.0)
        cs.store(group="regularizer", name=name, node=RegularizerConfig(name=name, weight=weight))
    cs.store(group="optim", name="adamw", node=OptimConfig)
    for node in (ObjectiveConfig, MaskedObjectiveConfig, PixelObjectiveConfig, ContrastiveObjectiveConfig):
        cs.store(group="objective", name=node.name, node=node)


# --------------------------------------------------------------------------- derived values
def level_strides(model: ModelConfig | DictConfig) -> list[int]:
    """Clock ratio of each level to the one below: ``[1, s_1, …, s_{N-1}]`` (level 0 is 1)."""
    if model.strides is not None:
        return [1, *[int(s) for s in model.strides]]
    return [1] + [int(model.stride)] * (int(model.depth) - 1)


def min_clip_len(model: ModelConfig | DictConfig) -> int:
    """Shortest clip with at least two steps at the top level: ``2 · Π s_k``."""
    return 2 * math.prod(level_strides(model))


def level_regularizers(reg: RegularizerConfig | DictConfig, depth: int) -> list[str]:
    return list(reg.per_level) if reg.per_level is not None else [reg.name] * depth


def level_latent_dims(model: ModelConfig | DictConfig) -> list[int]:
    """Latent width of each level: ``model.latent_dims`` or ``model.latent_dim`` at every level."""
    if model.latent_dims is not None:
        return [int(d) for d in model.latent_dims][: int(model.depth)]
    return [int(model.latent_dim)] * int(model.depth)


def level_slowness_weights(model: ModelConfig | DictConfig) -> list[float]:
    """Slow-feature weight of each level: ``model.slowness_weight`` (extras ignored) or 0 everywhere."""
    if model.slowness_weight is not None:
        return [float(w) for w in model.slowness_weight][: int(model.depth)]
    return [0.0] * int(model.depth)


def level_reg_weights(reg: RegularizerConfig | DictConfig, depth: int) -> list[float]:
    """λ_k of each level: ``regularizer.per_level_weight`` or ``regularizer.weight`` at every level."""
    if reg.per_level_weight is not None:
        return [float(w) for w in reg.per_level_weight][:depth]
    return [float(reg.weight)] * depth


def check_choices(items) -> None:
    """``ConfigError`` for the first ``(key, value, allowed)`` whose value is not among the allowed ones."""
    for key, val, allowed in items:
        if val not in allowed:
            raise ConfigError(key, val, f"allowed values: {', '.join(allowed)}")


def check_at_least(items) -> None:
    """``ConfigError`` for the first ``(key, value, lowest)`` whose value is below its lowest allowed."""
    for key, val, lo in items:
        if val < lo:
            raise ConfigError(key, val, f"must be >= {lo}")


def check_no_missing_values(cfg: Config | DictConfig) -> None:
    """A ``ConfigError`` naming the first mandatory key (``???``) left without a value, in any group."""
    if not isinstance(cfg, DictConfig):
        return
    missing = sorted(OmegaConf.missing_keys(cfg))
    if missing:
        example = {"data.path": "data.path=my_episodes.npz (see docs/data.md)", "data": "data=rooms|multiscale|ou|gym|npz",
                   "model": "model=default|flat", "regularizer": "regularizer=sigreg|ema|vicreg|none",
                   "optim": "optim=adamw"}.get(missing[0], f"{missing[0]}=...")
        also = f" (also missing: {', '.join(missing[1:])})" if len(missing) > 1 else ""
        raise ConfigError(missing[0], "???", f"a value is required: set it on the command line, e.g. {example}{also}")


def validate_config(cfg: Config | DictConfig) -> None:
    """Reject invalid values at start-up with the offending key and the allowed values."""
    from .regularizers import REGULARIZERS

    check_no_missing_values(cfg)
    m, r, o, d, t = cfg.model, cfg.regularizer, cfg.optim, cfg.data, cfg.train
    if m.depth < 1:
        raise ConfigError("model.depth", m.depth, "must be an integer >= 1 (1 = flat JEPA)")
    if m.strides is not None and len(m.strides) != m.depth - 1:
        raise ConfigError("model.strides", list(m.strides),
                          f"needs one stride per level above 0: {m.depth - 1} value(s) for model.depth={m.depth}")
    if any(s < 1 for s in level_strides(m)):
        raise ConfigError("model.strides" if m.strides is not None else "model.stride",
                          m.strides if m.strides is not None else m.stride, "strides must be integers >= 1")
    need = min_clip_len(m)
    if d.clip_len < need:
        raise ConfigError("data.clip_len", d.clip_len,
                          f"too short for strides {level_strides(m)[1:]}: the minimum length is {need} "
                          f"(2 steps at the top level); raise data.clip_len or lower model.depth/strides")
    if d.name != "npz" and d.episode_len < d.clip_len:  # npz: the file's own length is checked on load
        raise ConfigError("data.episode_len", d.episode_len, f"must be >= data.clip_len={d.clip_len}")
    check_choices((("model.encoder", m.encoder, ENCODERS), ("model.topdown", m.topdown, TOPDOWN_MODES),
                              ("model.topdown_conditioning", m.topdown_conditioning, TOPDOWN_CONDITIONING),
                              ("model.pred_loss", m.pred_loss, PRED_LOSSES),
                              ("model.summarizer", m.summarizer, SUMMARIZERS),
                              ("model.encoder_norm", m.encoder_norm, ("none", "group")),
                              ("model.macro_action_norm", m.macro_action_norm, ("none", "layer")),
                              ("model.target_norm", m.target_norm, TARGET_NORMS),
                              ("model.encoder_out_norm", m.encoder_out_norm or "none", ("none", "batch")),
                              ("model.attention_backend", m.attention_backend, ("auto", "sdpa", "xformers"))))
    check_at_least((("model.summarizer_hidden", m.summarizer_hidden, 0),))
    if m.topdown_rank is not None:
        check_at_least((("model.topdown_rank", m.topdown_rank, 1),))
    names = level_regularizers(r, m.depth)
    if r.per_level is not None and len(names) != m.depth:
        raise ConfigError("regularizer.per_level", names, f"needs {m.depth} names, one per level")
    for i, name in enumerate(names):
        if name not in REGULARIZERS:
            key = f"regularizer.per_level[{i}]" if r.per_level is not None else "regularizer"
            raise ConfigError(key, name, f"allowed values: {', '.join(sorted(REGULARIZERS))}")
    if r.target is not None and r.target not in TARGET_MODES:
        raise ConfigError("regularizer.target", r.target, f"allowed values: {', '.join(TARGET_MODES)}")
    if not 0 <= r.weight <= (1 if r.name == "sigreg" else math.inf):
        raise ConfigError("regularizer.weight", r.weight, "must be >= 0 (and <= 1 for sigreg)")
    if r.per_level_weight is not None:
        if len(r.per_level_weight) < m.depth:
            raise ConfigError("regularizer.per_level_weight", list(r.per_level_weight),
                              f"needs at least {m.depth} values, one per level from level 0")
        for i, (name, w) in enumerate(zip(names, r.per_level_weight)):
            if not 0 <= w <= (1 if name == "sigreg" else math.inf):
                raise ConfigError(f"regularizer.per_level_weight[{i}]", w, "must be >= 0 (and <= 1 for sigreg)")
    if m.latent_dims is not None and (len(m.latent_dims) < m.depth or any(v < 1 for v in m.latent_dims)):
        raise ConfigError("model.latent_dims", list(m.latent_dims),
                          f"needs at least {m.depth} integers >= 1, one latent width per level from level 0")
    if not 0 <= r.ema_momentum <= r.ema_momentum_end <= 1:
        raise ConfigError("regularizer.ema_momentum", r.ema_momentum, "need 0 <= ema_momentum <= ema_momentum_end <= 1")
    for key, val, lo, hi in (("model.geometry_discount", m.geometry_discount, 0.0, 1.0),
                             ("model.geometry_expectile", m.geometry_expectile, 0.0, 1.0),
                             ("model.geometry_self_goal", m.geometry_self_goal, 0.0, 1.0),
                             ("model.geometry_random_goal", m.geometry_random_goal, 0.0, 1.0)):
        if not lo < val < hi and not (key.endswith("goal") and lo <= val <= hi):
            raise ConfigError(key, val, f"must lie in ({lo}, {hi})" if not key.endswith("goal") else "must lie in [0, 1]")
    if m.geometry_self_goal + m.geometry_random_goal > 1:
        raise ConfigError("model.geometry_random_goal", m.geometry_random_goal,
                          f"model.geometry_self_goal + model.geometry_random_goal must be <= 1 "
                          f"(self_goal is {m.geometry_self_goal})")
    if m.slowness_weight is not None and (len(m.slowness_weight) < m.depth or any(v < 0 for v in m.slowness_weight)):
        raise ConfigError("model.slowness_weight", list(m.slowness_weight),
                          f"needs at least {m.depth} values (one per level; extras are ignored), all >= 0")
    if m.data_init_levels < 0:
        raise ConfigError("model.data_init_levels", m.data_init_levels, "must be >= 0 (0: off; n: levels 0 … n−1)")
    if not m.data_init_std > 0 or not math.isfinite(m.data_init_std):
        raise ConfigError("model.data_init_std", m.data_init_std, "must be a finite number > 0")
    if m.data_init_levels and m.init_from:
        raise ConfigError("model.data_init_levels", m.data_init_levels, f"rescales freshly initialised encoders, but "
                          f"model.init_from={m.init_from} loads trained weights: drop one of the two")
    if m.pred_zero_init is not None and len(m.pred_zero_init) != m.depth:
        raise ConfigError("model.pred_zero_init", list(m.pred_zero_init), f"needs {m.depth} values (true/false), one per level")
    for key, lst in (("model.loss_weights", m.loss_weights), ("model.rollout_horizon", m.rollout_horizon),
                     ("model.geometry_weight", m.geometry_weight), ("model.pred_history", m.pred_history),
                     ("model.idm_weight", m.idm_weight)):
        if lst is not None and len(lst) != m.depth:
            raise ConfigError(key, list(lst), f"needs {m.depth} values, one per level")
        if lst is not None and any(v < 0 for v in lst):
            raise ConfigError(key, list(lst), "values must be >= 0")
    if o.lr <= 0 or not math.isfinite(o.lr):
        raise ConfigError("optim.lr", o.lr, "must be a positive finite number")
    if o.weight_decay < 0:
        raise ConfigError("optim.weight_decay", o.weight_decay, "must be >= 0")
    if o.grad_clip < 0:
        raise ConfigError("optim.grad_clip", o.grad_clip, "must be >= 0 (0 disables clipping)")
    check_at_least((("train.steps", t.steps, 1), ("train.log_every", t.log_every, 1),
                         ("train.eval_every", t.eval_every, 1), ("train.checkpoint_every", t.checkpoint_every, 1),
                         ("train.keep_checkpoints", t.keep_checkpoints, 1), ("data.batch_size", d.batch_size, 2),
                         ("model.latent_dim", m.latent_dim, 1), ("data.num_eval_episodes", d.num_eval_episodes, 2)))
    if m.encoder in ("vit", "tubelet") and d.image_size % m.patch_size:
        raise ConfigError("model.patch_size", m.patch_size, f"must divide data.image_size={d.image_size}")
    if d.name == "rooms" and d.layout not in ("open", "maze"):
        raise ConfigError("data.layout", d.layout, "allowed values: open, maze")
    if d.name == "gym":
        check_choices((("data.obs", d.obs, ("pixels", "state")), ("data.policy", d.policy, ("smooth", "uniform"))))
        check_at_least((("data.action_repeat", d.action_repeat, 1), ("data.workers", d.workers, 0)))
        if not 0 <= d.persistence < 1:
            raise ConfigError("data.persistence", d.persistence, "must lie in [0, 1)")
    check_choices((("train.precision", t.precision, ("fp32", "bf16")),
                              ("train.compile_mode", t.compile_mode,
                               ("default", "reduce-overhead", "max-autotune-no-cudagraphs")),
                              ("train.data_on_device", str(t.data_on_device).lower(), ("auto", "true", "false"))))
    if m.pred_dim % m.pred_heads:
        raise ConfigError("model.pred_heads", m.pred_heads, f"must divide model.pred_dim={m.pred_dim}")
    if "objective" in cfg:
        from .objectives import validate_objective

        validate_objective(cfg)


def to_container(cfg) -> dict:
    return OmegaConf.to_container(cfg, resolve=True) if isinstance(cfg, DictConfig) else cfg
