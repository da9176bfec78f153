"""The optimisation step, fast on a GPU and unchanged in meaning on a CPU.

``TrainStep`` runs forward + losses (optionally under bf16 autocast and ``torch.compile``),
backward, gradient clipping, AdamW and the EMA-target update. On CUDA it never waits for the
device: the non-finite check of the loss and gradient norm stays on the device (a fused AdamW
skips its update when told the step was bad, the EMA update is skipped the same way) and the
counts of skipped steps are read back only when the trainer asks (its logging steps). On a CPU,
or when asked (``defer_checks=False``), a bad step is detected at once and skipped before its
backward pass, as before.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Iterable

import torch
from torch import Tensor, nn

from .precision import autocast

__all__ = ["COMPILE_MODES", "TrainStep", "StepOutput", "build_adamw"]

# torch.compile modes offered by train.compile_mode; reduce-overhead adds CUDA graphs (static shapes)
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune-no-cudagraphs")


def build_adamw(params: Iterable[nn.Parameter], optim_cfg, device: torch.device, fused: bool | None = None):
    """AdamW from the ``optim`` config; the fused single-kernel implementation on CUDA (default)."""
    fused = device.type == "cuda" if fused is None else fused
    return torch.optim.AdamW(list(params), lr=optim_cfg.lr, betas=tuple(optim_cfg.betas),
                             weight_decay=optim_cfg.weight_decay, fused=fused or None)


def set_channels_last(model: nn.Module) -> int:
    """Move every 2-D convolution of ``model`` (and the frames it reads) to channels-last memory
    layout; returns how many convolutions were changed."""
    n = 0
    for mod in model.modules():
        if isinstance(mod, nn.Conv2d):
            mod.to(memory_format=torch.channels_last)
            n += 1
    for mod in model.modules():
        if hasattr(mod, "channels_last"):
            mod.channels_last = True
    return n


@dataclass
class StepOutput:
    """0-d tensors of one step (nothing read back to the host)."""

    total: Tensor
    pred: list[Tensor]
    reg: list[Tensor]
    rollout: list[Tensor | None]
    grad_norm: Tensor
    geometry: list[Tensor | None]
    logs: dict[str, Tensor] = field(default_factory=dict)  # with an objective: its train/level{k}/* scalars


class TrainStep:
    """One optimisation step of ``model`` (an ``HJEPA``); ``forward_model`` is what is called on
    the batch (the model itself, or its DDP wrapper).

    ``step(obs (B, T, *obs), actions (B, T, A), ema_momentum)`` → ``StepOutput``, or ``None`` when
    an immediate check found the loss or gradient non-finite (``defer_checks=False``).
    """

    def __init__(self, model: nn.Module, optimizer: torch.optim.Optimizer, *, device: torch.device,
                 forward_model: nn.Module | None = None, precision: str = "fp32", compile: bool = False,
                 compile_mode: str = "default", grad_clip: float = 1.0, defer_checks: bool | None = None,
                 all_finite: Callable[[Tensor], bool] | None = None, channels_last: bool = False,
                 compile_backend: str = "inductor", objective=None):
        if channels_last:
            set_channels_last(model)
        self.model, self.optimizer, self.device = model, optimizer, torch.device(device)
        self.objective = objective  # hjepa.objectives.Objective: its step() gives the loss and the logs
        self.forward_model = forward_model if forward_model is not None else model
        self.precision, self.grad_clip = precision, grad_clip
        self.params = [p for p in model.parameters() if p.requires_grad]
        self.defer_checks = self.device.type == "cuda" if defer_checks is None else defer_checks
        self.all_finite = all_finite or (lambda x: bool(torch.isfinite(x).all()))
        if compile_mode not in COMPILE_MODES:
            raise ValueError(f"unknown compile mode {compile_mode!r}; choose one of {', '.join(COMPILE_MODES)}")
        self.cudagraphs = compile and compile_mode == "reduce-overhead"
        opts = {"mode": compile_mode} if compile_backend == "inductor" else {}
        self.loss_fn = (torch.compile(self._forward_losses, backend=compile_backend, **opts) if compile
                        else self._forward_losses)
        self.skipped_total = torch.zeros((), device=self.device)  # deferred checks: steps skipped so far
        self.skipped_streak = torch.zeros((), device=self.device)  # ... and in a row up to the last step

    def _forward_losses(self, obs: Tensor, act: Tensor):
        if self.objective is not None:
            with autocast(self.device, self.precision):
                total, logs = self.objective.step(self.forward_model, obs, act)
            return total.float(), logs
        with autocast(self.device, self.precision):
            losses = self.model.losses(self.forward_model(obs, act))
        return losses.total.float(), losses.pred, losses.reg, losses.rollout, losses.geometry

    def _use_fused_skip(self) -> None:
        """Deferred checks need AdamW's fused kernel (it honours ``found_inf``); a resumed older
        optimizer state may say otherwise."""
        for g in self.optimizer.param_groups:
            if not g.get("fused"):
                g["fused"], g["foreach"] = True, None

    def step(self, obs: Tensor, act: Tensor, ema_momentum: float) -> StepOutput | None:
        if self.cudagraphs:
            torch.compiler.cudagraph_mark_step_begin()
        out = self.loss_fn(obs, act)
        logs: dict[str, Tensor] = {}
        if self.objective is not None:
            (total, logs), pred, reg, rollout, geometry = out, [], [], [], []
        else:
            total, pred, reg, rollout, geometry = out
        if self.cudagraphs:  # outputs of a CUDA graph are overwritten by its next replay
            logs = {k: v.clone() for k, v in logs.items()}
            total, pred, reg = total.clone(), [p.clone() for p in pred], [r.clone() for r in reg]
            rollout = [r.clone() if r is not None else None for r in rollout]
            geometry = [g.clone() if g is not None else None for g in geometry]
        self.optimizer.zero_grad(set_to_none=True)
        if not self.defer_checks and not self.all_finite(total):
            return None
        total.backward()
        clip = self.grad_clip if self.grad_clip > 0 else float("inf")
        gnorm = torch.nn.utils.clip_grad_norm_(self.params, clip, foreach=True)
        if self.defer_checks:
            bad = (~(torch.isfinite(total) & torch.isfinite(gnorm))).float()
            self._use_fused_skip()
            self.optimizer.found_inf = bad
            self.optimizer.step()
            self.skipped_total.add_(bad)
            self.skipped_streak.add_(1).mul_(bad)
            # a skipped step leaves the EMA targets alone: momentum 1 where bad
            self.model.update_targets(ema_momentum + (1.0 - ema_momentum) * bad)
        else:
            if not self.all_finite(gnorm):
                self.optimizer.zero_grad(set_to_none=True)
                return None
            self.optimizer.step()
            self.model.update_targets(ema_momentum)
        return StepOutput(total.detach(), [p.detach() for p in pred], [r.detach() for r in reg],
                          [r.detach() if r is not None else None for r in rollout], gnorm.detach(),
                          [g.detach() if g is not None else None for g in geometry],
                          {k: v.detach() for k, v in logs.items()})

    def read_skipped(self) -> tuple[int, int]:
        """``(skipped so far, skipped in a row up to the last step)`` of the deferred checks — a
        host read: call it on logging steps only."""
        return int(self.skipped_total.item()), int(self.skipped_streak.item())

    def set_skipped(self, total: int, streak: int) -> None:
        self.skipped_total.fill_(total)
        self.skipped_streak.fill_(streak)
