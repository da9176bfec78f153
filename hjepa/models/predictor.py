"""The causal temporal predictor of one level."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from .attention import Block

__all__ = ["LevelPredictor", "sinusoidal_positions"]


def sinusoidal_positions(length: int, dim: int, device=None, dtype=torch.float32) -> Tensor:
    """Fixed sin/cos position codes ``(length, dim)`` — no maximum sequence length."""
    pos = torch.arange(length, device=device, dtype=torch.float32)[:, None]
    freq = torch.exp(torch.arange(0, dim, 2, device=device, dtype=torch.float32) * (-math.log(10_000.0) / dim))
    pe = torch.zeros(length, dim, device=device)
    pe[:, 0::2] = torch.sin(pos * freq)
    pe[:, 1::2] = torch.cos(pos * freq[: dim // 2])
    return pe.to(dtype)


class LevelPredictor(nn.Module):
    """``ẑ[t+1] = pred(z[≤t], a[≤t], ctx[t])`` — a causal transformer over the level's time axis.

    Token at step t = ``W_z z[t] + W_a a[t] + W_c ctx[t] + pos[t]`` (the action enters additively,
    a FiLM-free form of action tokens); causal self-attention; a linear read-out.

    ``conditioning`` (``model.topdown_conditioning``) sets how the context enters: ``add`` (above);
    ``film`` also lets it *scale* the token, ``(W_z z[t] + W_a a[t] + pos[t]) ⊙ (1 + W_g ctx[t]) +
    W_c ctx[t]``, with ``W_g`` zero at initialisation (the additive predictor); ``gain`` keeps only
    the scaling, ``(W_z z[t] + W_a a[t] + pos[t]) ⊙ (1 + W_g ctx[t])`` with ``W_g`` at its default
    initialisation (at zero no gradient would reach the context). A slow quantity that modulates the lower dynamics — a
    velocity that sets how far an angle turns per step — is then a linear coordinate of the context
    that multiplies features of ``z``, instead of having to be pre-multiplied inside the context
    (docs/simulators.md, "Pendulum from pixels").

    ``history`` limits what output ``t`` sees to the last ``history`` steps ``t − history + 1 … t``
    (the first block attends within that window, later blocks only to their own step); ``0`` is
    the whole causal past. ``history=1`` makes the predictor Markov: ``ẑ[t+1] = f(z[t], a[t],
    ctx[t])``, so whatever the next latent depends on (a velocity, say) must be in ``z[t]``
    itself rather than be read off a sequence of latents.

    ``zero_init`` (``model.pred_zero_init``, per level) starts the linear read-out at zero, so
    ``ẑ = 0`` at step 0 and the prediction error is the target itself, as small as the untrained
    encoder's latents; the first steps train the read-out, and the error sends gradient into the
    encoders only as the read-out grows. PyTorch's default read-out starts at output std ≈ 0.6,
    far above the latents (std ≈ 0.03–0.08 for a conv encoder on Pendulum frames), and a level ≥ 1
    passes that large error down through its summariser into level 0's encoder, where it can
    collapse level 0 before SIGReg — whose gradient shrinks with the latents — grows it
    (docs/simulators.md, "Fourth round").

    ``ctx_rank`` (``model.topdown_rank``) passes the context through a rank-``r`` linear
    bottleneck first (``W_g = U V``, ``V`` of shape ``(r, D_ctx)``): the level above can tell the
    level below only ``r`` numbers per step, each a linear read-out of its latent. Measured on
    Pendulum with ``r = 1`` (the one velocity level 0 needs), the number sent need not be the
    velocity itself — it can be the velocity times a function of the angle, which level 0 sees —
    and level 1's linear θ̇ probe fell (1 of 15 seeds at ≥ 0.8 against 10 of 15 at full rank;
    docs/simulators.md, "Fifth round"). Off by default.

    Shapes: ``z (B, T, D)``, ``a (B, T, A)``, ``ctx (B, T, D_ctx)`` or ``None`` → ``(B, T, D)``,
    where output ``t`` is the prediction of ``z[t + 1]``.
    """

    def __init__(self, dim: int, action_dim: int, ctx_dim: int | None, width: int = 128, layers: int = 2,
                 heads: int = 4, backend: str = "auto", history: int = 0, conditioning: str = "add",
                 zero_init: bool = False, ctx_rank: int | None = None):
        super().__init__()
        if history < 0:
            raise ValueError(f"predictor history {history} must be >= 0 (0: the whole past)")
        self.width, self.history = width, history
        self.z_in = nn.Linear(dim, width)
        self.a_in = nn.Linear(action_dim, width)
        if conditioning not in ("add", "film", "gain"):
            raise ValueError(f"conditioning {conditioning!r} must be add, film or gain")
        self.ctx_dim = ctx_dim
        if ctx_rank is not None and ctx_rank < 1:
            raise ValueError(f"context rank {ctx_rank} must be >= 1 (None: no bottleneck)")
        self.c_proj = nn.Linear(ctx_dim, ctx_rank, bias=False) if ctx_dim and ctx_rank is not None else None
        c_dim = ctx_rank if self.c_proj is not None else ctx_dim
        self.c_in = nn.Linear(c_dim, width) if ctx_dim and conditioning != "gain" else None
        self.c_gain = nn.Linear(c_dim, width) if ctx_dim and conditioning != "add" else None
        if self.c_gain is not None:
            nn.init.zeros_(self.c_gain.bias)
            if conditioning == "film":
                nn.init.zeros_(self.c_gain.weight)
        windows = [history] + [1] * (layers - 1) if history > 0 else [0] * layers
        self.blocks = nn.ModuleList(Block(width, heads, backend=backend, window=w) for w in windows)
        self.norm = nn.LayerNorm(width)
        self.out = nn.Linear(width, dim)
        if zero_init:
            nn.init.zeros_(self.out.weight)
            nn.init.zeros_(self.out.bias)

    def forward(self, z: Tensor, a: Tensor, ctx: Tensor | None = None, cache: list[dict] | None = None) -> Tensor:
        """``cache`` (from ``new_cache``) makes the call incremental: ``z, a, ctx`` are the next steps
        after those already fed through the same cache, and only their outputs are computed."""
        if a.shape[:2] != z.shape[:2]:
            raise ValueError(f"actions {tuple(a.shape)} and latents {tuple(z.shape)} disagree on (B, T)")
        start = cache[0].get("len", 0) if cache is not None else 0
        pos = sinusoidal_positions(start + z.shape[1], self.width, z.device, z.dtype)[start:]
        h = self.z_in(z) + self.a_in(a) + pos
        if self.ctx_dim:
            if ctx is None:
                raise ValueError("this level was built with top-down context; pass ctx (B, T, D_ctx)")
            if self.c_proj is not None:
                ctx = self.c_proj(ctx)  # (B, T, r)
            if self.c_gain is not None:
                h = h * (1 + self.c_gain(ctx))
            if self.c_in is not None:
                h = h + self.c_in(ctx)
        if cache is not None:
            cache[0]["len"] = start + z.shape[1]
        for i, blk in enumerate(self.blocks):
            h = blk(h, causal=True, cache=cache[i + 1] if cache is not None else None)
        return self.out(self.norm(h))

    def new_cache(self) -> list[dict]:
        """An empty incremental-decoding cache: step count, then keys/values per block."""
        return [{"len": 0}] + [{} for _ in self.blocks]
