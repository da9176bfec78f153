"""Encoders: frame encoders for level 0 (conv, ViT, MLP for vector data), the bottom-up window
summariser of levels ≥ 1, and the macro-action encoder. Chosen by name via ``FRAME_ENCODERS``."""

from __future__ import annotations

import math

import torch
from einops import rearrange
from torch import Tensor, nn

from .attention import Block
from .tubelet import TubeletViT

__all__ = ["ConvEncoder", "ViTEncoder", "MLPEncoder", "LinearEncoder", "WindowEncoder", "TickEncoder", "BatchStandardize", "FRAME_ENCODERS",
           "build_frame_encoder"]


class _PerStep(nn.Module):
    """Applies a per-frame network to every time step: ``(B, T, *obs)`` → ``(B, T, D)``."""

    def forward(self, x: Tensor) -> Tensor:
        b = x.shape[0]
        z = self.encode_frames(rearrange(x, "b t ... -> (b t) ..."))
        return rearrange(z, "(b t) d -> b t d", b=b)

    def encode_frames(self, x: Tensor) -> Tensor:  # (N, *obs) -> (N, D)
        raise NotImplementedError


class ConvEncoder(_PerStep):
    """Small conv net: 4 stride-2 conv blocks (conv, optional GroupNorm, GELU), then a linear head.

    ``(B, T, C, H, W)`` → ``(B, T, D)``; no normalisation on the output, so regularisers see the
    raw embedding distribution. ``norm="none"`` drops the GroupNorms: per-sample normalisation
    removes global colour offsets (e.g. the background tint that carries the slow regime of the
    multiscale env) before the encoder can use them.
    """

    def __init__(self, obs_shape: tuple[int, ...], dim: int, width: int = 32, norm: str = "group"):
        super().__init__()
        if norm not in ("none", "group"):
            raise ValueError(f"unknown conv encoder norm {norm!r}; choose none or group")
        c, h, w = obs_shape
        chans = [c, width, 2 * width, 2 * width, 2 * width]
        layers: list[nn.Module] = []
        for cin, cout in zip(chans[:-1], chans[1:]):
            layers.append(nn.Conv2d(cin, cout, 3, stride=2, padding=1))
            if norm == "group":
                layers.append(nn.GroupNorm(8 if cout % 8 == 0 else 1, cout))
            layers.append(nn.GELU())
        self.net = nn.Sequential(*layers)
        with torch.no_grad():
            flat = self.net(torch.zeros(1, c, h, w)).numel()
        self.head = nn.Linear(flat, dim)
        self.channels_last = False  # set by hjepa.accel.set_channels_last (train.channels_last)

    def encode_frames(self, x: Tensor) -> Tensor:
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return self.head(self.net(x).flatten(1))


class ViTEncoder(_PerStep):
    """Small ViT: patch embedding, learned positions, ``layers`` attention blocks, mean pool.

    ``(B, T, C, H, W)`` → ``(B, T, D)``.
    """

    def __init__(self, obs_shape: tuple[int, ...], dim: int, width: int = 64, patch_size: int = 8,
                 layers: int = 2, heads: int = 4, backend: str = "auto"):
        super().__init__()
        c, h, w = obs_shape
        if h % patch_size or w % patch_size:
            raise ValueError(f"ViT patch size {patch_size} must divide the frame size {h}x{w}")
        width = max(width, heads * 8)
        width -= width % heads
        self.patch = nn.Conv2d(c, width, patch_size, stride=patch_size)
        self.pos = nn.Parameter(torch.randn(1, (h // patch_size) * (w // patch_size), width) * 0.02)
        self.blocks = nn.ModuleList(Block(width, heads, backend=backend) for _ in range(layers))
        self.norm = nn.LayerNorm(width)
        self.head = nn.Linear(width, dim)

    def encode_frames(self, x: Tensor) -> Tensor:
        tok = rearrange(self.patch(x), "n d h w -> n (h w) d") + self.pos
        for blk in self.blocks:
            tok = blk(tok)
        return self.head(self.norm(tok).mean(1))


class MLPEncoder(_PerStep):
    """Vector observations ``(B, T, D_in)`` → ``(B, T, D)``."""

    def __init__(self, obs_shape: tuple[int, ...], dim: int, width: int = 128):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(math.prod(obs_shape), width), nn.GELU(), nn.Linear(width, width),
                                 nn.GELU(), nn.Linear(width, dim))

    def encode_frames(self, x: Tensor) -> Tensor:
        return self.net(x.flatten(1))


class LinearEncoder(_PerStep):
    """Vector observations ``(B, T, D_in)`` → ``(B, T, D)`` by one linear map: the encoder of the linear
    theory (``theory/multiscale.py``), whose features are linear in what it sees. An MLP with a
    wide SIGReg latent fills the dimensions that the data's factors leave free with non-linear
    functions of them (e.g. products of slow components), which are themselves slow features."""

    def __init__(self, obs_shape: tuple[int, ...], dim: int):
        super().__init__()
        self.net = nn.Linear(math.prod(obs_shape), dim)

    def encode_frames(self, x: Tensor) -> Tensor:
        return self.net(x.flatten(1))


FRAME_ENCODERS = {"conv": ConvEncoder, "vit": ViTEncoder, "mlp": MLPEncoder, "linear": LinearEncoder,
                  "tubelet": TubeletViT}


def build_frame_encoder(name: str, obs_shape: tuple[int, ...], dim: int, width: int, *, patch_size: int = 8,
                        vit_layers: int = 2, heads: int = 4, backend: str = "auto", norm: str = "group",
                        tubelet_frames: int = 2) -> nn.Module:
    if name not in FRAME_ENCODERS:
        raise ValueError(f"unknown encoder {name!r}; choose one of {sorted(FRAME_ENCODERS)}")
    if name in ("conv", "vit", "tubelet") and len(obs_shape) != 3:
        from ..config import ConfigError  # a user error: the CLI prints it as one line

        raise ConfigError("model.encoder", name, f"needs image observations (C, H, W), but the data's per-step shape "
                          f"is {tuple(obs_shape)}: use model.encoder=mlp or linear for vector data")
    if name == "vit":
        return ViTEncoder(obs_shape, dim, width=max(width, 64), patch_size=patch_size, layers=vit_layers,
                          heads=heads, backend=backend)
    if name == "tubelet":
        return TubeletViT(obs_shape, dim, width=max(width, 64), patch_size=patch_size, tubelet_frames=tubelet_frames,
                          layers=vit_layers, heads=heads, backend=backend)
    if name == "mlp":
        return MLPEncoder(obs_shape, dim, width=max(width, 128))
    if name == "linear":
        return LinearEncoder(obs_shape, dim)
    return ConvEncoder(obs_shape, dim, width, norm)


class WindowEncoder(nn.Module):
    """Summarises non-overlapping windows of ``window`` consecutive vectors.

    ``(B, T, D_in)`` → ``(B, T // window, D_out)``: an MLP over each flattened window (a trailing
    remainder of fewer than ``window`` steps is dropped); ``hidden=0``: one linear map, without
    the input norm (``model.summarizer_hidden=0``: a level linear in the level below). Used
    bottom-up for latents and for macro-actions.
    """

    def __init__(self, window: int, dim_in: int, dim_out: int, hidden: int = 256, input_norm: bool = True):
        super().__init__()
        self.window = window
        # LayerNorm over a flattened window suits latents, but it erases what a window of low-dimensional
        # actions says: a 2-D action held for the window, (ax, ay, ax, ay, …), normalises to the same
        # vector for every action with the same sign of ax − ay. Macro-action encoders use input_norm=False.
        if hidden == 0:  # linear: no input norm either (a per-sample LayerNorm is not linear)
            self.net = nn.Linear(window * dim_in, dim_out)
        else:
            norm = nn.LayerNorm(window * dim_in) if input_norm else nn.Identity()
            self.net = nn.Sequential(norm, nn.Linear(window * dim_in, hidden), nn.GELU(), nn.Linear(hidden, dim_out))

    def forward(self, x: Tensor) -> Tensor:
        n = x.shape[1] // self.window
        w = rearrange(x[:, : n * self.window], "b (n s) d -> b n (s d)", s=self.window)
        return self.net(w)


class TickEncoder(WindowEncoder):
    """Summarises each window of ``window`` consecutive vectors by its **last** one, the level's clock
    tick (``model.summarizer=last``): ``(B, T, D_in)`` → ``(B, T // window, D_out)``, an MLP of
    ``x[:, (n+1)·window − 1]``.

    The level's state is then exactly "the lower state at my tick", the quantity the timescale theory
    is about: a window MLP can instead carry a fast component at two frames of the window (its
    values just before and just after a window boundary are one frame apart, so predictable across
    it), which measured on OU mixtures displaced a slower component (docs/timescales.md).
    """

    def __init__(self, window: int, dim_in: int, dim_out: int, hidden: int = 256, input_norm: bool = True):
        super().__init__(1, dim_in, dim_out, hidden, input_norm)
        self.window = window

    def forward(self, x: Tensor) -> Tensor:
        n = x.shape[1] // self.window
        return self.net(x[:, self.window - 1: n * self.window: self.window])


class BatchStandardize(nn.Module):
    """Standardises every feature of ``(..., D)`` over all leading positions of the batch: a
    non-affine BatchNorm (running statistics at evaluation).

    Put after an encoder whose target is an EMA copy, it removes the shrink-to-a-constant path
    of EMA self-distillation: the latent keeps unit variance per feature (the role BatchNorm
    plays in BYOL's networks).
    """

    def __init__(self, dim: int):
        super().__init__()
        self.bn = nn.BatchNorm1d(dim, affine=False)

    def forward(self, z: Tensor) -> Tensor:
        return self.bn(z.reshape(-1, z.shape[-1])).reshape(z.shape)
