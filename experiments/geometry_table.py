"""Latent geometry table of trained rooms runs: per level, the Spearman correlation of the energy to a
goal with the geodesic distance (mean over the fixed goals of ``analysis.world_energy.default_goals``,
grid every 0.05 room widths) and the held-out probe R² of position, plus the training data's
doorway-crossing rate.

    python experiments/geometry_table.py runs/planning runs/planning_flat ...   [--json out.json] [--png-dir figs]
    python experiments/geometry_table.py runs/planning --random-goals 20 1     # a held-out set of 20 goals

Each argument is a run directory, checkpoint file or MLflow run id; a run directory with several
checkpoints can be given as ``DIR@all`` to score every checkpoint kept (a curve over training).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

from analysis.world_energy import geodesic_spearman, plot_world_energy, rooms_env
from hjepa.api import load_run
from hjepa.data.rooms import crossing_rate
from hjepa.evaluation import evaluate


def random_goals(env, n: int, seed: int) -> np.ndarray:
    """``n`` goals drawn uniformly over the free cells of the 0.05 grid (a held-out goal set)."""
    from analysis.world_energy import free_grid

    xs, ys, free = free_grid(env, 0.05)
    gx, gy = np.meshgrid(xs, ys)
    pts = np.stack([gx[free], gy[free]], 1)
    return pts[np.random.default_rng(seed).choice(len(pts), n, replace=False)]


def score(ref: str, device: str = "cpu", spacing: float = 0.05, png: Path | None = None,
          goals: tuple[int, int] | None = None) -> dict:
    run = load_run(ref, device=device)
    env = rooms_env(run.cfg.data)
    model = run.model
    g = random_goals(env, *goals) if goals else None
    rhos, maps = geodesic_spearman(model, env, model.levels[0].action_dim, goals=g, spacing=spacing)
    data = run.data()
    batch = data.eval_batch(int(run.cfg.eval.num_clips))
    metrics = evaluate(model, batch, run.factor_names, device=run.device)
    probe = [{f: metrics.get(f"eval/level{k}/probe_r2/{f}") for f in ("pos_x", "pos_y", "room_id")}
             for k in range(model.depth)]
    state = data.train.traj.state if hasattr(data.train, "traj") else None
    row = {"ref": str(ref), "path": str(run.path), "step": run.step, "depth": model.depth,
           "geometry_weight": list(model.geometry_weight), "geometry_discount": model.geometry.discount,
           "spearman": rhos, "spearman_per_goal": [m.spearman for m in maps],
           "probe_r2": probe,
           "pred_error_norm": [metrics[f"eval/level{k}/pred_error_norm"] for k in range(model.depth)],
           "rankme": [metrics[f"eval/level{k}/rankme"] for k in range(model.depth)],
           "crossing_rate": crossing_rate(np.asarray(state), run.factor_names) if state is not None else None}
    if png is not None:
        png.parent.mkdir(parents=True, exist_ok=True)
        plot_world_energy([maps[0], maps[-1]], env, title=f"{ref} step {run.step}: mean ρ_geo "
                          + ", ".join(f"L{k} {r:+.2f}" for k, r in enumerate(rhos))).savefig(png, dpi=80)
    return row


def expand(ref: str) -> list[str]:
    if ref.endswith("@all"):
        d = Path(ref[:-4])
        return [str(p) for p in sorted((d / "checkpoints").glob("step_*.pt"))]
    return [ref]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("runs", nargs="+")
    p.add_argument("--json")
    p.add_argument("--png-dir")
    p.add_argument("--random-goals", type=int, nargs=2, metavar=("N", "SEED"),
                   help="score on N random free goals drawn with SEED instead of the fixed default goals")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = p.parse_args(argv)
    rows = []
    for ref in args.runs:
        for r in expand(ref):
            name = Path(r).name if Path(r).is_dir() else Path(r).parent.parent.name
            png = Path(args.png_dir) / f"world_energy_{name}.png" if args.png_dir else None
            row = score(r, args.device, png=png if png and r == expand(ref)[-1] else None,
                        goals=tuple(args.random_goals) if args.random_goals else None)
            rows.append(row)
            pr = " ".join(f"L{k}: ρ={row['spearman'][k]:+.3f} R²(x,y)={row['probe_r2'][k]['pos_x']:.2f},"
                          f"{row['probe_r2'][k]['pos_y']:.2f}" for k in range(row["depth"]))
            print(f"{r} step {row['step']} geo={row['geometry_weight']} γ={row['geometry_discount']} "
                  f"cross={row['crossing_rate']}  {pr}", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
