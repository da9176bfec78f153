"""Figures of a planning evaluation: success against distance (one line per planner) and a
filmstrip / GIF of a few episodes with the executed path and the planner's subgoals, drawn on the
world's map (``World.background``)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from .episodes import EpisodeResults
from .worlds import World, as_world

__all__ = ["plot_success", "plot_filmstrip", "write_gif", "RESULTS_FILE"]

RESULTS_FILE = "plan_results.json"


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_success(results: dict[str, dict], path: Path, title: str = "",
                 xlabel: str = "room-graph distance from start to goal (doorways to cross)") -> Path:
    """``results``: label → the ``by_distance`` dict of ``summarise``. One line per planner."""
    import textwrap

    plt = _plt()
    labels = {k: textwrap.fill(k, 70) for k in results}  # long labels wrap instead of squeezing the axes
    ncol = 1 if max(map(len, results), default=0) > 40 else 2
    rows = sum(v.count("\n") + 1 for v in labels.values()) // ncol + 1
    fig, ax = plt.subplots(figsize=(6.4, 4.2 + 0.16 * rows), constrained_layout=True)
    for label, by_d in sorted(results.items()):
        d = sorted(by_d, key=int)
        ax.plot([int(x) for x in d], [100 * by_d[x]["success"] for x in d], marker="o", label=labels[label])
    ax.set_xlabel(xlabel)
    ax.set_ylabel("success (%)")
    ax.set_ylim(-3, 103)
    ax.grid(alpha=0.3)
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=ncol, fontsize=7, frameon=False)  # off the lines
    ax.set_title(title or "planning success by distance", fontsize=10)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path




def _pick(res: EpisodeResults, n: int) -> list[int]:
    """One episode per distance, farthest first, up to ``n``."""
    out = []
    for d in sorted(np.unique(res.distance))[::-1]:
        out.append(int(np.flatnonzero(res.distance == d)[0]))
    return sorted(out[:n], key=lambda i: res.distance[i])


def _pick_failed(res: EpisodeResults, n: int) -> list[int]:
    """Up to ``n`` failed episodes, farthest distance first (in episode order within a distance)."""
    failed = np.flatnonzero(~res.success)
    return sorted(failed[np.argsort(-res.distance[failed], kind="stable")][:n].tolist(), key=lambda i: res.distance[i])


def _draw(ax, bg, extent, res: EpisodeResults, i: int, upto: int | None = None) -> None:
    ax.imshow(bg, extent=extent, origin="upper")
    p = res.paths[i][: (upto or len(res.paths[i])) + 1]
    ax.plot(p[:, 0], p[:, 1], "-", color="tab:blue", lw=1.4)
    ax.plot(*p[-1], "o", color="tab:red", ms=5)
    ax.plot(*res.paths[i][0], "s", color="tab:green", ms=6, label="start")
    ax.plot(*res.goals[i], "*", color="gold", mec="k", ms=12, label="goal")
    sg = res.subgoal_paths[i][: upto or None]
    sg = sg[~np.isnan(sg).any(1)]
    if len(sg):
        ax.plot(sg[:, 0], sg[:, 1], "x", color="tab:purple", ms=4, alpha=0.6, label="subgoals")
    ok = "success" if res.success[i] else "failed"
    ax.set_title(f"distance {int(res.distance[i])}: {ok} in {int(res.steps[i])} steps", fontsize=8)
    ax.set_xticks([]), ax.set_yticks([])


def plot_filmstrip(env: "World", res: EpisodeResults, path: Path, n: int = 4, label: str = "",
                   failed: bool = False) -> Path | None:
    """Whole episodes side by side: executed path (blue), start, goal, subgoals (purple crosses).
    One per distance; ``failed``: up to ``n`` failed episodes instead (None when none failed)."""
    plt = _plt()
    idx = _pick_failed(res, n) if failed else _pick(res, n)
    if not idx:
        path.unlink(missing_ok=True)  # a failures strip left by an earlier run in this folder
        return None
    bg, extent = as_world(env).background()
    fig, axes = plt.subplots(1, len(idx), figsize=(2.6 * len(idx), 2.9), constrained_layout=True, squeeze=False)
    for ax, i in zip(axes[0], idx):
        _draw(ax, bg, extent, res, i)
    axes[0][0].legend(loc="lower left", fontsize=6, framealpha=0.8)
    if label:
        fig.suptitle(label, fontsize=9)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write_gif(env: "World", res: EpisodeResults, path: Path, n: int = 4, every: int = 3, label: str = "") -> Path:
    """An animated GIF of the same episodes, one frame every ``every`` steps."""
    plt = _plt()
    from matplotlib.animation import FuncAnimation, PillowWriter

    idx = _pick(res, n)
    bg, extent = as_world(env).background()
    last = int(max(res.steps[i] for i in idx))
    fig, axes = plt.subplots(1, len(idx), figsize=(2.4 * len(idx), 2.7), squeeze=False)

    def frame(t):
        for ax, i in zip(axes[0], idx):
            ax.clear()
            _draw(ax, bg, extent, res, i, upto=max(1, min(t, int(res.steps[i]))))
        if label:
            fig.suptitle(f"{label} — step {t}", fontsize=9)

    anim = FuncAnimation(fig, frame, frames=list(range(0, last + every, every)))
    anim.save(path, writer=PillowWriter(fps=8))
    plt.close(fig)
    return path


def load_results(paths) -> dict[str, dict]:
    """label → by_distance from ``plan_results.json`` files."""
    out = {}
    for p in paths:
        r = json.loads(Path(p).read_text())
        out[r["label"]] = r["by_distance"]
    return out
