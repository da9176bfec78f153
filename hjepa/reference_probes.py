"""Reference probes, computed beside a trained model's on the same held-out batch and protocol.

A probe R² means little alone: a random conv net already decodes where a bright object is, and
raw pixels decode some factors linearly. Each run's final evaluation therefore also reports

* ``eval/reference/random_encoder/level{k}/probe_r2/<factor>``: the same architecture and config,
  randomly initialised (seed ``REFERENCE_SEED``), never trained;
* ``eval/reference/raw_pixels/level{k}/probe_r2/<factor>`` (``raw_obs`` for vector observations):
  the frames average-pooled to ``RAW_POOL × RAW_POOL`` per channel, level k's feature being the
  concatenation of the ``span_k`` frames of its window (so motion inside the window is visible).

Both use ``hjepa.evaluation.probe_r2`` (even episodes fit, odd episodes score) against the same
level-k targets (the factor averaged over the level's window) as the trained model's probes.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor

from .evaluation import evaluate, level_factors, probe_r2

__all__ = ["reference_probes", "raw_features", "REFERENCE_SEED", "RAW_POOL"]

REFERENCE_SEED = 1234
RAW_POOL = 8


def raw_features(obs: Tensor, span: int, steps: int, pool: int = RAW_POOL) -> Tensor:
    """``obs (B, T, C, H, W)`` (or ``(B, T, D)``) → ``(B, steps, span · features)``: pooled frames
    (``C · pool²`` each) of every window of ``span`` frames, concatenated in time order."""
    obs = obs.float()
    if obs.ndim == 5:
        b = obs.shape[0]
        pooled = F.adaptive_avg_pool2d(rearrange(obs, "b t c h w -> (b t) c h w"), pool)
        obs = rearrange(pooled, "(b t) c h w -> b t (c h w)", b=b)
    return rearrange(obs[:, : steps * span], "b (n s) f -> b n (s f)", s=span)


@torch.no_grad()
def reference_probes(cfg, batch: dict[str, Tensor], factor_names: list[str], obs_shape, action_dim: int,
                     device: torch.device | str = "cpu") -> dict[str, float]:
    """Probe R² of the random-encoder and raw-input references for every level of ``cfg.model``."""
    from .models.hjepa import build_hjepa

    state, episode = batch["state"], batch["episode"]
    if not state.shape[-1] or not ((episode % 2 == 0).any() and (episode % 2 == 1).any()):
        return {}
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(REFERENCE_SEED)
        model = build_hjepa(cfg.model, cfg.regularizer, tuple(obs_shape), int(action_dim)).to(device)
    out = {}
    for key, val in evaluate(model, batch, factor_names, cfg.eval.probe_l2, device, rollout_horizon=0).items():
        if "/probe_r2/" in key:
            out[key.replace("eval/", "eval/reference/random_encoder/", 1)] = val
    raw = "raw_pixels" if batch["obs"].ndim == 5 else "raw_obs"
    steps0 = batch["obs"].shape[1]
    for k, span in enumerate(model.spans):
        steps = steps0 // span
        x = raw_features(batch["obs"], span, steps)
        r2 = probe_r2(x, level_factors(state.float(), span, steps), episode, cfg.eval.probe_l2)
        for name, v in zip(factor_names, r2.tolist()):
            out[f"eval/reference/{raw}/level{k}/probe_r2/{name}"] = v
    return out
