"""Multi-timescale predictability of a sum of Ornstein–Uhlenbeck processes.

A component ``dx_i = −x_i/τ_i dt + √(2σ_i²/τ_i) dW_i`` is stationary Gaussian with variance
``σ_i²`` and autocorrelation ``corr(x_i(t), x_i(t+h)) = e^{−h/τ_i}``. The optimal predictor of
``x_i(t+h)`` from ``x_i(t)`` (optimal among all predictors: the process is Gaussian–Markov) is
``E[x_i(t+h) | x_i(t)] = e^{−h/τ_i} x_i(t)``, and the fraction of the variance it explains is

    R²_i(h) = 1 − E[(x_i(t+h) − e^{−h/τ_i} x_i(t))²] / σ_i² = e^{−2h/τ_i}.

So the "fraction predictable at horizon h" of docs/design.md §8, ``e^{−h/τ_i}``, is the *correlation*
between the present and the future; the fraction of *variance* predictable is its square
``e^{−2h/τ_i}``. Both are provided and named explicitly.

For independent components observed jointly, the fraction of the variance of the sum
``Σ_i x_i`` predictable from the full present state is ``Σ_i σ_i² e^{−2h/τ_i} / Σ_i σ_i²``.

Exact discretisation with step ``Δ`` (no Euler error): with ``φ = e^{−Δ/τ}``,
``x_{t+Δ} = φ x_t + σ √(1 − φ²) ξ_t``, ``ξ_t ~ N(0, 1)``, an AR(1) process.

Levels. Level ``k`` of the hierarchy steps every ``S_k`` frames (``S_k`` = cumulative product of
the per-level strides, ``hjepa.config.level_strides``), so its one-step target lies ``S_k``
frames ahead. The components worth keeping at level ``k`` are those still predictable at that
horizon: ``R²_i(S_k) ≥ r2_min`` ⇔ ``τ_i ≥ 2 S_k / ln(1/r2_min)``. The default
``r2_min = e^{−2}`` (correlation ``e^{−1}``) makes the rule exactly ``τ_i ≥ S_k``.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = [
    "ou_correlation",
    "ou_predictable_fraction",
    "sum_predictable_fraction",
    "simulate_ou",
    "empirical_predictability",
    "empirical_sum_predictability",
    "autocorrelation_standard_error",
    "cumulative_strides",
    "optimal_level_components",
    "min_timescale",
    "DEFAULT_R2_MIN",
]

DEFAULT_R2_MIN = math.exp(-2.0)


def ou_correlation(taus: np.ndarray, h: float) -> np.ndarray:
    """``corr(x_i(t), x_i(t+h)) = exp(−h/τ_i)``: ``(K,)``."""
    return np.exp(-h / np.asarray(taus, float))


def ou_predictable_fraction(taus: np.ndarray, h: float) -> np.ndarray:
    """R² of the optimal predictor of ``x_i(t+h)`` from ``x_i(t)``: ``exp(−2h/τ_i)``: ``(K,)``."""
    return ou_correlation(taus, h) ** 2


def sum_predictable_fraction(taus: np.ndarray, variances: np.ndarray, h: float) -> float:
    """R² of the optimal predictor of ``Σ_i x_i(t+h)`` given every ``x_i(t)``:
    ``Σ σ_i² e^{−2h/τ_i} / Σ σ_i²``."""
    v = np.asarray(variances, float)
    return float((v * ou_predictable_fraction(taus, h)).sum() / v.sum())


def simulate_ou(taus: np.ndarray, n_steps: int, n_chains: int = 1, dt: float = 1.0,
                variances: np.ndarray | None = None, *, rng: np.random.Generator) -> np.ndarray:
    """Exact OU paths started from stationarity: ``(n_chains, n_steps, K)``.

    ``x_{t+1} = φ x_t + σ √(1−φ²) ξ_t`` with ``φ_i = e^{−dt/τ_i}``; ``x_0 ~ N(0, σ²)``."""
    taus = np.asarray(taus, float)
    sigma = np.sqrt(np.ones_like(taus) if variances is None else np.asarray(variances, float))
    phi = np.exp(-dt / taus)
    innov = rng.standard_normal((n_chains, n_steps, taus.size)) * sigma * np.sqrt(1 - phi ** 2)
    x = np.empty_like(innov)
    x[:, 0] = rng.standard_normal((n_chains, taus.size)) * sigma
    for t in range(1, n_steps):
        x[:, t] = phi * x[:, t - 1] + innov[:, t]
    return x


def _lagged(paths: np.ndarray, lag: int) -> tuple[np.ndarray, np.ndarray]:
    """``x(t)`` pooled over chains ``(N, K)`` and the matching ``x(t+lag)`` ``(C, T−lag, K)``."""
    if lag < 1 or lag >= paths.shape[-2]:
        raise ValueError(f"lag must lie in [1, T), got {lag}")
    if paths.ndim == 2:
        paths = paths[None]
    return paths[:, :-lag].reshape(-1, paths.shape[-1]), paths[:, lag:]


def empirical_predictability(paths: np.ndarray, lag: int) -> tuple[np.ndarray, np.ndarray]:
    """Least-squares fit of ``x(t+lag)`` on ``x(t)`` per component, pooled over chains.

    ``paths`` ``(C, T, K)`` (or ``(T, K)``) → ``(corr (K,), r2 (K,))`` with ``r2 = 1 − SS_res/SS_tot``
    of the fitted linear predictor (equal to ``corr²`` for a least-squares fit with intercept)."""
    now, later = _lagged(paths, lag)
    fut = later.reshape(-1, later.shape[-1])
    now_c, fut_c = now - now.mean(0), fut - fut.mean(0)
    slope = (now_c * fut_c).sum(0) / (now_c ** 2).sum(0)
    resid = fut_c - slope * now_c
    r2 = 1 - (resid ** 2).sum(0) / (fut_c ** 2).sum(0)
    corr = (now_c * fut_c).sum(0) / np.sqrt((now_c ** 2).sum(0) * (fut_c ** 2).sum(0))
    return corr, r2


def empirical_sum_predictability(paths: np.ndarray, lag: int) -> float:
    """R² of the least-squares predictor of ``Σ_i x_i(t+lag)`` from the full state ``x(t)``
    (with intercept), pooled over chains: ``paths`` ``(C, T, K)`` → float."""
    now, later = _lagged(paths, lag)
    fut = later.sum(-1).reshape(-1)
    design = np.concatenate([now, np.ones((now.shape[0], 1))], axis=1)
    coef, *_ = np.linalg.lstsq(design, fut, rcond=None)
    resid = fut - design @ coef
    return float(1 - (resid ** 2).sum() / ((fut - fut.mean()) ** 2).sum())


def autocorrelation_standard_error(taus: np.ndarray, lag: int, n_steps: int, n_chains: int = 1,
                                   dt: float = 1.0) -> np.ndarray:
    """Bartlett's large-sample standard error of the lag-``lag`` autocorrelation of an AR(1)
    with ``φ = e^{−dt/τ}``, pooled over ``n_chains`` independent chains of ``n_steps``:

        Var(r_h) ≈ [ (1 + φ²)(1 − φ^{2h}) / (1 − φ²) − 2h φ^{2h} ] / (n_chains · n_steps).
    """
    phi = np.exp(-dt / np.asarray(taus, float))
    p2h = phi ** (2 * lag)
    var = ((1 + phi ** 2) * (1 - p2h) / (1 - phi ** 2) - 2 * lag * p2h) / (n_chains * n_steps)
    return np.sqrt(var)


def cumulative_strides(level_strides: list[int]) -> list[int]:
    """Frames per step of each level: ``S_k = s_0 · s_1 ⋯ s_k`` (``s_0 = 1`` for level 0)."""
    out, acc = [], 1
    for s in level_strides:
        acc *= int(s)
        out.append(acc)
    return out


def optimal_level_components(taus: np.ndarray, level_strides: list[int],
                             r2_min: float = DEFAULT_R2_MIN) -> np.ndarray:
    """Which components each level should keep: ``(levels, K)`` boolean.

    Level ``k`` keeps component ``i`` iff its one-step-ahead R² at horizon ``S_k`` is at least
    ``r2_min``: ``exp(−2 S_k/τ_i) ≥ r2_min`` ⇔ ``τ_i ≥ 2 S_k / ln(1/r2_min)`` (⇔ ``τ_i ≥ S_k`` at
    the default ``r2_min = e^{−2}``). ``level_strides`` are per level, as returned by
    ``hjepa.config.level_strides`` (``[1, s_1, …]``)."""
    horizons = np.asarray(cumulative_strides(level_strides), float)
    tau_min = min_timescale(horizons, r2_min)
    return np.asarray(taus, float)[None, :] >= tau_min[:, None] * (1 - 1e-12)


def min_timescale(horizons: np.ndarray, r2_min: float = DEFAULT_R2_MIN) -> np.ndarray:
    """Smallest ``τ`` whose R² at each horizon reaches ``r2_min``: ``2h / ln(1/r2_min)``."""
    if not 0 < r2_min < 1:
        raise ValueError("r2_min must lie in (0, 1)")
    return 2 * np.asarray(horizons, float) / math.log(1 / r2_min)
