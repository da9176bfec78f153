"""Pretrain-then-hierarchy: a masked run's encoder becomes level 0 of a hierarchy (V-JEPA 2-AC style).

``model.init_from=<masked run>`` with ``model.encoder=tubelet`` (and the same ``model.latent_dim``,
``encoder_width``, ``patch_size``, ``tubelet_frames``, ``vit_layers``, ``pred_heads``) copies the
masked run's encoder — its EMA target encoder when it has one, the encoder it evaluated — into
level 0's frame encoder (and level 0's EMA target, if any). Everything else starts fresh.
``model.freeze_level0=true`` then keeps it fixed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from omegaconf import OmegaConf
from torch import nn

from ..checkpoint import CheckpointError
from ..models.tubelet import TubeletViT

__all__ = ["checkpoint_objective", "masked_encoder_state", "load_masked_into_level0", "level0_frame_encoder"]


def checkpoint_objective(ck: dict[str, Any]) -> str:
    """The ``objective.name`` a checkpoint was trained with (``next_step`` for runs older than objectives)."""
    try:
        cfg = OmegaConf.create(ck.get("config", "") or "{}")
        return str(OmegaConf.select(cfg, "objective.name", default="next_step"))
    except Exception:  # noqa: BLE001 — an unreadable config is treated as an old next-step run
        return "next_step"


def masked_encoder_state(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The representation encoder's weights of a masked checkpoint: ``target.module.*`` (EMA) if
    present, else ``encoder.*``, with the prefix removed."""
    prefix = "target.module." if any(k.startswith("target.module.") for k in state) else "encoder."
    return {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}


def level0_frame_encoder(model: nn.Module) -> nn.Module:
    """Level 0's frame encoder (inside its ``BatchStandardize`` wrapper when there is one)."""
    enc = model.levels[0].encoder
    return enc[0] if isinstance(enc, nn.Sequential) else enc


def load_masked_into_level0(model: nn.Module, ck: dict[str, Any], path: Path, ref: str) -> Path:
    enc = level0_frame_encoder(model)
    if not isinstance(enc, TubeletViT):
        raise CheckpointError(f"model.init_from={ref} is a masked-prediction run (a tubelet ViT encoder); level 0 "
                              f"of this model is a {type(enc).__name__}: set model.encoder=tubelet")
    try:
        enc.load_state_dict(masked_encoder_state(ck["model"]))
    except RuntimeError as e:
        saved = OmegaConf.create(ck["config"]).model
        keys = ("latent_dim", "encoder_width", "patch_size", "tubelet_frames", "vit_layers", "pred_heads")
        want = ", ".join(f"model.{k}={saved.get(k)}" for k in keys)
        raise CheckpointError(f"model.init_from={ref}: the encoder of {path} does not fit level 0 "
                              f"({(str(e).splitlines() or [''])[0][:200]}); use its settings: {want}") from None
    lvl = model.levels[0]
    if lvl.target is not None:
        with torch.no_grad():
            lvl.target.module.load_state_dict(lvl.encoder.state_dict())
    return path
