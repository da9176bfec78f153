"""Multi-head self-attention with a pluggable kernel.

``sdpa`` (torch's ``scaled_dot_product_attention``) is the default everywhere; ``xformers``'s
memory-efficient attention is used when the backend is ``auto`` or ``xformers``, xformers is
importable, and the tensors live on CUDA (xformers has no CPU kernels).

The backend is resolved once, when the module is built (whether xformers can be used at all);
``forward`` only reads the tensor's device, so ``torch.compile`` traces it without a graph break.
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

__all__ = ["SelfAttention", "Block", "causal_window_mask", "xformers_available", "resolve_backend"]


@functools.cache
def xformers_available() -> bool:
    try:
        import xformers.ops  # noqa: F401
    except Exception:  # ImportError, or a broken CUDA build
        return False
    return True


def resolve_backend(backend: str, device: torch.device) -> str:
    """The kernel actually used for ``backend`` ∈ {auto, sdpa, xformers} on ``device``."""
    if backend not in ("auto", "sdpa", "xformers"):
        raise ValueError(f"unknown attention backend {backend!r}; choose auto, sdpa or xformers")
    if backend == "sdpa":
        return "sdpa"
    if device.type == "cuda" and xformers_available():
        return "xformers"
    if backend == "xformers":
        raise RuntimeError("model.attention_backend=xformers needs the xformers package and CUDA tensors; "
                           "install hjepa[cuda] on a GPU machine or use attention_backend=auto")
    return "sdpa"


def causal_window_mask(queries: int, keys: int, window: int, device=None) -> Tensor:
    """``(queries, keys)`` bool mask, True where attention is allowed: the queries are the last
    ``queries`` of ``keys`` positions; each sees itself and the earlier positions, at most ``window``
    positions in all (``window=0``: every earlier position)."""
    q = torch.arange(queries, device=device)[:, None] + (keys - queries)
    lag = q - torch.arange(keys, device=device)
    return (lag >= 0) & (lag < window) if window > 0 else lag >= 0


class SelfAttention(nn.Module):
    """``x (B, L, D)`` → ``(B, L, D)``; ``causal=True`` masks attention to the future.

    ``window > 0`` (causal only) limits each token to itself and the ``window − 1`` tokens before
    it: ``window=1`` makes a causal stack Markov in its input (no history).
    """

    def __init__(self, dim: int, heads: int, backend: str = "auto", window: int = 0):
        super().__init__()
        if dim % heads:
            raise ValueError(f"attention width {dim} is not divisible by {heads} heads")
        if backend not in ("auto", "sdpa", "xformers"):
            raise ValueError(f"unknown attention backend {backend!r}; choose auto, sdpa or xformers")
        if window < 0:
            raise ValueError(f"attention window {window} must be >= 0 (0: no limit)")
        self.heads, self.backend, self.window = heads, backend, window
        # resolved here, once: True when xformers may serve CUDA tensors (never looked up in forward)
        self.xformers_on_cuda = backend != "sdpa" and xformers_available()
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: Tensor, causal: bool = False, cache: dict | None = None) -> Tensor:
        """``cache`` (incremental causal decoding): a dict holding the keys/values of earlier tokens;
        ``x`` are the next tokens, which attend to the cached ones and causally to each other."""
        q, k, v = self.qkv(x).chunk(3, dim=-1)
        if cache is not None:
            return self.proj(self._attend_cached(q, k, v, cache))
        if causal and self.window > 0:  # a banded causal mask (sdpa on every device)
            q, k, v = (rearrange(t, "b l (h d) -> b h l d", h=self.heads) for t in (q, k, v))
            mask = causal_window_mask(x.shape[1], x.shape[1], self.window, x.device)
            return self.proj(rearrange(F.scaled_dot_product_attention(q, k, v, attn_mask=mask), "b h l d -> b l (h d)"))
        if self.backend == "xformers" and not (x.is_cuda and self.xformers_on_cuda):
            resolve_backend(self.backend, x.device)  # raises the explanatory error
        if self.xformers_on_cuda and x.is_cuda:
            import xformers.ops as xops

            q, k, v = (rearrange(t, "b l (h d) -> b l h d", h=self.heads) for t in (q, k, v))
            bias = xops.LowerTriangularMask() if causal else None
            out = xops.memory_efficient_attention(q, k, v, attn_bias=bias)
            out = rearrange(out, "b l h d -> b l (h d)")
        else:
            q, k, v = (rearrange(t, "b l (h d) -> b h l d", h=self.heads) for t in (q, k, v))
            out = F.scaled_dot_product_attention(q, k, v, is_causal=causal)
            out = rearrange(out, "b h l d -> b l (h d)")
        return self.proj(out)

    def _attend_cached(self, q: Tensor, k: Tensor, v: Tensor, cache: dict) -> Tensor:
        q, k, v = (rearrange(t, "b l (h d) -> b h l d", h=self.heads) for t in (q, k, v))
        if "k" in cache:
            k, v = torch.cat([cache["k"], k], 2), torch.cat([cache["v"], v], 2)
        cache["k"], cache["v"] = k, v
        new, total = q.shape[2], k.shape[2]
        mask = None
        if new > 1 or self.window > 0:  # causal among the new tokens, cached tokens visible (within the window)
            mask = causal_window_mask(new, total, self.window, q.device)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        return rearrange(out, "b h l d -> b l (h d)")


class Block(nn.Module):
    """Pre-norm transformer block: ``x + attn(LN x)``, ``x + MLP(LN x)``."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float = 4.0, backend: str = "auto", window: int = 0):
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.attn = SelfAttention(dim, heads, backend, window)
        hidden = int(dim * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))

    def forward(self, x: Tensor, causal: bool = False, cache: dict | None = None) -> Tensor:
        x = x + self.attn(self.norm1(x), causal=causal, cache=cache)
        return x + self.mlp(self.norm2(x))
