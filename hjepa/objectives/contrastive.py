"""``objective=contrastive``: the CPC-style baseline — InfoNCE between predicted and actual latents.

The same hierarchy (encoders, predictors) as ``next_step``; only the loss differs. At each level
the prediction ``ẑ_k[t]`` must pick out its own next latent ``z_k[t+1]`` among every other
next latent of the batch (other clips and other steps of the same clip: in-batch negatives),
by cosine similarity over a temperature. The positives are the online latents, with gradient
(no stop-gradient, no EMA): the negatives alone keep the embedding from collapsing. The
configured regulariser is added only with ``objective.use_regularizer=true``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

from .base import weighted_level_loss
from .next_step import NextStepObjective

__all__ = ["ContrastiveObjective", "info_nce"]


def info_nce(pred: Tensor, target: Tensor, temperature: float) -> Tensor:
    """InfoNCE of ``pred (M, D)`` against ``target (M, D)``: row ``i``'s positive is ``target[i]``,
    the other ``M − 1`` rows are its negatives. Cosine similarities over ``temperature``."""
    logits = F.normalize(pred, dim=-1) @ F.normalize(target, dim=-1).T / temperature
    return F.cross_entropy(logits, torch.arange(pred.shape[0], device=pred.device))


class ContrastiveObjective(NextStepObjective):
    name = "contrastive"

    def step(self, net: nn.Module, obs: Tensor, actions: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        out = net(obs, actions)
        model, oc = self.module, self.cfg.objective
        total = obs.new_zeros(())
        logs: dict[str, Tensor] = {}
        for k, lvl in enumerate(model.levels):
            nce = info_nce(rearrange(out.pred[k][:, :-1], "b t d -> (b t) d"),
                           rearrange(out.z[k][:, 1:], "b t d -> (b t) d"), oc.temperature)
            loss = nce
            if oc.use_regularizer:
                reg = lvl.regularizer(rearrange(out.z[k], "b t d -> (b t) d"))
                loss = weighted_level_loss(nce, reg, lvl.reg_name, model.reg_weight)
                logs[f"train/level{k}/reg_loss"] = reg.detach()
            total = total + model.loss_weights[k] * loss
            logs[f"train/level{k}/pred_loss"] = nce.detach()
        return total, logs
