"""Freed host memory kept for reuse, so a CPU training step does not page-fault on its own tensors.

A CPU step allocates and frees the same large tensors every step (activations, SIGReg's
``(N, M, knots)`` projections, gradients). glibc's malloc serves blocks above its mmap threshold
with fresh ``mmap`` pages and gives freed memory at the top of the heap back to the system beyond
its trim threshold; either way the next step touches new pages, and every page costs a fault
(measured here: 11,000–25,000 faults per step of the default conv model, ~20% of its step time at
one thread; none with ``keep_freed_memory``). Raising both thresholds keeps freed blocks in the
heap for the next step: the role PyTorch's caching allocator plays on CUDA. The process's
resident memory then stays near its peak, as it does on a GPU.

Only glibc (Linux) has these knobs; elsewhere this is a no-op that says so.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import platform

__all__ = ["keep_freed_memory"]

_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # glibc malloc.h
_MMAP_THRESHOLD = 256 * 2 ** 20  # blocks above 256 MiB (a dataset, not a step's tensor) still come from mmap
_TRIM_THRESHOLD = 2 ** 31 - 1  # up to 2 GiB of free heap top is kept (mallopt takes an int)


@functools.cache
def keep_freed_memory() -> bool:
    """Tell glibc's malloc to keep freed blocks for reuse (once per process); ``True`` if it took
    effect, ``False`` where the C library is not glibc."""
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return bool(mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD)) and bool(mallopt(_M_TRIM_THRESHOLD, _TRIM_THRESHOLD))
