"""Probe R² of fast and slow factors × level × depth, read from the MLflow runs of a sweep.

    hjepa-train -m experiment=depth_ablation                  # 1. train depths 1, 2, 3 (multiscale env)
    python experiments/probe_table.py                          # 2. table of the newest sweep
    python experiments/probe_table.py --sweep multirun/2026-11-25/13-18-36 --experiment depth_ablation

Prints a Markdown table: one row per factor (and the mean over fast_* / slow_* factors), one
column per (depth, level), from the final ``eval/level{k}/probe_r2/<factor>`` metrics.
"""

from __future__ import annotations

import argparse
import re
import statistics
import sys

from hjepa.tracking import resolve_tracking_uri

_PROBE = re.compile(r"^eval/level(\d+)/probe_r2/(.+)$")


def sweep_runs(client, experiment: str, sweep: str | None):
    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        sys.exit(f"no MLflow experiment named {experiment!r} in {client.tracking_uri}")
    runs = client.search_runs([exp.experiment_id], filter_string="tags.`hjepa.sweep_id` != ''",
                              order_by=["attributes.start_time DESC"], max_results=500)
    if not runs:
        sys.exit(f"no sweep runs (tag hjepa.sweep_id) in experiment {experiment!r}")
    sweep = sweep or runs[0].data.tags["hjepa.sweep_id"]
    return sweep, [r for r in runs if r.data.tags.get("hjepa.sweep_id") == sweep]


def probe_table(runs) -> tuple[list[str], list[tuple[str, list[float | None]]]]:
    """Columns ``d{depth}/L{level}`` and rows ``(factor, values)``, seeds averaged."""
    cells: dict[tuple[int, int], dict[str, list[float]]] = {}
    for r in runs:
        depth = int(r.data.params["model.depth"])
        for key, val in r.data.metrics.items():
            m = _PROBE.match(key)
            if m:
                cells.setdefault((depth, int(m.group(1))), {}).setdefault(m.group(2), []).append(val)
    cols = sorted(cells)
    factors = sorted({f for c in cells.values() for f in c}, key=lambda f: (not f.startswith("fast"), f))
    rows = [(f, [statistics.mean(cells[c][f]) if f in cells[c] else None for c in cols]) for f in factors]
    for prefix in ("fast_", "slow_"):
        group = [vals for f, vals in rows if f.startswith(prefix) and not f.endswith("regime_id")]
        if group:
            rows.append((f"mean {prefix}*", [statistics.mean(v[i] for v in group if v[i] is not None)
                                             for i in range(len(cols))]))
    return [f"d{d}/L{k}" for d, k in cols], rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sweep", help="hjepa.sweep_id tag (default: the newest sweep)")
    ap.add_argument("--experiment", default="depth_ablation")
    ap.add_argument("--tracking-uri", default=None)
    args = ap.parse_args()
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=resolve_tracking_uri(args.tracking_uri))
    sweep, runs = sweep_runs(client, args.experiment, args.sweep)
    cols, rows = probe_table(runs)
    print(f"sweep {sweep}: {len(runs)} runs, probe R² on held-out episodes (d = depth, L = level)\n")
    print("| factor | " + " | ".join(cols) + " |")
    print("|---|" + "---:|" * len(cols))
    for name, vals in rows:
        print(f"| {name} | " + " | ".join("" if v is None else f"{v:.3f}" for v in vals) + " |")


if __name__ == "__main__":
    main()
