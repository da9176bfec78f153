"""Thin helpers over ``torch.distributed`` for ``torchrun`` launches (DDP: gloo on CPU, nccl on GPU).

Outside ``torchrun`` every helper is a no-op for a single process. Collective helpers
(``any_true``, ``all_finite``, ``mean_dict``, ``broadcast_object``, ``barrier``) must be called by
every rank in the same order.
"""

from __future__ import annotations

import contextlib
import os
import warnings
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as td
from torch import nn

__all__ = ["DistributedSetupError", "check_gpus_for_processes", "rank", "world_size", "is_distributed", "is_main", "process_group", "device", "wrap", "all_finite",
           "any_true", "mean_dict", "broadcast_object", "barrier", "launched_by_torchrun"]


class DistributedSetupError(RuntimeError):
    """The launch cannot work on this machine (e.g. more processes than GPUs); the message says the fix."""


def check_gpus_for_processes() -> None:
    """Under nccl every process of a node needs its own GPU: ``DistributedSetupError`` naming the GPU
    count and the fix when ``torchrun`` started more processes on this node than it has GPUs."""
    procs = int(os.environ.get("LOCAL_WORLD_SIZE", "0")) or int(os.environ.get("LOCAL_RANK", "0")) + 1
    gpus = torch.cuda.device_count()
    if procs > gpus:
        raise DistributedSetupError(
            f"torchrun started {procs} processes on this node, but it has {gpus} GPU(s) and each process needs its "
            f"own: use --nproc_per_node={gpus} (or fewer), or train on CPU processes with gloo (CUDA_VISIBLE_DEVICES= "
            "and train.device=cpu)")


def is_distributed() -> bool:
    return td.is_available() and td.is_initialized()


def rank() -> int:
    return td.get_rank() if is_distributed() else 0


def world_size() -> int:
    return td.get_world_size() if is_distributed() else 1


def is_main() -> bool:
    return rank() == 0


def launched_by_torchrun() -> bool:
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


@contextlib.contextmanager
def process_group(timeout_s: float = 1800.0):
    """Initialise the default process group when launched by ``torchrun`` (``WORLD_SIZE > 1``):
    nccl when CUDA is available, else gloo. Destroyed on exit."""
    launched = launched_by_torchrun() and not is_distributed()
    if launched:
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        if backend == "nccl":
            check_gpus_for_processes()
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        td.init_process_group(backend=backend, timeout=timedelta(seconds=timeout_s))
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

    if any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules()):
        if dev.type == "cuda":  # batch statistics over the global batch, as in one process
            nn.SyncBatchNorm.convert_sync_batchnorm(model)  # replaces the submodules in place
        elif rank() == 0:
            warnings.warn("the model has batch-norm layers (e.g. model.target_norm=batch): on CPU each process "
                          "normalises with the statistics of its own slice of the batch (SyncBatchNorm needs GPUs), "
                          "so results differ from a single process on the same global batch", RuntimeWarning,
                          stacklevel=2)
    ids = [dev.index] if dev.type == "cuda" else None
    return DistributedDataParallel(model, device_ids=ids)


def _reduce_device() -> torch.device:
    """nccl reduces CUDA tensors only; gloo CPU tensors."""
    if is_distributed() and td.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def all_finite(x: torch.Tensor) -> bool:
    """Whether ``x`` is finite on every rank (all ranks skip a bad step together)."""
    ok = torch.isfinite(x.detach()).all().to(torch.float32).reshape(1)
    if is_distributed():
        ok = ok.to(_reduce_device())
        td.all_reduce(ok, op=td.ReduceOp.MIN)
    return bool(ok.item() > 0)


def any_true(flag: bool) -> bool:
    """Whether ``flag`` is true on any rank (a stop requested on one rank stops them all)."""
    if not is_distributed():
        return bool(flag)
    t = torch.tensor([1.0 if flag else 0.0], device=_reduce_device())
    td.all_reduce(t, op=td.ReduceOp.MAX)
    return bool(t.item() > 0)


def mean_dict(values: dict[str, Any]) -> dict[str, float]:
    """The mean over ranks of each scalar (floats or 0-d tensors; same keys on every rank), as floats."""
    if not is_distributed():
        return {k: float(v) for k, v in values.items()}
    keys = sorted(values)
    t = torch.tensor([float(values[k]) for k in keys], dtype=torch.float64, device=_reduce_device())
    td.all_reduce(t, op=td.ReduceOp.SUM)
    t /= world_size()
    return dict(zip(keys, t.cpu().tolist()))


def broadcast_object(obj: Any, src: int = 0) -> Any:
    """``obj`` from rank ``src`` on every rank (small picklable objects between the job's own
    processes: paths, decisions, error messages)."""
    if not is_distributed():
        return obj
    box = [obj]
    td.broadcast_object_list(box, src=src, device=_reduce_device() if td.get_backend() == "nccl" else None)
    return box[0]


def barrier() -> None:
    if is_distributed():
        td.barrier()
