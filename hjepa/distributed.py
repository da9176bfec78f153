"""Thin helpers over ``torch.distributed`` for ``torchrun`` launches (DDP: gloo on CPU, nccl on GPU).

Outside ``torchrun`` every helper is a no-op for a single process.
"""

from __future__ import annotations

import contextlib
import os

import torch
import torch.distributed as td
from torch import nn

__all__ = ["rank", "world_size", "is_distributed", "process_group", "device", "wrap", "all_finite"]


def is_distributed() -> bool:
    return td.is_available() and td.is_initialized()


def rank() -> int:
    return td.get_rank() if is_distributed() else 0


def world_size() -> int:
    return td.get_world_size() if is_distributed() else 1


@contextlib.contextmanager
def process_group():
    """Initialise the default process group when launched by ``torchrun`` (``WORLD_SIZE > 1``)."""
    launched = int(os.environ.get("WORLD_SIZE", "1")) > 1 and not is_distributed()
    if launched:
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        td.init_process_group(backend=backend)
    try:
        yield
    finally:
        if launched and is_distributed():
            td.destroy_process_group()


def device(default: torch.device) -> torch.device:
    """Under DDP on GPU each rank uses ``cuda:<LOCAL_RANK>``."""
    if is_distributed() and default.type == "cuda":
        local = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(local)
        return torch.device("cuda", local)
    return default


def wrap(model: nn.Module, dev: torch.device) -> nn.Module:
    """``DistributedDataParallel(model)`` under DDP, else the model itself."""
    if not is_distributed():
        return model
    from torch.nn.parallel import DistributedDataParallel

    ids = [dev.index] if dev.type == "cuda" else None
    return DistributedDataParallel(model, device_ids=ids)


def all_finite(x: torch.Tensor) -> bool:
    """Whether ``x`` is finite on every rank (all ranks skip a bad step together)."""
    ok = torch.isfinite(x.detach()).all().to(torch.float32).reshape(1)
    if is_distributed():
        td.all_reduce(ok, op=td.ReduceOp.MIN)
    return bool(ok.item() > 0)
