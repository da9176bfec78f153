"""LeJEPA theory, as executable checks (Balestriero & LeCun, 2025).

Three claims behind the ``sigreg`` regulariser of :mod:`hjepa.regularizers`:

(a) **Isotropy is minimax for linear probes.** Embeddings ``z ∈ R^D`` with covariance ``Σ`` of
    fixed trace ``tr Σ = D``; a downstream target ``y = zᵀβ + ε``, ``ε ~ N(0, σ²)``, fitted by
    OLS on ``n`` Gaussian samples. Since ``β̂ − β = (ZᵀZ)⁻¹Zᵀε`` and
    ``E[(ZᵀZ)⁻¹] = Σ⁻¹ / (n − D − 1)`` (inverse-Wishart mean),

        M(Σ) := E[(β̂ − β)(β̂ − β)ᵀ] = σ² Σ⁻¹ / (n − D − 1).

    The probe's error along a unit direction ``u`` is ``uᵀMu``; its worst case over ``u`` is
    ``λ_max(M) = σ² / ((n − D − 1) λ_min(Σ))``. Under ``tr Σ = D``, ``λ_min(Σ) ≤ 1`` with equality
    iff ``Σ = I``, so the isotropic covariance is the unique minimiser; likewise
    ``tr M ∝ tr Σ⁻¹ ≥ D² / tr Σ`` (AM–HM), equality iff ``Σ ∝ I``. Ridge with penalty ``l2`` adds a
    bias ``−l2 (Σ + l2 I)⁻¹ β`` (population design) whose worst case over unit ``β`` is
    ``(l2 / (λ_min + l2))²`` — again minimised by ``Σ = I``.
    Honest caveat: the *in-distribution* OLS excess risk ``E[(β̂ − β)ᵀ Σ (β̂ − β)] = σ² D/(n−D−1)``
    does not depend on ``Σ`` (OLS is affine-equivariant); anisotropy hurts the probe's weights
    and therefore any test distribution other than the training one, and it hurts ridge.

(b) **Slicing (Cramér–Wold).** A law on ``R^D`` is ``N(0, I)`` iff every 1-D projection ``aᵀz``
    (``‖a‖ = 1``) is ``N(0, 1)``; coordinate marginals are not enough. The *sign-scrambled
    Gaussian* ``z = g · s`` (``g ~ N(0, 1)``, ``s`` uniform on ``{±1}^D`` independent of ``g``)
    has every coordinate exactly ``N(0, 1)`` and covariance exactly ``I``, yet ``aᵀz = g · (aᵀs)``
    is a scale mixture of Gaussians, non-Gaussian for every ``a`` off the axes.

(c) **The Epps–Pulley statistic.** With the empirical characteristic function ``φ̂`` of ``N`` iid
    samples of a symmetric law with characteristic function ``φ`` (real), and
    ``E|φ̂(t) − φ(t)|² = (1 − φ(t)²) / N``, the statistic
    ``EP = N Σ_k w_k |φ̂(t_k) − e^{−t_k²/2}|²`` has the exact expectation

        E[EP] = N · Σ_k w_k (φ(t_k) − e^{−t_k²/2})²  +  Σ_k w_k (1 − φ(t_k)²).

    For ``N(0, 1)`` the first term vanishes: ``E[EP]`` equals the null value (≈ 1.05) for every
    ``N``. For any other law it grows linearly in ``N`` with slope ``rate(φ)`` — for a Gaussian of
    variance ``v`` (anisotropy: ``v = aᵀΣa ≠ 1``; rank collapse: ``v < 1``; full collapse: ``v = 0``)
    ``φ(t) = e^{−v t²/2}``.
"""

from __future__ import annotations

import itertools
import math

import torch
from torch import Tensor

from hjepa.regularizers import epps_pulley, random_directions

__all__ = [
    "spectrum_with_trace",
    "covariance_from_spectrum",
    "ols_error_second_moment",
    "worst_case_probe_risk",
    "average_probe_risk",
    "in_distribution_excess_risk",
    "ridge_worst_case_bias",
    "monte_carlo_ols_error",
    "monte_carlo_ridge_bias",
    "sign_scrambled_gaussian",
    "sign_scrambled_cf",
    "gaussian_cf",
    "ep_quadrature",
    "ep_rate",
    "expected_ep",
    "expected_sliced_ep",
    "per_coordinate_ep",
    "sliced_ep",
]


# ---------------------------------------------------------------------------------------------
# (a) isotropy minimises the worst-case linear-probe risk
# ---------------------------------------------------------------------------------------------

def spectrum_with_trace(dim: int, condition: float) -> Tensor:
    """Geometric eigenvalues from ``1`` down to ``1/condition``, rescaled to sum to ``dim``: ``(dim,)``.

    ``condition = 1`` gives the isotropic spectrum ``(1, …, 1)``.
    """
    if condition < 1:
        raise ValueError("condition must be >= 1")
    e = torch.logspace(0.0, -math.log10(condition), dim, dtype=torch.float64)
    return e * dim / e.sum()


def covariance_from_spectrum(eigs: Tensor, *, generator: torch.Generator | None = None) -> Tensor:
    """``Q diag(eigs) Qᵀ`` with ``Q`` a random orthogonal matrix (QR of a Gaussian): ``(D, D)``."""
    d = eigs.shape[0]
    q, r = torch.linalg.qr(torch.randn(d, d, generator=generator, dtype=torch.float64))
    q = q * torch.sign(torch.diagonal(r))
    return (q * eigs.to(torch.float64)) @ q.T


def ols_error_second_moment(cov: Tensor, n: int, noise_var: float = 1.0) -> Tensor:
    """``M = E[(β̂ − β)(β̂ − β)ᵀ] = σ² Σ⁻¹ / (n − D − 1)`` for OLS on ``n`` Gaussian samples: ``(D, D)``."""
    d = cov.shape[0]
    if n <= d + 1:
        raise ValueError(f"need n > D + 1 for a finite OLS error, got n={n}, D={d}")
    return noise_var * torch.linalg.inv(cov) / (n - d - 1)


def worst_case_probe_risk(cov: Tensor, n: int, noise_var: float = 1.0) -> float:
    """``max_{‖u‖=1} E[(uᵀ(β̂ − β))²] = σ² / ((n − D − 1) λ_min(Σ))`` — minimised over
    ``tr Σ = D`` exactly at ``Σ = I``."""
    return float(torch.linalg.eigvalsh(ols_error_second_moment(cov, n, noise_var)).max())


def average_probe_risk(cov: Tensor, n: int, noise_var: float = 1.0) -> float:
    """``E_u E[(uᵀ(β̂ − β))²]`` for ``u`` uniform on the sphere ``= tr M / D ∝ tr Σ⁻¹``."""
    m = ols_error_second_moment(cov, n, noise_var)
    return float(torch.trace(m)) / m.shape[0]


def in_distribution_excess_risk(dim: int, n: int, noise_var: float = 1.0) -> float:
    """``E[(β̂ − β)ᵀ Σ (β̂ − β)] = σ² D / (n − D − 1)`` — the same for every ``Σ``."""
    return noise_var * dim / (n - dim - 1)


def ridge_worst_case_bias(cov: Tensor, l2: float) -> float:
    """``max_{‖β‖=1} ‖l2 (Σ + l2 I)⁻¹ β‖² = (l2 / (λ_min(Σ) + l2))²`` (population design)."""
    lam_min = float(torch.linalg.eigvalsh(cov).min())
    return (l2 / (lam_min + l2)) ** 2


def _gaussian_design(cov: Tensor, trials: int, n: int, generator: torch.Generator | None) -> Tensor:
    """``trials`` designs of ``n`` rows from ``N(0, Σ)``: ``(trials, n, D)``."""
    chol = torch.linalg.cholesky(cov)
    g = torch.randn(trials, n, cov.shape[0], generator=generator, dtype=torch.float64)
    return g @ chol.T


def monte_carlo_ols_error(cov: Tensor, n: int, noise_var: float = 1.0, trials: int = 2000, *,
                          generator: torch.Generator | None = None) -> tuple[Tensor, float]:
    """Fit OLS ``trials`` times on fresh data ``y = zᵀβ + ε``; return the empirical ``M̂``
    ``(D, D)`` and the empirical in-distribution excess risk ``mean (β̂−β)ᵀΣ(β̂−β)``."""
    d = cov.shape[0]
    beta = torch.ones(d, dtype=torch.float64) / math.sqrt(d)
    z = _gaussian_design(cov, trials, n, generator)
    eps = math.sqrt(noise_var) * torch.randn(trials, n, generator=generator, dtype=torch.float64)
    y = z @ beta + eps
    beta_hat = torch.linalg.lstsq(z, y.unsqueeze(-1)).solution.squeeze(-1)  # (trials, D)
    err = beta_hat - beta
    m_hat = err.T @ err / trials
    risk = float(((err @ cov) * err).sum(-1).mean())
    return m_hat, risk


def monte_carlo_ridge_bias(cov: Tensor, l2: float, n: int = 4096, trials: int = 8, *,
                           generator: torch.Generator | None = None) -> float:
    """Noise-free ridge fits of the worst-case target ``β = u_min`` (eigenvector of ``λ_min``);
    returns the mean ``‖β̂ − β‖²`` with ``β̂ = (ZᵀZ/n + l2 I)⁻¹ Zᵀy / n``."""
    evals, evecs = torch.linalg.eigh(cov)
    beta = evecs[:, 0]
    z = _gaussian_design(cov, trials, n, generator)
    y = z @ beta
    gram = z.transpose(1, 2) @ z / n + l2 * torch.eye(cov.shape[0], dtype=torch.float64)
    beta_hat = torch.linalg.solve(gram, (z.transpose(1, 2) @ y.unsqueeze(-1)).squeeze(-1) / n)
    return float((beta_hat - beta).square().sum(-1).mean())


# ---------------------------------------------------------------------------------------------
# (b) slicing: Gaussian marginals do not make a Gaussian
# ---------------------------------------------------------------------------------------------

def sign_scrambled_gaussian(n: int, dim: int, *, generator: torch.Generator | None = None) -> Tensor:
    """``z = g · s`` with ``g ~ N(0, 1)``, ``s ~ U{±1}^D``: ``(n, D)``. Every coordinate is exactly
    N(0, 1), ``Cov z = I``, but the joint law is not Gaussian (``|z_1| = … = |z_D|``)."""
    g = torch.randn(n, 1, generator=generator, dtype=torch.float64)
    s = torch.randint(0, 2, (n, dim), generator=generator).to(torch.float64) * 2 - 1
    return g * s


def sign_scrambled_cf(direction: Tensor, t: Tensor) -> Tensor:
    """Exact characteristic function of ``aᵀz`` for the sign-scrambled Gaussian at ``t`` ``(K,)``:
    ``φ(t) = 2^{−D} Σ_{s ∈ {±1}^D} exp(−t² (aᵀs)² / 2)`` (enumerates the ``2^D`` signs; ``D ≤ 16``)."""
    d = direction.shape[0]
    if d > 16:
        raise ValueError("sign_scrambled_cf enumerates 2^D sign patterns; keep D <= 16")
    signs = torch.tensor(list(itertools.product((-1.0, 1.0), repeat=d)), dtype=torch.float64)
    scale = (signs @ direction.to(torch.float64)).square()  # (2^D,)
    return torch.exp(-0.5 * t.square().unsqueeze(0) * scale.unsqueeze(1)).mean(0)


def gaussian_cf(var: float, t: Tensor) -> Tensor:
    """Characteristic function of N(0, var) at ``t``: ``exp(−var t² / 2)``."""
    return torch.exp(-0.5 * var * t.square())


# ---------------------------------------------------------------------------------------------
# (c) the Epps–Pulley statistic: exact expectation
# ---------------------------------------------------------------------------------------------

def ep_quadrature(num_knots: int = 17, t_max: float = 3.0) -> tuple[Tensor, Tensor]:
    """Knots ``t`` ``(K,)`` on ``[0, t_max]`` and weights ``w`` ``(K,)`` such that
    ``Σ_k w_k f(t_k) ≈ ∫_{−t_max}^{t_max} f(t) e^{−t²/2} dt`` for even ``f`` (trapezoid rule, doubled).
    This is the quadrature that :func:`hjepa.regularizers.epps_pulley` documents."""
    t = torch.linspace(0.0, t_max, num_knots, dtype=torch.float64)
    dt = t_max / (num_knots - 1)
    trap = torch.full((num_knots,), dt, dtype=torch.float64)
    trap[0] = trap[-1] = dt / 2
    return t, 2.0 * trap * torch.exp(-0.5 * t.square())


def ep_rate(cf: Tensor, w: Tensor, t: Tensor) -> float:
    """Slope of ``E[EP]`` in ``N``: ``Σ_k w_k (φ(t_k) − e^{−t_k²/2})²``; zero iff φ matches N(0,1)
    on the knots. ``cf``, ``w``, ``t``: ``(K,)``."""
    return float((w * (cf - torch.exp(-0.5 * t.square())).square()).sum())


def expected_ep(cf: Tensor, n: int, num_knots: int = 17, t_max: float = 3.0) -> float:
    """Exact ``E[EP]`` for ``n`` iid samples of a symmetric law with real characteristic
    function values ``cf`` ``(K,)`` on the knots of :func:`ep_quadrature`:
    ``n · rate + Σ_k w_k (1 − φ(t_k)²)``."""
    t, w = ep_quadrature(num_knots, t_max)
    return n * ep_rate(cf, w, t) + float((w * (1 - cf.square())).sum())


def expected_sliced_ep(cfs: Tensor, n: int, num_knots: int = 17, t_max: float = 3.0) -> float:
    """Exact ``E`` of the direction-averaged statistic for fixed directions whose projected laws
    have characteristic functions ``cfs`` ``(M, K)``."""
    return sum(expected_ep(cf, n, num_knots, t_max) for cf in cfs) / cfs.shape[0]


def per_coordinate_ep(z: Tensor) -> Tensor:
    """Epps–Pulley statistic of each coordinate of ``z`` ``(N, D)``: ``(D,)`` — the axis-only test."""
    return epps_pulley(z)


def sliced_ep(z: Tensor, num_directions: int = 64, *,
              generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
    """Epps–Pulley statistic of ``z`` ``(N, D)`` along ``num_directions`` random unit directions.

    Returns ``(stats (M,), directions (D, M))`` so callers can compute the exact expectation
    for the same slices."""
    a = random_directions(z.shape[1], num_directions, generator=generator, dtype=z.dtype)
    return epps_pulley(z @ a), a
