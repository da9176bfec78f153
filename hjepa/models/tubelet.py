"""The token path for level 0: a space-time tubelet ViT and the narrow masked-token predictor.

``TubeletViT`` cuts a clip into tubelets of ``t`` frames × ``p×p`` pixels (a strided ``Conv3d``),
adds a learned spatial position and a sinusoidal temporal position to each token and runs
pre-norm attention blocks (``attention.Block``: SDPA, or xformers on CUDA when installed).

* ``tokens(obs, keep)``: ``obs (B, T, C, H, W)`` with ``T % t == 0`` → ``(B, N, W)`` token latents
  (``W`` the encoder width), ``N = (T/t)·(H/p)·(W/p)``; with ``keep (B, N_keep)`` only those tokens
  are embedded and attend to each other (the context encoder of masked prediction sees only the
  visible tokens).
* ``frame_tokens(obs)`` → ``(B, T, S, W)``: the ``S = (H/p)·(W/p)`` tokens of each frame, frame ``t``
  encoded from the tubelet of frames ``t−t+1 … t`` (the first frame repeated before the clip
  starts), so it depends on no later frame.
* ``forward(obs)`` → ``(B, T, D)``: one latent per frame, the frame-encoder interface of level 0:
  ``readout`` (a linear map) of the frame's concatenated tokens. Concatenating rather than
  mean-pooling keeps where things are: on rooms the agent is a dot inside one patch, and
  mean-pooled tokens did not give its position to a linear probe (R² ≈ 0 after 100 steps).

``MaskedTokenPredictor`` maps context tokens plus learnable mask tokens (each with its space-time
position) to predictions of the target tokens at the masked positions, in latent space.
"""

from __future__ import annotations

import torch
from einops import rearrange, repeat
from torch import Tensor, nn

from .attention import Block
from .predictor import sinusoidal_positions

__all__ = ["TubeletViT", "MaskedTokenPredictor", "gather_tokens"]


def gather_tokens(x: Tensor, idx: Tensor) -> Tensor:
    """``x (B, N, D)``, ``idx (B, K)`` → ``(B, K, D)``: the tokens at ``idx`` of each clip."""
    return torch.gather(x, 1, repeat(idx, "b k -> b k d", d=x.shape[-1]))


class TubeletViT(nn.Module):
    """Space-time ViT over tubelets. See the module docstring for ``tokens`` and ``forward``."""

    def __init__(self, obs_shape: tuple[int, ...], dim: int, width: int = 64, patch_size: int = 8,
                 tubelet_frames: int = 2, layers: int = 2, heads: int = 4, backend: str = "auto"):
        super().__init__()
        if len(obs_shape) != 3:
            raise ValueError(f"the tubelet encoder needs image observations (C, H, W), got {obs_shape}")
        c, h, w = obs_shape
        if h % patch_size or w % patch_size:
            raise ValueError(f"tubelet patch size {patch_size} must divide the frame size {h}x{w}")
        if tubelet_frames < 1:
            raise ValueError(f"tubelet_frames must be >= 1, got {tubelet_frames}")
        width = max(width, heads * 8)
        width -= width % heads
        self.width, self.frames, self.patch = width, tubelet_frames, patch_size
        self.grid_hw = (h // patch_size, w // patch_size)
        self.embed = nn.Conv3d(c, width, (tubelet_frames, patch_size, patch_size),
                               stride=(tubelet_frames, patch_size, patch_size))
        self.pos_space = nn.Parameter(torch.randn(self.grid_hw[0] * self.grid_hw[1], width) * 0.02)
        self.blocks = nn.ModuleList(Block(width, heads, backend=backend) for _ in range(layers))
        self.norm = nn.LayerNorm(width)
        self.readout = nn.Linear(self.grid_hw[0] * self.grid_hw[1] * width, dim)

    @property
    def num_spatial(self) -> int:
        return self.grid_hw[0] * self.grid_hw[1]

    def grid(self, num_frames: int) -> tuple[int, int, int]:
        """Token grid ``(n_t, n_h, n_w)`` of a clip of ``num_frames`` frames."""
        if num_frames % self.frames:
            raise ValueError(f"a clip of {num_frames} frames does not split into tubelets of {self.frames} frames")
        return (num_frames // self.frames, *self.grid_hw)

    def positions(self, n_t: int) -> Tensor:
        """``(n_t·n_h·n_w, width)`` position codes, tubelet-major."""
        time = sinusoidal_positions(n_t, self.width, self.pos_space.device, self.pos_space.dtype)
        return rearrange(time[:, None] + self.pos_space[None], "t s d -> (t s) d")

    def _encode(self, tok: Tensor) -> Tensor:
        for blk in self.blocks:
            tok = blk(tok)
        return self.norm(tok)

    def tokens(self, obs: Tensor, keep: Tensor | None = None) -> Tensor:
        """``obs (B, T, C, H, W)`` → ``(B, N, W)``, or ``(B, N_keep, W)`` for ``keep (B, N_keep)``."""
        n_t = self.grid(obs.shape[1])[0]
        tok = rearrange(self.embed(rearrange(obs, "b t c h w -> b c t h w")), "b d t h w -> b (t h w) d")
        tok = tok + self.positions(n_t)
        if keep is not None:
            tok = gather_tokens(tok, keep)
        return self._encode(tok)

    def frame_tokens(self, obs: Tensor) -> Tensor:
        """``obs (B, T, C, H, W)`` → ``(B, T, S, W)``: each frame's tokens from its causal tubelet."""
        b, t = obs.shape[:2]
        steps = torch.arange(t, device=obs.device)
        offsets = torch.arange(self.frames - 1, -1, -1, device=obs.device)
        idx = (steps[:, None] - offsets[None]).clamp(min=0)  # (T, frames): frames t-frames+1 … t
        windows = rearrange(obs[:, idx], "b t f c h w -> (b t) c f h w")
        tok = rearrange(self.embed(windows), "n d 1 h w -> n (h w) d") + self.positions(1)
        return rearrange(self._encode(tok), "(b t) s d -> b t s d", b=b)

    def forward(self, obs: Tensor) -> Tensor:
        """``obs (B, T, C, H, W)`` → ``(B, T, D)``: the readout of each frame's concatenated tokens."""
        return self.readout(rearrange(self.frame_tokens(obs), "b t s w -> b t (s w)"))


class MaskedTokenPredictor(nn.Module):
    """Narrow predictor: ``ctx (B, N_ctx, D)`` at ``ctx_idx (B, N_ctx)`` plus mask tokens at
    ``tgt_idx (B, N_tgt)`` → predictions ``(B, N_tgt, D)`` of the target tokens.

    Positions come from ``positions(idx)``-style codes of the same grid: a learned spatial table
    and sinusoidal time, as in the encoder, at the predictor's own width.
    """

    def __init__(self, dim: int, num_spatial: int, width: int = 32, layers: int = 1, heads: int = 4,
                 backend: str = "auto"):
        super().__init__()
        width = max(width, heads * 8)
        width -= width % heads
        self.width, self.num_spatial = width, num_spatial
        self.inp = nn.Linear(dim, width)
        self.mask_token = nn.Parameter(torch.zeros(width))
        self.pos_space = nn.Parameter(torch.randn(num_spatial, width) * 0.02)
        self.blocks = nn.ModuleList(Block(width, heads, backend=backend) for _ in range(layers))
        self.norm = nn.LayerNorm(width)
        self.out = nn.Linear(width, dim)

    def _pos(self, idx: Tensor) -> Tensor:
        n_t = int(idx.max()) // self.num_spatial + 1
        time = sinusoidal_positions(n_t, self.width, idx.device, self.pos_space.dtype)
        return time[idx // self.num_spatial] + self.pos_space[idx % self.num_spatial]

    def forward(self, ctx: Tensor, ctx_idx: Tensor, tgt_idx: Tensor) -> Tensor:
        h_ctx = self.inp(ctx) + self._pos(ctx_idx)
        h_tgt = self.mask_token + self._pos(tgt_idx)
        h = torch.cat([h_ctx, h_tgt], 1)
        for blk in self.blocks:
            h = blk(h)
        return self.out(self.norm(h[:, ctx.shape[1]:]))
