"""The interface every training objective implements; the trainer talks to objectives only through it."""

from __future__ import annotations

from pathlib import Path

import torch
from omegaconf import DictConfig
from torch import Tensor, nn

__all__ = ["Objective", "weighted_level_loss", "representation_metrics", "token_metrics"]


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
    * ``head_modules``: submodules the objective adds to an ``HJEPA`` only to train it (the pixel
      decoder); ``hjepa.load_run`` leaves them out, so the world model loads on its own.
    """

    name = "base"
    head_modules: tuple[str, ...] = ()

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


@torch.no_grad()
def representation_metrics(z: Tensor, batch: dict[str, Tensor], factor_names: list[str], probe_l2: float | None,
                           prefix: str) -> dict[str, float]:
    """Collapse statistics and held-out linear probes of per-frame features ``z (B, T, F)``:
    ``<prefix>rankme`` …, ``<prefix>probe_r2/<factor>`` (fit on even, scored on odd episodes)."""
    from ..evaluation import probe_r2
    from ..metrics import collapse_report

    z = z.float().cpu()
    metrics = {prefix + k: v for k, v in collapse_report(z.reshape(-1, z.shape[-1])).items()}
    state, episode = batch["state"], batch["episode"]
    if state.shape[-1] and (episode % 2 == 0).any() and (episode % 2 == 1).any():
        r2 = probe_r2(z, state.float()[:, : z.shape[1]], episode, probe_l2)
        metrics.update({f"{prefix}probe_r2/{n}": v for n, v in zip(factor_names, r2.tolist())})
    return metrics


@torch.no_grad()
def token_metrics(encoder: nn.Module, batch: dict[str, Tensor], factor_names: list[str], probe_l2: float | None,
                  device: torch.device, prefix: str = "eval/level0/tokens/") -> dict[str, float]:
    """``representation_metrics`` of a token encoder's concatenated per-frame tokens
    (``frame_tokens``: ``(B, T, S, W)`` → ``S·W`` features per frame); empty for other encoders."""
    enc = next((m for m in encoder.modules() if hasattr(m, "frame_tokens")), None)
    if enc is None:
        return {}
    tok = enc.frame_tokens(batch["obs"].to(device))
    return representation_metrics(tok.reshape(*tok.shape[:2], -1), batch, factor_names, probe_l2, prefix)
