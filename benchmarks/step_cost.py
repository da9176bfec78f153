"""Training-step cost of depth 1, 2, 3 at stride 4, as ratios to depth 1 — measured in one run.

    python benchmarks/step_cost.py                  # CPU, default model, clip 32, batch 16
    python benchmarks/step_cost.py --device cuda --batch 64

The upper levels run on coarser clocks (T/4, T/16 steps), so the ideal ratio for depth N is
close to ``1 + 1/4 + … + 1/4^(N-1)`` (each level's predictor and encoder cost in proportion to
its steps). Timings interleave the depths round-robin so machine noise hits all of them alike;
the figure reported is the median per depth.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from hjepa.api import build_model, compose


def one_step(model, opt, obs, act) -> None:
    loss = model.losses(model(obs, act)).total
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    model.update_targets(0.996)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--depths", default="1,2,3")
    ap.add_argument("--stride", type=int, default=4)
    ap.add_argument("--clip", type=int, default=32)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--reps", type=int, default=15)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--regularizer", default="sigreg")
    ap.add_argument("--threads", type=int, default=0)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    dev = torch.device(args.device)
    depths = [int(d) for d in args.depths.split(",")]
    torch.manual_seed(0)
    obs = torch.rand(args.batch, args.clip, 3, 32, 32, device=dev)
    act = torch.rand(args.batch, args.clip, 2, device=dev) * 2 - 1
    setups = {}
    for d in depths:
        cfg = compose([f"model.depth={d}", f"model.stride={args.stride}", f"data.clip_len={args.clip}",
                       f"regularizer={args.regularizer}"])
        model = build_model(cfg, obs_shape=(3, 32, 32), action_dim=2).to(dev)
        opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
        for _ in range(args.warmup):
            one_step(model, opt, obs, act)
        params = sum(p.numel() for p in model.parameters() if p.requires_grad)
        setups[d] = (model, opt, params)
    times: dict[int, list[float]] = {d: [] for d in depths}
    for _ in range(args.reps):
        for d in depths:
            model, opt, _ = setups[d]
            if dev.type == "cuda":
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            one_step(model, opt, obs, act)
            if dev.type == "cuda":
                torch.cuda.synchronize()
            times[d].append(time.perf_counter() - t0)
    base = statistics.median(times[depths[0]])
    print(f"device={dev} threads={torch.get_num_threads()} clip={args.clip} batch={args.batch} stride={args.stride} "
          f"regularizer={args.regularizer} reps={args.reps}")
    print(f"{'depth':>5} {'params':>10} {'ms/step':>9} {'ratio':>7} {'ideal':>7}")
    for d in depths:
        med = statistics.median(times[d])
        ideal = sum(args.stride ** -k for k in range(d))
        print(f"{d:>5} {setups[d][2]:>10,} {med * 1e3:>9.1f} {med / base:>7.3f} {ideal:>7.3f}")


if __name__ == "__main__":
    main()
