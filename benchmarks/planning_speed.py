"""Model evaluations per second of batched CEM planning against a bare batched predictor forward
of the same size (candidates x predicted steps), measured in one run.

    python benchmarks/planning_speed.py                      # CPU, default depth-2 model
    python benchmarks/planning_speed.py --device cuda --episodes 64 --samples 256

* ``cem``: one full ``CEM.optimize`` call of the flat planner — context prefix, ``iterations`` x
  (sampling, the incremental ``horizon``-step rollout of ``episodes x samples`` candidates, the
  energy to the goal, elite refit).
* ``bare``: one teacher-forced predictor forward over ``episodes x samples`` sequences of
  ``horizon`` steps — the same number of predicted latents computed in a single parallel call,
  the most a rollout could hope for (it must be sequential in time).
* ``naive``: the same rollouts recomputing the whole prefix each imagined step (``HJEPA.rollout``).

Reported: evaluations (candidate x predicted step) per second for each, and the ratios
``bare / cem`` (aim: within 2x) and ``cem / naive`` (what the cache buys).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

from hjepa.api import build_model, compose
from hjepa.planning.optimizers import CEM
from hjepa.planning.rollout import CandidateRollout


def _time(fn, reps: int, device) -> float:
    fn()
    out = []
    for _ in range(reps):
        if device.type == "cuda":
            torch.cuda.synchronize()
        t = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        out.append(time.perf_counter() - t)
    return statistics.median(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--episodes", type=int, default=16)
    ap.add_argument("--samples", type=int, default=128)
    ap.add_argument("--horizon", type=int, default=12)
    ap.add_argument("--iterations", type=int, default=4)
    ap.add_argument("--context", type=int, default=8)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--json", default=None, help="also write the figures to this JSON file")
    a = ap.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    dev = torch.device(a.device)
    torch.manual_seed(0)
    model = build_model(compose(["model.depth=2"]), obs_shape=(3, 32, 32), action_dim=2).to(dev).eval()
    d = model.levels[0].predictor.z_in.in_features
    e, n, h, it = a.episodes, a.samples, a.horizon, a.iterations
    z = torch.randn(e, a.context, d, device=dev)
    acts = torch.randn(e, a.context - 1, 2, device=dev)
    ctx = torch.randn(e, a.context, d, device=dev)
    goal = torch.randn(e, d, device=dev)
    opt = CEM(samples=n, iterations=it, elites=max(2, n // 8))
    gen = torch.Generator(device=dev).manual_seed(0)

    def cem():
        roll = CandidateRollout(model, 0)
        roll.prefix(z, acts, ctx)
        opt.optimize(lambda c: model.distance(roll.imagine(c), goal[:, None, None]).mean(-1),
                     *opt.initial(e, h, 2, device=dev), gen)

    seq_z = torch.randn(e * n, h, d, device=dev)
    seq_a = torch.randn(e * n, h, 2, device=dev)
    seq_c = torch.randn(e * n, h, d, device=dev)

    @torch.no_grad()
    def bare():
        for _ in range(it):
            model.levels[0].predictor(seq_z, seq_a, seq_c)

    big_z = z.repeat_interleave(n, 0)
    big_a = torch.randn(e * n, a.context + h, 2, device=dev)
    big_c = ctx.repeat_interleave(n, 0)

    @torch.no_grad()
    def naive():
        for _ in range(it):
            model.rollout(0, big_z, big_a, big_c, h)

    evals = e * n * h * it
    t = {name: _time(fn, a.reps, dev) for name, fn in (("cem", cem), ("bare", bare), ("naive", naive))}
    res = {"device": str(dev), "threads": torch.get_num_threads(), "episodes": e, "samples": n, "horizon": h,
           "iterations": it, "evals_per_call": evals, **{f"{k}_evals_per_s": evals / v for k, v in t.items()},
           "bare_over_cem": t["cem"] / t["bare"], "cem_speedup_over_naive": t["naive"] / t["cem"]}
    print(f"{'path':>6} {'seconds':>9} {'evals/s':>12}")
    for k, v in t.items():
        print(f"{k:>6} {v:>9.4f} {evals / v:>12.0f}")
    print(f"CEM is {res['bare_over_cem']:.2f}x slower than a bare forward of the same size (aim <= 2x); "
          f"the cache makes it {res['cem_speedup_over_naive']:.2f}x faster than recomputing the prefix")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(res, f, indent=1)


if __name__ == "__main__":
    main()
