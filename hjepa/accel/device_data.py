"""Training batches gathered straight from device-resident tensors (no DataLoader, no per-item
Python, no host-to-device copy of frames).

The clips are exactly those of ``ClipDataset`` for the indices of ``StepBatchSampler``: the data
order stays a pure function of ``(seed, step)``, so runs (and resumes) see the same batches
whether the data lives on the device or goes through the DataLoader.
"""

from __future__ import annotations

from typing import Iterator

import torch
from torch import Tensor

from ..data.dataset import ClipDataset, StepBatchSampler

__all__ = ["DeviceBatches", "data_fits_device"]


class DeviceBatches:
    """Iterates ``{"obs": (B, T, *obs) float32, "actions": (B, T, A)}`` batches on ``device``.

    Frames stay in their stored dtype on the device (uint8 images: 1 byte a pixel) and are
    converted per batch. Only the ``B`` clip indices travel from the host each step (pinned,
    non-blocking on CUDA).
    """

    def __init__(self, dataset: ClipDataset, sampler: StepBatchSampler, device: torch.device):
        self.dataset, self.sampler, self.device = dataset, sampler, torch.device(device)
        self.obs = dataset.obs.to(self.device)
        self.actions = dataset.actions.to(self.device)
        self.offsets = torch.arange(dataset.clip_len, device=self.device)

    @staticmethod
    def nbytes(dataset: ClipDataset) -> int:
        return dataset.obs.numel() * dataset.obs.element_size() + dataset.actions.numel() * 4

    def gather(self, indices: Tensor) -> dict[str, Tensor]:
        """Clip indices ``(B,)`` (on the device) → the batch, as ``ClipDataset`` items stacked."""
        ep = torch.div(indices, self.dataset.starts_per_ep, rounding_mode="floor")
        start = (indices - ep * self.dataset.starts_per_ep) * self.dataset.stride
        t = start[:, None] + self.offsets  # (B, T)
        obs = self.obs[ep[:, None], t]
        obs = obs.float().div_(255.0) if obs.dtype == torch.uint8 else obs.float()
        return {"obs": obs, "actions": self.actions[ep[:, None], t]}

    def __iter__(self) -> Iterator[dict[str, Tensor]]:
        for idx in self.sampler:
            host = torch.tensor(idx, dtype=torch.int64)
            if self.device.type == "cuda":
                host = host.pin_memory()
            yield self.gather(host.to(self.device, non_blocking=True))

    def __len__(self) -> int:
        return len(self.sampler)


def data_fits_device(setting: str, dataset: ClipDataset, device: torch.device) -> bool:
    """``train.data_on_device``: ``true``/``false``, or ``auto``: keep the training data on the
    device when it takes under a quarter of the free device memory (always on a CPU)."""
    setting = str(setting).lower()
    if setting != "auto" or device.type != "cuda":
        return setting != "false"
    return DeviceBatches.nbytes(dataset) < torch.cuda.mem_get_info(device)[0] // 4
