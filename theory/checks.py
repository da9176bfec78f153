"""Every theory check as a function returning one table row: claim, expected, measured, pass.

``CHECKS`` maps a check's name to its function; ``python -m theory`` runs them all (plus the
bridge experiment, :mod:`theory.bridge`) and prints one table. Each row names its test:
``tests/test_theory_checks.py::test_theory_check[<name>]`` runs the same function and asserts it
passes; the row also names the detailed test of ``tests/test_theory.py`` that checks the claim
more thoroughly (hypothesis over parameters, tighter tolerances). Every check is seeded and takes
well under a few seconds on one CPU core.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

from . import lejepa, linear_jepa as lj, multiscale as ms

__all__ = ["Row", "CHECKS", "run_checks"]


@dataclass
class Row:
    name: str
    claim: str
    expected: str
    measured: str
    passed: bool
    test: str  # the detailed test of the claim


CHECKS: dict[str, Callable[[], Row]] = {}


def _check(fn: Callable[[], Row]) -> Callable[[], Row]:
    CHECKS[fn.__name__] = fn
    return fn


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# --------------------------------------------------------------------------- LeJEPA
@_check
def isotropy_minimises_probe_risk() -> Row:
    dim, n = 4, 24
    iso = lejepa.worst_case_probe_risk(torch.eye(dim, dtype=torch.float64), n)
    cov = lejepa.covariance_from_spectrum(lejepa.spectrum_with_trace(dim, 10.0), generator=_gen(0))
    aniso = lejepa.worst_case_probe_risk(cov, n)
    return Row("isotropy_minimises_probe_risk", "isotropic embeddings minimise the worst-case OLS probe risk "
               "(D=4, n=24, fixed trace)", "iso 0.0526 < condition-10",
               f"iso {iso:.4f}, condition-10 {aniso:.4f}", abs(iso - 1 / 19) < 1e-9 and aniso > 3 * iso,
               "tests/test_theory.py::test_isotropy_minimises_closed_form_probe_risks")


@_check
def ols_probe_monte_carlo() -> Row:
    dim, n = 4, 24
    cov = lejepa.covariance_from_spectrum(lejepa.spectrum_with_trace(dim, 10.0), generator=_gen(0))
    m_hat, _ = lejepa.monte_carlo_ols_error(cov, n, 1.0, trials=2000, generator=_gen(1))
    u = torch.linalg.eigh(cov).eigenvectors[:, 0]
    mc, closed = float(u @ m_hat @ u), lejepa.worst_case_probe_risk(cov, n)
    return Row("ols_probe_monte_carlo", "Monte Carlo worst-direction OLS probe error matches σ²/((n−D−1)λ_min)",
               f"{closed:.4f} ± 10%", f"{mc:.4f}", abs(mc / closed - 1) < 0.1,
               "tests/test_theory.py::test_ols_probe_monte_carlo_matches_closed_form")


@_check
def ep_full_collapse_linear_in_n() -> Row:
    from hjepa.regularizers import epps_pulley

    t, w = lejepa.ep_quadrature()
    rate = lejepa.ep_rate(lejepa.gaussian_cf(0.0, t), w, t)
    got = float(epps_pulley(torch.zeros(1000, 1, dtype=torch.float64)))
    return Row("ep_full_collapse_linear_in_n", "Epps–Pulley of a fully collapsed embedding is N × 0.402",
               f"N=1000: {1000 * rate:.1f}", f"{got:.1f}", abs(got - 1000 * rate) < 1e-6 and abs(rate - 0.402) < 0.005,
               "tests/test_theory.py::test_ep_of_full_collapse_is_exactly_linear_in_n")


@_check
def ep_null_independent_of_n() -> Row:
    from hjepa.regularizers import expected_ep_null

    gen = _gen(5)
    vals = {n: float(np.mean([float(lejepa.sliced_ep(torch.randn(n, 16, generator=gen, dtype=torch.float64), 64,
                                                     generator=gen)[0].mean()) for _ in range(8)]))
            for n in (100, 2000)}
    null = expected_ep_null()
    return Row("ep_null_independent_of_n", "sliced EP of N(0, I) stays at its null whatever N",
               f"{null:.3f} ± 0.2 at N = 100 and 2000", ", ".join(f"{v:.3f}" for v in vals.values()),
               all(abs(v - null) < 0.2 for v in vals.values()),
               "tests/test_theory.py::test_ep_of_isotropic_gaussian_is_independent_of_n")


@_check
def sliced_ep_sees_non_gaussian() -> Row:
    from hjepa.regularizers import expected_ep_null

    gen = _gen(3)
    z = lejepa.sign_scrambled_gaussian(1000, 6, generator=gen)
    coord = float(lejepa.per_coordinate_ep(z).mean())
    sliced = float(lejepa.sliced_ep(z, 32, generator=gen)[0].mean())
    null = expected_ep_null()
    return Row("sliced_ep_sees_non_gaussian", "sliced EP detects a non-Gaussian with N(0,1) marginals and "
               "identity covariance; per-coordinate EP does not", f"per-coord ≈ {null:.2f}, sliced > 10×",
               f"per-coord {coord:.2f}, sliced {sliced:.1f}", abs(coord - null) < 0.5 and sliced > 10 * null,
               "tests/test_theory.py::test_sliced_ep_detects_what_per_coordinate_tests_miss")


# --------------------------------------------------------------------------- linear JEPA dynamics
@_check
def jepa_greedy_in_rho() -> Row:
    t_j = [lj.critical_time(1.0, r, 2, 0.1, "jepa") for r in (0.5, 1.5)]
    t_m = [lj.critical_time(1.0, r, 2, 0.1, "mae") for r in (0.5, 1.5)]
    return Row("jepa_greedy_in_rho", "deep (L=2) JEPA learns high-ρ features first, MAE does not",
               "JEPA t(ρ=1.5) < t(ρ=0.5); MAE the reverse",
               f"JEPA {t_j[1]:.2f} vs {t_j[0]:.2f}; MAE {t_m[1]:.2f} vs {t_m[0]:.2f}",
               t_j[1] < t_j[0] and t_m[1] > t_m[0], "tests/test_theory.py::test_deep_jepa_is_greedy_in_rho_and_mae_is_not")


@_check
def rho_bias_needs_depth() -> Row:
    ratio = {L: lj.critical_time(1.0, 0.25, L, 0.1) / lj.critical_time(1.0, 10.0, L, 0.1) for L in (1, 2, 3)}
    return Row("rho_bias_needs_depth", "JEPA's ρ bias needs depth: t(ρ=0.25)/t(ρ=10)",
               "L=1 < 0.5; 1.5 < L=2 < L=3", ", ".join(f"L={k}: {v:.3f}" for k, v in ratio.items()),
               ratio[1] < 0.5 and 1.5 < ratio[2] < ratio[3], "tests/test_theory.py::test_jepa_rho_bias_needs_depth")


@_check
def jepa_and_mae_opposite_orders() -> Row:
    modes = lj.Modes(lam=[1.15, 1.0], rho=[0.6, 2.5])
    first = {}
    for obj in ("jepa", "mae"):
        t = np.array([lj.critical_time(a, r, 2, 0.3, obj) for a, r in zip(modes.lam, modes.rho)])
        first[obj] = lj.learning_order(t)[0]
    return Row("jepa_and_mae_opposite_orders", "order inversion: A (λ=1.15, ρ=0.6) vs B (λ=1, ρ=2.5)",
               "JEPA learns B first, MAE A first",
               f"JEPA first {'AB'[first['jepa']]}, MAE first {'AB'[first['mae']]}",
               first == {"jepa": 1, "mae": 0}, "tests/test_theory.py::test_jepa_and_mae_learn_in_opposite_orders")


# --------------------------------------------------------------------------- OU timescales
@_check
def ou_predictability_closed_form() -> Row:
    taus, h = np.array([2.0, 8.0, 32.0]), 4
    paths = ms.simulate_ou(taus, 1500, 48, rng=np.random.default_rng(0))
    corr, r2 = ms.empirical_predictability(paths, h)
    se = ms.autocorrelation_standard_error(taus, h, 1500 - h, 48)
    want = ms.ou_predictable_fraction(taus, h)
    return Row("ou_predictability_closed_form", "OU R² at horizon h is e^(-2h/τ) (τ = 2, 8, 32; h = 4)",
               " ".join(f"{v:.3f}" for v in want), " ".join(f"{v:.3f}" for v in r2),
               bool(np.all(np.abs(corr - ms.ou_correlation(taus, h)) < 5 * se + 0.005)),
               "tests/test_theory.py::test_ou_predictability_matches_closed_form")


@_check
def ou_simulator_exact() -> Row:
    taus = np.array([0.3, 2.0, 15.0])
    paths = ms.simulate_ou(taus, 4000, 32, dt=0.5, rng=np.random.default_rng(7))
    corr, _ = ms.empirical_predictability(paths, 1)
    want = ms.ou_correlation(taus, 0.5)
    return Row("ou_simulator_exact", "the OU simulator is exact at any step (lag-1 corr at dt = 0.5)",
               " ".join(f"{v:.3f}" for v in want), " ".join(f"{v:.3f}" for v in corr),
               bool(np.all(np.abs(corr - want) < 0.01)), "tests/test_theory.py::test_ou_simulator_is_exact_for_any_step")


@_check
def sum_predictable_fraction() -> Row:
    taus, var = np.array([1.0, 5.0, 30.0]), np.array([1.0, 0.5, 0.25])
    paths = ms.simulate_ou(taus, 3000, 32, variances=var, rng=np.random.default_rng(8))
    want, got = ms.sum_predictable_fraction(taus, var, 4), ms.empirical_sum_predictability(paths, 4)
    return Row("sum_predictable_fraction", "R² of a sum of OU components at h = 4 is Σσ²e^(-2h/τ)/Σσ²",
               f"{want:.4f} ± 0.02", f"{got:.4f}", abs(got - want) < 0.02 and abs(want - 0.1673) < 5e-4,
               "tests/test_theory.py::test_predictable_fraction_of_the_sum")


@_check
def level_keep_rule() -> Row:
    taus, strides = np.array([2.0, 6.0, 20.0, 70.0]), [1, 4, 4]
    keep = ms.optimal_level_components(taus, strides)
    paths = ms.simulate_ou(taus, 3000, 32, rng=np.random.default_rng(9))
    sim = np.stack([ms.empirical_predictability(paths, s)[1] >= ms.DEFAULT_R2_MIN
                    for s in ms.cumulative_strides(strides)])
    fmt = lambda m: "/".join("".join("K" if v else "." for v in row) for row in m)  # noqa: E731
    return Row("level_keep_rule", "level k keeps τ ≥ S_k; simulation agrees (τ = 2, 6, 20, 70; S = 1, 4, 16)",
               "KKKK/.KKK/..KK", f"rule {fmt(keep)}, simulated {fmt(sim)}",
               fmt(keep) == fmt(sim) == "KKKK/.KKK/..KK",
               "tests/test_theory.py::test_optimal_level_components_agree_with_simulated_predictability")


def run_checks(names: list[str] | None = None) -> list[Row]:
    return [CHECKS[n]() for n in (names or list(CHECKS))]
