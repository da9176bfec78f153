"""Goal latents: what a single goal image is at every level of a trained model."""

from __future__ import annotations

import torch
from einops import repeat
from torch import Tensor

from ..models import HJEPA

__all__ = ["encode_held", "encode_clip_end"]


@torch.no_grad()
def encode_held(model: HJEPA, frames: Tensor, action_dim: int) -> list[Tensor]:
    """Latents of static frames at every level: each frame held still for the model's shortest clip.

    ``frames (B, *obs_shape)`` → ``[(B, D_k)]``, the target-branch latent of the last step of each
    level (level k summarises the last window of ``span_k`` identical frames). A frame held still is
    what the world shows when the agent rests at the goal, so this is the goal's latent at level k.
    """
    t = model.min_clip_len()
    clip = repeat(frames, "b ... -> b t ...", t=t)
    return encode_clip_end(model, clip, frames.new_zeros(frames.shape[0], t, action_dim))


@torch.no_grad()
def encode_clip_end(model: HJEPA, obs: Tensor, actions: Tensor) -> list[Tensor]:
    """Target-branch latents of the last step of a clip at every level: ``obs (B, T, *obs)`` → ``[(B, D_k)]``.

    ``T`` must be a multiple of the top level's span so that the last window of every level ends
    at the clip's last frame.
    """
    span = model.spans[-1]
    if obs.shape[1] % span:
        raise ValueError(f"clip of {obs.shape[1]} frames: use a multiple of the top span {span}")
    _, targets, _ = model.encode(obs, actions)
    return [tgt[:, -1] for tgt in targets]
