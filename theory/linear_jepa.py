"""Linear JEPA dynamics: which features a JEPA learns first (Littwin et al., 2024).

Reference: E. Littwin et al., "How JEPA Avoids Noisy Features: The Implicit Bias of Deep Linear
Self Distillation Networks", NeurIPS 2024 (arXiv:2407.03475). Their finding: in deep linear
models, both JEPA (latent prediction with a stop-gradient target) and MAE (reconstruction) are
greedy in the covariance ``λ``, but only JEPA is greedy in the regression coefficient ``ρ``, and
the ``ρ``-bias grows with encoder depth. We re-derive the diagonal case ourselves below and check
it against gradient descent on full matrices; we reproduce the qualitative claim, not their
constants.

Setting. Paired views ``x, y ∈ R^d`` whose covariances share an eigenbasis (taken as the
coordinate basis): per feature ``i``

    λ_i := E[x_i y_i]            (cross-covariance — the "covariance" of the feature)
    ρ_i := E[x_i y_i] / E[x_i²]  (regression coefficient of y_i on x_i — its "influence")
    κ_i := E[x_i²] = λ_i / ρ_i.

A generative model with these moments: ``x_i ~ N(0, κ_i)``, ``y_i = ρ_i x_i + noise``.

Models. Encoder ``W = W_L ⋯ W_1`` (``L`` = depth), predictor / decoder ``V``.
JEPA: ``ℓ = ½ E‖V W x − sg(W̄) y‖²`` with ``W̄ = W`` (stop-gradient) or a per-layer EMA of ``W``.
MAE:  ``ℓ = ½ E‖V W x − y‖²`` — the same loss with the target encoder frozen at the identity.

Per-mode ODE (our derivation). With balanced, aligned, small initialisation (every layer
``a0 · orthogonal``, ``V = a0 I``) gradient flow stays diagonal in the feature basis (Arora et al.
2018 for the balanced product). Per mode: layer scalars ``a`` (all equal), ``w = a^L``,
predictor ``v``, target amplitude ``w̄``; ``ℓ = ½ v² w² κ − v w w̄ λ`` and

    v̇ = −∂ℓ/∂v = w (w̄ λ − v w κ),
    ȧ = −(∂ℓ/∂w) · a^{L−1} = v a^{L−1} (w̄ λ − v w κ),
    w̄ = w (stop-gradient) | ā^L with ˙ā = (a − ā)/τ_ema (EMA) | 1 (MAE).

Stop-gradient: ``d(v²)/dt = d(a²)/dt`` so ``v ≡ a`` and the mode obeys the scalar ODE

    v̇ = v^{2L} (λ − κ v) = (λ/ρ) v^{2L} (ρ − v),      w = v^L → ρ^L,

with the exact learning time (time for ``w`` to reach a fraction ``f`` of ``ρ^L``)

    t_JEPA = ∫_{a0}^{f^{1/L} ρ} dv / (v^{2L} (λ − κ v))
           = (1/λ) [ Σ_{n=0}^{2L−2} ρ^{−n} a0^{−(2L−1−n)} / (2L−1−n) + O(log) ].

The leading term does not depend on ``ρ``; all later ones fall with ``ρ``: higher-influence
features are learned first, and time scales exactly as ``1/λ``. Outside the small-init regime
the log/end-point terms matter: numerically (``critical_time``, ``f = ½``) ``t_JEPA`` decreases
in ``ρ`` only for ``ρ/a0 ≳ 2.46`` (L = 2), ``1.73`` (L = 3) and ``22`` (L = 1) — a shallow
encoder is *not* greedy in ``ρ`` for moderate ``ρ/a0``; depth is what makes JEPA ρ-greedy.
MAE: ``u = v w = a^{L+1}``, ``ȧ = a^L (λ − κ a^{L+1})``, ``u → ρ``, ``w → ρ^{L/(L+1)}``;
``t_MAE = ∫_{a0}^{a_f} da / (a^L (λ − κ a^{L+1}))`` with ``a_f = f^{1/L} ρ^{1/(L+1)}`` — also
``∝ 1/λ``, but not decreasing in ``ρ`` (the larger asymptote takes longer to reach).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from scipy.integrate import quad

__all__ = [
    "Modes",
    "sample_pairs",
    "empirical_covariances",
    "asymptotic_amplitude",
    "critical_time",
    "integrate_mode_ode",
    "simulate_gradient_descent",
    "crossing_times",
    "learning_order",
]

Objective = Literal["jepa", "mae"]
Target = Literal["sg", "ema"]


@dataclass(frozen=True)
class Modes:
    """Per-feature moments: ``lam`` ``(d,)`` = E[x_i y_i], ``rho`` ``(d,)`` = regression coefficients."""

    lam: np.ndarray
    rho: np.ndarray

    def __post_init__(self):
        lam, rho = np.asarray(self.lam, float), np.asarray(self.rho, float)
        if lam.shape != rho.shape or np.any(lam <= 0) or np.any(rho <= 0):
            raise ValueError("lam and rho must be positive arrays of the same shape")
        object.__setattr__(self, "lam", lam)
        object.__setattr__(self, "rho", rho)

    @property
    def kappa(self) -> np.ndarray:
        """``E[x_i²] = λ_i / ρ_i``: ``(d,)``."""
        return self.lam / self.rho

    def covariances(self) -> tuple[np.ndarray, np.ndarray]:
        """Population ``Σ_xx = diag(κ)`` and ``Σ_xy = E[x yᵀ] = diag(λ)``: two ``(d, d)``."""
        return np.diag(self.kappa), np.diag(self.lam)


def sample_pairs(modes: Modes, n: int, noise_std: float = 1.0, *,
                 rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """``n`` pairs: ``x ~ N(0, diag κ)``, ``y = diag(ρ) x + noise_std · ξ``: two ``(n, d)``."""
    x = rng.standard_normal((n, modes.lam.size)) * np.sqrt(modes.kappa)
    y = x * modes.rho + noise_std * rng.standard_normal(x.shape)
    return x, y


def empirical_covariances(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``Σ̂_xx = xᵀx/n`` and ``Σ̂_xy = xᵀy/n`` from ``x, y`` ``(n, d)``: two ``(d, d)``."""
    n = x.shape[0]
    return x.T @ x / n, x.T @ y / n


def asymptotic_amplitude(rho: np.ndarray, depth: int, objective: Objective) -> np.ndarray:
    """Final encoder amplitude per mode: ``ρ^L`` (JEPA) or ``ρ^{L/(L+1)}`` (MAE): ``(d,)``."""
    power = depth if objective == "jepa" else depth / (depth + 1)
    return np.asarray(rho, float) ** power


def critical_time(lam: float, rho: float, depth: int, init_scale: float,
                  objective: Objective = "jepa", fraction: float = 0.5) -> float:
    """Exact gradient-flow time for the encoder amplitude of one mode to reach ``fraction`` of
    its asymptote, from the balanced init ``a0 = init_scale`` (stop-gradient JEPA or MAE).

    JEPA: ``∫_{a0}^{f^{1/L}ρ} dv / (v^{2L}(λ − κv))``; MAE: ``∫_{a0}^{f^{1/L}ρ^{1/(L+1)}} da /
    (a^L(λ − κa^{L+1}))``, ``κ = λ/ρ``. Requires the start below the end point."""
    kappa, a0, L = lam / rho, init_scale, depth
    if objective == "jepa":
        end = fraction ** (1 / L) * rho

        def integrand(v: float) -> float:
            return 1.0 / (v ** (2 * L) * (lam - kappa * v))
    else:
        end = fraction ** (1 / L) * rho ** (1 / (L + 1))

        def integrand(a: float) -> float:
            return 1.0 / (a ** L * (lam - kappa * a ** (L + 1)))
    if not 0 < a0 < end:
        raise ValueError(f"init_scale={a0} must lie in (0, {end:.4g}) for this mode")
    value, _ = quad(integrand, a0, end, limit=200)
    return float(value)


def _mode_rhs(state: np.ndarray, modes: Modes, depth: int, objective: Objective,
              target: Target, ema_time: float) -> np.ndarray:
    """Right-hand side of the per-mode ODE for ``state = (a, v, ā)`` ``(3, d)``."""
    a, v, a_bar = state
    w = a ** depth
    if objective == "mae":
        w_bar = np.ones_like(w)
    else:
        w_bar = w if target == "sg" else a_bar ** depth
    err = w_bar * modes.lam - v * w * modes.kappa
    da = v * a ** (depth - 1) * err
    dv = w * err
    da_bar = (a - a_bar) / ema_time if (objective == "jepa" and target == "ema") else np.zeros_like(a)
    return np.stack([da, dv, da_bar])


def integrate_mode_ode(modes: Modes, times: np.ndarray, depth: int, init_scale: float,
                       objective: Objective = "jepa", target: Target = "sg",
                       ema_time: float = 1.0, substeps: int = 20) -> np.ndarray:
    """Encoder amplitudes ``w_i(t) = a_i(t)^L`` at ``times`` ``(T,)`` (starting at 0): ``(T, d)``.

    Classical RK4 with ``substeps`` steps between consecutive requested times."""
    def f(s: np.ndarray) -> np.ndarray:
        return _mode_rhs(s, modes, depth, objective, target, ema_time)

    state = np.full((3, modes.lam.size), float(init_scale))
    out = [state[0] ** depth]
    for t0, t1 in zip(times[:-1], times[1:]):
        h = (t1 - t0) / substeps
        for _ in range(substeps):
            k1 = f(state)
            k2 = f(state + h / 2 * k1)
            k3 = f(state + h / 2 * k2)
            k4 = f(state + h * k3)
            state = state + h / 6 * (k1 + 2 * k2 + 2 * k3 + k4)
        out.append(state[0] ** depth)
    return np.stack(out)


def _random_orthogonal(d: int, gen: torch.Generator) -> torch.Tensor:
    q, r = torch.linalg.qr(torch.randn(d, d, generator=gen, dtype=torch.float64))
    return q * torch.sign(torch.diagonal(r))


def _product(layers: list[torch.Tensor]) -> torch.Tensor:
    """End-to-end map ``W_L ⋯ W_1`` of a list of layers ``[W_1, …, W_L]``."""
    w = layers[0]
    for layer in layers[1:]:
        w = layer @ w
    return w


def _population_loss(layers: list[torch.Tensor], head: torch.Tensor, target: torch.Tensor | None,
                     sxx: torch.Tensor, sxy: torch.Tensor) -> torch.Tensor:
    """``½ tr(P Σxx Pᵀ) − tr(P Σxy Tᵀ)`` with ``P = V W``; ``T = I`` when ``target`` is None (MAE)."""
    p = head @ _product(layers)
    cross = p @ sxy if target is None else p @ sxy @ target.T
    return 0.5 * torch.trace(p @ sxx @ p.T) - torch.trace(cross)


def simulate_gradient_descent(sxx: np.ndarray, sxy: np.ndarray, depth: int, init_scale: float,
                              lr: float, steps: int, objective: Objective = "jepa",
                              target: Target = "sg", ema_decay: float = 0.99,
                              perturbation: float = 0.0, record_every: int = 10,
                              seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Full-matrix gradient descent on the population (or empirical) loss, gradients by autograd.

    ``sxx = E[xxᵀ]``, ``sxy = E[xyᵀ]`` ``(d, d)``. Init: ``W_l = a0 Q_l`` (random orthogonal),
    ``V = a0 I`` for JEPA (latent → latent) and ``V = a0 Qᵀ`` for MAE (latent → input, with
    ``Q = Q_L ⋯ Q_1``) — balanced and aligned — plus ``perturbation · a0 · G/√d`` Gaussian noise on every
    matrix to break the exact alignment. The EMA target keeps per-layer copies
    ``W̄_l ← m W̄_l + (1 − m) W_l`` (continuous time constant ``lr / (1 − m)``).
    Returns ``times`` ``(T,)`` = ``lr · step`` and the amplitudes ``‖W e_i‖`` ``(T, d)``.
    """
    gen = torch.Generator().manual_seed(seed)
    d = sxx.shape[0]

    def noise() -> torch.Tensor:
        return perturbation * init_scale * torch.randn(d, d, generator=gen, dtype=torch.float64) / d ** 0.5

    qs = [_random_orthogonal(d, gen) for _ in range(depth)]
    layers = [(init_scale * q + noise()).requires_grad_() for q in qs]
    aligned = torch.eye(d, dtype=torch.float64) if objective == "jepa" else _product(qs).T
    head = (init_scale * aligned + noise()).requires_grad_()
    ema = [layer.detach().clone() for layer in layers]
    sxx_t, sxy_t = torch.as_tensor(sxx, dtype=torch.float64), torch.as_tensor(sxy, dtype=torch.float64)
    times, amps = [], []
    for step in range(steps + 1):
        if step % record_every == 0:
            times.append(lr * step)
            amps.append(_product([p.detach() for p in layers]).norm(dim=0).numpy())
        if step == steps:
            break
        tgt = None if objective == "mae" else _product(ema if target == "ema" else [p.detach() for p in layers])
        loss = _population_loss(layers, head, tgt, sxx_t, sxy_t)
        grads = torch.autograd.grad(loss, [*layers, head])
        with torch.no_grad():
            for p, g in zip([*layers, head], grads):
                p -= lr * g
            for e, p in zip(ema, layers):
                e.mul_(ema_decay).add_(p, alpha=1 - ema_decay)
    return np.asarray(times), np.stack(amps)


def crossing_times(times: np.ndarray, amps: np.ndarray, final: np.ndarray,
                   fraction: float = 0.5) -> np.ndarray:
    """First time each mode's amplitude reaches ``fraction · final`` (linear interpolation
    between records; ``inf`` if never): ``times`` ``(T,)``, ``amps`` ``(T, d)`` → ``(d,)``."""
    out = np.full(amps.shape[1], np.inf)
    for i in range(amps.shape[1]):
        level = fraction * final[i]
        above = np.nonzero(amps[:, i] >= level)[0]
        if above.size == 0:
            continue
        k = above[0]
        if k == 0:
            out[i] = times[0]
            continue
        a0, a1 = amps[k - 1, i], amps[k, i]
        out[i] = times[k - 1] + (level - a0) / (a1 - a0) * (times[k] - times[k - 1])
    return out


def learning_order(times_to_learn: np.ndarray) -> list[int]:
    """Mode indices sorted by the time they are learned (first learned first)."""
    return [int(i) for i in np.argsort(times_to_learn, kind="stable")]
