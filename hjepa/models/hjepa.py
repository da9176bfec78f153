"""The hierarchical JEPA: a list of ``Level``s on successively coarser clocks."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from einops import rearrange
from torch import Tensor, nn

from ..config import level_latent_dims, level_reg_weights, level_regularizers, level_slowness_weights, level_strides
from .geometry import GeometryConfig, temporal_distance_loss
from .inverse_dynamics import InverseDynamicsHead
from .level import Level, prediction_distance

__all__ = ["HJEPA", "JEPAOutput", "LossOutput", "build_hjepa"]


@dataclass
class JEPAOutput:
    """Everything one forward pass computes, level by level (index k).

    ``z[k]`` online latents ``(B, T_k, D)``; ``target[k]`` targets ``z̄`` ``(B, T_k, D)`` (no grad);
    ``pred[k]`` predictions ``(B, T_k, D)`` — ``pred[k][:, t]`` predicts ``z[k][:, t+1]``;
    ``actions[k]`` level-k (macro-)actions ``(B, T_k, A_k)``; ``ctx[k]`` top-down context or None.
    """

    z: list[Tensor]
    target: list[Tensor]
    pred: list[Tensor]
    actions: list[Tensor]
    ctx: list[Tensor | None]


@dataclass
class LossOutput:
    total: Tensor
    pred: list[Tensor] = field(default_factory=list)  # per-level prediction loss (teacher-forced + rollout)
    reg: list[Tensor] = field(default_factory=list)  # per-level raw regulariser value
    rollout: list[Tensor | None] = field(default_factory=list)
    geometry: list[Tensor | None] = field(default_factory=list)  # per-level temporal-distance loss (if on)
    inverse_dynamics: list[Tensor | None] = field(default_factory=list)  # per-level inverse-dynamics loss (if on)
    slowness: list[Tensor | None] = field(default_factory=list)  # per-level slow-feature term (if on)


def slowness_loss(z: Tensor) -> Tensor:
    """Slow-feature term ``mean_n,d (z[n+1] − z[n])²`` of one level's latents ``(B, T, D)`` → ``()``.

    Under SIGReg (unit variance per direction) a latent dimension that carries a component with
    one-step autocorrelation ``ρ`` at the level's clock pays ``2(1 − ρ)``, so the term orders
    components as the timescale theory does (slowest first). Unlike the prediction loss, whose
    gradient toward a more predictable direction vanishes once the predictor ignores a dimension
    (the dimension is then an unpredictable critical point the encoder does not leave), its
    gradient shrinks fast content directly (docs/timescales.md).
    """
    return (z[:, 1:] - z[:, :-1]).float().square().mean()


class HJEPA(nn.Module):
    """N stacked levels. Depth 1 is a flat action-conditioned JEPA.

    Data flow (see docs/design.md §2): bottom-up encoders level 0 → N−1, then predictors top-down
    N−1 → 0 so each level can be conditioned on the level above.
    """

    def __init__(self, levels: list[Level], strides: list[int], *, pred_loss: str = "l2",
                 loss_weights: list[float] | None = None, rollout_horizon: list[int] | None = None,
                 reg_weight: float | list[float] = 0.1, topdown_detach: bool = True, detach_bottom_up: bool = False,
                 geometry_weight: list[float] | None = None, geometry: GeometryConfig = GeometryConfig(),
                 idm_weight: list[float] | None = None, slowness_weight: list[float] | None = None):
        super().__init__()
        self.levels = nn.ModuleList(levels)
        self.strides = list(strides)
        self.pred_loss = pred_loss
        self.loss_weights = list(loss_weights) if loss_weights is not None else [1.0] * len(levels)
        self.rollout_horizon = list(rollout_horizon) if rollout_horizon is not None else [0] * len(levels)
        self.reg_weights = list(reg_weight) if isinstance(reg_weight, (list, tuple)) else [reg_weight] * len(levels)
        self.topdown_detach, self.detach_bottom_up = topdown_detach, detach_bottom_up
        self.geometry_weight = list(geometry_weight) if geometry_weight is not None else [0.0] * len(levels)
        self.geometry = geometry
        # linear inverse-dynamics heads (models/inverse_dynamics.py), only at levels with a weight > 0
        self.idm_weight = list(idm_weight) if idm_weight is not None else [0.0] * len(levels)
        self.slowness_weight = list(slowness_weight) if slowness_weight is not None else [0.0] * len(levels)
        action_dim = levels[0].action_dim
        self.idm_heads = nn.ModuleDict({str(k): InverseDynamicsHead(lvl.predictor.out.out_features, lvl.span, action_dim)
                                        for k, lvl in enumerate(levels) if self.idm_weight[k] > 0})

    @property
    def depth(self) -> int:
        return len(self.levels)

    @property
    def spans(self) -> list[int]:
        """Frames per step at each level: ``[1, s_1, s_1·s_2, …]``."""
        return [math.prod(self.strides[: k + 1]) for k in range(self.depth)]

    def min_clip_len(self) -> int:
        return 2 * self.spans[-1]

    # ------------------------------------------------------------------ forward
    def encode(self, obs: Tensor, actions: Tensor):
        """Bottom-up pass. ``obs (B, T, *obs_shape)``, ``actions (B, T, A)``.

        Returns lists ``z``, ``target`` (normalised loss targets, see ``Level.target_norm``) and
        ``actions`` per level. The raw targets feed the target encoder of the level above.
        """
        if obs.shape[1] < self.min_clip_len():
            raise ValueError(f"clip of {obs.shape[1]} steps is too short for strides {self.strides[1:]}: "
                             f"the minimum length is {self.min_clip_len()} (2 steps at the top level)")
        if actions.shape[:2] != obs.shape[:2]:
            raise ValueError(f"actions {tuple(actions.shape)} and obs {tuple(obs.shape)} disagree on (B, T)")
        zs, raw_targets, targets, acts = [], [], [], []
        for k, lvl in enumerate(self.levels):
            if k == 0 or lvl.uses_frames:
                src, src_tgt = obs, obs
            else:
                src = zs[-1].detach() if self.detach_bottom_up else zs[-1]
                src_tgt = raw_targets[-1]
            z = lvl.encoder(src)
            zs.append(z)
            raw_targets.append(lvl.encode_target(src_tgt, z))
            targets.append(lvl.normalize_target(raw_targets[-1]))
            acts.append(lvl.macro_actions(actions if k == 0 else acts[-1], z.shape[1]))
        return zs, targets, acts

    def predict(self, zs: list[Tensor], acts: list[Tensor]) -> tuple[list[Tensor], list[Tensor | None]]:
        """Top-down pass of the predictors: ``(pred, ctx)`` per level."""
        preds: list[Tensor | None] = [None] * self.depth
        ctxs: list[Tensor | None] = [None] * self.depth
        for k in reversed(range(self.depth)):
            lvl = self.levels[k]
            if k < self.depth - 1:
                ctxs[k] = lvl.context(zs[k + 1], preds[k + 1], self.strides[k + 1], zs[k].shape[1], self.topdown_detach)
            preds[k] = lvl.predictor(zs[k], acts[k], ctxs[k])
        return preds, ctxs  # type: ignore[return-value]

    def forward(self, obs: Tensor, actions: Tensor) -> JEPAOutput:
        zs, targets, acts = self.encode(obs, actions)
        preds, ctxs = self.predict(zs, acts)
        return JEPAOutput(zs, targets, preds, acts, ctxs)

    # ------------------------------------------------------------------ rollouts
    def rollout(self, k: int, z_context: Tensor, actions: Tensor, ctx: Tensor | None, horizon: int) -> Tensor:
        """Autoregressive latent rollout at level ``k``.

        ``z_context (B, t0+1, D)`` observed latents, ``actions (B, ≥ t0+horizon, A_k)``, ``ctx``
        ``(B, t0+1, D_ctx)`` or None (held at its last value for the imagined steps, so nothing
        after ``t0`` is observed) → ``(B, horizon, D)`` predicted latents ``t0+1 … t0+horizon``.
        """
        pred = self.levels[k].predictor
        seq = z_context
        for _ in range(horizon):
            n = seq.shape[1]
            c = None
            if ctx is not None:
                c = torch.cat([ctx, ctx[:, -1:].expand(-1, n - ctx.shape[1], -1)], 1) if n > ctx.shape[1] else ctx[:, :n]
            nxt = pred(seq, actions[:, :n], c)[:, -1:]
            seq = torch.cat([seq, nxt], 1)
        return seq[:, z_context.shape[1]:]

    # ------------------------------------------------------------------ losses and energies
    def distance(self, pred: Tensor, target: Tensor) -> Tensor:
        """The energy function ``D(ẑ, z̄)`` of this model: ``(..., D), (..., D)`` → ``(...)``.

        Every energy in hjepa (training loss, energy gaps, landscapes, planning costs) goes
        through this one function.
        """
        return prediction_distance(pred, target, self.pred_loss)

    def energy(self, out: JEPAOutput, k: int, perm: Tensor | None = None) -> Tensor:
        """``E_k = D(ẑ_k[t], z̄_k[t+1])`` per clip and step: ``(B, T_k − 1)``.

        ``perm`` (a permutation of the batch) pairs each prediction with another clip's target:
        the energy of incompatible pairs.
        """
        tgt = out.target[k][:, 1:]
        if perm is not None:
            tgt = tgt[perm]
        return self.distance(out.pred[k][:, :-1], tgt)

    def losses(self, out: JEPAOutput) -> LossOutput:
        """``Σ_k w_k · loss_k``; ``loss_k = (1−λ_k)·pred + λ_k·SIGReg`` for sigreg levels, else ``pred + λ_k·reg``."""
        total = out.z[0].new_zeros(())
        res = LossOutput(total)
        for k, lvl in enumerate(self.levels):
            pred = self.energy(out, k).mean()
            ro = None
            h = min(self.rollout_horizon[k], out.z[k].shape[1] - 1)
            if h > 0:
                t0 = out.z[k].shape[1] - 1 - h
                ctx = out.ctx[k][:, : t0 + 1] if out.ctx[k] is not None else None
                imagined = self.rollout(k, out.z[k][:, : t0 + 1], out.actions[k], ctx, h)
                ro = self.distance(imagined, out.target[k][:, t0 + 1:]).mean()
                pred = pred + ro
            reg = lvl.regularizer(rearrange(out.z[k], "b t d -> (b t) d"))
            lam = self.reg_weights[k]
            level_loss = (1 - lam) * pred + lam * reg if lvl.reg_name == "sigreg" else pred + lam * reg
            geo = None
            if self.geometry_weight[k] > 0:  # temporal-distance geometry of the latents (models/geometry.py)
                geo = temporal_distance_loss(out.z[k], self.geometry)
                level_loss = level_loss + self.geometry_weight[k] * geo
            res.geometry.append(geo.detach() if geo is not None else None)
            idm = None
            if self.idm_weight[k] > 0:  # the raw actions of each transition from the latents around it
                idm = self.idm_heads[str(k)].loss(out.z[k], out.actions[0])
                level_loss = level_loss + self.idm_weight[k] * idm
            res.inverse_dynamics.append(idm.detach() if idm is not None else None)
            slow = None
            if self.slowness_weight[k] > 0:  # slow-feature analysis: penalise change between consecutive latents
                slow = slowness_loss(out.z[k])
                level_loss = level_loss + self.slowness_weight[k] * slow
            res.slowness.append(slow.detach() if slow is not None else None)
            total = total + self.loss_weights[k] * level_loss
            res.pred.append(pred.detach())
            res.reg.append(reg.detach())
            res.rollout.append(ro.detach() if ro is not None else None)
        res.total = total
        return res

    @torch.no_grad()
    def update_targets(self, momentum: float) -> None:
        for lvl in self.levels:
            lvl.update_target(momentum)


def build_hjepa(model_cfg, reg_cfg, obs_shape: tuple[int, ...], action_dim: int) -> HJEPA:
    """An ``HJEPA`` from the ``model`` and ``regularizer`` config groups."""
    strides = level_strides(model_cfg)
    names = level_regularizers(reg_cfg, model_cfg.depth)
    dims = level_latent_dims(model_cfg)
    levels = []
    for k in range(model_cfg.depth):
        target = reg_cfg.target or ("ema" if names[k] == "ema" else "stopgrad")
        levels.append(Level(
            k, stride=strides[k], span=math.prod(strides[: k + 1]), obs_shape=tuple(obs_shape),
            action_dim_in=action_dim if k <= 1 else model_cfg.action_dim_k,
            action_dim=action_dim if k == 0 else model_cfg.action_dim_k,
            has_upper=k < model_cfg.depth - 1, model_cfg=model_cfg, dim=dims[k],
            dim_below=dims[k - 1] if k > 0 else None, dim_above=dims[k + 1] if k + 1 < len(dims) else None, reg_name=names[k], reg_cfg=reg_cfg,
            target_mode=target, target_norm=model_cfg.target_norm,
            out_norm=model_cfg.encoder_out_norm or ("batch" if target == "ema" else "none")))
    if getattr(model_cfg, "freeze_level0", False):  # e.g. a masked-pretrained encoder (model.init_from)
        levels[0].encoder.requires_grad_(False)
        for mod in levels[0].encoder.modules():  # a token encoder's linear readout to the latent still learns
            if hasattr(mod, "readout"):
                mod.readout.requires_grad_(True)
    return HJEPA(levels, strides, pred_loss=model_cfg.pred_loss,
                 loss_weights=model_cfg.loss_weights, rollout_horizon=model_cfg.rollout_horizon,
                 reg_weight=level_reg_weights(reg_cfg, model_cfg.depth), topdown_detach=model_cfg.topdown_detach,
                 detach_bottom_up=model_cfg.detach_bottom_up, geometry_weight=model_cfg.geometry_weight,
                 idm_weight=getattr(model_cfg, "idm_weight", None),
                 slowness_weight=level_slowness_weights(model_cfg),
                 geometry=GeometryConfig(model_cfg.geometry_discount, model_cfg.geometry_expectile,
                                         model_cfg.geometry_self_goal, model_cfg.geometry_random_goal))
