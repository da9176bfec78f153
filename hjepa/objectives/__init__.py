"""Training objectives, chosen by name with ``objective=<name>``; the trainer only dispatches.

| name | what is learned |
|---|---|
| ``next_step`` (default) | latent next-step prediction at every level (``HJEPA.losses``) |
| ``masked`` | V-JEPA masked prediction of space-time tubelet tokens, level 0 alone |
| ``pixel`` | the generative baseline: next-frame pixels decoded from the predicted latent |
| ``contrastive`` | the CPC baseline: InfoNCE between predicted and actual next latents |
"""

from __future__ import annotations

import math

from ..config import PRED_LOSSES, ConfigError
from .base import Objective
from .contrastive import ContrastiveObjective, info_nce
from .masked import MaskedObjective, MaskedVideoJEPA
from .masks import MASK_SAMPLERS, MaskPair, MultiBlockTubeSampler, RandomTubeSampler, build_mask_sampler
from .next_step import NextStepObjective
from .pixel import FrameDecoder, PixelObjective

__all__ = ["OBJECTIVES", "Objective", "build_objective", "validate_objective", "NextStepObjective",
           "MaskedObjective", "MaskedVideoJEPA", "PixelObjective", "FrameDecoder", "ContrastiveObjective",
           "info_nce", "MaskPair", "MultiBlockTubeSampler", "RandomTubeSampler", "build_mask_sampler",
           "MASK_SAMPLERS"]

OBJECTIVES: dict[str, type[Objective]] = {
    "next_step": NextStepObjective, "masked": MaskedObjective, "pixel": PixelObjective,
    "contrastive": ContrastiveObjective}


def objective_name(cfg) -> str:
    return cfg.objective.name if "objective" in cfg and cfg.objective is not None else "next_step"


def build_objective(cfg, obs_shape: tuple[int, ...], action_dim: int) -> Objective:
    """The objective named by ``cfg.objective.name`` (``next_step`` when the config has none)."""
    name = objective_name(cfg)
    try:
        return OBJECTIVES[name](cfg, tuple(obs_shape), int(action_dim))
    except ValueError as e:  # shapes that the config cannot know: vector data for an image objective
        raise ConfigError("objective", name, str(e)) from None


def validate_objective(cfg) -> None:
    """Start-up checks of the ``objective`` group (called by ``validate_config``)."""
    o, m, d = cfg.objective, cfg.model, cfg.data
    if o.name not in OBJECTIVES:
        raise ConfigError("objective", o.name, f"allowed values: {', '.join(OBJECTIVES)}")
    if o.name == "masked":
        if m.tubelet_frames < 1:
            raise ConfigError("model.tubelet_frames", m.tubelet_frames, "must be >= 1")
        if d.clip_len % m.tubelet_frames:
            raise ConfigError("data.clip_len", d.clip_len,
                              f"objective=masked needs a multiple of model.tubelet_frames={m.tubelet_frames}")
        if d.image_size % m.patch_size or (d.image_size // m.patch_size) ** 2 < 2:
            raise ConfigError("model.patch_size", m.patch_size,
                              f"must divide data.image_size={d.image_size} into at least 2 patches per frame")
        if o.mask not in MASK_SAMPLERS:
            raise ConfigError("objective.mask", o.mask, f"allowed values: {', '.join(MASK_SAMPLERS)}")
        if not 0 < o.mask_ratio < 1:
            raise ConfigError("objective.mask_ratio", o.mask_ratio, "must lie strictly between 0 and 1")
        if not o.block_scales or any(not 0 < s <= 1 for s in o.block_scales):
            raise ConfigError("objective.block_scales", list(o.block_scales), "need one or more values in (0, 1]")
        if len(o.aspect_ratio) != 2 or not 0 < o.aspect_ratio[0] <= o.aspect_ratio[1]:
            raise ConfigError("objective.aspect_ratio", list(o.aspect_ratio), "need [low, high] with 0 < low <= high")
        if o.loss not in PRED_LOSSES:
            raise ConfigError("objective.loss", o.loss, f"allowed values: {', '.join(PRED_LOSSES)}")
        if m.init_from:
            raise ConfigError("model.init_from", m.init_from, "is not supported with objective=masked; a masked "
                              "run's encoder initialises a hierarchy: objective=next_step model.encoder=tubelet")
    if o.name == "pixel":
        if m.depth != 1:
            raise ConfigError("model.depth", m.depth, "objective=pixel trains a flat model: use model.depth=1")
        if d.image_size % 8:
            raise ConfigError("data.image_size", d.image_size, "objective=pixel needs a multiple of 8")
    if o.name == "contrastive" and not (o.temperature > 0 and math.isfinite(o.temperature)):
        raise ConfigError("objective.temperature", o.temperature, "must be a positive finite number")
