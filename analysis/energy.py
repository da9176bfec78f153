"""Energy tools, all through the model's one energy function ``model.distance(ẑ, z̄)``.

* :func:`pair_energies` — energies of true pairs ``(ẑ_k[t], z̄_k[t+1])`` and of shuffled
  (incompatible) pairs, per level.
* :func:`interpolation_energies` — energy along ``(1−α)·z̄_compatible + α·z̄_incompatible``.
* :func:`energy_landscape` — energy over a 2-D slice of latent space around a true target,
  spanned by the top-2 principal directions of the target embeddings (scaled by their std) or by
  random directions normalised to the target's norm ("filter-normalised", Li et al. 2018).

Everything takes a model and one :class:`hjepa.models.JEPAOutput` (a forward pass of a held-out
batch), so a notebook can call it on any model; :func:`forward_eval_batch` makes that pair from
a :class:`hjepa.api.LoadedRun`.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
from torch import Tensor

from hjepa.evaluation import shuffle_permutation
from hjepa.models import HJEPA, JEPAOutput

__all__ = ["pair_energies", "interpolation_energies", "landscape_directions", "energy_landscape", "Landscape",
           "forward_eval_batch", "energy_summary"]


def forward_eval_batch(run, num_clips: int | None = None, seed: int = 12345) -> tuple[dict[str, Tensor], JEPAOutput]:
    """A held-out batch of a :class:`hjepa.api.LoadedRun` and the model's forward pass on it."""
    n = int(num_clips if num_clips is not None else run.cfg.eval.num_clips)
    batch = run.data().eval_batch(n, seed=seed)
    return batch, run.forward(batch)


@torch.no_grad()
def pair_energies(model: HJEPA, out: JEPAOutput, seed: int = 0) -> list[dict[str, Tensor]]:
    """Per level: ``{"true": (B, T_k−1), "shuffled": (B, T_k−1)}`` — the energy of each prediction
    with its own next target and with the next target of another clip (the same derangement as
    the trainer's ``energy_gap``)."""
    b = out.z[0].shape[0]
    perm = shuffle_permutation(b, seed).to(out.z[0].device)
    return [{"true": model.energy(out, k).float().cpu(), "shuffled": model.energy(out, k, perm).float().cpu()}
            for k in range(model.depth)]


def energy_summary(energies: list[dict[str, Tensor]]) -> list[dict[str, float]]:
    """Means, gap and the fraction of shuffled pairs whose energy exceeds the median true energy
    (0.5 = the energy cannot tell pairs apart, 1 = it always can)."""
    res = []
    for e in energies:
        t, s = e["true"].flatten().double(), e["shuffled"].flatten().double()
        res.append({"energy_true": float(t.mean()), "energy_shuffled": float(s.mean()),
                    "energy_gap": float(s.mean() - t.mean()),
                    "energy_ratio": float(s.mean() / t.mean().clamp_min(1e-30)),
                    "auc": float((s[:, None] > t[None, :]).double().mean()
                                 + 0.5 * (s[:, None] == t[None, :]).double().mean())})
    return res


@torch.no_grad()
def interpolation_energies(model: HJEPA, out: JEPAOutput, k: int, alphas=None, perm: Tensor | None = None,
                           seed: int = 0) -> tuple[np.ndarray, Tensor]:
    """Energy of ``ẑ_k[t]`` against ``(1−α)·z̄_k[t+1] + α·z̄_k^{perm}[t+1]`` for each α.

    ``alphas`` defaults to 21 points on [0, 1]; α=0 is the compatible target (the true pair),
    α=1 an incompatible one (another clip's target). Returns ``(alphas (A,), energies (A, B, T_k−1))``.
    """
    alphas = np.linspace(0.0, 1.0, 21) if alphas is None else np.asarray(alphas, dtype=np.float64)
    if perm is None:
        perm = shuffle_permutation(out.z[0].shape[0], seed)
    perm = perm.to(out.target[k].device)
    pred = out.pred[k][:, :-1]
    good, bad = out.target[k][:, 1:], out.target[k][:, 1:][perm]
    es = [model.distance(pred, (1 - a) * good + a * bad) for a in alphas.tolist()]
    return alphas, torch.stack(es).float().cpu()


def _orthonormal_fallback(d: int, avoid: Tensor | None, g: torch.Generator, dtype) -> Tensor:
    r = torch.randn(d, generator=g, dtype=torch.float64).to(dtype)
    if avoid is not None and avoid.norm() > 0:
        a = avoid / avoid.norm()
        r = r - (r @ a) * a
    return r / r.norm().clamp_min(1e-30)


@torch.no_grad()
def landscape_directions(targets: Tensor, method: str = "pca", ref: Tensor | None = None,
                         seed: int = 0) -> tuple[Tensor, Tensor, dict[str, float]]:
    """Two directions ``u, v`` ``(D,)`` spanning a slice of latent space.

    ``pca``: the top-2 principal directions of ``targets`` ``(N, D)``, each scaled by the std of
    the targets along it (a grid coordinate of 1 = one standard deviation of the data); a
    direction with (numerically) no variance keeps the scale of the first one, so a collapsed
    cloud still gets a visible slice. ``random``: two Gaussian directions, orthogonalised and
    each normalised to ``‖ref‖`` (the true target's norm) — filter normalisation for a latent
    vector. Also returns the scales used.
    """
    targets = targets.detach().to(torch.float64).reshape(-1, targets.shape[-1])
    n, d = targets.shape
    g = torch.Generator().manual_seed(seed)
    if method == "pca":
        x = targets - targets.mean(0)
        _, s, vh = torch.linalg.svd(x, full_matrices=False)
        std = s / math.sqrt(max(n - 1, 1))
        base = float(std[0]) if std.numel() and std[0] > 0 else 1e-6
        dirs, scales = [], []
        for i in range(2):
            if i < std.numel() and std[i] > 1e-9 * base:
                dirs.append(vh[i])
                scales.append(float(std[i]))
            else:
                dirs.append(_orthonormal_fallback(d, dirs[0] if dirs else None, g, torch.float64))
                scales.append(base)
        u, v = dirs[0] * scales[0], dirs[1] * scales[1]
        return u, v, {"scale_u": scales[0], "scale_v": scales[1]}
    if method == "random":
        norm = float(ref.detach().double().norm()) if ref is not None else 1.0
        norm = norm if norm > 0 else 1e-6
        u = _orthonormal_fallback(d, None, g, torch.float64)
        v = _orthonormal_fallback(d, u, g, torch.float64)
        return u * norm, v * norm, {"scale_u": norm, "scale_v": norm}
    raise ValueError(f"unknown landscape direction method {method!r}; choose 'pca' or 'random'")


@dataclass
class Landscape:
    """Energy over ``target + a·u + b·v`` for ``a, b`` on a grid (coordinates in units of u, v)."""

    level: int
    method: str
    clip: int
    step: int
    a: np.ndarray  # (R,)
    b: np.ndarray  # (R,)
    energy: np.ndarray  # (R, R), energy[i, j] at (a[j], b[i]) — matplotlib's contour layout
    energy_target: float  # at a = b = 0: the true pair's energy
    pred_xy: np.ndarray  # (2,) projection of the prediction ẑ onto the slice (the slice's minimum for l2)
    others_xy: np.ndarray  # (M, 2) projections of incompatible targets (other clips, same step)
    others_energy: np.ndarray  # (M,) their energies in full latent space
    scales: dict[str, float] = field(default_factory=dict)

    @property
    def grid_min_xy(self) -> np.ndarray:
        i, j = np.unravel_index(np.argmin(self.energy), self.energy.shape)
        return np.array([self.a[j], self.b[i]])

    def summary(self) -> dict[str, float]:
        return {"energy_target": self.energy_target, "energy_grid_mean": float(self.energy.mean()),
                "energy_grid_min": float(self.energy.min()),
                "energy_others_mean": float(self.others_energy.mean()) if self.others_energy.size else float("nan"),
                "grid_min_distance": float(np.linalg.norm(self.grid_min_xy)),
                "pred_distance": float(np.linalg.norm(self.pred_xy)), **self.scales}

    def to_dict(self) -> dict:
        return {k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in asdict(self).items()}


def _coords(x: Tensor, u: Tensor, v: Tensor) -> Tensor:
    """Least-squares coordinates of ``x`` ``(..., D)`` in the basis ``(u, v)``: ``(..., 2)``."""
    basis = torch.stack([u, v], 1)  # (D, 2)
    return x @ torch.linalg.pinv(basis).T


@torch.no_grad()
def energy_landscape(model: HJEPA, out: JEPAOutput, k: int, *, clip: int = 0, step: int | None = None,
                     method: str = "pca", span: float | None = None, resolution: int = 41,
                     seed: int = 0) -> Landscape:
    """The energy ``model.distance(ẑ_k[t], z̄_k[t+1] + a·u + b·v)`` on a ``resolution²`` grid.

    ``clip``/``step`` pick the prediction (default: the middle transition of the clip). The grid
    spans ``[−span, span]²`` (default: 3 std for ``pca``, 1 target norm for ``random``, widened
    to take in 90 % of the incompatible targets; a prediction that misses by more lies outside,
    and its coordinates are in ``pred_xy``). The incompatible targets are the level-k targets of
    every other clip at the same step.
    """
    pred_all, tgt_all = out.pred[k], out.target[k]
    b, tk, d = tgt_all.shape
    if tk < 2:
        raise ValueError(f"level {k} has {tk} step(s) per clip; a landscape needs at least 2")
    step = (tk - 1) // 2 if step is None else int(step)
    if not 0 <= step < tk - 1:
        raise ValueError(f"step={step} out of range: level {k} has transitions 0..{tk - 2}")
    pred = pred_all[clip, step].double()
    target = tgt_all[clip, step + 1].double()
    u, v, scales = landscape_directions(tgt_all[:, 1:], method, ref=target, seed=seed)
    u, v = u.to(pred.device), v.to(pred.device)
    others = torch.cat([tgt_all[:clip, step + 1], tgt_all[clip + 1:, step + 1]]).double()
    pred_xy = _coords(pred - target, u, v)
    others_xy = _coords(others - target, u, v) if others.numel() else torch.zeros(0, 2, dtype=torch.float64)
    if span is None:  # the scale of the data around the target, not of the prediction's error
        span = 3.0 if method == "pca" else 1.0
        if others_xy.shape[0]:
            span = max(span, 1.1 * float(torch.quantile(others_xy.abs().max(1).values, 0.9)))
    grid = torch.linspace(-span, span, resolution, dtype=torch.float64, device=pred.device)
    bb, aa = torch.meshgrid(grid, grid, indexing="ij")  # rows: b, columns: a
    points = target + aa[..., None] * u + bb[..., None] * v
    dt = pred_all.dtype
    energy = model.distance(pred.to(dt).expand_as(points.to(dt)), points.to(dt)).double()
    e_target = float(model.distance(pred_all[clip, step], tgt_all[clip, step + 1]))
    e_others = model.distance(pred.to(dt).expand(others.shape[0], d), others.to(dt)).double() if others.numel() \
        else torch.zeros(0, dtype=torch.float64)
    g = grid.cpu().numpy()
    return Landscape(k, method, int(clip), int(step), g, g.copy(), energy.cpu().numpy(), e_target,
                     pred_xy.cpu().numpy(), others_xy.cpu().numpy(), e_others.cpu().numpy(), scales)
