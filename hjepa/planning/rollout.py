"""Incremental latent rollouts: the predictor fed one imagined step at a time through a key/value
cache, so a rollout of ``H`` steps costs ``O(H)`` token evaluations instead of the ``O(H²)`` of
re-running the whole sequence (``HJEPA.rollout``), and the observed context is encoded once per
episode and shared by every candidate plan."""

from __future__ import annotations

import torch
from einops import rearrange, repeat
from torch import Tensor

from ..models import HJEPA, LevelPredictor

__all__ = ["rollout_cached", "CandidateRollout", "expand_cache"]


def expand_cache(cache: list[dict], n: int) -> list[dict]:
    """Repeat every cached tensor ``n`` times along the batch: ``(B, …)`` → ``(B·n, …)`` (b-major)."""
    return [{k: v.repeat_interleave(n, 0) if torch.is_tensor(v) else v for k, v in c.items()} for c in cache]


def _held(ctx: Tensor | None, steps: int) -> Tensor | None:
    """The last context ``(B, D_c)`` held for ``steps`` steps: ``(B, steps, D_c)``."""
    return None if ctx is None else repeat(ctx, "b d -> b t d", t=steps)


@torch.no_grad()
def rollout_cached(model: HJEPA, k: int, z_context: Tensor, actions: Tensor, ctx: Tensor | None,
                   horizon: int) -> Tensor:
    """Same contract and result as ``HJEPA.rollout`` (up to float rounding), in ``O(t0 + horizon)``.

    ``z_context (B, t0+1, D)``, ``actions (B, ≥ t0+horizon, A_k)``, ``ctx (B, t0+1, D_c)`` or None
    (held at its last value for imagined steps) → ``(B, horizon, D)``.
    """
    pred: LevelPredictor = model.levels[k].predictor
    cache = pred.new_cache()
    n = z_context.shape[1]
    out = pred(z_context, actions[:, :n], ctx, cache=cache)[:, -1:]
    steps = [out]
    for i in range(1, horizon):
        c = _held(ctx[:, -1], 1) if ctx is not None else None
        out = pred(out, actions[:, n + i - 1: n + i], c, cache=cache)
        steps.append(out)
    return torch.cat(steps, 1)


class CandidateRollout:
    """Rollouts of many candidate action sequences from one observed context per episode.

    ``prefix(z (E, T, D), actions (E, T−1, A), ctx (E, T, D_c) | None)`` feeds the observed steps
    ``0 … T−2`` once (shared by all candidates); ``imagine(actions (E, N, H, A))`` then feeds step
    ``T−1`` with each candidate's first action and ``H−1`` imagined steps → ``(E, N, H, D)``.
    Every call of ``imagine`` counts ``E·N·H`` predictor evaluations in ``evals``.
    """

    def __init__(self, model: HJEPA, k: int):
        self.pred: LevelPredictor = model.levels[k].predictor
        self.evals = 0

    @torch.no_grad()
    def prefix(self, z: Tensor, actions: Tensor, ctx: Tensor | None) -> None:
        self.cache, self._expanded_n = self.pred.new_cache(), None
        t = z.shape[1]
        if t > 1:
            self.pred(z[:, :-1], actions[:, : t - 1], None if ctx is None else ctx[:, :-1], cache=self.cache)
        self.last_z = z[:, -1:]
        self.last_ctx = None if ctx is None else ctx[:, -1]

    @torch.no_grad()
    def imagine(self, actions: Tensor) -> Tensor:
        e, n, h, _ = actions.shape
        if getattr(self, "_expanded_n", None) != n:  # the shared context, repeated once per candidate count
            self._expanded, self._expanded_n = expand_cache(self.cache, n), n
        cache = [dict(c) for c in self._expanded]  # new keys/values are concatenated, never written in place
        z = self.last_z.repeat_interleave(n, 0)
        ctx = None if self.last_ctx is None else self.last_ctx.repeat_interleave(n, 0)
        acts = rearrange(actions, "e n h a -> (e n) h a")
        outs = []
        for i in range(h):
            z = self.pred(z, acts[:, i: i + 1], _held(ctx, 1), cache=cache)
            outs.append(z)
        self.evals += e * n * h
        return rearrange(torch.cat(outs, 1), "(e n) h d -> e n h d", e=e)
