"""Data-dependent initialisation: a level's latents start standardised on real data.

A freshly initialised encoder can map a dataset whose frames differ little (a thin pendulum rod
on a white background) to latents of std ~0.04. That is nearly collapsed, and SIGReg pulls
weakly on a nearly collapsed embedding: moving every sample together only moves the empirical
characteristic function's phase, so the term's gradient toward a larger spread shrinks with the
spread itself. The prediction loss pulls toward collapse from the first step, and in some seeds it
wins: level 0 of ``experiment=pendulum`` seed 6 stayed at std ~3e-4 (RankMe 1.07) for 1500 steps,
with its SIGReg term at ~210 throughout (docs/simulators.md).

``standardize_levels`` (``model.data_init_levels=n``: levels 0 … n−1) rescales the output layer
of a level's encoder (an affine change of the latent, ``z ← (z − μ) / σ`` per dimension) so that on
a batch of training clips every dimension starts at mean 0 and std 1, which is where SIGReg and VICReg's variance term want it. This is the
LSUV idea (Mishkin & Matas, 2016) applied to the last layer only. Levels are rescaled bottom-up,
because level k reads level k − 1's latents. EMA targets are reset to their rescaled online
encoder; an encoder ending in ``BatchStandardize`` is already standardised and left alone.

Measured on ``experiment=pendulum`` (docs/simulators.md, level-1 θ̇ probe): level 0 started at std
1 kept seeds 6 and 8 from collapsing (0.766 / 0.753 against 0.006 / −0.003) but lowered seeds 0 and 1
(0.453 / 0.547 against 0.864 / 0.812); started at std 0.1, seeds 0 / 6 / 8 read 0.820 / 0.873 / 0.811
and seed 1 0.563. Both levels at std 1: seed 6 0.041, seed 1 0.169. So it is off by default and
in the preset.
"""

from __future__ import annotations

import logging

import torch
from einops import rearrange
from torch import Tensor, nn

from .encoders import BatchStandardize

__all__ = ["standardize_levels", "output_layer", "data_init", "DATA_INIT_CLIPS"]

log = logging.getLogger("hjepa.train")
DATA_INIT_CLIPS = 64  # training clips the latents are standardised on


def output_layer(encoder: nn.Module) -> nn.Linear | None:
    """The ``nn.Linear`` that produces ``encoder``'s output (its last registered Linear), or
    ``None`` when the encoder ends in ``BatchStandardize`` (nothing to do)."""
    last = [m for m in encoder.modules() if isinstance(m, (nn.Linear, BatchStandardize))]
    if not last:
        raise ValueError(f"{type(encoder).__name__} has no nn.Linear output layer to standardise")
    return None if isinstance(last[-1], BatchStandardize) else last[-1]


@torch.no_grad()
def standardize_levels(model: nn.Module, obs: Tensor, actions: Tensor, levels: int | None = None,
                       std: float = 1.0, eps: float = 1e-6) -> list[tuple[float, float]]:
    """Rescale the encoders of levels ``0 … levels − 1`` (``None``: all) so their latents have mean 0
    and std ``std`` per dimension on this batch.

    ``model`` an ``HJEPA``; ``obs (B, T, *obs_shape)``, ``actions (B, T, A)`` training clips.
    Returns, per rescaled level, the median per-dimension std before and after (after ≈ ``std``).
    """
    was_training = model.training
    model.eval()  # deterministic encoders: no dropout, BatchStandardize reads its running statistics
    report = []
    try:
        before = _latent_stats(model, obs, actions)
        for k, lvl in enumerate(model.levels[:levels]):
            mean, spread = before[k]
            layer = output_layer(lvl.encoder)
            if layer is not None:
                scale = spread.clamp_min(eps) / std
                layer.weight.div_(scale[:, None])
                if layer.bias is not None:  # (without a bias the latent is only rescaled, not centred)
                    layer.bias.sub_(mean).div_(scale)
                if getattr(lvl, "target", None) is not None:  # an EMA target starts equal to its online encoder
                    lvl.target.module.load_state_dict(lvl.encoder.state_dict())
            # one pass gives this level's new statistics and the next level's, which reads this one
            after = _latent_stats(model, obs, actions)
            report.append((spread.median().item(), after[k][1].median().item()))
            before = after
    finally:
        model.train(was_training)
    return report


def data_init(model: nn.Module, data, model_cfg, device: torch.device) -> None:
    """``model.data_init_levels``: standardise those levels on ``DATA_INIT_CLIPS`` fixed training clips
    (the same on every rank, so DDP replicas stay equal; the training RNG stream is untouched)."""
    from ..config import ConfigError
    from .hjepa import HJEPA

    n = int(model_cfg.data_init_levels)
    if not isinstance(model, HJEPA):
        raise ConfigError("model.data_init_levels", n, f"standardises the levels of an H-JEPA, but this objective "
                          f"trains a {type(model).__name__}: drop model.data_init_levels")
    batch = data.train_batch(DATA_INIT_CLIPS)
    report = standardize_levels(model, batch["obs"].to(device), batch["actions"].to(device), n,
                                std=float(model_cfg.data_init_std))
    for k, (before, after) in enumerate(report):
        log.info("model.data_init_levels: level %d latent std (median over dimensions) %.4g -> %.4g", k, before, after)


def _latent_stats(model: nn.Module, obs: Tensor, actions: Tensor) -> list[tuple[Tensor, Tensor]]:
    """Per level, the per-dimension mean and std ``(D,), (D,)`` of the online latents over ``(B, T)``."""
    return [(z.mean(0), z.std(0)) for z in (rearrange(z.float(), "b t d -> (b t) d")
                                            for z in model.encode(obs, actions)[0])]
