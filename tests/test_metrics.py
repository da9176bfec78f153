"""Collapse metrics of ``hjepa.metrics`` against closed-form cases and their invariances."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from hjepa.metrics import (collapse_report, effective_rank, eigenspectrum, fit_powerlaw, mean_pairwise_cosine,
                           per_dim_std, powerlaw_alpha, rankme, ridge_probe_r2, sigreg_stat, singular_values)
from hjepa.regularizers import expected_ep_null


def _gauss(n, d, seed=0):
    return torch.randn(n, d, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def _orthogonal(d, seed):
    q, r = torch.linalg.qr(_gauss(d, d, seed))
    return q * torch.sign(torch.diagonal(r))  # Haar-distributed rotation


def _with_spectrum(lam: torch.Tensor, n: int, seed: int = 0) -> torch.Tensor:
    """``(n, D)`` data whose sample covariance has exactly the eigenvalues ``lam``, in a random basis."""
    d = lam.numel()
    x = _gauss(n, d, seed)
    x = x - x.mean(0)
    q, _ = torch.linalg.qr(x)  # orthonormal, zero-mean columns: q.T q = I
    white = q * math.sqrt(n - 1)
    return white * lam.sqrt() @ _orthogonal(d, seed + 1).T + 3.0  # offset: the spectrum is of the centred data


# --------------------------------------------------------------------------- closed-form cases
@pytest.mark.parametrize("d", [8, 32, 64])
def test_rankme_isotropic_gaussian_close_to_dimension(d):
    z = _gauss(4000, d)
    r = rankme(z)
    assert 0.95 * d <= r <= d + 1e-6
    assert effective_rank(z) == pytest.approx(r)


@pytest.mark.parametrize("k,d", [(1, 16), (3, 32), (10, 64)])
def test_rankme_of_rank_k_matrix_is_at_most_k(k, d):
    z = _gauss(500, k, 1) @ _gauss(k, d, 2)
    assert torch.linalg.matrix_rank(z) == k
    r = rankme(z)
    assert r <= k + 1e-3
    assert r >= 0.5 * k  # a generic rank-k matrix uses all its k directions


def test_rankme_of_rank_k_embeddings_with_equal_singular_values_is_k():
    z = torch.zeros(200, 32, dtype=torch.float64)
    z[:100, :4] = torch.eye(4, dtype=torch.float64).repeat(25, 1)
    assert rankme(z) == pytest.approx(4.0, abs=1e-3)


@pytest.mark.parametrize("value", [0.0, 1e-3, 1.0, 250.0])
def test_rankme_of_constant_matrix_is_about_one(value):
    z = torch.full((300, 48), value, dtype=torch.float64)
    assert rankme(z) == pytest.approx(1.0, abs=1e-2)
    if value:
        assert mean_pairwise_cosine(z) == pytest.approx(1.0, abs=1e-9)
    assert float(per_dim_std(z).max()) == pytest.approx(0.0, abs=1e-9)


def test_rankme_collapse_ordering():
    full, half, one = _gauss(2000, 32), _gauss(2000, 16) @ _gauss(16, 32, 3), _gauss(2000, 1) @ _gauss(1, 32, 4)
    assert rankme(one) < 1.01 < rankme(half) < 16.01 < rankme(full)


def test_singular_values_and_eigenspectrum():
    lam = torch.tensor([5.0, 2.0, 1.0, 0.25], dtype=torch.float64)
    z = _with_spectrum(lam, 500)
    assert torch.allclose(eigenspectrum(z), lam, rtol=1e-9)
    s = singular_values(z)
    assert s.shape == (4,) and bool((s[:-1] >= s[1:]).all())
    assert torch.allclose(singular_values(z, center=True), (lam * 499).sqrt(), rtol=1e-9)


def test_per_dim_std_and_cosine_on_known_data():
    d = torch.tensor([0.5, 1.0, 2.0, 4.0], dtype=torch.float64)
    z = _gauss(20000, 4) * d
    assert torch.allclose(per_dim_std(z), d, rtol=0.03)
    assert abs(mean_pairwise_cosine(_gauss(3000, 16))) < 0.01
    assert mean_pairwise_cosine(_gauss(3000, 16) * 0.01 + 1.0) > 0.99  # a tight cloud away from 0
    u = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]], dtype=torch.float64)
    assert mean_pairwise_cosine(u) == pytest.approx((0 - 1 + 0) / 3)


@pytest.mark.parametrize("alpha", [0.5, 1.0, 2.0, 3.0])
def test_powerlaw_alpha_recovered_on_synthetic_spectra(alpha):
    d = 48
    lam = torch.arange(1, d + 1, dtype=torch.float64) ** -alpha
    assert fit_powerlaw(lam) == pytest.approx(alpha, rel=1e-9)
    assert fit_powerlaw(lam.flip(0) * 7.0) == pytest.approx(alpha, rel=1e-9)  # order and scale do not matter
    assert powerlaw_alpha(_with_spectrum(lam, 400, seed=int(alpha * 10))) == pytest.approx(alpha, rel=1e-6)


def test_powerlaw_alpha_isotropic_small_and_collapse_large():
    assert powerlaw_alpha(_gauss(4000, 32)) < 0.2
    assert powerlaw_alpha(_gauss(4000, 1)) == math.inf
    lam = torch.arange(1, 33, dtype=torch.float64) ** -1.0
    assert powerlaw_alpha(_with_spectrum(lam, 300), fit_range=(0.0, 0.5)) == pytest.approx(1.0, rel=1e-6)


def test_sigreg_stat_small_for_standard_gaussian_large_otherwise():
    null = expected_ep_null()
    iso = sigreg_stat(_gauss(2000, 32).float())
    assert 0.5 * null < iso < 2.0 * null
    assert sigreg_stat(_gauss(2000, 32).float() * 3.0) > 50 * null  # wrong scale
    assert sigreg_stat((_gauss(2000, 2) @ _gauss(2, 32, 5)).float() / math.sqrt(16)) > 20 * null  # rank 2
    assert sigreg_stat(torch.zeros(2000, 32)) > 100 * null  # collapsed to a point


def test_ridge_probe_r2_recovers_linear_targets_and_rejects_noise():
    z = _gauss(2000, 8)
    w = _gauss(8, 2, 9)
    y = torch.cat([z @ w, _gauss(2000, 1, 10)], 1)
    r2 = ridge_probe_r2(z[:1000], y[:1000], z[1000:], y[1000:])
    assert r2.shape == (3,)
    assert float(r2[0]) > 0.99 and float(r2[1]) > 0.99
    assert abs(float(r2[2])) < 0.05
    const = ridge_probe_r2(z[:1000], torch.ones(1000, 1), z[1000:], torch.ones(1000, 1))
    assert float(const[0]) == 0.0


def test_collapse_report_keys_and_values():
    rep = collapse_report(_gauss(1000, 16))
    assert set(rep) == {"rankme", "std_mean", "std_min", "cosine_mean", "powerlaw_alpha", "sigreg_stat"}
    assert all(isinstance(v, float) for v in rep.values())
    assert rep["rankme"] > 15 and rep["std_mean"] == pytest.approx(1.0, abs=0.05)


def test_metrics_reject_wrong_shapes_and_never_track_gradients():
    with pytest.raises(ValueError, match=r"\(N, D\)"):
        rankme(torch.zeros(4, 3, 2))
    z = torch.randn(50, 8, requires_grad=True)
    assert not eigenspectrum(z).requires_grad
    assert isinstance(rankme(z), float)


# --------------------------------------------------------------------------- invariances (hypothesis)
_entries = st.floats(-10, 10, allow_nan=False, allow_infinity=False, allow_subnormal=False).map(lambda x: round(x, 3))
_shapes = st.tuples(st.integers(2, 40), st.integers(1, 12))


@st.composite
def matrices(draw):
    n, d = draw(_shapes)
    return torch.from_numpy(draw(arrays(np.float64, (n, d), elements=_entries)))


@settings(max_examples=60, deadline=None)
@given(z=matrices(), seed=st.integers(0, 2**16), scale=st.floats(0.05, 20.0))
def test_rankme_invariant_to_rotation_and_scaling(z, seed, scale):
    q = _orthogonal(z.shape[1], seed)
    r = rankme(z)
    assert rankme(z @ q) == pytest.approx(r, rel=1e-6, abs=1e-9)
    assert rankme(z * scale) == pytest.approx(r, rel=1e-6, abs=1e-9)
    assert 1.0 - 1e-6 <= r <= min(z.shape) + 1e-3
    assert r <= int(torch.linalg.matrix_rank(z)) + 1e-2 or not z.abs().sum()


@settings(max_examples=60, deadline=None)
@given(z=matrices(), seed=st.integers(0, 2**16), scale=st.floats(0.05, 20.0))
def test_cosine_and_spectrum_shape_invariant_to_rotation_and_scaling(z, seed, scale):
    q = _orthogonal(z.shape[1], seed)
    c = mean_pairwise_cosine(z)
    assert -1.0 - 1e-9 <= c <= 1.0 + 1e-9
    assert mean_pairwise_cosine(z @ q) == pytest.approx(c, abs=1e-9)
    assert mean_pairwise_cosine(z * scale) == pytest.approx(c, abs=1e-9)
    lam = eigenspectrum(z)
    tol = 1e-9 * max(float(lam.max()), 1.0)
    assert torch.allclose(eigenspectrum(z @ q), lam, atol=tol, rtol=1e-7)
    assert torch.allclose(eigenspectrum(z * scale), lam * scale**2, atol=tol * scale**2, rtol=1e-7)
    assert torch.allclose(per_dim_std(z * scale), per_dim_std(z) * scale, rtol=1e-9, atol=1e-12)


@settings(max_examples=40, deadline=None)
@given(d=st.integers(4, 24), alpha=st.floats(0.2, 3.0), seed=st.integers(0, 2**16),
       scale=st.floats(1e-3, 1e3), noise=st.floats(0.0, 0.3))
def test_powerlaw_alpha_invariant_and_recovered(d, alpha, seed, scale, noise):
    g = torch.Generator().manual_seed(seed)
    lam = torch.arange(1, d + 1, dtype=torch.float64) ** -alpha
    jitter = torch.exp(noise * (torch.rand(d, generator=g, dtype=torch.float64) - 0.5))  # a noisy power law
    lam = (lam * jitter).sort(descending=True).values
    z = _with_spectrum(lam, 3 * d + 10, seed)
    a = powerlaw_alpha(z)
    assert a == pytest.approx(fit_powerlaw(lam), rel=1e-6)
    assert abs(a - alpha) <= noise / math.log(d) * 2 + 1e-6  # the jitter bounds the slope error
    q = _orthogonal(d, seed + 7)
    assert powerlaw_alpha(z @ q) == pytest.approx(a, rel=1e-6)
    assert powerlaw_alpha(z * scale) == pytest.approx(a, rel=1e-6)


@settings(max_examples=25, deadline=None)
@given(n=st.integers(300, 800), d=st.integers(2, 24), seed=st.integers(0, 2**16))
def test_rankme_near_dimension_for_gaussian_samples(n, d, seed):
    """Random isotropic samples: RankMe grows with N/D toward D (Marchenko–Pastur spread)."""
    r = rankme(_gauss(n, d, seed))
    assert r <= d + 1e-6
    assert r >= d * (1 - 2.0 * math.sqrt(d / n))
