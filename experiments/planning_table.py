"""The planning benchmark's table and figure from ``hjepa-plan`` output directories.

    python experiments/planning_table.py multirun/plan/<date>/<time> [more dirs or plan_results.json ...] \
        [--out planning_table.png] [--markdown planning_table.md]

Every ``plan_results.json`` found below the arguments becomes one row group (planner x distance:
success, mean steps, model evaluations and planning seconds per episode) and one line of the figure.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from hjepa.planning.report import RESULTS_FILE, plot_success


def _label(r: dict) -> str:
    c = r.get("config", {}).get("planner", {})
    extra = []
    if r["planner"] in ("flat", "oracle"):
        extra.append(f"H={c.get('horizon')}")
    if r["planner"] == "hierarchical":
        extra.append(f"H_top={c.get('top_horizon')}")
        if c.get("macro") == "latent":
            extra.append("latent macros")
        if c.get("subgoals") == "goal":
            extra = ["no top search: lower rollouts scored by the top energy to the goal"]
        if c.get("lower_windows", 1) > 1:
            extra.append(f"{c['lower_windows']} windows below")
    if r["planner"] == "graph":
        level = c.get("graph_level", -1)
        extra.append(f"{'top-level' if level == -1 else f'level-{level}'} graph, {c.get('graph_nodes')} nodes, "
                     f"lookahead {c.get('graph_lookahead')}")
    run = r.get("config", {}).get("run") or ""
    model = f" [{Path(run).name}]" if run else ""
    return f"{r['label']}{model}" + (f" {', '.join(extra)}" if extra else "")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("paths", nargs="+")
    ap.add_argument("--out", default="planning_table.png")
    ap.add_argument("--markdown", default=None)
    ap.add_argument("--title", default="", help="figure title (default: the world's distance)")
    a = ap.parse_args()
    files = []
    for p in map(Path, a.paths):
        files += [p] if p.is_file() else sorted(p.rglob(RESULTS_FILE))
    results = {}
    for f in files:
        r = json.loads(f.read_text())
        results[_label(r)] = r
    dists = sorted({int(d) for r in results.values() for d in r["by_distance"]})
    lines = ["| planner | " + " | ".join(f"d={d}" for d in dists) + " | evals/ep (d≥3) | plan s/ep (d≥3) |",
             "|---|" + "---:|" * (len(dists) + 2)]
    for label, r in results.items():
        by = r["by_distance"]
        far = [by[str(d)] for d in dists if d >= 3 and str(d) in by]
        ev = sum(x["model_evals"] for x in far) / max(len(far), 1)
        sec = sum(x["plan_seconds"] for x in far) / max(len(far), 1)
        cells = [f"{100 * by[str(d)]['success']:.0f}% ({by[str(d)]['mean_steps']:.0f})" if str(d) in by else "–"
                 for d in dists]
        lines.append(f"| {label} | " + " | ".join(cells) + f" | {ev:,.0f} | {sec:.2f} |")
    table = "\n".join(lines)
    print("success % (mean steps) by distance; episodes per cell: "
          + ", ".join(sorted({str(v['episodes']) for r in results.values() for v in r['by_distance'].values()})))
    print(table)
    if a.markdown:
        Path(a.markdown).write_text(table + "\n")
    xlabels = {r.get("distance_label") for r in results.values()} - {None}
    xlabel = xlabels.pop() if len(xlabels) == 1 else "distance from start to goal"
    plot_success({k: r["by_distance"] for k, r in results.items()}, Path(a.out), title=a.title, xlabel=xlabel)
    print(f"figure: {a.out}")


if __name__ == "__main__":
    main()
