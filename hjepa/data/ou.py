"""OU mixtures: vector observations mixing Ornstein–Uhlenbeck components of known time constants.

``K`` independent OU components ``x_i`` with time constants ``τ_i`` (unit stationary variance,
started from stationarity) are simulated with the exact AR(1) discretisation of
:func:`theory.multiscale.simulate_ou` — the same simulator the theory's checks use — and mixed
into ``obs_dim``-dimensional observations through a fixed random linear map plus white noise:

    obs[t] = W x[t] + obs_noise · ε[t],   W ∈ R^{obs_dim × K},  W_jk ~ N(0, 1/K),  ε ~ N(0, I).

``W`` is drawn from ``mix_seed`` only, so the train and eval splits (different ``seed``) share it.

Actions (optional). With ``pushed = [i, …]`` each listed component gets its own action channel:
``x_i[t+1] = φ_i x_i[t] + √(1−φ_i²) ξ + push · a_i[t]`` (``φ_i = e^{−1/τ_i}``), actions i.i.d.
``N(0, 1)`` clipped to ``[−1, 1]``. By linearity this is the free OU path (exact simulator) plus
the actions filtered through ``y[t+1] = φ y[t] + push · a[t]``, ``y[0] = 0``. Without pushes the
action array is one all-zero channel (the model's interface always has actions).
``actions[:, t]`` acts between ``t`` and ``t + 1``, as everywhere in hjepa.

Factors (``state``): the components themselves, named ``tau_<τ>`` (``tau_1``, ``tau_4``, …) so
per-level probes read each time constant.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from theory.multiscale import simulate_ou

from .trajectories import DataValidationError, Trajectories

__all__ = ["generate_ou", "ou_factor_names", "mixing_matrix", "pushed_response"]


def ou_factor_names(taus: Sequence[float]) -> list[str]:
    """``tau_<τ>`` per component, ``τ`` printed without a trailing ``.0`` (``tau_4``, ``tau_2.5``)."""
    return [f"tau_{float(t):g}" for t in taus]


def mixing_matrix(obs_dim: int, k: int, mix_seed: int) -> np.ndarray:
    """The fixed map ``W (obs_dim, K)``, entries ``N(0, 1/K)`` (observation variance ≈ 1 per dim)."""
    return np.random.default_rng(mix_seed).standard_normal((obs_dim, k)) / np.sqrt(k)


def pushed_response(actions: np.ndarray, phi: np.ndarray, push: float) -> np.ndarray:
    """Response of ``y[t+1] = φ y[t] + push · a[t]`` from ``y[0] = 0``: ``(N, L, P)`` → ``(N, L, P)``."""
    y = np.zeros_like(actions, dtype=np.float64)
    for t in range(1, actions.shape[1]):
        y[:, t] = phi * y[:, t - 1] + push * actions[:, t - 1]
    return y


def generate_ou(num_episodes: int, episode_len: int, seed: int, *, taus: Sequence[float] = (1, 4, 16, 64, 256),
                obs_dim: int = 32, obs_noise: float = 0.1, mix_seed: int = 0, pushed: Sequence[int] = (),
                push: float = 0.5) -> Trajectories:
    """``obs (N, L, obs_dim)``, ``actions (N, L, max(1, len(pushed)))``, ``state (N, L, K)`` float32."""
    taus = np.asarray(taus, float)
    if taus.ndim != 1 or taus.size == 0 or (taus <= 0).any():
        raise DataValidationError(f"data.taus={taus.tolist()}: need one or more positive time constants")
    pushed = [int(i) for i in pushed]
    if any(not 0 <= i < taus.size for i in pushed) or len(set(pushed)) != len(pushed):
        raise DataValidationError(f"data.pushed={pushed}: need distinct component indices in [0, {taus.size})")
    rng = np.random.default_rng(seed)
    x = simulate_ou(taus, episode_len, num_episodes, rng=rng)  # (N, L, K), exact
    if pushed:
        actions = np.clip(rng.standard_normal((num_episodes, episode_len, len(pushed))), -1.0, 1.0)
        x[..., pushed] += pushed_response(actions, np.exp(-1.0 / taus[pushed]), push)
    else:
        actions = np.zeros((num_episodes, episode_len, 1))
    w = mixing_matrix(obs_dim, taus.size, mix_seed)
    obs = np.einsum("nlk,dk->nld", x, w) + obs_noise * rng.standard_normal((num_episodes, episode_len, obs_dim))
    return Trajectories(obs.astype(np.float32), actions.astype(np.float32), x.astype(np.float32),
                        ou_factor_names(taus))
