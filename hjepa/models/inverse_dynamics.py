"""Inverse dynamics at a level's clock: which actions took the world from one latent to the next.

A level's next-step loss is indifferent to *how* its latent encodes the state: any invertible
re-coding predicts equally well, and a latent that stacks the positions of its window carries a
velocity only as a non-linear function of them. An inverse-dynamics term asks a **linear** head to
recover the actions that drove each transition from the two latents around it; the actions change
the velocity, so the latents must hold the velocity (and what else the actions act on) along
linear directions. Actions are observed inputs, never the probed state: this is a training
signal of the data, not of the labels (PLDM-style world models use the same term).

At level k (span ``S_k`` frames a step) the transition from step ``τ`` to ``τ+1`` is driven by the
raw actions ``[(τ+1)S_k − 1, (τ+2)S_k − 1)`` — the same frames ``macro_action_windows`` gives the
level's macro-action encoder — so the head predicts those ``S_k`` raw actions, concatenated.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from .level import macro_action_windows

__all__ = ["InverseDynamicsHead", "inverse_dynamics_targets"]


def inverse_dynamics_targets(actions: Tensor, span: int, steps: int) -> Tensor:
    """Raw actions of each of the ``steps − 1`` transitions of a level with ``span`` frames a step.

    ``actions (B, T, A)`` → ``(B, steps − 1, span·A)``: row ``τ`` holds the actions that lead from
    step ``τ`` to step ``τ + 1`` (indices ``[(τ+1)·span − 1, (τ+2)·span − 1)``, in time order).
    """
    win = macro_action_windows(actions, span, steps - 1)  # (B, (steps-1)·span, A)
    return win.reshape(actions.shape[0], steps - 1, span * actions.shape[-1])


class InverseDynamicsHead(nn.Module):
    """A linear map ``[z[τ], z[τ+1]] → actions of the transition``.

    ``z (B, T, D)`` → ``(B, T − 1, span·A)``.
    """

    def __init__(self, dim: int, span: int, action_dim: int):
        super().__init__()
        self.span, self.action_dim = span, action_dim
        self.linear = nn.Linear(2 * dim, span * action_dim)

    def forward(self, z: Tensor) -> Tensor:
        return self.linear(torch.cat([z[:, :-1], z[:, 1:]], -1))

    def loss(self, z: Tensor, actions: Tensor) -> Tensor:
        """Mean squared error against the true raw actions ``actions (B, T_0, A)`` of the clip."""
        target = inverse_dynamics_targets(actions, self.span, z.shape[1])
        return (self(z).float() - target.float()).square().mean()
