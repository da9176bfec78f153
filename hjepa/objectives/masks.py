"""Tube mask samplers for masked space-time prediction (V-JEPA).

A clip of ``T`` frames in tubelets of ``t`` frames and ``p×p`` pixels is a grid of
``n_t × n_h × n_w`` tokens (``n_t = T / t``), numbered ``τ · n_h · n_w + row · n_w + col``. A *tube
mask* masks the same spatial positions in every tubelet of the clip, so a masked region cannot be
filled in by copying it from a neighbouring time step.

Every sampler returns a ``MaskPair`` whose ``target`` indices (the masked tokens, predicted) and
``context`` indices (the visible tokens, encoded) are disjoint and together cover the clip. The
number of masked spatial positions is exactly ``round(ratio · n_h · n_w)`` (at least 1, at most
all but one), the same for every clip, so a batch stacks without padding. Randomness comes only
from the ``torch.Generator`` passed in: the same seed gives the same masks.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import torch
from torch import Tensor

__all__ = ["MaskPair", "TubeMaskSampler", "MultiBlockTubeSampler", "RandomTubeSampler", "MASK_SAMPLERS",
           "build_mask_sampler", "num_masked"]


@dataclass
class MaskPair:
    """Token indices of a batch of clips: ``context (B, N_ctx)`` visible, ``target (B, N_tgt)`` masked,
    each row sorted ascending; ``spatial (B, n_h·n_w)`` bool, True where a tube is masked."""

    context: Tensor
    target: Tensor
    spatial: Tensor


def num_masked(ratio: float, num_spatial: int) -> int:
    """Masked spatial positions per clip: ``round(ratio · N)`` clamped to ``[1, N − 1]``."""
    return min(max(int(round(ratio * num_spatial)), 1), num_spatial - 1)


class TubeMaskSampler:
    """Base class: draws a spatial mask per clip and extends it through time as tubes."""

    def __init__(self, grid: Sequence[int], ratio: float):
        n_t, n_h, n_w = (int(g) for g in grid)
        if min(n_t, n_h, n_w) < 1 or n_h * n_w < 2:
            raise ValueError(f"token grid {tuple(grid)} needs at least 1 tubelet and 2 spatial positions")
        if not 0.0 < ratio < 1.0:
            raise ValueError(f"mask ratio {ratio} must lie strictly between 0 and 1")
        self.n_t, self.n_h, self.n_w, self.ratio = n_t, n_h, n_w, float(ratio)
        self.num_spatial = n_h * n_w
        self.num_masked = num_masked(ratio, self.num_spatial)

    def spatial_mask(self, generator: torch.Generator) -> Tensor:  # (n_h·n_w,) bool, exactly num_masked True
        raise NotImplementedError

    def __call__(self, batch_size: int, generator: torch.Generator | None = None) -> MaskPair:
        g = generator if generator is not None else torch.Generator().manual_seed(int(torch.randint(2**62, ())))
        spatial = torch.stack([self.spatial_mask(g) for _ in range(batch_size)])  # (B, S)
        tubes = spatial.repeat(1, self.n_t)  # (B, n_t·S): tubelet τ's positions follow τ·S + s
        order = torch.arange(tubes.shape[1]).expand_as(tubes)
        target = order[tubes].view(batch_size, -1)
        context = order[~tubes].view(batch_size, -1)
        return MaskPair(context=context, target=target, spatial=spatial)


class RandomTubeSampler(TubeMaskSampler):
    """Random tube masking (VideoMAE): ``round(ratio·n_h·n_w)`` spatial positions drawn uniformly."""

    def spatial_mask(self, generator: torch.Generator) -> Tensor:
        idx = torch.randperm(self.num_spatial, generator=generator)[: self.num_masked]
        mask = torch.zeros(self.num_spatial, dtype=torch.bool)
        mask[idx] = True
        return mask


class MultiBlockTubeSampler(TubeMaskSampler):
    """V-JEPA's multi-block masking: rectangular blocks of ``scale`` × the frame's area and aspect
    ratio (h/w) drawn log-uniformly from ``aspect_ratio``, repeated through time.

    Each clip draws one scale from ``scales`` (e.g. ``[0.15, 0.7]``: short-range, many small
    blocks; long-range, a few large ones) and adds blocks of that scale at random places until
    the union reaches the target count; the last block is only partly added (in raster order),
    so the count is exact.
    """

    def __init__(self, grid: Sequence[int], ratio: float, scales: Sequence[float] = (0.15, 0.7),
                 aspect_ratio: Sequence[float] = (0.75, 1.5)):
        super().__init__(grid, ratio)
        if not scales or any(not 0 < s <= 1 for s in scales):
            raise ValueError(f"block scales {list(scales)} must lie in (0, 1]")
        lo, hi = (float(a) for a in aspect_ratio)
        if not 0 < lo <= hi:
            raise ValueError(f"aspect ratio range {list(aspect_ratio)} must be 0 < low <= high")
        self.scales, self.log_aspect = [float(s) for s in scales], (math.log(lo), math.log(hi))

    def _block(self, scale: float, generator: torch.Generator) -> Tensor:
        u = torch.rand(3, generator=generator, dtype=torch.float64)
        aspect = math.exp(self.log_aspect[0] + (self.log_aspect[1] - self.log_aspect[0]) * float(u[0]))
        area = scale * self.num_spatial
        h = min(max(int(round(math.sqrt(area * aspect))), 1), self.n_h)
        w = min(max(int(round(math.sqrt(area / aspect))), 1), self.n_w)
        top = int(float(u[1]) * (self.n_h - h + 1))
        left = int(float(u[2]) * (self.n_w - w + 1))
        block = torch.zeros(self.n_h, self.n_w, dtype=torch.bool)
        block[top: top + h, left: left + w] = True
        return block.flatten()

    def spatial_mask(self, generator: torch.Generator) -> Tensor:
        scale = self.scales[int(torch.randint(len(self.scales), (), generator=generator))]
        mask = torch.zeros(self.num_spatial, dtype=torch.bool)
        while int(mask.sum()) < self.num_masked:
            new = self._block(scale, generator) & ~mask
            room = self.num_masked - int(mask.sum())
            idx = new.nonzero().flatten()[:room]
            mask[idx] = True
        return mask


MASK_SAMPLERS = {"multiblock": MultiBlockTubeSampler, "random": RandomTubeSampler}


def build_mask_sampler(name: str, grid: Sequence[int], ratio: float, scales: Sequence[float] = (0.15, 0.7),
                       aspect_ratio: Sequence[float] = (0.75, 1.5)) -> TubeMaskSampler:
    """A sampler by name (``multiblock`` or ``random``) for a token grid ``(n_t, n_h, n_w)``."""
    if name == "multiblock":
        return MultiBlockTubeSampler(grid, ratio, scales, aspect_ratio)
    if name == "random":
        return RandomTubeSampler(grid, ratio)
    raise ValueError(f"unknown mask sampler {name!r}; choose one of {sorted(MASK_SAMPLERS)}")
