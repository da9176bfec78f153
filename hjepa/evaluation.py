"""Held-out evaluation of every level: rank, collapse, energy gap, prediction error, probes."""

from __future__ import annotations

import torch
from einops import reduce
from torch import Tensor

from .metrics import collapse_report, ridge_probe_r2
from .models.hjepa import HJEPA, JEPAOutput

__all__ = ["evaluate", "level_factors", "probe_r2", "shuffle_permutation", "PROBE_L2_GRID"]


def shuffle_permutation(n: int, seed: int = 0) -> Tensor:
    """A derangement-like permutation of ``n`` clips (a cyclic shift of a random order): no clip
    is paired with itself."""
    g = torch.Generator().manual_seed(seed)
    order = torch.randperm(n, generator=g)
    perm = torch.empty_like(order)
    perm[order] = order.roll(1)
    return perm


def level_factors(state: Tensor, span: int, steps: int) -> Tensor:
    """Ground-truth factors at a level's clock: the mean over each window of ``span`` frames.

    ``state (B, T, F)`` → ``(B, steps, F)``.
    """
    return reduce(state[:, : steps * span], "b (n s) f -> b n f", "mean", s=span)


PROBE_L2_GRID = (1e-3, 1e-2, 1e-1, 1.0)


def probe_r2(z: Tensor, y: Tensor, episode: Tensor, l2: float | None = None) -> Tensor:
    """Held-out R² per factor of a ridge probe from latents ``z (B, T, D)`` to ``y (B, T, F)``.

    Clips of even episodes train, odd episodes test, so no episode is on both sides. With
    ``l2=None`` the ridge strength is chosen per factor from ``PROBE_L2_GRID`` on a validation
    split of the training episodes (``episode % 4 == 2``) before the final fit.
    """
    flat = lambda t, m: t[m].reshape(-1, t.shape[-1])  # noqa: E731
    tr, te = episode % 2 == 0, episode % 2 == 1
    if l2 is not None:
        return ridge_probe_r2(flat(z, tr), flat(y, tr), flat(z, te), flat(y, te), l2=l2)
    fit, val = episode % 4 == 0, episode % 4 == 2
    if not (fit.any() and val.any()):
        return ridge_probe_r2(flat(z, tr), flat(y, tr), flat(z, te), flat(y, te), l2=PROBE_L2_GRID[1])
    scores = torch.stack([ridge_probe_r2(flat(z, fit), flat(y, fit), flat(z, val), flat(y, val), l2=a)
                          for a in PROBE_L2_GRID])  # (grid, F)
    best = scores.argmax(0)
    finals = torch.stack([ridge_probe_r2(flat(z, tr), flat(y, tr), flat(z, te), flat(y, te), l2=a)
                          for a in PROBE_L2_GRID])
    return finals.gather(0, best[None]).squeeze(0)


@torch.no_grad()
def evaluate(model: HJEPA, batch: dict[str, Tensor], factor_names: list[str], probe_l2: float | None = None,
             device: torch.device | str = "cpu", rollout_horizon: int = 4) -> dict[str, float]:
    """Metrics named ``eval/level{k}/<name>`` on a fixed held-out batch.

    Per level: ``rankme``, ``std_mean``, ``cosine_mean``, ``sigreg_stat``, ``powerlaw_alpha``;
    ``energy_true``, ``energy_shuffled``, ``energy_gap`` (shuffled − true); ``pred_error_norm``
    (one-step error at the level's own clock divided by the target variance: 1 = no better than
    predicting the mean); ``rollout_error_norm`` (the same for an autoregressive rollout of
    ``rollout_horizon`` steps of the level's clock, context held fixed); ``probe_r2/<factor>`` (ridge on frozen latents, fit on even episodes and
    scored on odd ones; see ``probe_r2``).
    """
    was_training = model.training
    model.eval()
    obs, act = batch["obs"].to(device), batch["actions"].to(device)
    out: JEPAOutput = model(obs, act)
    state, episode = batch["state"], batch["episode"]
    train_mask = episode % 2 == 0
    perm = shuffle_permutation(obs.shape[0]).to(device)
    metrics: dict[str, float] = {}
    for k in range(model.depth):
        p = f"eval/level{k}/"
        z = out.z[k].float().cpu()
        flat = z.reshape(-1, z.shape[-1])
        for name, val in collapse_report(flat).items():
            metrics[p + name] = val
        e_true = model.energy(out, k).mean().item()
        e_shuf = model.energy(out, k, perm).mean().item()
        metrics[p + "energy_true"], metrics[p + "energy_shuffled"] = e_true, e_shuf
        metrics[p + "energy_gap"] = e_shuf - e_true
        tgt = out.target[k][:, 1:].float()
        var = (tgt - tgt.mean((0, 1))).square().mean().clamp_min(1e-12)
        err = (out.pred[k][:, :-1].float() - tgt).square().mean()
        metrics[p + "pred_error_norm"] = float(err / var)
        h = min(rollout_horizon, z.shape[1] - 1)
        if h > 0:
            t0 = z.shape[1] - 1 - h
            ctx = out.ctx[k][:, : t0 + 1] if out.ctx[k] is not None else None
            imagined = model.rollout(k, out.z[k][:, : t0 + 1], out.actions[k], ctx, h)
            ro = (imagined.float() - out.target[k][:, t0 + 1:].float()).square().mean()
            metrics[p + "rollout_error_norm"] = float(ro / var)
        if state.shape[-1] and train_mask.any() and (~train_mask).any():
            y = level_factors(state.float(), model.spans[k], z.shape[1])
            r2 = probe_r2(z, y, episode, probe_l2)
            for name, v in zip(factor_names, r2.tolist()):
                metrics[f"{p}probe_r2/{name}"] = v
    model.train(was_training)
    return metrics
