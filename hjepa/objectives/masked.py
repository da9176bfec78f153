"""``objective=masked``: V-JEPA masked prediction of space-time tubelet tokens, level 0 alone.

Per clip, a tube mask (``masks.py``) splits the tokens of a ``TubeletViT`` into visible context
and masked targets. The online encoder sees only the context tokens; a narrow predictor fills in
the masked positions from the context plus mask tokens; the loss is the distance (L1 by
default) to the target encoder's tokens at those positions, in latent space:

* ``regularizer=ema``: targets from an EMA copy of the encoder on the whole clip, layer-normed
  (the V-JEPA recipe);
* otherwise (``sigreg``, the LeJEPA direction): targets from the online encoder on the whole clip
  under stop-gradient, and the regulariser (SIGReg) on the context tokens; the loss is
  ``(1−λ)·pred + λ·SIGReg``.

Evaluation reads the per-frame tokens that ``model.init_from`` hands to level 0 of a hierarchy
(``TubeletViT.frame_tokens``: causal tubelets, from the EMA encoder when there is one),
concatenated per frame (``S·W`` features; the hierarchy learns its own linear ``readout`` of them
to its latent): RankMe and the collapse statistics, linear probes of the true factors, and the
masked prediction loss on the held-out batch under a fixed mask seed.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

from ..models.ema import EMATarget
from ..models.level import prediction_distance
from ..models.tubelet import MaskedTokenPredictor, TubeletViT, gather_tokens
from ..regularizers import build_regularizer
from .base import Objective, token_metrics, weighted_level_loss
from .masks import MaskPair, build_mask_sampler

__all__ = ["MaskedObjective", "MaskedVideoJEPA", "EVAL_MASK_SEED"]

EVAL_MASK_SEED = 0  # the held-out masked loss always uses the masks of this seed


class MaskedVideoJEPA(nn.Module):
    """Encoder, optional EMA target, narrow predictor and regulariser of masked prediction.

    ``forward(obs (B, T, C, H, W), actions)`` → ``(pred (B, N_tgt, W), target (B, N_tgt, W),
    context (B, N_ctx, W))`` in the encoder's token width ``W``, for masks drawn from the global torch RNG (actions are unused:
    masked prediction learns from observations alone).
    """

    def __init__(self, cfg, obs_shape: tuple[int, ...]):
        super().__init__()
        m, o, r = cfg.model, cfg.objective, cfg.regularizer
        self.encoder = TubeletViT(tuple(obs_shape), m.latent_dim, width=max(m.encoder_width, 64),
                                  patch_size=m.patch_size, tubelet_frames=m.tubelet_frames, layers=m.vit_layers,
                                  heads=m.pred_heads, backend=m.attention_backend)
        self.reg_name = r.per_level[0] if r.per_level is not None else r.name
        target_mode = r.target or ("ema" if self.reg_name == "ema" else "stopgrad")
        self.target = EMATarget(self.encoder) if target_mode == "ema" else None
        self.layer_norm_targets = o.target_layer_norm if o.target_layer_norm is not None else self.target is not None
        self.predictor = MaskedTokenPredictor(self.encoder.width, self.encoder.num_spatial, width=o.pred_width,
                                              layers=o.pred_layers, heads=m.pred_heads, backend=m.attention_backend)
        self.regularizer = build_regularizer(self.reg_name, r)
        self.reg_weight, self.loss_kind = float(r.weight), o.loss
        self.mask_cfg = o

    def sampler(self, num_frames: int):
        o = self.mask_cfg
        return build_mask_sampler(o.mask, self.encoder.grid(num_frames), o.mask_ratio, o.block_scales, o.aspect_ratio)

    @property
    def representation(self) -> TubeletViT:
        """The encoder whose per-frame latents are evaluated and transferred (EMA if there is one)."""
        return self.target.module if self.target is not None else self.encoder

    def forward(self, obs: Tensor, actions: Tensor | None = None, masks: MaskPair | None = None):
        if masks is None:
            masks = self.sampler(obs.shape[1])(obs.shape[0])
        ctx_idx, tgt_idx = masks.context.to(obs.device), masks.target.to(obs.device)
        context = self.encoder.tokens(obs, ctx_idx)
        with torch.no_grad():
            full = self.representation.tokens(obs)
            if self.layer_norm_targets:
                full = F.layer_norm(full, full.shape[-1:])
        pred = self.predictor(context, ctx_idx, tgt_idx)
        return pred, gather_tokens(full, tgt_idx), context

    def losses(self, out) -> tuple[Tensor, Tensor, Tensor]:
        """``(total, prediction loss, raw regulariser value)``."""
        pred, target, context = out
        pred_loss = prediction_distance(pred, target, self.loss_kind).mean()
        reg = self.regularizer(rearrange(context, "b n d -> (b n) d"))
        return weighted_level_loss(pred_loss, reg, self.reg_name, self.reg_weight), pred_loss, reg

    @torch.no_grad()
    def update_targets(self, momentum: float) -> None:
        if self.target is not None:
            self.target.update(self.encoder, momentum)


class MaskedObjective(Objective):
    name = "masked"

    def __init__(self, cfg, obs_shape, action_dim):
        super().__init__(cfg, obs_shape, action_dim)
        if len(obs_shape) != 3:
            raise ValueError(f"objective=masked needs image observations (C, H, W), got per-step shape {obs_shape}")
        self.module = MaskedVideoJEPA(cfg, obs_shape)

    def step(self, net: nn.Module, obs: Tensor, actions: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        total, pred_loss, reg = self.module.losses(net(obs, actions))
        return total, {"train/level0/pred_loss": pred_loss.detach(), "train/level0/reg_loss": reg.detach()}

    @torch.no_grad()
    def evaluate(self, batch, factor_names, device) -> dict[str, float]:
        model, was = self.module, self.module.training
        model.eval()
        obs = batch["obs"].to(device)
        masks = model.sampler(obs.shape[1])(obs.shape[0], torch.Generator().manual_seed(EVAL_MASK_SEED))
        _, pred_loss, _ = model.losses(model(obs, None, masks))
        metrics = token_metrics(model.representation, batch, factor_names, self.cfg.eval.probe_l2, device)
        # its representation is the tokens: the same numbers under the level's own names (collapse alarm, tables)
        metrics.update({k.replace("/tokens/", "/"): v for k, v in metrics.items()})
        metrics["eval/level0/masked_pred_loss"] = float(pred_loss)
        model.train(was)
        return metrics
