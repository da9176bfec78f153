"""Figures of the analysis, drawn with matplotlib's object API on the Agg canvas.

No function here touches pyplot's global state, so the module works headless (no display) and
inside notebooks alike: every ``plot_*`` returns a :class:`matplotlib.figure.Figure`, and
:func:`save` writes it as a PNG (a notebook can simply display the returned figure).
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import FuncFormatter, LogLocator, MaxNLocator, NullFormatter

__all__ = ["save", "plot_spectra", "plot_energy_histograms", "plot_landscapes", "plot_interpolation",
           "plot_training_curves", "plot_sweep_metric", "plot_sweep_spectra", "new_figure"]

COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22",
          "#17becf"]


def new_figure(nrows: int = 1, ncols: int = 1, panel: tuple[float, float] = (4.2, 3.4), squeeze: bool = False,
               **kw):
    fig = Figure(figsize=(panel[0] * ncols, panel[1] * nrows), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(nrows, ncols, squeeze=squeeze, **kw)
    return fig, axes


def suptitle(fig: Figure, text: str, chars_per_inch: float = 9.5) -> None:
    """A figure title wrapped to the figure's width (a long run label must not be clipped at the edges)."""
    import textwrap

    width = max(int(fig.get_figwidth() * chars_per_inch), 20)
    if len(text) <= width:
        fig.suptitle(text)
        return
    parts = text.split(" — ")  # "what — which run": the run on its own line(s)
    lines = [line for part in parts for line in textwrap.wrap(part, width, break_on_hyphens=False)]
    fig.suptitle("\n".join(lines) or text)


def _line_style(i: int) -> dict:
    """Series i of a comparison: the first wide and light, later ones thinner, dashed/dotted, drawn on
    top, so lines that coincide (e.g. online and target spectra) both stay visible."""
    if i == 0:
        return dict(ls="-", lw=3.2, alpha=0.55, marker="o", ms=3.5, zorder=2)
    return dict(ls=("--", ":", "-.")[(i - 1) % 3], lw=1.5, marker=("x", "+", "1")[(i - 1) % 3], ms=4.5,
                zorder=2 + i)


def save(fig: Figure, path: str | Path, dpi: int = 110) -> Path:
    """Write ``fig`` as a PNG (parent folders created) and return the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi, format="png")
    return path


def _normalised(spectrum) -> np.ndarray:
    s = np.asarray(spectrum, dtype=np.float64)
    total = s.sum()
    return s / total if total > 0 else s


def _same_as_earlier(series: Mapping[str, Sequence], label: str, k: int) -> str | None:
    """The first earlier label whose level-k values equal ``label``'s (e.g. the stop-gradient target
    of a SIGReg level is the online encoder itself), so the legend can say why only one line shows."""
    mine = np.asarray(series[label][k])
    for other, per_level in series.items():
        if other == label:
            return None
        if k < len(per_level) and np.asarray(per_level[k]).shape == mine.shape and np.allclose(per_level[k], mine):
            return other
    return None


def plot_spectra(spectra: Mapping[str, Sequence], rankmes: Mapping[str, Sequence[float]] | None = None,
                 title: str = "", singular: Mapping[str, Sequence] | None = None, floor: float = 1e-14) -> Figure:
    """Spectra of the embeddings, one column per level, one line per label (a run, or online vs
    target latents).

    Top row: eigenvalues ``λ_i`` of the embedding covariance on an absolute log scale (a collapsed
    model sits orders of magnitude below a healthy one, and dimensional collapse shows as a
    cliff). Bottom row (when ``singular`` is given): ``σ_i / Σσ`` of the uncentred embedding
    matrix — the distribution whose entropy is RankMe (written in the legend from ``rankmes``);
    the dashed line is the isotropic ``1/D``.
    """
    depth = max(len(v) for v in spectra.values())
    nrows = 2 if singular else 1
    fig, axes = new_figure(nrows, depth, panel=(4.4, 3.3))
    for k in range(depth):
        ax = axes[0, k]
        for i, (label, per_level) in enumerate(spectra.items()):
            if k >= len(per_level):
                continue
            s = np.asarray(per_level[k], dtype=np.float64)
            same = _same_as_earlier(spectra, label, k)
            top = s.max() if s.size else 1.0
            s = np.clip(s, max(top, 1e-300) * floor, None)
            lab = label
            if rankmes is not None and label in rankmes and k < len(rankmes[label]) and not singular:
                lab = f"{label} (RankMe {rankmes[label][k]:.1f})"
            if same:
                lab = f"{lab} (identical to {same})"
            ax.semilogy(np.arange(1, s.size + 1), s, color=COLORS[i % len(COLORS)], label=lab, **_line_style(i))
        ax.set_xlabel("index i")
        ax.set_ylabel("covariance eigenvalue λ_i  (log)")
        ax.set_title(f"level {k}: eigenspectrum", fontsize=10)
        ax.grid(True, which="both", alpha=0.25)
        ax.legend(fontsize=7, loc="best")
        if not singular:
            continue
        ax = axes[1, k]
        dim = 1
        for i, (label, per_level) in enumerate(singular.items()):
            if k >= len(per_level):
                continue
            p = np.clip(_normalised(per_level[k]), 1e-12, None)
            dim = max(dim, p.size)
            lab = label
            if rankmes is not None and label in rankmes and k < len(rankmes[label]):
                lab = f"{label}: RankMe {rankmes[label][k]:.1f}"
            same = _same_as_earlier(singular, label, k)
            if same:
                lab = f"{lab} (identical to {same})"
            ax.semilogy(np.arange(1, p.size + 1), p, color=COLORS[i % len(COLORS)], label=lab, **_line_style(i))
        ax.axhline(1.0 / dim, ls="--", color="0.5", lw=1, label=f"isotropic 1/{dim}")
        ax.set_xlabel("index i")
        ax.set_ylabel("σ_i / Σσ  (log)")
        ax.set_title(f"level {k}: normalised singular values (RankMe)", fontsize=10)
        ax.grid(True, which="both", alpha=0.25)
        ax.legend(fontsize=7, loc="best")
    suptitle(fig, title or "spectra of the latents")
    return fig


def plot_energy_histograms(energies: Mapping[str, Sequence[Mapping[str, np.ndarray]]] | Sequence[Mapping],
                           title: str = "", bins: int = 40) -> Figure:
    """Histograms of the energies of true vs shuffled pairs, one panel per level (and one row per
    run when ``energies`` maps run labels to per-level ``{"true", "shuffled"}`` dicts). Log-spaced
    bins: energies of a collapsed model sit orders of magnitude lower and overlap completely."""
    if not isinstance(energies, Mapping):
        energies = {"": energies}
    rows = list(energies.items())
    depth = max(len(v) for _, v in rows)
    fig, axes = new_figure(len(rows), depth)
    for r, (label, per_level) in enumerate(rows):
        for k in range(depth):
            ax = axes[r, k]
            if k >= len(per_level):
                ax.set_axis_off()
                continue
            t = np.asarray(per_level[k]["true"], dtype=np.float64).ravel()
            s = np.asarray(per_level[k]["shuffled"], dtype=np.float64).ravel()
            both = np.concatenate([t, s])
            pos = both[both > 0]
            lo = pos.min() if pos.size else 1e-12
            hi = max(both.max(), lo * 2)
            edges = np.geomspace(lo, hi, bins + 1)
            ax.hist(np.clip(t, lo, None), edges, alpha=0.6, color=COLORS[0], label=f"true  (mean {t.mean():.3g})")
            ax.hist(np.clip(s, lo, None), edges, alpha=0.6, color=COLORS[1], label=f"shuffled (mean {s.mean():.3g})")
            ax.set_xscale("log")
            # labelled ticks at 1, 2, 5 × 10^k (only 10^k over more than two decades), so a narrow range
            # (e.g. a collapsed run's energies) still has numbers and a wide one does not crowd
            span = edges[-1] / edges[0]
            if span > 10:
                ax.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0,) if span > 100 else (1.0, 2.0, 5.0)))
            else:  # under a decade: a few evenly spaced values
                ax.xaxis.set_major_locator(MaxNLocator(nbins=4))
            ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:.3g}"))
            ax.xaxis.set_minor_formatter(NullFormatter())
            ax.set_xlabel("energy D(ẑ, z̄)  (log)")
            ax.set_ylabel(f"{label}\npairs" if label and k == 0 else "pairs", fontsize=9)
            ratio = s.mean() / t.mean() if t.mean() > 0 else float("nan")
            ax.set_title(f"level {k}: mean shuffled / true = {ratio:.2f}", fontsize=10)
            ax.legend(fontsize=7)
    suptitle(fig, title or "energy of true vs shuffled pairs")
    return fig


def _relative(ls) -> tuple[np.ndarray, np.ndarray, float]:
    """Slice and incompatible-target energies divided by the true pair's energy."""
    e = np.asarray(ls.energy, dtype=np.float64)
    ref = max(float(ls.energy_target), 1e-12 * max(float(e.max()), 1e-300))
    return e / ref, np.asarray(ls.others_energy, dtype=np.float64) / ref, ref


def _draw_landscape(ax, ls, norm, levels: np.ndarray, prefix: str = ""):
    """One landscape (``prefix``: a line naming the run, when several are compared), coloured by ``E / E(true pair)`` on the shared log scale ``norm``;
    incompatible targets are drawn at their projection onto the slice but coloured by their
    energy in the full latent space (a dot brighter than the contour under it lies off the slice,
    at higher energy)."""
    e, oe, _ = _relative(ls)
    cs = ax.contourf(ls.a, ls.b, np.clip(e, norm.vmin, norm.vmax), levels=levels, norm=norm, cmap="viridis")
    ax.contour(ls.a, ls.b, e, levels=levels[::4], colors="w", linewidths=0.4, alpha=0.6, norm=norm)
    span = float(np.max(np.abs(ls.a)))
    if oe.size:
        xy = np.clip(np.asarray(ls.others_xy), -span, span)
        higher = oe > 1.0
        ax.scatter(xy[:, 0], xy[:, 1], s=16, c=np.clip(oe, norm.vmin, norm.vmax), cmap="viridis", norm=norm,
                   edgecolors=np.where(higher, "w", "#ff00ff").tolist(), linewidths=0.6, zorder=4,
                   label=f"incompatible targets, colour = their energy\n({higher.mean():.0%} above the true pair; "
                         "magenta edge: below)")
    px, py = np.clip(ls.pred_xy, -span, span)
    outside = bool(np.any(np.abs(ls.pred_xy) > span))
    ax.plot([0], [0], "*", color="r", ms=18, mec="k", zorder=3, label=f"true target (E = {ls.energy_target:.3g})")
    pred_label = "prediction ẑ (projected)"
    if outside:
        pred_label = f"prediction ẑ, off the plot at ({ls.pred_xy[0]:.3g}, {ls.pred_xy[1]:.3g})"
        ax.annotate(f"ẑ at ({ls.pred_xy[0]:.3g}, {ls.pred_xy[1]:.3g})", (px, py), xytext=(-0.45 * np.sign(px) * span,
                    -0.45 * np.sign(py) * span + 0.05 * span), fontsize=7, color="w", zorder=6,
                    arrowprops=dict(arrowstyle="->", color="w", lw=0.8))
    ax.plot([px], [py], "X", color="#ff7f0e", ms=9, mec="k", zorder=5, clip_on=False, label=pred_label)
    unit = "std of z̄" if ls.method == "pca" else "‖z̄‖"
    ax.set_xlabel(f"a  (units of {unit})")
    ax.set_ylabel(f"b  (units of {unit})")
    scale = ls.scales.get("scale_u", float("nan"))
    ax.set_title(f"{prefix}level {ls.level} ({ls.method}, |u| = {scale:.2g}), clip {ls.clip} step {ls.step}\n"
                 f"slice: E/E_true from {e.min():.4g} to {e.max():.4g}", fontsize=9)
    ax.legend(fontsize=6.5, loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=1, framealpha=0.8)
    return cs


def plot_landscapes(landscapes, title: str = "", levels: int = 24) -> Figure:
    """Contour plots of :class:`analysis.energy.Landscape` s, one panel per level: the true
    target (star) at the origin, the prediction ẑ (cross), incompatible targets (dots coloured by
    their own energy). Colours are ``E / E(true pair)`` on one log scale shared by every panel, so
    a landscape that cannot tell targets apart (collapse) reads as one flat colour next to a deep
    bowl. A mapping ``{label: [Landscape per level]}`` draws one row per label (e.g. runs)."""
    from matplotlib.colors import LogNorm

    rows = list(landscapes.items()) if isinstance(landscapes, Mapping) else [("", list(landscapes))]
    ncols = max(len(r) for _, r in rows)
    lo, hi = np.inf, 0.0
    for _, lss in rows:
        for ls in lss:
            e, oe, _ = _relative(ls)
            lo = min(lo, float(e.min()), 1.0)
            hi = max(hi, float(e.max()), float(np.quantile(oe, 0.95)) if oe.size else 0.0)
    lo = max(lo, 1e-6)
    hi = max(hi, lo * 2.0)  # at least a factor 2 of colour range: a flat landscape must look flat
    norm = LogNorm(vmin=lo, vmax=hi)
    bounds = np.geomspace(lo, hi, levels + 1)
    fig, axes = new_figure(len(rows), ncols, panel=(4.6, 4.9))
    cs = None
    for r, (label, lss) in enumerate(rows):
        for i in range(ncols):
            if i >= len(lss):
                axes[r, i].set_axis_off()
                continue
            cs = _draw_landscape(axes[r, i], lss[i], norm, bounds, prefix=f"{label}\n" if label else "")
    if cs is not None:
        fig.colorbar(cs, ax=axes.ravel().tolist(), shrink=0.6, label="E / E(true pair)   (log, shared)",
                     format="%.3g")
    suptitle(fig, title or "energy landscape around a true target")
    return fig


def plot_interpolation(paths: Sequence[tuple[np.ndarray, np.ndarray]], title: str = "") -> Figure:
    """Energy along ``(1−α)·compatible + α·incompatible`` target: median and 10–90 % band over
    pairs, one panel per level. ``paths[k] = (alphas (A,), energies (A, ...))``."""
    n = len(paths)
    fig, axes = new_figure(1, n)
    for k, (alphas, e) in enumerate(paths):
        ax = axes[0, k]
        e = np.asarray(e, dtype=np.float64).reshape(len(alphas), -1)
        q10, q50, q90 = np.quantile(e, [0.1, 0.5, 0.9], axis=1)
        ax.fill_between(alphas, q10, q90, color=COLORS[0], alpha=0.25, label="10–90 %")
        ax.plot(alphas, q50, color=COLORS[0], lw=2, label="median")
        ax.plot(alphas, e.mean(1), color=COLORS[1], lw=1, ls="--", label="mean")
        ax.set_xlabel("α   (0 = true target, 1 = incompatible target)")
        ax.set_ylabel("energy")
        ax.set_ylim(bottom=min(0.0, float(np.nanmin(q10))))  # energies are distances: zero in view
        ax.set_title(f"level {k}: E(α=1)/E(α=0) = {e[-1].mean() / max(e[0].mean(), 1e-30):.2f}")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=7)
    suptitle(fig, title or "energy along interpolation paths")
    return fig


def _eval_ylim(ax, name: str, values: Sequence[float], zero_line: bool = True) -> None:
    """Zero always in view (and 1 for a probe R²): a change is seen against the size of the metric,
    not blown up by auto-zoom to the range of three evaluation points."""
    vals = np.asarray([v for v in values if np.isfinite(v)], dtype=np.float64)
    if not vals.size:
        return
    lo, hi = min(float(vals.min()), 0.0), max(float(vals.max()), 0.0)
    if name.startswith("probe_r2"):
        hi = max(hi, 1.0)
    pad = 0.06 * ((hi - lo) or 1.0)
    ax.set_ylim(lo - pad, hi + pad)
    if zero_line:
        ax.axhline(0.0, color="0.55", lw=0.8, zorder=1)


def plot_training_curves(histories: Mapping[str, Mapping[int, tuple[Sequence[int], Sequence[float]]]],
                         title: str = "", train_loss: Mapping[str, tuple[Sequence[int], Sequence[float]]] | None = None
                         ) -> Figure:
    """Metrics over training steps: ``histories[metric][level] = (steps, values)`` (evaluations),
    one panel per metric, one line per level, zero in view. ``train_loss`` (label → ``(steps, values)``,
    e.g. ``total`` and each level's prediction loss at every logging step) fills the first panel,
    on a log scale when positive."""
    names = [m for m in histories if histories[m]]
    loss = {k: v for k, v in (train_loss or {}).items() if len(v[0])}
    panels = (["training loss"] if loss else []) + names
    ncols = min(max(len(panels), 1), 4)
    nrows = max(1, -(-len(panels) // ncols))
    fig, axes = new_figure(nrows, ncols)
    for ax in axes.flat[len(panels):]:
        ax.set_axis_off()
    offset = 0
    if loss:
        ax = axes.flat[0]
        allv = np.concatenate([np.asarray(v, dtype=np.float64) for _, v in loss.values()])
        for i, (label, (steps, vals)) in enumerate(loss.items()):
            ax.plot(steps, vals, color="k" if i == 0 else COLORS[(i - 1) % len(COLORS)], lw=1.8 if i == 0 else 1.1,
                    label=label)
        if np.all(allv[np.isfinite(allv)] > 0):
            ax.set_yscale("log")
        ax.set_xlim(left=0)
        ax.set_xlabel("training step")
        ax.set_title("training loss (every logging step)", fontsize=10)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
        offset = 1
    for i, name in enumerate(names):
        ax = axes.flat[i + offset]
        everything = []
        for k, (steps, vals) in sorted(histories[name].items()):
            ax.plot(steps, vals, "-o", ms=3, color=COLORS[k % len(COLORS)], label=f"level {k}")
            everything += list(vals)
        _eval_ylim(ax, name, everything)
        ax.set_xlim(left=0)  # the same step axis as the loss panel
        ax.set_xlabel("training step")
        ax.set_title(f"eval: {name}", fontsize=10)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=7)
    if not panels:
        axes[0, 0].text(0.5, 0.5, "no metrics logged", ha="center", va="center")
    suptitle(fig, title or "training loss and evaluation metrics over training")
    return fig


def plot_sweep_metric(metric: str, series: Sequence[Mapping], labels: Sequence[str], title: str = "",
                      row_names: Sequence[str] = ("",)) -> Figure:
    """One metric of every run of a sweep: rows = sub-metrics (e.g. probe factors), columns =
    levels (over training steps, one line per run) plus a last column with the final values.

    ``series[r][row][level] = (steps, values)`` for run ``r``.
    """
    depth = max((max(s[row].keys()) + 1 for s in series for row in s if s[row]), default=1)
    rows = list(row_names)
    fig, axes = new_figure(len(rows), depth + 1, panel=(4.0, 3.2))
    for ri, row in enumerate(rows):
        finals = np.full((len(series), depth), np.nan)
        for k in range(depth):
            ax = axes[ri, k]
            shown = []
            for r, s in enumerate(series):
                hist = s.get(row, {}).get(k)
                if hist is None or not len(hist[0]):
                    continue
                ax.plot(hist[0], hist[1], "-o", ms=2.5, color=COLORS[r % len(COLORS)], label=labels[r])
                finals[r, k] = hist[1][-1]
                shown += list(hist[1])
            _eval_ylim(ax, metric, shown, zero_line=False)  # ax.get_lines(): the runs only
            ax.set_title(f"{metric}{'/' + row if row else ''} · level {k}", fontsize=9)
            ax.set_xlabel("training step")
            ax.grid(True, alpha=0.3)
        ax = axes[ri, depth]
        width = 0.8 / max(len(series), 1)
        for r in range(len(series)):
            x = np.arange(depth) + (r - (len(series) - 1) / 2) * width
            ok = ~np.isnan(finals[r])
            ax.bar(x[ok], finals[r][ok], width, color=COLORS[r % len(COLORS)], label=labels[r])
        ax.set_xticks(np.arange(depth), [f"level {k}" for k in range(depth)])
        ax.set_title(f"final {metric}{'/' + row if row else ''}", fontsize=9)
        ax.grid(True, axis="y", alpha=0.3)
        ax.axhline(0.0, color="0.55", lw=0.8)
    # one legend for the whole figure, below the panels, so it covers no line and no bar
    handles = [Line2D([], [], color=COLORS[r % len(COLORS)], marker="o", ms=4, lw=1.5) for r in range(len(series))]
    fig.legend(handles, list(labels), loc="outside lower center", ncol=min(len(labels), 4), fontsize=8,
               title="runs (colours of lines and bars)", title_fontsize=8)
    suptitle(fig, title or metric)
    return fig


def plot_sweep_spectra(spectra: Sequence[Sequence], rankmes: Sequence[Sequence[float]], labels: Sequence[str],
                       title: str = "", singular: Sequence[Sequence] | None = None) -> Figure:
    """Spectra of every run of a sweep, one column per level, one line per run."""
    return plot_spectra({lab: sp for lab, sp in zip(labels, spectra)},
                        {lab: rk for lab, rk in zip(labels, rankmes)}, title=title,
                        singular={lab: sv for lab, sv in zip(labels, singular)} if singular is not None else None)
