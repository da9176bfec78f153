"""Where the multiscale gravity regime is lost (issue 9 point 2, docs/timescales.md).

    python experiments/gravity_probe.py --ceiling                 # from the TRUE ball states, no model
    python experiments/gravity_probe.py --run runs/ms_depth2      # a trained depth-2 run directory
    python experiments/gravity_probe.py --positions               # ball positions from raw frames

The target is the one the training-time probe uses at level 1: the gravity direction (x, y)
averaged over each window of ``stride`` frames. Two readouts of every input, both fitted on
**training** episodes and scored on the held-out ones, so the sample size is not the limit:

* ridge — the issue's linear probe (``hjepa.metrics.ridge_probe_r2``, penalty chosen on a
  validation split of the training windows);
* MLP — two hidden layers of 256 (GELU), Adam, early stopping on the same validation split: is
  the information there at all, in any form?

Inputs: ``--ceiling``: the positions and velocities of both balls over the window (8 numbers
per frame), generated with the ``experiment=depth_ablation`` data settings. ``--run``: the
concatenated level-0 latents of the window (what the level-1 summariser sees), and the level-1
latent of that window. ``--positions``: single 32x32 frames (raw pixels in [0, 1]) against ball 0's
position and against the two balls' centroid — the first is tied to the ball's colour, which turns
with the regime's hue; the second is not. Everything is seeded (data seeds of the run, readout seed 0); one torch
thread; a few minutes on a CPU.
"""

from __future__ import annotations

import argparse

import torch
from einops import rearrange
from torch import Tensor, nn
from torch.utils.data import default_collate

from hjepa.evaluation import level_factors
from hjepa.metrics import ridge_probe_r2

L2_GRID = (1e-3, 1e-2, 1e-1, 1.0, 10.0)
TARGETS = ("slow_gravity_x", "slow_gravity_y")


def _split(n: int, frac: float = 0.15, seed: int = 0) -> tuple[Tensor, Tensor]:
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    k = int(n * frac)
    return perm[k:], perm[:k]


def ridge_r2(x_tr: Tensor, y_tr: Tensor, x_te: Tensor, y_te: Tensor) -> Tensor:
    """Held-out R² per target, the penalty chosen on a validation split of the training rows."""
    fit, val = _split(len(x_tr))
    scores = [ridge_probe_r2(x_tr[fit], y_tr[fit], x_tr[val], y_tr[val], l2=a).mean() for a in L2_GRID]
    best = L2_GRID[int(torch.stack(scores).argmax())]
    return ridge_probe_r2(x_tr, y_tr, x_te, y_te, l2=best)


def mlp_r2(x_tr: Tensor, y_tr: Tensor, x_te: Tensor, y_te: Tensor, epochs: int = 200, seed: int = 0) -> Tensor:
    """Held-out R² per target of a 2x256 GELU MLP (early stopping on a validation split)."""
    torch.manual_seed(seed)
    mu, sd = x_tr.mean(0), x_tr.std(0).clamp_min(1e-6)
    x_tr, x_te = (x_tr - mu) / sd, (x_te - mu) / sd
    fit, val = _split(len(x_tr), seed=seed)
    net = nn.Sequential(nn.Linear(x_tr.shape[1], 256), nn.GELU(), nn.Linear(256, 256), nn.GELU(),
                        nn.Linear(256, y_tr.shape[1]))
    opt = torch.optim.AdamW(net.parameters(), lr=1e-3, weight_decay=1e-2)
    best, best_state, bad = float("inf"), None, 0
    for _ in range(epochs):
        for idx in fit[torch.randperm(len(fit))].split(256):
            opt.zero_grad()
            nn.functional.mse_loss(net(x_tr[idx]), y_tr[idx]).backward()
            opt.step()
        with torch.no_grad():
            v = nn.functional.mse_loss(net(x_tr[val]), y_tr[val]).item()
        if v < best - 1e-5:
            best, best_state, bad = v, {k: t.clone() for k, t in net.state_dict().items()}, 0
        else:
            bad += 1
            if bad >= 10:
                break
    net.load_state_dict(best_state)
    with torch.no_grad():
        pred = net(x_te)
    ss_res = (y_te - pred).square().sum(0)
    ss_tot = (y_te - y_te.mean(0)).square().sum(0)
    return 1 - ss_res / ss_tot


def windows(x: Tensor, stride: int) -> Tensor:
    """``(B, T, F)`` → ``(B · ⌊T/stride⌋, stride, F)``: consecutive non-overlapping windows."""
    w = x.shape[1] // stride
    return rearrange(x[:, : w * stride], "b (w s) f -> (b w) s f", s=stride)


def report(name: str, x_tr: Tensor, y_tr: Tensor, x_te: Tensor, y_te: Tensor) -> None:
    r, m = ridge_r2(x_tr, y_tr, x_te, y_te), mlp_r2(x_tr, y_tr, x_te, y_te)
    print(f"| {name} | {len(x_tr)} | {r[0]:.2f} / {r[1]:.2f} | {m[0]:.2f} / {m[1]:.2f} |", flush=True)


def ceiling(stride: int, gravity: float) -> None:
    from hjepa.data.multiscale import generate_multiscale

    def data(seed: int, n: int) -> tuple[Tensor, Tensor]:
        tr = generate_multiscale(n, 128, seed, gravity_strength=gravity, image_size=8)  # pixels unused
        state = torch.as_tensor(tr.state, dtype=torch.float32)
        cols = [tr.factor_names.index(c) for c in TARGETS]
        x = rearrange(windows(state[..., :8], stride), "n s f -> n (s f)")
        y = rearrange(level_factors(state[..., cols], stride, state.shape[1] // stride), "b w f -> (b w) f")
        return x, y

    x_tr, y_tr = data(0, 512)
    x_te, y_te = data(7919, 128)
    report(f"true ball positions and velocities, window of {stride}", x_tr, y_tr, x_te, y_te)


def positions(train_episodes: int = 128, eval_episodes: int = 64, mlp: bool = True) -> dict[str, tuple[Tensor, Tensor | None]]:
    """Ridge (and MLP) held-out R² ``(2,)`` of ball 0's position and of the two balls' centroid from
    single raw frames (``experiment=depth_ablation`` data, 64-frame episodes), printed as rows."""
    from hjepa.data.multiscale import generate_multiscale

    def data(seed: int, n: int) -> tuple[Tensor, dict[str, Tensor]]:
        tr = generate_multiscale(n, 64, seed, gravity_strength=0.5)
        x = torch.as_tensor(tr.obs, dtype=torch.float32).flatten(0, 1).flatten(1) / 255
        st = torch.as_tensor(tr.state, dtype=torch.float32).flatten(0, 1)
        col = {c: st[:, tr.factor_names.index(c)] for c in ("fast_x0", "fast_y0", "fast_x1", "fast_y1")}
        return x, {"ball 0 (x / y)": torch.stack([col["fast_x0"], col["fast_y0"]], 1),
                   "centroid of both balls (x / y)": torch.stack([col["fast_x0"] + col["fast_x1"],
                                                                  col["fast_y0"] + col["fast_y1"]], 1) / 2}

    x_tr, y_tr = data(0, train_episodes)
    x_te, y_te = data(7919, eval_episodes)
    out = {}
    for name in y_tr:
        r = ridge_r2(x_tr, y_tr[name], x_te, y_te[name])
        m = mlp_r2(x_tr, y_tr[name], x_te, y_te[name]) if mlp else None
        mtxt = f"{m[0]:.2f} / {m[1]:.2f}" if m is not None else "–"
        print(f"| {name} from the raw 32x32 frame | {len(x_tr)} | {r[0]:.2f} / {r[1]:.2f} | {mtxt} |", flush=True)
        out[name] = (r, m)
    return out


@torch.no_grad()
def encode_all(run, ds, n: int, seed: int) -> tuple[list[Tensor], Tensor]:
    """Online latents per level ``[(n, T_k, D_k), …]`` and states ``(n, T, F)`` of ``n`` clips of
    ``ds`` drawn with ``seed``, encoded 256 clips at a time."""
    idx = torch.randperm(len(ds), generator=torch.Generator().manual_seed(seed))[: min(n, len(ds))].tolist()
    latents, states = [], []
    for a in range(0, len(idx), 256):
        batch = default_collate([ds[i] for i in idx[a: a + 256]])
        latents.append(run.embed(batch))
        states.append(batch["state"])
    return [torch.cat(z) for z in zip(*latents)], torch.cat(states)


def from_run(ref: str, clips: int) -> None:
    from hjepa.api import load_run

    run = load_run(ref)
    if run.model.depth < 2:
        raise SystemExit(f"error: {ref} is a depth-{run.model.depth} model; this probe needs a level 1")
    stride = run.model.strides[1]
    data = run.data()
    cols = [run.factor_names.index(c) for c in TARGETS]
    parts = {}
    for split, ds, n, seed in (("train", data.train, clips, 0), ("eval", data.eval, len(data.eval), 1)):
        zs, state = encode_all(run, ds, n, seed)
        w = min(zs[1].shape[1], zs[0].shape[1] // stride)  # complete windows that have a level-1 latent
        z0 = rearrange(zs[0][:, : w * stride], "b (w s) d -> (b w) (s d)", s=stride)
        z1 = rearrange(zs[1][:, :w], "b w d -> (b w) d")
        y = rearrange(level_factors(state[..., cols], stride, w), "b w f -> (b w) f")
        parts[split] = (z0, z1, y)
    (a_tr, b_tr, y_tr), (a_te, b_te, y_te) = parts["train"], parts["eval"]
    report(f"level-0 latents of the window of {stride} (concatenated)", a_tr, y_tr, a_te, y_te)
    report("level-1 latent of the window", b_tr, y_tr, b_te, y_te)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--ceiling", action="store_true", help="readouts from the true ball states (no model)")
    p.add_argument("--positions", action="store_true", help="ball positions from raw frames (no model)")
    p.add_argument("--run", help="a trained depth-2 run (directory, checkpoint or MLflow run id)")
    p.add_argument("--stride", type=int, default=8, help="--ceiling: the window length")
    p.add_argument("--gravity", type=float, default=0.5, help="--ceiling: data.gravity (experiment=depth_ablation: 0.5)")
    p.add_argument("--clips", type=int, default=3000, help="--run: training clips encoded for fitting")
    a = p.parse_args()
    torch.set_num_threads(1)
    if not (a.ceiling or a.run or a.positions):
        p.error("give --ceiling, --positions or --run <run>")
    if a.positions:
        print("| target | training frames | ridge R² | MLP R² |\n|---|---:|---:|---:|")
        positions()
    if not (a.ceiling or a.run):
        return
    print("| input | training windows | ridge R² gravity x / y | MLP R² gravity x / y |\n|---|---:|---:|---:|")
    if a.ceiling:
        ceiling(a.stride, a.gravity)
    if a.run:
        from hjepa.checkpoint import CheckpointError
        from hjepa.tracking import StoreNotFoundError

        try:
            from_run(a.run, a.clips)
        except (CheckpointError, StoreNotFoundError, FileNotFoundError) as e:
            raise SystemExit(f"error: {e}") from None


if __name__ == "__main__":
    main()
