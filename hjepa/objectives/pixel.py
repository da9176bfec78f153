"""``objective=pixel``: the generative baseline — predict the next frame's pixels.

The same level-0 encoder and causal predictor as a flat (depth-1) ``next_step`` model, plus a
light transposed-conv decoder: ``x̂[t+1] = dec(pred(enc(x[≤t]), a[≤t]))``, trained by the mean
squared pixel error. The representation is the encoder's ``z[t]``, evaluated exactly like a
``next_step`` run's level 0. The configured regulariser is added only with
``objective.use_regularizer=true``. The checkpoint holds the HJEPA's weights plus ``decoder.*``.
"""

from __future__ import annotations

import torch
from einops import rearrange
from torch import Tensor, nn

from .base import weighted_level_loss
from .next_step import NextStepObjective

__all__ = ["PixelObjective", "FrameDecoder"]


class FrameDecoder(nn.Module):
    """``(…, D)`` latents → ``(…, C, H, W)`` frames: a linear map to a ``H/8 × W/8`` grid, then three
    stride-2 transposed convolutions."""

    def __init__(self, dim: int, obs_shape: tuple[int, ...], width: int = 32):
        super().__init__()
        c, h, w = obs_shape
        if h % 8 or w % 8:
            raise ValueError(f"the pixel decoder needs frame sides divisible by 8, got {h}x{w}")
        self.grid, self.width = (h // 8, w // 8), width
        self.inp = nn.Linear(dim, width * 2 * self.grid[0] * self.grid[1])
        self.net = nn.Sequential(
            nn.GELU(), nn.ConvTranspose2d(2 * width, width, 4, stride=2, padding=1), nn.GELU(),
            nn.ConvTranspose2d(width, width, 4, stride=2, padding=1), nn.GELU(),
            nn.ConvTranspose2d(width, c, 4, stride=2, padding=1))

    def forward(self, z: Tensor) -> Tensor:
        lead = z.shape[:-1]
        x = rearrange(self.inp(z.reshape(-1, z.shape[-1])), "n (c h w) -> n c h w", h=self.grid[0], w=self.grid[1])
        x = self.net(x)
        return x.reshape(*lead, *x.shape[1:])


class PixelObjective(NextStepObjective):
    name = "pixel"
    head_modules = ("decoder",)

    def __init__(self, cfg, obs_shape, action_dim):
        super().__init__(cfg, obs_shape, action_dim)
        if len(obs_shape) != 3:
            raise ValueError(f"objective=pixel needs image observations (C, H, W), got per-step shape {obs_shape}")
        self.module.add_module("decoder", FrameDecoder(cfg.model.latent_dim, tuple(obs_shape),
                                                       cfg.objective.decoder_width))

    def pixel_error(self, net: nn.Module, obs: Tensor, actions: Tensor):
        out = net(obs, actions)
        frames = self.module.decoder(out.pred[0][:, :-1])  # (B, T-1, C, H, W): frames 1 … T-1
        return out, (frames - obs[:, 1:]).square().mean()

    def step(self, net: nn.Module, obs: Tensor, actions: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        out, mse = self.pixel_error(net, obs, actions)
        logs = {"train/level0/pred_loss": mse.detach()}
        total = mse
        if self.cfg.objective.use_regularizer:
            lvl = self.module.levels[0]
            reg = lvl.regularizer(rearrange(out.z[0], "b t d -> (b t) d"))
            total = weighted_level_loss(mse, reg, lvl.reg_name, self.module.reg_weight)
            logs["train/level0/reg_loss"] = reg.detach()
        return total, logs

    @torch.no_grad()
    def evaluate(self, batch, factor_names, device) -> dict[str, float]:
        metrics = super().evaluate(batch, factor_names, device)
        was = self.module.training
        self.module.eval()
        _, mse = self.pixel_error(self.module, batch["obs"].to(device), batch["actions"].to(device))
        self.module.train(was)
        metrics["eval/level0/pixel_mse"] = float(mse)
        return metrics
