"""Exponential-moving-average target encoder (I-JEPA / V-JEPA style)."""

from __future__ import annotations

import copy

import torch
from torch import nn

__all__ = ["EMATarget", "momentum_schedule"]


class EMATarget(nn.Module):
    """A frozen copy of ``online`` updated as ``θ̄ ← m·θ̄ + (1 − m)·θ``; never receives gradients."""

    def __init__(self, online: nn.Module):
        super().__init__()
        self.module = copy.deepcopy(online)
        self.module.requires_grad_(False)

    @torch.no_grad()
    def update(self, online: nn.Module, momentum: float | torch.Tensor) -> None:
        """``momentum`` a number, or a 0-d tensor on the weights' device (no host read)."""
        tgt = list(self.module.parameters())
        src = list(online.parameters())
        if len(tgt) != len(src):
            raise RuntimeError("EMA target and online module have different parameter lists")
        if isinstance(momentum, torch.Tensor):  # θ̄·m + θ·(1 − m), m read on the device
            torch._foreach_mul_(tgt, momentum)
            torch._foreach_add_(tgt, torch._foreach_mul(src, 1.0 - momentum))
        else:
            torch._foreach_lerp_(tgt, src, 1.0 - momentum)
        for bt, bs in zip(self.module.buffers(), online.buffers()):
            bt.copy_(bs)

    def forward(self, *args, **kwargs):
        with torch.no_grad():
            return self.module(*args, **kwargs)


def momentum_schedule(step: int, total: int, start: float, end: float) -> float:
    """Linear ramp of the EMA momentum from ``start`` (step 0) to ``end`` (step ``total``)."""
    frac = min(max(step / max(total, 1), 0.0), 1.0)
    return start + (end - start) * frac
