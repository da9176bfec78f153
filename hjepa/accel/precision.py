"""Numeric precision of the training step, chosen by name (``train.precision``)."""

from __future__ import annotations

import contextlib

import torch

__all__ = ["PRECISIONS", "autocast"]

# fp32: everything in float32 (TF32 matmuls on CUDA). bf16: autocast — matmuls and convolutions in
# bfloat16, reductions, norms, losses and the optimizer state in float32; no loss scaling needed.
PRECISIONS = ("fp32", "bf16")


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    """The autocast context for ``precision`` on ``device`` (a no-op context for fp32)."""
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; choose one of {', '.join(PRECISIONS)}")
    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
