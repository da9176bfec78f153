"""Speed: the fast training step (precision, torch.compile, fused AdamW, deferred non-finite checks)
and batches gathered from device-resident data. The trainer and ``benchmarks/throughput.py`` use
the same pieces, so what the benchmark measures is what training runs."""

from .device_data import DeviceBatches, data_fits_device
from .host_memory import keep_freed_memory
from .precision import PRECISIONS, autocast
from .step import COMPILE_MODES, TrainStep, build_adamw, set_channels_last

__all__ = ["DeviceBatches", "data_fits_device", "keep_freed_memory", "set_channels_last", "PRECISIONS", "autocast", "COMPILE_MODES", "TrainStep", "build_adamw"]
