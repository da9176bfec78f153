"""SIGReg (Epps–Pulley), VICReg and the registry."""

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from hjepa.regularizers import (SIGReg, VICReg, build_regularizer, epps_pulley, expected_ep_null, random_directions,
                                sigreg_statistic)


def test_epps_pulley_of_gaussian_matches_null_expectation_for_any_n():
    g = torch.Generator().manual_seed(0)
    null = expected_ep_null()
    assert 0.9 < null < 1.2
    for n in (256, 2048):
        stat = epps_pulley(torch.randn(n, 200, generator=g)).mean().item()
        assert abs(stat - null) < 0.15 * null  # O(1), independent of n


def test_epps_pulley_closed_form_for_a_point_mass():
    # all samples at 0: phi_hat = 1, so EP = N * ∫ (1 - e^{-t²/2})² e^{-t²/2} dt over [-3, 3]
    n = 100
    t = torch.linspace(0, 3, 20001, dtype=torch.float64)
    exact = n * 2 * torch.trapezoid((1 - torch.exp(-t**2 / 2)) ** 2 * torch.exp(-t**2 / 2), t).item()
    got = epps_pulley(torch.zeros(n, 1, dtype=torch.float64)).item()
    assert got == pytest.approx(exact, rel=2e-3)


@settings(max_examples=15, deadline=None)
@given(scale=st.floats(0.05, 0.5) | st.floats(2.5, 6.0), seed=st.integers(0, 10_000))
def test_sigreg_statistic_is_large_for_anisotropic_or_collapsed_samples(scale, seed):
    g = torch.Generator().manual_seed(seed)
    n, d = 1024, 32
    iso = torch.randn(n, d, generator=g)
    a = random_directions(d, 64, generator=g)
    base = sigreg_statistic(iso, a).item()
    aniso = iso.clone()
    aniso[:, : d // 2] *= scale
    rank1 = torch.randn(n, 1, generator=g) * torch.ones(1, d) / math.sqrt(d)
    assert base < 2.0
    assert sigreg_statistic(aniso, a).item() > 5 * base
    assert sigreg_statistic(rank1, a).item() > 20 * base
    assert sigreg_statistic(torch.zeros(n, d), a).item() > 50 * base


def test_sigreg_module_fixed_directions_equal_functional_and_resample_otherwise():
    z = torch.randn(512, 16, generator=torch.Generator().manual_seed(1))
    a = random_directions(16, 32, generator=torch.Generator().manual_seed(2))
    fixed = SIGReg(directions=a)
    assert fixed(z).item() == pytest.approx(sigreg_statistic(z, a).item(), rel=1e-5)
    assert fixed(z).item() == fixed(z).item()
    moving = SIGReg(num_directions=8, seed=0)
    v1, v2 = moving(z * 0.5).item(), moving(z * 0.5).item()
    assert v1 != v2 and int(moving.calls) == 2  # directions re-drawn each call, stream position kept


def test_sigreg_gradient_pushes_towards_isotropy():
    z = (torch.randn(512, 8) * 0.2).requires_grad_()
    reg = SIGReg(num_directions=32, seed=0)
    opt = torch.optim.SGD([z], lr=0.5)
    start = sigreg_statistic(z.detach(), random_directions(8, 64, generator=torch.Generator().manual_seed(0))).item()
    for _ in range(150):
        opt.zero_grad()
        reg(z).backward()
        opt.step()
    end = sigreg_statistic(z.detach(), random_directions(8, 64, generator=torch.Generator().manual_seed(0))).item()
    assert end < start / 10
    assert 0.8 < z.detach().std(0).mean().item() < 1.2


def test_vicreg_penalises_low_variance_and_correlation():
    g = torch.Generator().manual_seed(0)
    iso = torch.randn(2048, 8, generator=g)
    assert VICReg()(iso).item() < 0.02
    assert VICReg()(iso * 0.1).item() > 0.8  # hinge: mean(1 - 0.1)
    x = torch.randn(2048, 1, generator=g)
    assert VICReg(cov_weight=1.0)(x.repeat(1, 8)).item() > 5


def test_registry_rejects_unknown_names():
    with pytest.raises(ValueError, match="choose one of"):
        build_regularizer("bogus", None)
