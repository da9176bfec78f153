"""Executable checks of the theory behind the design (docs/design.md §8); see theory/README.md.

Every test asserts measured numbers against closed forms with explicit tolerances. Random
inputs are seeded; hypothesis runs derandomised so a pass is reproducible.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from hjepa.regularizers import epps_pulley, expected_ep_null, random_directions
from theory import lejepa, linear_jepa as lj, multiscale as ms

FAST = settings(max_examples=8, deadline=None, derandomize=True)


@pytest.fixture(autouse=True, scope="module")
def _single_thread():
    """The tensors here are small: one intra-op thread is faster and immune to a busy machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# =============================================================================================
# LeJEPA (a): isotropy minimises the worst-case linear-probe risk
# =============================================================================================

@FAST
@given(st.integers(2, 8), st.lists(st.floats(0.05, 5.0), min_size=8, max_size=8), st.integers(0, 99))
def test_isotropy_minimises_closed_form_probe_risks(dim, raw, seed):
    eigs = torch.tensor(raw[:dim], dtype=torch.float64)
    eigs = eigs * dim / eigs.sum()  # fixed trace D
    cov = lejepa.covariance_from_spectrum(eigs, generator=_gen(seed))
    eye = torch.eye(dim, dtype=torch.float64)
    n, noise = 40, 0.7
    worst = lejepa.worst_case_probe_risk(cov, n, noise)
    assert worst == pytest.approx(noise / ((n - dim - 1) * float(eigs.min())), rel=1e-8)
    iso_worst = lejepa.worst_case_probe_risk(eye, n, noise)
    assert iso_worst == pytest.approx(noise / (n - dim - 1), rel=1e-12)
    assert worst >= iso_worst * (1 - 1e-9)
    assert lejepa.average_probe_risk(cov, n, noise) >= lejepa.average_probe_risk(eye, n, noise) * (1 - 1e-9)
    assert lejepa.ridge_worst_case_bias(cov, 0.1) >= lejepa.ridge_worst_case_bias(eye, 0.1) - 1e-12
    if float(eigs.max() - eigs.min()) > 0.05:  # strictly anisotropic → strictly worse
        assert worst > iso_worst * 1.01


def test_ols_probe_monte_carlo_matches_closed_form():
    dim, n, noise = 4, 24, 1.0
    gen = _gen(0)
    worst_mc = {}
    for cond in (1.0, 10.0):
        eigs = lejepa.spectrum_with_trace(dim, cond)
        cov = lejepa.covariance_from_spectrum(eigs, generator=gen)
        m_true = lejepa.ols_error_second_moment(cov, n, noise)
        m_hat, in_dist = lejepa.monte_carlo_ols_error(cov, n, noise, trials=4000, generator=gen)
        assert float((m_hat - m_true).norm() / m_true.norm()) < 0.08
        u_min = torch.linalg.eigh(cov).eigenvectors[:, 0]  # the worst direction
        worst_mc[cond] = float(u_min @ m_hat @ u_min)
        assert worst_mc[cond] == pytest.approx(lejepa.worst_case_probe_risk(cov, n, noise), rel=0.08)
        # in-distribution excess risk does not see the anisotropy: σ²D/(n−D−1) = 0.2105
        assert in_dist == pytest.approx(lejepa.in_distribution_excess_risk(dim, n, noise), rel=0.05)
    # closed form: 0.0526 (isotropic) vs 0.234 (condition 10)
    assert worst_mc[10.0] > 3.5 * worst_mc[1.0]


def test_ridge_bias_monte_carlo_matches_closed_form():
    gen = _gen(1)
    bias = {}
    for cond in (1.0, 10.0):
        cov = lejepa.covariance_from_spectrum(lejepa.spectrum_with_trace(4, cond), generator=gen)
        bias[cond] = lejepa.monte_carlo_ridge_bias(cov, 0.1, n=4096, trials=8, generator=gen)
        assert bias[cond] == pytest.approx(lejepa.ridge_worst_case_bias(cov, 0.1), rel=0.06)
    # closed form: 0.00826 (isotropic) vs 0.0948 (condition 10)
    assert bias[10.0] > 8 * bias[1.0]


# =============================================================================================
# LeJEPA (b): Cramér–Wold — Gaussian marginals are not a Gaussian
# =============================================================================================

def test_sign_scrambled_gaussian_is_identity_covariance_with_gaussian_marginals():
    z = lejepa.sign_scrambled_gaussian(40_000, 5, generator=_gen(2))
    cov = z.T @ z / z.shape[0]
    assert float((cov - torch.eye(5, dtype=torch.float64)).abs().max()) < 0.03
    # exact characteristic function: N(0,1) on every axis, not on the diagonal
    t, w = lejepa.ep_quadrature()
    axis = torch.zeros(5, dtype=torch.float64)
    axis[2] = 1.0
    assert lejepa.ep_rate(lejepa.sign_scrambled_cf(axis, t), w, t) < 1e-14
    diag = torch.ones(5, dtype=torch.float64) / math.sqrt(5)
    assert lejepa.ep_rate(lejepa.sign_scrambled_cf(diag, t), w, t) > 0.02


def test_sliced_ep_detects_what_per_coordinate_tests_miss():
    n, dim, reps, null = 1000, 6, 24, expected_ep_null()
    gen = _gen(3)
    t, _ = lejepa.ep_quadrature()
    coord, sliced, expected = [], [], []
    for _ in range(reps):
        z = lejepa.sign_scrambled_gaussian(n, dim, generator=gen)
        coord.append(float(lejepa.per_coordinate_ep(z).mean()))
        stats, dirs = lejepa.sliced_ep(z, 32, generator=gen)
        sliced.append(float(stats.mean()))
        cfs = torch.stack([lejepa.sign_scrambled_cf(dirs[:, m], t) for m in range(dirs.shape[1])])
        expected.append(lejepa.expected_sliced_ep(cfs, n))
    # per-coordinate: indistinguishable from the null (E = 1.05 exactly for every N)
    assert np.mean(coord) == pytest.approx(null, abs=0.35)
    # sliced: an order of magnitude above the null, and equal to its exact expectation
    assert np.mean(sliced) > 10 * null
    assert np.mean(sliced) == pytest.approx(np.mean(expected), rel=0.1)


# =============================================================================================
# LeJEPA (c): the Epps–Pulley statistic — O(1) under N(0, I), linear in N otherwise
# =============================================================================================

def test_exact_expectation_formula_reproduces_the_library_null():
    t, _ = lejepa.ep_quadrature()
    for n in (10, 1000, 100_000):
        assert lejepa.expected_ep(lejepa.gaussian_cf(1.0, t), n) == pytest.approx(expected_ep_null(), rel=2e-3)


def test_ep_of_full_collapse_is_exactly_linear_in_n():
    t, w = lejepa.ep_quadrature()
    rate = lejepa.ep_rate(lejepa.gaussian_cf(0.0, t), w, t)
    assert rate == pytest.approx(0.402, abs=0.005)
    for n in (10, 100, 1000):
        got = float(epps_pulley(torch.zeros(n, 1, dtype=torch.float64)))
        assert got == pytest.approx(lejepa.expected_ep(lejepa.gaussian_cf(0.0, t), n), rel=1e-9)
        assert got == pytest.approx(n * rate, rel=1e-9)


@pytest.mark.parametrize("n", [100, 1000, 5000])
def test_ep_of_isotropic_gaussian_is_independent_of_n(n):
    gen = _gen(n)
    vals = [float(lejepa.sliced_ep(torch.randn(n, 16, generator=gen, dtype=torch.float64), 64,
                                   generator=gen)[0].mean()) for _ in range(16)]
    assert np.mean(vals) == pytest.approx(expected_ep_null(), abs=0.2)


@FAST
@given(st.lists(st.sampled_from([0.0, 0.3, 0.5, 0.8, 1.0, 1.3, 1.7, 2.5]), min_size=4, max_size=4),
       st.integers(0, 99))
def test_ep_grows_linearly_under_anisotropy_or_collapse(scales, seed):
    s = torch.tensor(scales, dtype=torch.float64)
    dirs = random_directions(4, 16, generator=_gen(seed), dtype=torch.float64)
    var = (dirs.square() * s.square().unsqueeze(1)).sum(0)  # variance of each projection, (M,)
    t, w = lejepa.ep_quadrature()
    cfs = torch.stack([lejepa.gaussian_cf(float(v), t) for v in var])
    assume(np.mean([lejepa.ep_rate(cf, w, t) for cf in cfs]) > 0.02)  # clearly non-N(0,1) slices
    assert lejepa.expected_sliced_ep(cfs, 2000) > 3.4 * lejepa.expected_sliced_ep(cfs, 500)
    gen = _gen(seed + 1000)
    means = {}
    for n in (500, 2000):
        expected = lejepa.expected_sliced_ep(cfs, n)
        mc = np.mean([float(epps_pulley(torch.randn(n, 4, generator=gen, dtype=torch.float64) * s @ dirs).mean())
                      for _ in range(6)])
        assert mc == pytest.approx(expected, rel=0.12, abs=0.3)
        means[n] = mc
    assert means[2000] > 2.8 * means[500]  # 4× the samples: ≈ 4× the statistic
    assert means[2000] > 10 * expected_ep_null()


# =============================================================================================
# Linear JEPA dynamics (Littwin et al. 2024)
# =============================================================================================

@FAST
@given(st.sampled_from([2, 3]), st.floats(0.05, 0.4), st.floats(0.5, 2.0), st.floats(3.0, 40.0),
       st.floats(1.2, 3.0))
def test_deep_jepa_is_greedy_in_rho_and_mae_is_not(depth, a0, lam, rho_over_a0, ratio):
    rho_lo = a0 * rho_over_a0
    rho_hi = rho_lo * ratio
    t_j = [lj.critical_time(lam, r, depth, a0, "jepa") for r in (rho_lo, rho_hi)]
    t_m = [lj.critical_time(lam, r, depth, a0, "mae") for r in (rho_lo, rho_hi)]
    assert t_j[1] < t_j[0]  # JEPA: higher influence learned first
    assert t_m[1] > t_m[0]  # MAE: not greedy in ρ
    # both are exactly greedy in λ: time scales as 1/λ
    for obj in ("jepa", "mae"):
        assert lj.critical_time(2 * lam, rho_lo, depth, a0, obj) == pytest.approx(
            lj.critical_time(lam, rho_lo, depth, a0, obj) / 2, rel=1e-7)


def test_jepa_rho_bias_needs_depth():
    a0, lo, hi = 0.1, 0.25, 10.0
    ratio = {L: lj.critical_time(1.0, lo, L, a0) / lj.critical_time(1.0, hi, L, a0) for L in (1, 2, 3)}
    # measured: 0.353 (L=1, high ρ learned *later*), 1.657 (L=2), 1.916 (L=3)
    assert ratio[1] < 0.5
    assert 1.5 < ratio[2] < ratio[3]
    # the leading small-init term 1/((2L−1) λ a0^{2L−1}) does not depend on ρ
    tiny = 0.01
    for L in (1, 2, 3):
        for rho in (50.0, 100.0):
            t = lj.critical_time(1.0, rho, L, tiny)
            assert t * (2 * L - 1) * tiny ** (2 * L - 1) == pytest.approx(1.0, rel=0.01)


DEPTH, A0, LR = 2, 0.3, 0.02
MODES = lj.Modes(lam=[1.0, 1.0, 1.0, 1.0], rho=[0.7, 1.1, 1.7, 2.6])


def _closed_times(modes: lj.Modes, objective: str) -> np.ndarray:
    return np.array([lj.critical_time(l, r, DEPTH, A0, objective) for l, r in zip(modes.lam, modes.rho)])


def _simulate(modes, objective, target="sg", sxx=None, sxy=None, perturbation=0.0, ema_decay=0.98):
    sxx, sxy = modes.covariances() if sxx is None else (sxx, sxy)
    steps = int(1.5 * _closed_times(modes, objective).max() / LR)
    times, amps = lj.simulate_gradient_descent(sxx, sxy, DEPTH, A0, LR, steps, objective, target,
                                               ema_decay=ema_decay, perturbation=perturbation,
                                               record_every=5, seed=1)
    final = lj.asymptotic_amplitude(modes.rho, DEPTH, objective)
    return times, amps, lj.crossing_times(times, amps, final)


@pytest.mark.parametrize("objective", ["jepa", "mae"])
def test_gradient_descent_follows_the_mode_ode(objective):
    times, amps, t_sim = _simulate(MODES, objective)
    t_closed = _closed_times(MODES, objective)
    ode = lj.integrate_mode_ode(MODES, times, DEPTH, A0, objective, substeps=4)
    # closed form, JEPA: [20.71 19.03 16.58 14.95]; MAE: [2.009 2.209 2.370 2.503]
    np.testing.assert_allclose(t_sim, t_closed, rtol=0.015)
    rel_l2 = np.linalg.norm(amps - ode, axis=0) / np.linalg.norm(ode, axis=0)
    assert rel_l2.max() < 0.03
    expected_order = [3, 2, 1, 0] if objective == "jepa" else [0, 1, 2, 3]
    assert lj.learning_order(t_sim) == lj.learning_order(t_closed) == expected_order


def test_jepa_and_mae_learn_in_opposite_orders():
    # feature 0: larger covariance λ, small influence ρ; feature 1: the reverse
    modes = lj.Modes(lam=[1.15, 1.0], rho=[0.6, 2.5])
    for objective, first in (("jepa", 1), ("mae", 0)):
        t_closed = _closed_times(modes, objective)
        *_, t_sim = _simulate(modes, objective)
        assert lj.learning_order(t_closed)[0] == first
        assert lj.learning_order(t_sim)[0] == first
        np.testing.assert_allclose(t_sim, t_closed, rtol=0.015)


def test_ema_target_follows_its_ode_and_keeps_the_order():
    decay = 0.98
    times, amps, t_sim = _simulate(MODES, "jepa", "ema", ema_decay=decay)
    ode = lj.integrate_mode_ode(MODES, times, DEPTH, A0, "jepa", "ema", ema_time=LR / (1 - decay), substeps=4)
    t_ode = lj.crossing_times(times, ode, lj.asymptotic_amplitude(MODES.rho, DEPTH, "jepa"))
    np.testing.assert_allclose(t_sim, t_ode, rtol=0.01)
    assert lj.learning_order(t_sim) == [3, 2, 1, 0]
    assert np.all(t_sim > _closed_times(MODES, "jepa"))  # a lagging target slows learning


def test_sampled_data_and_misaligned_init_stay_close_to_the_ode():
    # 20k sampled pairs (empirical covariances) and a 5% non-aligned, unbalanced init: the
    # per-mode ODE is then approximate. Seeds 0–3 measured: JEPA ≤ 6.5%, MAE ≤ 3.6% off.
    x, y = lj.sample_pairs(MODES, 20_000, noise_std=1.0, rng=np.random.default_rng(0))
    sxx, sxy = lj.empirical_covariances(x, y)
    *_, t_jepa = _simulate(MODES, "jepa", sxx=sxx, sxy=sxy, perturbation=0.05)
    np.testing.assert_allclose(t_jepa, _closed_times(MODES, "jepa"), rtol=0.08)
    assert lj.learning_order(t_jepa) == [3, 2, 1, 0]  # JEPA's ρ-gaps (8–12%) survive
    *_, t_mae = _simulate(MODES, "mae", sxx=sxx, sxy=sxy, perturbation=0.05)
    np.testing.assert_allclose(t_mae, _closed_times(MODES, "mae"), rtol=0.06)
    assert t_mae[0] < t_mae[3]  # MAE's ρ-gaps are small (5–9%); only the extremes are robust


# =============================================================================================
# Multi-timescale predictability of OU components
# =============================================================================================

@FAST
@given(st.lists(st.floats(1.0, 50.0), min_size=3, max_size=3), st.integers(1, 20), st.integers(0, 99))
def test_ou_predictability_matches_closed_form(taus, h, seed):
    taus = np.array(taus)
    n_steps, n_chains = 1500, 48
    paths = ms.simulate_ou(taus, n_steps, n_chains, rng=np.random.default_rng(seed))
    corr, r2 = ms.empirical_predictability(paths, h)
    se = ms.autocorrelation_standard_error(taus, h, n_steps - h, n_chains)
    tol = 5 * se + 0.005
    assert np.all(np.abs(corr - ms.ou_correlation(taus, h)) < tol)  # corr = e^{−h/τ}
    assert np.all(np.abs(r2 - ms.ou_predictable_fraction(taus, h)) < 2 * tol)  # R² = e^{−2h/τ}
    np.testing.assert_allclose(r2, corr ** 2, atol=1e-10)


def test_ou_simulator_is_exact_for_any_step():
    taus, var = np.array([0.3, 2.0, 15.0]), np.array([0.5, 1.0, 4.0])
    paths = ms.simulate_ou(taus, 4000, 32, dt=0.5, variances=var, rng=np.random.default_rng(7))
    np.testing.assert_allclose(paths.var(axis=(0, 1)), var, rtol=0.05)
    corr, _ = ms.empirical_predictability(paths, 1)  # one step of 0.5 time units
    np.testing.assert_allclose(corr, ms.ou_correlation(taus, 0.5), atol=0.01)


def test_predictable_fraction_of_the_sum():
    taus, var = np.array([1.0, 5.0, 30.0]), np.array([1.0, 0.5, 0.25])
    paths = ms.simulate_ou(taus, 3000, 32, variances=var, rng=np.random.default_rng(8))
    for h in (1, 4, 16):
        want = ms.sum_predictable_fraction(taus, var, h)
        assert ms.empirical_sum_predictability(paths, h) == pytest.approx(want, abs=0.02)
    # h = 4: (e^{−8}·1 + e^{−1.6}·0.5 + e^{−4/15}·0.25) / 1.75 = 0.1673
    assert ms.sum_predictable_fraction(taus, var, 4) == pytest.approx(0.1673, abs=5e-4)


@FAST
@given(st.lists(st.floats(0.5, 300.0), min_size=1, max_size=6), st.lists(st.integers(1, 8), min_size=1, max_size=3),
       st.floats(0.01, 0.9))
def test_optimal_level_components_rule(taus, strides, r2_min):
    taus = np.array(taus)
    level_strides = [1, *strides]
    horizons = ms.cumulative_strides(level_strides)
    keep = ms.optimal_level_components(taus, level_strides)
    # default threshold R² ≥ e^{−2} is exactly "τ_i ≥ S_k"
    np.testing.assert_array_equal(keep, taus[None, :] >= np.array(horizons)[:, None])
    # a component dropped at level k stays dropped above it
    assert np.all(keep[1:] <= keep[:-1])
    # general threshold: keep ⇔ closed-form R² at the level's horizon clears it
    keep_r = ms.optimal_level_components(taus, level_strides, r2_min)
    r2 = np.stack([ms.ou_predictable_fraction(taus, s) for s in horizons])
    clear = np.abs(r2 - r2_min) > 1e-9
    np.testing.assert_array_equal(keep_r[clear], (r2 >= r2_min)[clear])


def test_optimal_level_components_agree_with_simulated_predictability():
    taus = np.array([2.0, 6.0, 20.0, 70.0])
    level_strides = [1, 4, 4]  # cumulative strides 1, 4, 16
    keep = ms.optimal_level_components(taus, level_strides)
    np.testing.assert_array_equal(keep, [[1, 1, 1, 1], [0, 1, 1, 1], [0, 0, 1, 1]])
    paths = ms.simulate_ou(taus, 3000, 32, rng=np.random.default_rng(9))
    for k, horizon in enumerate(ms.cumulative_strides(level_strides)):
        _, r2 = ms.empirical_predictability(paths, horizon)
        np.testing.assert_array_equal(r2 >= ms.DEFAULT_R2_MIN, keep[k])
