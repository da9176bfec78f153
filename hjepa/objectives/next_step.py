"""``objective=next_step`` (the default): latent next-step prediction at every level of the hierarchy.

Exactly the loss of ``HJEPA.losses`` (teacher-forced one-step predictions plus optional
rollouts, plus each level's regulariser): a run with this objective computes what hjepa computed
before objectives existed, bit for bit.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ..evaluation import evaluate
from ..models import HJEPA, build_hjepa
from .base import Objective, token_metrics

__all__ = ["NextStepObjective"]


class NextStepObjective(Objective):
    """``module`` is the ``HJEPA``; its checkpoints are those of every earlier hjepa run."""

    name = "next_step"

    def __init__(self, cfg, obs_shape, action_dim):
        super().__init__(cfg, obs_shape, action_dim)
        self.module: HJEPA = build_hjepa(cfg.model, cfg.regularizer, tuple(obs_shape), int(action_dim))

    @property
    def num_levels(self) -> int:
        return self.module.depth

    def step(self, net: nn.Module, obs: Tensor, actions: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        losses = self.module.losses(net(obs, actions))
        logs: dict[str, Tensor] = {}
        for k in range(self.module.depth):
            logs[f"train/level{k}/pred_loss"] = losses.pred[k]
            logs[f"train/level{k}/reg_loss"] = losses.reg[k]
            if losses.rollout[k] is not None:
                logs[f"train/level{k}/rollout_loss"] = losses.rollout[k]
            if getattr(losses, "geometry", None) and losses.geometry[k] is not None:
                logs[f"train/level{k}/geometry_loss"] = losses.geometry[k]
            if getattr(losses, "inverse_dynamics", None) and losses.inverse_dynamics[k] is not None:
                logs[f"train/level{k}/inverse_dynamics_loss"] = losses.inverse_dynamics[k]
            if getattr(losses, "slowness", None) and losses.slowness[k] is not None:
                logs[f"train/level{k}/slowness_loss"] = losses.slowness[k]
        return losses.total, logs

    def evaluate(self, batch, factor_names, device: torch.device) -> dict[str, float]:
        e = self.cfg.eval
        metrics = evaluate(self.module, batch, factor_names, e.probe_l2, device, e.rollout_horizon)
        lvl = self.module.levels[0]  # a token encoder (model.encoder=tubelet): probes of its tokens too
        encoder = lvl.target.module if lvl.target is not None else lvl.encoder
        was = self.module.training
        self.module.eval()
        metrics.update(token_metrics(encoder, batch, factor_names, e.probe_l2, device))
        self.module.train(was)
        return metrics
