"""Anti-collapse regularisers on a batch of embeddings ``(N, D)``, chosen by name.

* ``sigreg``  — LeJEPA's sketched isotropic-Gaussian regulariser (Balestriero & LeCun, 2025):
  project the embeddings on ``M`` random unit directions and compare every 1-D empirical
  characteristic function with that of N(0, 1) through the Epps–Pulley statistic.
* ``vicreg``  — variance hinge on per-dimension std + off-diagonal covariance penalty.
* ``none``    — returns zero; used to show collapse.

``ema`` is not a regulariser of the embeddings but a target-encoder choice; it is registered
here as a zero penalty so that ``regularizer=ema`` reads the same as the others.
"""

from __future__ import annotations

import math
from typing import Callable

import torch
from torch import Tensor, nn

__all__ = [
    "epps_pulley",
    "sigreg_statistic",
    "random_directions",
    "hashed_directions",
    "SIGReg",
    "VICReg",
    "NoRegularizer",
    "REGULARIZERS",
    "build_regularizer",
]


def random_directions(dim: int, num: int, *, generator: torch.Generator | None = None,
                      device=None, dtype=torch.float32) -> Tensor:
    """``num`` unit vectors drawn uniformly on the sphere in R^dim, as columns: ``(dim, num)``."""
    a = torch.randn(dim, num, generator=generator, device=device, dtype=dtype)
    return a / a.norm(dim=0, keepdim=True).clamp_min(1e-12)


_M32 = 0xFFFFFFFF


def _mul32(x: Tensor, c: int) -> Tensor:
    """``x · c mod 2³²`` for ``x`` in [0, 2³²) held in int64, without overflowing int64."""
    hi, lo = x >> 16, x & 0xFFFF
    return ((((hi * c) & 0xFFFF) << 16) + lo * c) & _M32


def _hash32(x: Tensor) -> Tensor:
    """A 32-bit integer mix (``lowbias32``) applied elementwise to int64 values in [0, 2³²)."""
    x = x ^ (x >> 16)
    x = _mul32(x, 0x7FEB352D)
    x = x ^ (x >> 15)
    x = _mul32(x, 0x846CA68B)
    return x ^ (x >> 16)


def hashed_directions(dim: int, num: int, key: Tensor, *, dtype=torch.float32) -> Tensor:
    """``num`` unit directions in R^dim as columns ``(dim, num)``, a pure function of ``key``.

    ``key`` is a 0-d int64 tensor (e.g. ``seed · 1_000_003 + call``) on the device where the
    directions are needed: they are computed there by counter-based hashing and Box–Muller, with
    no host round-trip and no generator state, so a compiled or CUDA-graphed step can draw fresh
    directions every call, and every DDP rank draws the same ones.
    """
    idx = torch.arange(dim * num, device=key.device, dtype=torch.int64)
    k = _hash32((key.to(torch.int64) * 0x9E3779B1) & _M32)
    bits1 = _hash32((idx * 2 + k) & _M32)
    bits2 = _hash32((idx * 2 + 1 + (k ^ 0x5BD1E995)) & _M32)
    u1 = ((bits1 >> 8).to(torch.float32) + 0.5) * 2.0 ** -24  # (0, 1): log(u1) finite
    u2 = (bits2 >> 8).to(torch.float32) * 2.0 ** -24
    g = torch.sqrt(-2.0 * torch.log(u1)) * torch.cos(2 * math.pi * u2)
    a = g.reshape(dim, num)
    return (a / a.norm(dim=0, keepdim=True).clamp_min(1e-12)).to(dtype)


def _quadrature(num_knots: int, t_max: float, device, dtype) -> tuple[Tensor, Tensor]:
    """Trapezoid nodes ``t`` on [0, t_max] and weights ``w·exp(-t²/2)``, doubled for the
    symmetric half-line (the integrand is even in t)."""
    t = torch.linspace(0.0, t_max, num_knots, device=device, dtype=dtype)
    dt = t_max / (num_knots - 1)
    trap = torch.full((num_knots,), dt, device=device, dtype=dtype)
    trap[0] = trap[-1] = dt / 2
    return t, 2.0 * trap * torch.exp(-t.square() / 2)


def epps_pulley(h: Tensor, *, num_knots: int = 17, t_max: float = 3.0) -> Tensor:
    """Epps–Pulley statistic of each column of ``h`` ``(N, M)`` against N(0, 1): ``(M,)``.

    ``EP = N · ∫ |φ̂(t) − e^{−t²/2}|² e^{−t²/2} dt`` with ``φ̂(t) = mean_n exp(i t h_n)``,
    integrated by the trapezoid rule on ``[-t_max, t_max]``. ``E[EP] = O(1)`` when the column
    is N(0, 1); it grows linearly in N for any other distribution. Cost ``O(N·M·knots)``.
    """
    t, w = _quadrature(num_knots, t_max, h.device, h.dtype)
    re, im = _ecf(h, t)
    return _ep_from_ecf(re, im, t, w, h.shape[0])


class _ECF(torch.autograd.Function):
    """``cos`` and ``sin`` of ``h·t`` averaged over the rows, with a hand-written backward that
    reuses the forward's ``cos``/``sin`` instead of evaluating them again (autograd's backward of
    ``cos``/``sin`` recomputes ``sin``/``cos``): half the transcendental work of SIGReg."""

    @staticmethod
    def forward(ctx, h: Tensor, t: Tensor):
        ht = h.unsqueeze(-1) * t  # (N, M, K)
        c, s = torch.cos(ht), torch.sin(ht)
        ctx.save_for_backward(c, s, t)
        return c.mean(0), s.mean(0)

    @staticmethod
    def backward(ctx, g_re: Tensor, g_im: Tensor):
        c, s, t = ctx.saved_tensors
        n = c.shape[0]
        # d re[m,k]/d h[n,m] = -t_k sin(h t_k) / N ;  d im[m,k]/d h[n,m] = t_k cos(h t_k) / N
        grad_h = (c * (g_im * t) - s * (g_re * t)).sum(-1) / n
        return grad_h, None


def _ecf(h: Tensor, t: Tensor) -> tuple[Tensor, Tensor]:
    """Real and imaginary parts of the empirical characteristic function of each column of
    ``h`` ``(N, M)`` at the knots ``t`` ``(K,)``: two ``(M, K)`` tensors."""
    if torch.is_grad_enabled() and h.requires_grad:
        return _ECF.apply(h, t)
    ht = h.unsqueeze(-1) * t  # (N, M, K)
    return torch.cos(ht).mean(0), torch.sin(ht).mean(0)


def _ep_from_ecf(re: Tensor, im: Tensor, t: Tensor, w: Tensor, n) -> Tensor:
    """``n · Σ_k w_k |φ̂(t_k) − e^{−t_k²/2}|²`` per direction: ``(M,)``."""
    err = (re - torch.exp(-t.square() / 2)).square() + im.square()
    return n * (err @ w)


def sigreg_statistic(z: Tensor, directions: Tensor | None = None, *, num_directions: int = 256,
                     num_knots: int = 17, t_max: float = 3.0,
                     generator: torch.Generator | None = None) -> Tensor:
    """Sliced Epps–Pulley statistic of embeddings ``z`` ``(N, D)``, averaged over directions.

    ``directions`` ``(D, M)`` fixes the slices (tests, evaluation); otherwise ``num_directions``
    fresh unit directions are drawn. Returns a scalar: ~O(1) for N(0, I) samples, large for
    collapsed or anisotropic ones.
    """
    if z.ndim != 2:
        raise ValueError(f"sigreg_statistic expects embeddings of shape (N, D), got {tuple(z.shape)}")
    if directions is None:
        directions = random_directions(z.shape[1], num_directions, generator=generator,
                                       device=z.device, dtype=z.dtype)
    return epps_pulley(z @ directions, num_knots=num_knots, t_max=t_max).mean()


class SIGReg(nn.Module):
    """LeJEPA's SIGReg as a module. Directions are re-sampled at every call unless fixed.

    Under DDP the per-direction characteristic functions are averaged over ranks before the
    statistic is formed, so the penalty is that of the global batch. Directions are a pure function
    of ``(seed, calls)`` computed on the embeddings' device (``hashed_directions``): identical on
    every rank, restored exactly by a checkpoint, and drawn without a host-device sync.
    """

    def __init__(self, num_directions: int = 256, num_knots: int = 17, t_max: float = 3.0,
                 directions: Tensor | None = None, seed: int = 0):
        super().__init__()
        self.num_directions = num_directions
        self.num_knots = num_knots
        self.t_max = t_max
        self.fixed_directions = directions
        self.seed = seed
        # number of draws so far: a buffer, so checkpoints restore the direction stream exactly
        self.register_buffer("calls", torch.zeros((), dtype=torch.long))

    def _directions(self, dim: int, device, dtype) -> Tensor:
        if self.fixed_directions is not None:
            return self.fixed_directions.to(device=device, dtype=dtype)
        key = self.calls.to(device) + self.seed * 1_000_003
        self.calls.add_(1)
        return hashed_directions(dim, self.num_directions, key, dtype=dtype)

    def forward(self, z: Tensor) -> Tensor:
        """``z`` ``(N, D)`` → scalar penalty (computed in float32, also under bf16 autocast)."""
        with torch.autocast(z.device.type, enabled=False):
            return self._penalty(z.float())

    def _penalty(self, z: Tensor) -> Tensor:
        a = self._directions(z.shape[1], z.device, z.dtype)
        t, w = _quadrature(self.num_knots, self.t_max, z.device, z.dtype)
        re, im = _ecf(z @ a, t)
        n = z.shape[0]
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            from torch.distributed.nn.functional import all_reduce

            world = torch.distributed.get_world_size()
            re, im, n = all_reduce(re) / world, all_reduce(im) / world, n * world
        return _ep_from_ecf(re, im, t, w, n).mean()


class VICReg(nn.Module):
    """Variance hinge ``mean_j relu(γ − std_j)`` + off-diagonal covariance ``Σ_{i≠j} C_ij² / D``."""

    def __init__(self, std_target: float = 1.0, cov_weight: float = 0.04, eps: float = 1e-4):
        super().__init__()
        self.std_target, self.cov_weight, self.eps = std_target, cov_weight, eps

    def forward(self, z: Tensor) -> Tensor:
        n, d = z.shape
        z = z - z.mean(0)
        std = torch.sqrt(z.var(0) + self.eps)
        var_loss = torch.relu(self.std_target - std).mean()
        cov = (z.T @ z) / max(n - 1, 1)
        off = cov - torch.diag(torch.diag(cov))
        return var_loss + self.cov_weight * off.square().sum() / d


class NoRegularizer(nn.Module):
    """Zero penalty (``none`` and ``ema``): keeps the graph connected so the loss stays differentiable."""

    def forward(self, z: Tensor) -> Tensor:
        return z.sum() * 0.0


REGULARIZERS: dict[str, Callable[..., nn.Module]] = {
    "sigreg": lambda cfg: SIGReg(cfg.num_directions, cfg.num_knots, cfg.t_max, seed=cfg.seed),
    "vicreg": lambda cfg: VICReg(cfg.std_target, cfg.cov_weight),
    "ema": lambda cfg: NoRegularizer(),
    "none": lambda cfg: NoRegularizer(),
}


def build_regularizer(name: str, cfg) -> nn.Module:
    """Regulariser by name; ``cfg`` carries its hyper-parameters (see ``hjepa.config.RegularizerConfig``)."""
    if name not in REGULARIZERS:
        raise ValueError(f"unknown regularizer {name!r}; choose one of {sorted(REGULARIZERS)}")
    return REGULARIZERS[name](cfg)


def expected_ep_null(num_knots: int = 17, t_max: float = 3.0) -> float:
    """E[EP] for exact N(0,1) samples: ``∫ (1 − e^{−t²}) e^{−t²/2} dt`` (finite-N bias of |φ̂|²).

    Useful to judge the statistic: for Gaussian data it stays near this value whatever N is.
    """
    t = torch.linspace(0.0, t_max, 2001, dtype=torch.float64)
    f = (1 - torch.exp(-t.square())) * torch.exp(-t.square() / 2)
    return float(2 * torch.trapezoid(f, t))

