"""Collapse and rank diagnostics as plain functions of an embedding matrix ``z`` ``(N, D)``.

All return Python floats or 1-D tensors and never touch autograd. References:
RankMe — Garrido et al. 2023; effective rank — Roy & Vetterli 2007; dimensional collapse —
Jing et al. 2022; power-law eigenspectrum — Agrawal et al. 2022 (α-ReQ).
"""

from __future__ import annotations

import torch
from torch import Tensor

from .regularizers import random_directions, sigreg_statistic

__all__ = [
    "singular_values",
    "eigenspectrum",
    "rankme",
    "effective_rank",
    "per_dim_std",
    "mean_pairwise_cosine",
    "powerlaw_alpha",
    "fit_powerlaw",
    "sigreg_stat",
    "ridge_probe_r2",
    "collapse_report",
]


def _check(z: Tensor) -> Tensor:
    if z.ndim != 2:
        raise ValueError(f"expected an embedding matrix (N, D), got shape {tuple(z.shape)}")
    return z.detach().to(torch.float64)


@torch.no_grad()
def singular_values(z: Tensor, center: bool = False) -> Tensor:
    """Singular values of ``z`` ``(N, D)`` in decreasing order: ``(min(N, D),)``."""
    z = _check(z)
    if center:
        z = z - z.mean(0)
    return torch.linalg.svdvals(z)


@torch.no_grad()
def eigenspectrum(z: Tensor) -> Tensor:
    """Eigenvalues of the covariance of ``z`` ``(N, D)``, decreasing: ``(min(N, D),)``."""
    s = singular_values(z, center=True)
    return s.square() / max(z.shape[0] - 1, 1)


@torch.no_grad()
def rankme(z: Tensor, eps: float = 1e-7) -> float:
    """RankMe ``exp(−Σ p_i log p_i)`` with ``p_i = σ_i / Σσ + ε`` (Garrido et al. 2023).

    ≈ D for an isotropic Gaussian with N ≫ D, ≤ k for a rank-k matrix, ≈ 1 for a constant one.
    Invariant to orthogonal rotations and to scaling of ``z``.
    """
    s = singular_values(z)
    total = s.sum()
    # ε is added after normalising (not to Σσ), so the value is exactly scale-invariant; an all-zero
    # matrix gives p_i = ε and RankMe ≈ 1
    p = (s / total if total > 0 else torch.zeros_like(s)) + eps
    return float(torch.exp(-(p * torch.log(p)).sum()))


def effective_rank(z: Tensor, eps: float = 1e-7) -> float:
    """Effective rank of Roy & Vetterli (2007) — the same entropy of normalised singular values."""
    return rankme(z, eps)


@torch.no_grad()
def per_dim_std(z: Tensor) -> Tensor:
    """Standard deviation of each embedding dimension over the batch: ``(D,)``."""
    return _check(z).std(0)


@torch.no_grad()
def mean_pairwise_cosine(z: Tensor, eps: float = 1e-8) -> float:
    """Mean cosine similarity over all pairs i ≠ j: ≈ 0 for isotropic data, → 1 under collapse."""
    z = _check(z)
    n = z.shape[0]
    if n < 2:
        raise ValueError("mean_pairwise_cosine needs at least two embeddings")
    u = z / z.norm(dim=1, keepdim=True).clamp_min(eps)
    s = u.sum(0)
    total = s @ s - (u * u).sum()  # Σ_{i≠j} <u_i, u_j>
    return float(total / (n * (n - 1)))


@torch.no_grad()
def fit_powerlaw(spectrum: Tensor, fit_range: tuple[float, float] = (0.0, 1.0), eps: float = 1e-12) -> float:
    """α of a least-squares fit ``log λ_i = c − α·log i`` to a spectrum ``(K,)`` (sorted here in
    decreasing order; values below ``eps · max`` are dropped as numerically zero), on the fraction
    ``fit_range`` of the ranked values. ``inf`` when fewer than two values remain (one direction:
    infinitely steep decay)."""
    lam = torch.as_tensor(spectrum).detach().to(torch.float64).flatten().sort(descending=True).values
    if lam.numel() == 0 or not bool(lam[0] > 0):
        return float("inf")
    lam = lam[lam > eps * lam[0]]
    k = lam.numel()
    lo, hi = int(fit_range[0] * k), max(int(fit_range[1] * k), int(fit_range[0] * k) + 2)
    lam = lam[lo:hi]
    if lam.numel() < 2:
        return float("inf")
    x = torch.log(torch.arange(lo + 1, lo + 1 + lam.numel(), dtype=torch.float64))
    y = torch.log(lam)
    xc, yc = x - x.mean(), y - y.mean()
    return float(-(xc @ yc) / (xc @ xc))


@torch.no_grad()
def powerlaw_alpha(z: Tensor, fit_range: tuple[float, float] = (0.0, 1.0), eps: float = 1e-12) -> float:
    """α of a power-law fit ``λ_i ∝ i^{−α}`` to the covariance eigenspectrum (least squares in
    log–log), on the fraction ``fit_range`` of the ranked eigenvalues (default: all non-zero).

    ≈ 0 for an isotropic Gaussian, large under dimensional collapse; invariant to rotations and
    scaling of ``z``."""
    return fit_powerlaw(eigenspectrum(z), fit_range, eps)


@torch.no_grad()
def sigreg_stat(z: Tensor, num_directions: int = 256, seed: int = 0) -> float:
    """SIGReg statistic of ``z`` on fixed (seeded) directions, without standardising ``z``:
    how far the embedding distribution is from N(0, I)."""
    z = _check(z).float()
    g = torch.Generator().manual_seed(seed)
    a = random_directions(z.shape[1], num_directions, generator=g)
    return float(sigreg_statistic(z, a))


@torch.no_grad()
def ridge_probe_r2(z_train: Tensor, y_train: Tensor, z_test: Tensor, y_test: Tensor,
                   l2: float = 1e-3) -> Tensor:
    """Held-out R² of a ridge regression from frozen embeddings to each target column.

    ``z_* (N, D)``, ``y_* (N, F)`` → ``(F,)``. Features are standardised on the training split;
    ``l2`` is relative to the mean feature variance. A constant target gets R² = 0.
    """
    zt, zv = _check(z_train), _check(z_test)
    yt, yv = y_train.detach().to(torch.float64), y_test.detach().to(torch.float64)
    mu, sd = zt.mean(0), zt.std(0).clamp_min(1e-6)
    zt, zv = (zt - mu) / sd, (zv - mu) / sd
    ym = yt.mean(0)
    d = zt.shape[1]
    a = zt.T @ zt + l2 * zt.shape[0] * torch.eye(d, dtype=zt.dtype)
    w = torch.linalg.solve(a, zt.T @ (yt - ym))
    pred = zv @ w + ym
    ss_res = (yv - pred).square().sum(0)
    ss_tot = (yv - yv.mean(0)).square().sum(0)
    r2 = 1 - ss_res / ss_tot.clamp_min(1e-12)
    return torch.where(ss_tot > 1e-12, r2, torch.zeros_like(r2)).float()


def collapse_report(z: Tensor) -> dict[str, float]:
    """All scalar collapse diagnostics of ``z`` ``(N, D)`` in one dict (for logging)."""
    std = per_dim_std(z)
    return {
        "rankme": rankme(z),
        "std_mean": float(std.mean()),
        "std_min": float(std.min()),
        "cosine_mean": mean_pairwise_cosine(z),
        "powerlaw_alpha": powerlaw_alpha(z),
        "sigreg_stat": sigreg_stat(z),
    }
