"""A markdown table of ``hjepa-plan`` results: one row per ``plan_results.json`` (a planner run).

    python experiments/plan_table.py outputs/pm_eval/*/plan_results.json

Cells: success % (mean steps) per distance; then model evaluations and planning seconds per
episode (means over all episodes of the run).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def table(paths: list[str]) -> str:
    runs = [json.loads(Path(p).read_text()) for p in paths]
    dists = sorted({d for r in runs for d in r["by_distance"]}, key=int)
    head = "| planner | " + " | ".join(f"d={d}" for d in dists) + " | evals/ep | plan s/ep |"
    lines = [head, "|---|" + "---:|" * (len(dists) + 2)]
    for r in runs:
        by = r["by_distance"]
        cells = [f"{100 * by[d]['success']:.0f}% ({by[d]['mean_steps']:.0f})" if d in by else "" for d in dists]
        n = sum(by[d]["episodes"] for d in by)
        evals = sum(by[d]["model_evals"] * by[d]["episodes"] for d in by) / n
        secs = sum(by[d]["plan_seconds"] * by[d]["episodes"] for d in by) / n
        p = r["config"]["planner"]
        extra = f" H={p['horizon']}" if r["planner"] == "flat" else f" H_top={p['top_horizon']}" if r["planner"] == "hierarchical" else ""
        lines.append(f"| {r['label']}{extra} | " + " | ".join(cells) + f" | {evals:,.0f} | {secs:.2f} |")
    return "\n".join(lines)


if __name__ == "__main__":
    print(table(sys.argv[1:]))
