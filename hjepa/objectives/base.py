"""The interface every training objective implements; the trainer talks to objectives only through it."""

from __future__ import annotations

from pathlib import Path

import torch
from omegaconf import DictConfig
from torch import Tensor, nn

__all__ = ["Objective", "weighted_level_loss"]


class Objective:
    """What a run optimises.

    * ``module``: the ``nn.Module`` the trainer optimises, wraps in DDP and checkpoints (its
      ``forward(obs, actions)`` does the whole forward pass).
    * ``step(net, obs, actions)`` → ``(total loss, {name: 0-d tensor})``: ``net`` is ``module`` or
      its DDP wrapper; the logged names follow ``train/level{k}/<name>``.
    * ``update_targets(momentum)``: after each optimiser step (EMA targets).
    * ``evaluate(batch, factor_names, device)`` → ``eval/level{k}/<name>`` metrics for the
      ``num_levels`` levels it reports, including ``rankme`` (the trainer's collapse alarm reads it).
    * ``load_weights(ref, tracking_uri)``: ``model.init_from``.
    """

    name = "base"

    def __init__(self, cfg: DictConfig, obs_shape: tuple[int, ...], action_dim: int):
        self.cfg = cfg
        self.module: nn.Module

    @property
    def num_levels(self) -> int:
        return 1

    def step(self, net: nn.Module, obs: Tensor, actions: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        raise NotImplementedError

    def update_targets(self, momentum: float) -> None:
        update = getattr(self.module, "update_targets", None)
        if update is not None:
            update(momentum)

    def evaluate(self, batch: dict[str, Tensor], factor_names: list[str], device: torch.device) -> dict[str, float]:
        raise NotImplementedError

    def load_weights(self, ref: str, tracking_uri: str | None = None) -> Path:
        from ..api import load_weights_into

        return load_weights_into(self.module, ref, tracking_uri=tracking_uri, model_cfg=self.cfg.model)


def weighted_level_loss(pred: Tensor, reg: Tensor, reg_name: str, lam: float) -> Tensor:
    """A level's loss in hjepa's form: ``(1−λ)·pred + λ·SIGReg`` for sigreg, else ``pred + λ·reg``."""
    return (1 - lam) * pred + lam * reg if reg_name == "sigreg" else pred + lam * reg
