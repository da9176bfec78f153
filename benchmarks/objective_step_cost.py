"""Training-step cost of each objective on the ``experiment=objectives`` settings (rooms, batch 16,
clip 32, tubelet ViT encoder), measured in one process, one after the other.

    python benchmarks/objective_step_cost.py --threads 1 --reps 10

Prints milliseconds per step (median of ``--reps`` steps after 2 warm-up steps) and the ratio to
``next_step``.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import torch

from hjepa.api import compose
from hjepa.train import Trainer

RUNS = {"next_step": ["objective=next_step"], "masked": ["objective=masked"], "pixel": ["objective=pixel"],
        "contrastive": ["objective=contrastive"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--reps", type=int, default=10)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    base = ["experiment=objectives", "tracking.enabled=false", "train.progress=false", f"train.threads={a.threads}"]
    times = {}
    for name, extra in RUNS.items():
        tr = Trainer(compose(base + extra, out_dir=tempfile.mkdtemp()))
        laps = []
        for i, batch in enumerate(tr.data.train_loader(0, 0, a.reps + 2)):
            t = time.perf_counter()
            tr.train_step(batch)
            if i >= 2:
                laps.append(time.perf_counter() - t)
        times[name] = statistics.median(laps) * 1000
    print("| objective | ms / step | × next_step |\n|---|---:|---:|")
    for name, ms in times.items():
        print(f"| {name} | {ms:.0f} | {ms / times['next_step']:.2f} |")


if __name__ == "__main__":
    main()
