"""Theory meets training: do trained hjepa levels keep the OU components the theory says they should?

The theory (:mod:`theory.multiscale`): level ``k`` steps every ``S_k`` frames, so its one-step
target lies ``S_k`` frames ahead; an OU component of time constant ``τ`` is predictable at that
horizon with ``R² = e^{−2S_k/τ}``, and the level should *keep* it iff ``τ ≥ S_k`` (default
threshold ``r2_min = e^{−2}``) and *drop* it otherwise.

The bridge trains real models through the library (``hjepa.compose`` → ``hjepa.train.Trainer``,
``data=ou``) and reads every level with the library's held-out ridge probe
(:func:`hjepa.evaluation.probe_r2`: fit on even, scored on odd eval episodes).

**Which frame a level-k latent is probed against.** Latent ``n`` of level ``k`` summarises the
window of frames ``[n S_k, (n+1) S_k)`` and is the level's state at its clock tick — the *last*
frame of the window, ``t_n = (n+1) S_k − 1``: the latest frame it has seen, and the frame its
prediction of the next tick is made from (the theory's "present"). So the factor is read at the
last frame of each window (``frame="last"``). Reading the window *mean* instead (what
``hjepa.evaluation`` logs as ``probe_r2``) low-passes the factor itself, so a fast component's
window mean is partly slow and the keep/drop prediction no longer applies cleanly.

Acceptance (issue #9, point 1), for one trained model with cumulative strides ``S_k``:

* keep: every component with ``τ ≥ 4 S_k`` has probe R² ≥ 0.8 at level ``k``;
* drop: every component with ``τ ≤ S_k / 4`` has probe R² ≤ 0.2 at every level ``k ≥ 1``;
* order: the measured R² is ordered as the theory's ``e^{−2S_k/τ}`` for every pair of
  (level, τ) cells that differ in one index: non-decreasing in ``τ`` along a level and
  non-increasing in ``k`` for a component, up to ``order_tol`` (probe noise on saturated cells).
"""

from __future__ import annotations

import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
from torch import Tensor

from . import multiscale as ms

__all__ = ["level_factors_at_clock", "probe_levels", "theory_prediction", "separation_checks",
           "train_and_probe", "BridgeResult", "run_bridge", "format_table", "plot_heatmaps",
           "SMALL_OVERRIDES", "CI_OVERRIDES", "PROBE_FRAMES", "small_checks"]

PROBE_FRAMES = ("last", "first", "mean")
# python -m theory's bridge (about 2 min on 2 cores) and the CI-sized one (under a minute)
SMALL_OVERRIDES = ("train.steps=400", "train.eval_every=400", "data.num_train_episodes=128",
                   "data.num_eval_episodes=32", "train.progress=false")
CI_OVERRIDES = ("train.steps=300", "train.eval_every=300", "data.num_train_episodes=64",
                "data.num_eval_episodes=32", "train.progress=false", "model.pred_dim=64", "model.pred_layers=1")


def level_factors_at_clock(state: Tensor, span: int, steps: int, frame: str = "last") -> Tensor:
    """Factors at a level's clock: ``state (B, T, F)`` → ``(B, steps, F)``.

    ``last``: frame ``(n+1)·span − 1`` of window ``n`` (the level's tick); ``first``: frame
    ``n·span``; ``mean``: the window mean (as :func:`hjepa.evaluation.level_factors`)."""
    if frame == "mean":
        from hjepa.evaluation import level_factors

        return level_factors(state, span, steps)
    if frame not in PROBE_FRAMES:
        raise ValueError(f"unknown probe frame {frame!r}; choose one of {', '.join(PROBE_FRAMES)}")
    idx = torch.arange(steps) * span + (span - 1 if frame == "last" else 0)
    return state[:, idx]


@torch.no_grad()
def probe_levels(model, batch: dict[str, Tensor], frame: str = "last", probe_l2: float | None = None) -> np.ndarray:
    """Held-out probe R² of every factor from every level: ``(levels, F)``."""
    from hjepa.evaluation import probe_r2

    was = model.training
    model.eval()
    dev = next(model.parameters()).device
    out = model(batch["obs"].to(dev), batch["actions"].to(dev))
    model.train(was)
    rows = []
    for k, z in enumerate(out.z):
        z = z.float().cpu()
        y = level_factors_at_clock(batch["state"].float(), model.spans[k], z.shape[1], frame)
        rows.append(probe_r2(z, y, batch["episode"], probe_l2).numpy())
    return np.stack(rows)


def theory_prediction(taus: Sequence[float], strides: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    """``(keep (levels, K) bool, predictable fraction e^{−2S_k/τ} (levels, K))`` for per-level
    strides ``[1, s_1, …]``."""
    spans = ms.cumulative_strides(list(strides))
    frac = np.stack([ms.ou_predictable_fraction(np.asarray(taus, float), s) for s in spans])
    return ms.optimal_level_components(np.asarray(taus, float), list(strides)), frac


@dataclass
class Check:
    claim: str
    expected: str
    measured: str
    passed: bool


def separation_checks(r2: np.ndarray, taus: Sequence[float], spans: Sequence[int], keep_r2: float = 0.8,
                      drop_r2: float = 0.2, order_tol: float = 0.05, label: str = "") -> list[Check]:
    """The issue's three acceptance checks on one model's ``r2 (levels, K)``."""
    taus = np.asarray(taus, float)
    keep_cells = [(k, i) for k, s in enumerate(spans) for i, t in enumerate(taus) if t >= 4 * s]
    drop_cells = [(k, i) for k, s in enumerate(spans) for i, t in enumerate(taus) if k >= 1 and t <= s / 4]
    name = lambda k, i: f"L{k}/τ={taus[i]:g}"  # noqa: E731
    out = []
    worst_keep = min(keep_cells, key=lambda c: r2[c]) if keep_cells else None
    out.append(Check(f"{label}keep: τ ≥ 4S_k decoded at level k ({len(keep_cells)} cells)", f"R² ≥ {keep_r2}",
                     f"min {r2[worst_keep]:.3f} ({name(*worst_keep)})" if worst_keep else "no cells",
                     all(r2[c] >= keep_r2 for c in keep_cells)))
    worst_drop = max(drop_cells, key=lambda c: r2[c]) if drop_cells else None
    out.append(Check(f"{label}drop: τ ≤ S_k/4 not decoded at levels k ≥ 1 ({len(drop_cells)} cells)",
                     f"R² ≤ {drop_r2}",
                     f"max {r2[worst_drop]:.3f} ({name(*worst_drop)})" if worst_drop else "no cells",
                     all(r2[c] <= drop_r2 for c in drop_cells)))
    bad = []
    for k in range(r2.shape[0]):
        for i in range(r2.shape[1]):
            if i + 1 < r2.shape[1] and r2[k, i] > r2[k, i + 1] + order_tol:
                bad.append(f"{name(k, i)}>{name(k, i + 1)}")
            if k + 1 < r2.shape[0] and r2[k + 1, i] > r2[k, i] + order_tol:
                bad.append(f"{name(k + 1, i)}>{name(k, i)}")
    out.append(Check(f"{label}order: R² ordered as e^(-2S/τ) (neighbours, tol {order_tol})", "0 violations",
                     f"{len(bad)} violations" + (f": {', '.join(bad[:4])}" if bad else ""), not bad))
    return out


def small_checks(r2: np.ndarray, taus: Sequence[float], spans: Sequence[int], label: str = "",
                 keep_r2: float = 0.8, gap: float = 0.3) -> list[Check]:
    """Weaker checks for a short (CI-sized) run: level 0 keeps every ``τ ≥ 4``; the top level reads
    the slowest component at least ``gap`` better than the fastest; and it reads the fastest at
    least ``gap`` worse than level 0 does (the top level has started to drop it)."""
    taus = np.asarray(taus, float)
    lo, hi, top = int(np.argmin(taus)), int(np.argmax(taus)), r2.shape[0] - 1
    keep0 = [i for i, t in enumerate(taus) if t >= 4 * spans[0]]
    m0 = min(r2[0, i] for i in keep0)
    return [
        Check(f"{label}level 0 keeps τ ≥ 4", f"R² ≥ {keep_r2}", f"min {m0:.3f}", m0 >= keep_r2),
        Check(f"{label}top level L{top}: slowest τ={taus[hi]:g} above fastest τ={taus[lo]:g}",
              f"gap ≥ {gap}", f"{r2[top, hi]:.3f} − {r2[top, lo]:.3f} = {r2[top, hi] - r2[top, lo]:.3f}",
              r2[top, hi] - r2[top, lo] >= gap),
        Check(f"{label}fastest τ={taus[lo]:g} dropped from L0 to L{top}", f"drop ≥ {gap}",
              f"{r2[0, lo]:.3f} → {r2[top, lo]:.3f}", r2[0, lo] - r2[top, lo] >= gap),
    ]


def train_and_probe(overrides: Sequence[str] = (), frame: str = "last", out_dir: str | Path = "outputs/bridge",
                    num_clips: int = 512) -> dict:
    """Train one model with ``experiment=timescales`` plus ``overrides`` through the library and
    probe it. Returns ``{"r2": (levels, K), "taus", "strides", "spans", "metrics", "overrides"}``."""
    import hjepa
    from hjepa.config import level_strides
    from hjepa.train import Trainer

    cfg = hjepa.compose(["experiment=timescales", *overrides], out_dir=str(out_dir))
    trainer = Trainer(cfg)
    try:
        metrics = trainer.run()
    finally:
        trainer.summary()
    batch = trainer.data.eval_batch(num_clips)
    r2 = probe_levels(trainer.model, batch, frame, cfg.eval.probe_l2)
    strides = level_strides(cfg.model)
    return {"r2": r2, "taus": [float(t) for t in cfg.data.taus], "strides": strides,
            "spans": ms.cumulative_strides(strides), "metrics": metrics, "overrides": list(overrides)}


@dataclass
class BridgeResult:
    """Per depth: measured probe R² ``(levels, K)``, the theory's keep mask and predictable fraction."""

    taus: list[float]
    runs: dict[int, dict] = field(default_factory=dict)
    checks: list[Check] = field(default_factory=list)

    def theory(self, depth: int) -> tuple[np.ndarray, np.ndarray]:
        return theory_prediction(self.taus, self.runs[depth]["strides"])


def fresh_dir(base: str | Path) -> Path:
    """``base/<date>_<time>[_n]``: a new folder for one invocation's training runs, so running a
    command again starts new runs instead of stopping at the earlier run's checkpoints."""
    stamp = time.strftime("%Y-%m-%d_%H-%M-%S")
    path, n = Path(base) / stamp, 1
    while path.exists():
        path, n = Path(base) / f"{stamp}_{n}", n + 1
    return path


def run_bridge(depths: Sequence[int] = (1, 2, 3), overrides: Sequence[str] = (), frame: str = "last",
               out_dir: str | Path = "outputs/bridge", check_depth: int | None = None,
               checks: Callable[..., list[Check]] | None = None) -> BridgeResult:
    """Train every depth (same data, seed and budget), probe each level and check the deepest
    (or ``check_depth``) model against the theory with ``checks`` (default
    :func:`separation_checks`)."""
    runs = {}
    for d in depths:
        runs[d] = train_and_probe([f"model.depth={d}", *overrides], frame, Path(out_dir) / f"depth{d}")
    res = BridgeResult(runs[depths[0]]["taus"], runs)
    d = check_depth if check_depth is not None else max(depths)
    res.checks = (checks or separation_checks)(runs[d]["r2"], res.taus, runs[d]["spans"], label=f"depth {d} ")
    return res


def format_table(res: BridgeResult) -> str:
    """Markdown: one row per (depth, level), per τ ``measured R² / theory e^{−2S/τ} (keep|drop)``."""
    head = "| depth | level | S_k | " + " | ".join(f"τ={t:g}" for t in res.taus) + " |"
    lines = [head, "|" + "---:|" * (3 + len(res.taus))]
    for d, run in sorted(res.runs.items()):
        keep, frac = res.theory(d)
        for k, s in enumerate(run["spans"]):
            cells = [f"{run['r2'][k, i]:.2f} / {frac[k, i]:.2f} {'keep' if keep[k, i] else 'drop'}"
                     for i in range(len(res.taus))]
            lines.append(f"| {d} | {k} | {s} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot_heatmaps(res: BridgeResult, path: str | Path) -> Path:
    """Level × τ heat maps, theory (``e^{−2S_k/τ}``, keep cells outlined) beside the measured probe
    R², one row per depth. Returns the written path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    depths = sorted(res.runs)
    fig, axes = plt.subplots(len(depths), 2, figsize=(10, 1.4 + 1.0 * sum(len(res.runs[d]["spans"]) for d in depths)),
                             squeeze=False, layout="constrained",
                             gridspec_kw={"height_ratios": [len(res.runs[d]["spans"]) for d in depths]})
    for row, d in enumerate(depths):
        keep, frac = res.theory(d)
        spans = res.runs[d]["spans"]
        for col, (mat, title) in enumerate(((frac, "theory e^(-2S/τ)"), (res.runs[d]["r2"], "measured probe R²"))):
            ax = axes[row, col]
            im = ax.imshow(np.clip(mat, 0, 1), vmin=0, vmax=1, cmap="viridis", aspect="auto")
            for k in range(mat.shape[0]):
                for i in range(mat.shape[1]):
                    ax.text(i, k, f"{mat[k, i]:.2f}", ha="center", va="center", fontsize=8,
                            color="white" if mat[k, i] < 0.5 else "black")
                    if keep[k, i]:
                        ax.add_patch(matplotlib.patches.Rectangle((i - 0.5, k - 0.5), 1, 1, fill=False,
                                                                  edgecolor="red", linewidth=1.5))
            ax.set_xticks(range(len(res.taus)), [f"{t:g}" for t in res.taus])
            ax.set_yticks(range(len(spans)), [f"L{k} (S={s})" for k, s in enumerate(spans)] if col == 0 else [])
            ax.set_title(f"depth {d}: {title}", fontsize=9)
            ax.set_xlabel("τ")
    fig.colorbar(im, ax=axes, shrink=0.8, label="R² (red outline: the theory keeps it)")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path



def probe_run(ref: str | Path, frame: str = "last", num_clips: int = 512) -> dict:
    """Probe an already trained ``data=ou`` run (checkpoint path, run directory or MLflow run id)
    the same way :func:`train_and_probe` does."""
    import hjepa
    from hjepa.config import level_strides

    run = hjepa.load_run(ref)
    batch = run.data().eval_batch(num_clips)
    r2 = probe_levels(run.model, batch, frame, run.cfg.eval.probe_l2)
    strides = level_strides(run.cfg.model)
    return {"r2": r2, "taus": [float(t) for t in run.cfg.data.taus], "strides": strides,
            "spans": ms.cumulative_strides(strides), "metrics": {}, "overrides": []}


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m theory.bridge [--depths 1 2 3] [--frame last] [--out DIR] [--small] [override ...]``
    or ``--probe REF [REF ...]`` for trained runs (checked at their own depth)."""
    import argparse

    p = argparse.ArgumentParser(prog="python -m theory.bridge", description=main.__doc__)
    p.add_argument("overrides", nargs="*", help="Hydra overrides on top of experiment=timescales")
    p.add_argument("--depths", type=int, nargs="+", default=[1, 2, 3])
    p.add_argument("--frame", choices=PROBE_FRAMES, default="last")
    p.add_argument("--out", default="outputs/bridge")
    p.add_argument("--small", action="store_true", help="python -m theory's small run (" + " ".join(SMALL_OVERRIDES) + ")")
    p.add_argument("--probe", nargs="+", metavar="REF", help="probe trained runs instead of training")
    argv = list(sys.argv[1:] if argv is None else argv)
    # Hydra overrides (key=value) may follow --depths/--probe, whose lists would swallow them: set them apart
    extra = [x for x in argv if "=" in x and not x.startswith("-")]
    a = p.parse_args([x for x in argv if x not in extra])
    a.overrides = [*a.overrides, *extra]
    if a.probe:
        runs = {}
        for ref in a.probe:
            run = probe_run(ref, a.frame)
            runs[len(run["spans"])] = run
        res = BridgeResult(next(iter(runs.values()))["taus"], runs)
        d = max(runs)
        res.checks = separation_checks(runs[d]["r2"], res.taus, runs[d]["spans"], label=f"depth {d} ")
    else:
        over = [*(SMALL_OVERRIDES if a.small else ()), *a.overrides]
        runs_dir = fresh_dir(Path(a.out) / "runs")
        print(f"training runs in {runs_dir}")
        res = run_bridge(a.depths, over, a.frame, runs_dir)
    print(f"\nprobe R² read at the {a.frame} frame of each window: measured / theory e^(-2S/τ) keep|drop")
    print(format_table(res))
    for c in res.checks:
        print(f"{'PASS' if c.passed else 'FAIL'}  {c.claim}: expected {c.expected}, measured {c.measured}")
    print(f"figure: {plot_heatmaps(res, Path(a.out) / 'timescales_heatmap.png')}")
    return 0 if all(c.passed for c in res.checks) else 1


def user_errors() -> tuple[type[BaseException], ...]:
    """Errors that are the user's to fix (bad override, data, checkpoint; a stopped run): reported
    in one line, without a traceback."""
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    from hjepa.checkpoint import CheckpointError
    from hjepa.config import ConfigError
    from hjepa.data import DataValidationError
    from hjepa.train import TrainingError

    return ConfigError, DataValidationError, CheckpointError, TrainingError, HydraException, OmegaConfBaseException


def cli(entry: Callable[[], int], prog: str) -> int:
    """Run ``entry`` and turn a user error into ``prog: error: …`` and exit status 2."""
    try:
        return entry()
    except user_errors() as e:
        print(f"{prog}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(cli(main, "python -m theory.bridge"))
