"""How a level holds each true factor: the logged linear probe next to non-linear readouts.

    python experiments/level_readouts.py runs/pendulum_s0 runs/pendulum_s1 --level 1

For each run (checkpoint, run directory or MLflow run id) and the run's own held-out evaluation
batch (``eval.num_clips`` clips, the one its ``eval/level{k}/probe_r2/*`` metrics use), prints per
factor the held-out R² of: the ridge probe (``hjepa.evaluation.probe_r2``, the logged figure), the
same ridge on the latent and its pairwise products (quadratic), and a k-nearest-neighbour
regressor on the standardised latent; the ridge probe of every product of two factors (e.g.
Pendulum's tangent velocity θ̇ cos θ); and per dimension the latent's std and its mean squared
change per level step over its variance (2 for white noise, near 0 for a slow coordinate). Clips of even episodes
fit, odd episodes score, as in the logged probe. A factor that only the non-linear readouts find
is in the level, but not on a linear axis (docs/simulators.md, "Pendulum from pixels").
"""

from __future__ import annotations

import argparse
import sys

import torch
from torch import Tensor

from hjepa.evaluation import level_factors, probe_r2


def with_products(z: Tensor) -> Tensor:
    """``z (B, T, D)`` → ``(B, T, D + D(D+1)/2)``: the latent and its pairwise products."""
    iu = torch.triu_indices(z.shape[-1], z.shape[-1])
    return torch.cat([z, (z[..., :, None] * z[..., None, :])[..., iu[0], iu[1]]], -1)


def knn_r2(z: Tensor, y: Tensor, episode: Tensor, k: int = 10) -> Tensor:
    """Held-out R² per factor of a k-NN regressor (mean of the k nearest training latents' targets,
    dimensions standardised by the training std) from ``z (B, T, D)`` to ``y (B, T, F)``."""
    tr, te = episode % 2 == 0, episode % 2 == 1
    ztr, zte = z[tr].reshape(-1, z.shape[-1]), z[te].reshape(-1, z.shape[-1])
    ytr, yte = y[tr].reshape(-1, y.shape[-1]), y[te].reshape(-1, y.shape[-1])
    scale = ztr.std(0).clamp_min(1e-8)
    idx = torch.cdist(zte / scale, ztr / scale).topk(min(k, len(ztr)), largest=False).indices
    pred = ytr[idx].mean(1)
    return 1 - (pred - yte).square().sum(0) / (yte - yte.mean(0)).square().sum(0).clamp_min(1e-12)


def change_over_var(z: Tensor) -> Tensor:
    """``z (B, T, D)`` → ``(D,)``: mean squared change per step over the variance, per dimension —
    ``2(1 − ρ)`` for one-step autocorrelation ρ: 2 for white noise, near 0 for a slow coordinate."""
    return (z[:, 1:] - z[:, :-1]).square().mean((0, 1)) / z.reshape(-1, z.shape[-1]).var(0).clamp_min(1e-12)


def readouts(run, level: int, k: int = 10) -> dict[str, dict[str, float]]:
    """``{"ridge"|"quadratic"|"knn": {factor: R²}, "std": {"dim<j>": std}}`` for one loaded run."""
    if not 0 <= level < run.model.depth:
        raise ValueError(f"--level {level}: the run has levels 0..{run.model.depth - 1}")
    batch = run.data().eval_batch(run.cfg.eval.num_clips)
    z = run.embed(batch)[level].float()
    y = level_factors(batch["state"].float(), run.model.spans[level], z.shape[1])
    ep = batch["episode"]
    table = {"ridge": probe_r2(z, y, ep), "quadratic": probe_r2(with_products(z), y, ep), "knn": knn_r2(z, y, ep, k)}
    out = {key: dict(zip(run.factor_names, v.tolist())) for key, v in table.items()}
    out["std"] = {f"dim{j}": s for j, s in enumerate(z.reshape(-1, z.shape[-1]).std(0).tolist())}
    # products of two factors, per step, then averaged over the level's window like the factors: a code
    # such as Pendulum's tangent velocity (θ̇ cos θ, θ̇ sin θ) is linear in them, not in θ̇
    state = batch["state"].float()
    i, j = torch.triu_indices(state.shape[-1], state.shape[-1], offset=1)
    pairs = level_factors(state[..., i] * state[..., j], run.model.spans[level], z.shape[1])
    names = [f"{run.factor_names[a]}*{run.factor_names[b]}" for a, b in zip(i.tolist(), j.tolist())]
    out["ridge_products"] = dict(zip(names, probe_r2(z, pairs, ep).tolist()))
    out["change_over_var"] = {f"dim{j}": v for j, v in enumerate(change_over_var(z).tolist())}
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("runs", nargs="+", help="checkpoint, run directory or MLflow run id")
    ap.add_argument("--level", type=int, default=1)
    ap.add_argument("--k", type=int, default=10, help="neighbours of the k-NN readout")
    args = ap.parse_args(argv)
    from hjepa.api import load_run
    from hjepa.checkpoint import CheckpointError

    for ref in args.runs:
        try:
            r = readouts(load_run(ref), args.level, args.k)
        except (CheckpointError, FileNotFoundError, ValueError) as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        print(f"{ref} level {args.level}")
        for key in ("ridge", "quadratic", "knn"):
            print(f"  {key:10s} " + "  ".join(f"{n} {v:.3f}" for n, v in r[key].items()))
        print("  products   " + "  ".join(f"{n} {v:.3f}" for n, v in r["ridge_products"].items()))
        print("  std        " + " ".join(f"{v:.3f}" for v in r["std"].values()))
        print("  Δ²/var     " + " ".join(f"{v:.3f}" for v in r["change_over_var"].values()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
