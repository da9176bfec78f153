"""One level of the hierarchy: encoder, macro-action encoder, predictor, regulariser, target."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

from ..regularizers import build_regularizer
from .ema import EMATarget
from .encoders import BatchStandardize, TickEncoder, WindowEncoder, build_frame_encoder
from .predictor import LevelPredictor

__all__ = ["Level", "prediction_distance", "macro_action_windows", "topdown_context"]


def prediction_distance(pred: Tensor, target: Tensor, kind: str = "l2") -> Tensor:
    """Per-step distance ``D(ẑ, z̄)`` averaged over the latent dimension: ``(..., D)`` → ``(...)``.

    Computed in float32 whatever the inputs' precision (bf16 under autocast)."""
    pred, target = pred.float(), target.float()
    if kind == "l2":
        return (pred - target).square().mean(-1)
    if kind == "l1":
        return (pred - target).abs().mean(-1)
    if kind == "smooth_l1":
        return F.smooth_l1_loss(pred, target, reduction="none").mean(-1)
    raise ValueError(f"unknown prediction loss {kind!r}; choose l2, l1 or smooth_l1")


def macro_action_windows(actions: Tensor, stride: int, steps: int) -> Tensor:
    """The lower-level actions that drive each transition of a level with clock ``stride``.

    Window ``τ`` of the upper level covers lower steps ``[τs, (τ+1)s)``. The transition from
    window ``τ`` to ``τ+1`` is driven by the lower actions taken after observing the last step of
    window ``τ`` up to the one before the last step of window ``τ+1``: indices
    ``[(τ+1)s − 1, (τ+2)s − 1)``. ``actions (B, T, A)`` → ``(B, steps·s, A)`` laid out window by
    window (zero-padded past the clip's end), ready for a ``WindowEncoder(stride)``.
    """
    b, t, a = actions.shape
    need = stride - 1 + steps * stride
    if need > t:
        actions = torch.cat([actions, actions.new_zeros(b, need - t, a)], 1)
    return actions[:, stride - 1: need]


def topdown_context(upper_z: Tensor, upper_pred: Tensor, stride: int, steps: int, mode: str, null: Tensor) -> Tensor:
    """Context from the level above for each of ``steps`` lower steps: ``(B, steps, D_up)``.

    ``last``: the upper latent of the last *completed* window — at lower step ``j`` the window
    ``⌊(j+1)/s⌋ − 1`` (``null`` before the first one completes).
    ``pred``: the upper level's prediction for the *current* window ``⌊j/s⌋`` — made at the end
    of the previous window, output ``⌊j/s⌋ − 1`` of its predictor (``null`` in the first window).
    Both depend only on lower steps ``≤ j``.
    """
    j = torch.arange(steps, device=upper_z.device)
    if mode == "last":
        idx, src = (j + 1) // stride - 1, upper_z
    elif mode == "pred":
        idx, src = j // stride - 1, upper_pred
    else:
        raise ValueError(f"unknown top-down mode {mode!r}")
    idx = idx.clamp(max=src.shape[1] - 1)
    ctx = src[:, idx.clamp(min=0)]
    return torch.where((idx >= 0)[None, :, None], ctx, null.to(ctx.dtype).expand_as(ctx))


class Level(nn.Module):
    """Level ``k`` of an H-JEPA.

    * ``encoder``: level 0 — a frame encoder ``(B, T, *obs)`` → ``(B, T, D)``; level k ≥ 1 — a
      ``WindowEncoder`` summarising ``stride`` lower latents, a ``TickEncoder`` of the window's last
      lower latent (``summarizer=last``), or (``summarizer=frames``) a frame
      encoder followed by a window encoder over the ``span`` raw frames of the window.
    * ``action_encoder``: identity at level 0, else a ``WindowEncoder`` over the lower actions of
      each transition (see ``macro_action_windows``).
    * ``predictor``: a causal ``LevelPredictor`` over this level's clock, conditioned on the level
      above when there is one and ``topdown != none``.
    * ``target``: an ``EMATarget`` of ``encoder`` (``target=ema``), else ``None`` — the online
      encoder under stop-gradient (``stopgrad``) or with its gradient (``online``).
    * ``out_norm="batch"`` appends a ``BatchStandardize`` to the encoder (default for EMA levels).
    * ``target_norm``: how loss targets are normalised — ``layer`` (per sample over features,
      I-JEPA), ``batch`` (per feature over the batch with running statistics, a non-affine
      BatchNorm: the EMA branch then cannot shrink its way to a collapsed, trivially
      predictable target), or ``none``.
    """

    def __init__(self, index: int, *, stride: int, span: int, obs_shape: tuple[int, ...], action_dim_in: int,
                 action_dim: int, has_upper: bool, model_cfg, dim: int | None = None, dim_below: int | None = None,
                 dim_above: int | None = None, reg_name: str, reg_cfg, target_mode: str,
                 target_norm: str = "none", out_norm: str = "none"):
        super().__init__()
        m = model_cfg
        self.index, self.stride, self.span = index, stride, span
        self.reg_name, self.target_mode = reg_name, target_mode
        self.topdown = m.topdown if has_upper else "none"
        self.uses_frames = index > 0 and m.summarizer == "frames"
        d = dim if dim is not None else m.latent_dim  # this level's width; the neighbours' default to it
        d_below = dim_below if dim_below is not None else d
        d_above = dim_above if dim_above is not None else d

        def frame_encoder():
            return build_frame_encoder(m.encoder, obs_shape, d, m.encoder_width, patch_size=m.patch_size,
                                       vit_layers=m.vit_layers, heads=m.pred_heads, backend=m.attention_backend,
                                       norm=m.encoder_norm, tubelet_frames=getattr(m, "tubelet_frames", 2))

        if index == 0:
            self.encoder = frame_encoder()
            self.action_encoder = nn.Identity()
        else:
            window = span if self.uses_frames else stride
            if self.uses_frames:
                self.encoder = nn.Sequential(frame_encoder(), WindowEncoder(window, d, d))
            else:
                summariser = TickEncoder if m.summarizer == "last" else WindowEncoder
                self.encoder = summariser(window, d_below, d, hidden=m.summarizer_hidden)
            self.action_encoder = WindowEncoder(stride, action_dim_in, action_dim,
                                                input_norm=m.macro_action_norm == "layer")
        if out_norm == "batch":
            self.encoder = nn.Sequential(self.encoder, BatchStandardize(d))
        elif out_norm != "none":
            raise ValueError(f"unknown encoder output norm {out_norm!r}; choose none or batch")
        self.action_dim = action_dim
        ctx_dim = d_above if self.topdown != "none" else None
        history = m.pred_history[index] if getattr(m, "pred_history", None) is not None else 0
        self.predictor = LevelPredictor(d, action_dim, ctx_dim, width=m.pred_dim, layers=m.pred_layers,
                                        heads=m.pred_heads, backend=m.attention_backend, history=int(history),
                                        conditioning=getattr(m, "topdown_conditioning", "add"),
                                        zero_init=bool(m.pred_zero_init[index]) if getattr(m, "pred_zero_init", None) else False,
                                        ctx_rank=getattr(m, "topdown_rank", None))
        self.null_ctx = nn.Parameter(torch.zeros(ctx_dim)) if ctx_dim else None
        self.regularizer = build_regularizer(reg_name, reg_cfg)
        if target_norm not in ("none", "layer", "batch"):
            raise ValueError(f"unknown target norm {target_norm!r}; choose none, layer or batch")
        self.target_norm = target_norm
        self.target_bn = nn.BatchNorm1d(d, affine=False) if target_norm == "batch" else None
        if target_mode == "ema":
            self.target = EMATarget(self.encoder)
        elif target_mode in ("stopgrad", "online"):
            self.target = None
        else:
            raise ValueError(f"unknown target mode {target_mode!r}; choose ema, stopgrad or online")

    def macro_actions(self, lower_actions: Tensor, steps: int) -> Tensor:
        """``(B, T_{k-1}, A_{k-1})`` → ``(B, steps, A_k)``; identity at level 0."""
        if self.index == 0:
            return lower_actions[:, :steps]
        return self.action_encoder(macro_action_windows(lower_actions, self.stride, steps))

    def context(self, upper_z: Tensor, upper_pred: Tensor, upper_stride: int, steps: int, detach: bool) -> Tensor | None:
        if self.topdown == "none":
            return None
        if detach:
            upper_z, upper_pred = upper_z.detach(), upper_pred.detach()
        return topdown_context(upper_z, upper_pred, upper_stride, steps, self.topdown, self.null_ctx)

    def encode_target(self, inp: Tensor, online: Tensor) -> Tensor:
        """Targets ``z̄``: the EMA encoder of ``inp``, the online latents ``online`` under stop-gradient
        (``stopgrad``), or the online latents themselves (``online``: the prediction loss also
        trains the target side, as in LeJEPA, so unpredictable content in the target costs loss)."""
        if self.target_mode == "online":
            return online
        if self.target is None:
            return online.detach()
        return self.target(inp)

    def normalize_target(self, target: Tensor) -> Tensor:
        """Loss targets from raw targets ``(B, T, D)`` (see ``target_norm``)."""
        if self.target_norm == "layer":
            return F.layer_norm(target, target.shape[-1:])
        if self.target_norm == "batch":
            b = target.shape[0]
            return rearrange(self.target_bn(rearrange(target, "b t d -> (b t) d")), "(b t) d -> b t d", b=b)
        return target

    def update_target(self, momentum: float) -> None:
        if self.target is not None:
            self.target.update(self.encoder, momentum)
