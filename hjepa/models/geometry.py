"""Temporal-distance geometry of a level's latent space (HILP-style, Park et al. 2024).

A level's latents ``φ`` are trained so that ``V(s, g) = −‖φ(s) − φ(g)‖`` is the goal-conditioned
value of reaching ``g`` from ``s`` with reward −1 per step of the level's own clock (0 once at the
goal): by expectile regression (``τ`` close to 1, an optimistic in-sample maximum over the
behaviour's futures) of the one-step TD target ``r + γ·V̄(s', g)`` (``V̄`` under stop-gradient)
on offline random-walk clips. ``−V`` then grows with the number of steps between ``s`` and ``g``
— the shortest path through the world, doorways included — so the planning energy
``model.distance`` (a monotone function of ``‖φ(s) − φ(g)‖``) slopes toward the goal along the
geodesic rather than only being low at the goal.

Goals for each state ``s = z[b, t]`` are drawn per pair: the state itself (success, target 0),
a later step of the same clip (offset ~ Geometric(1 − γ)), or a random step of another clip.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from einops import rearrange
from torch import Tensor

__all__ = ["GeometryConfig", "temporal_distance_loss", "latent_value"]


@dataclass(frozen=True)
class GeometryConfig:
    discount: float = 0.95  # γ per step of the level's own clock
    expectile: float = 0.9  # τ of the expectile regression
    self_goal: float = 0.2  # fraction of goals equal to the state itself
    random_goal: float = 0.3  # fraction of goals from random steps of the batch (the rest: the clip's future)


def latent_value(zs: Tensor, zg: Tensor) -> Tensor:
    """``V(s, g) = −‖φ(s) − φ(g)‖``: ``(..., D), (..., D)`` → ``(...)`` (a small epsilon keeps the
    gradient finite at ``s = g``)."""
    return -((zs - zg).square().sum(-1) + 1e-6).sqrt()


def _sample_goals(b: int, t: int, cfg: GeometryConfig, device) -> tuple[Tensor, Tensor]:
    """Goal indices for the ``b·(t−1)`` states ``(clip, step)`` with a successor: flat indices into
    ``(b t)`` of shape ``(b·(t−1),)`` and a ``success`` mask (goal is the state itself)."""
    bi = torch.arange(b, device=device).repeat_interleave(t - 1)
    ti = torch.arange(t - 1, device=device).repeat(b)
    n = bi.numel()
    u = torch.rand(n, device=device)
    geo = torch.distributions.Geometric(probs=torch.tensor(1 - cfg.discount, device=device)).sample((n,)).long()
    fut_t = (ti + 1 + geo).clamp(max=t - 1)
    rand_flat = torch.randint(0, b * t, (n,), device=device)
    own_flat = bi * t + ti
    goal = torch.where(u < cfg.self_goal, own_flat,
                       torch.where(u < cfg.self_goal + cfg.random_goal, rand_flat, bi * t + fut_t))
    return goal, goal == own_flat


def temporal_distance_loss(z: Tensor, cfg: GeometryConfig) -> Tensor:
    """Expectile TD loss of ``V(s, g) = −‖φ(s) − φ(g)‖`` on one level's latents ``z (B, T, D)``
    (a scalar). Gradients flow into ``φ(s)`` and ``φ(g)``; the bootstrap ``V̄(s', g)`` and the
    expectile weights use the latents under stop-gradient."""
    b, t, _ = z.shape
    if t < 2:
        return z.new_zeros(())
    flat = rearrange(z, "b t d -> (b t) d")
    goal, success = _sample_goals(b, t, cfg, z.device)
    own = torch.arange(b * t, device=z.device).view(b, t)[:, :-1].reshape(-1)
    s, s_next, g = flat[own], flat[own + 1], flat[goal]
    with torch.no_grad():
        sd, nd, gd = s.detach(), s_next.detach(), g.detach()
        not_done = (~success).to(z.dtype)
        target = -not_done + cfg.discount * not_done * latent_value(nd, gd)  # r = −1 unless s is the goal
        adv = target - latent_value(sd, gd)
        weight = torch.where(adv >= 0, cfg.expectile, 1 - cfg.expectile)
    return (weight * (target - latent_value(s, g)).square()).mean()
