"""Whole-run and whole-sweep analyses: compute, draw, write PNGs (+ ``summary.json``), log to MLflow.

* :func:`analyze_run` — one trained run (MLflow run id, checkpoint file or run directory):
  spectra, energy histograms, landscapes (PCA and random directions), interpolation paths and
  the training curves read back from MLflow.
* :func:`compare_runs` — several analysed runs side by side (e.g. ``sigreg`` vs ``none``).
* :func:`sweep_report` — every run of a sweep (MLflow tag ``hjepa.sweep_id``): one figure per
  metric with a line per run, plus the runs' spectra.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from hjepa.metrics import collapse_report, eigenspectrum, singular_values

from . import mlflow_io, plots
from .energy import (Landscape, energy_landscape, energy_summary, forward_eval_batch, interpolation_energies,
                     pair_energies)

__all__ = ["RunAnalysis", "analyze_run", "compare_runs", "sweep_report", "tracking_uri_env", "training_loss_history",
           "DEFAULT_SWEEP_METRICS"]

log = logging.getLogger("analysis")
_RUN_ID = re.compile(r"^[0-9a-f]{32}$")
DEFAULT_SWEEP_METRICS = ("rankme", "energy_gap", "pred_error_norm", "probe_r2", "std_mean", "cosine_mean")
CURVE_METRICS = ("rankme", "energy_gap", "pred_error_norm", "probe_r2")


@contextlib.contextmanager
def tracking_uri_env(uri: str | None):
    """Temporarily point ``$MLFLOW_TRACKING_URI`` (read by ``hjepa.api``) at ``uri``."""
    if not uri:
        yield
        return
    old = os.environ.get("MLFLOW_TRACKING_URI")
    os.environ["MLFLOW_TRACKING_URI"] = uri
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("MLFLOW_TRACKING_URI", None)
        else:
            os.environ["MLFLOW_TRACKING_URI"] = old


@dataclass
class RunAnalysis:
    """What :func:`analyze_run` computed (all per level, index k)."""

    label: str
    run_id: str | None
    step: int
    out_dir: Path
    collapse: list[dict[str, float]]
    spectra: list[np.ndarray]  # covariance eigenvalues of the online latents
    target_spectra: list[np.ndarray]
    singular: list[np.ndarray]  # singular values of the uncentred online latents (RankMe's input)
    target_singular: list[np.ndarray]
    energies: list[dict[str, np.ndarray]]  # {"true", "shuffled"} (B, T_k - 1)
    energy_stats: list[dict[str, float]]
    landscapes: dict[str, list[Landscape]]  # by direction method
    interpolation: list[tuple[np.ndarray, np.ndarray]]
    geodesic_spearman: list[float] | None = None  # rooms runs: per level, averaged over fixed goals
    pngs: dict[str, Path] = field(default_factory=dict)
    logged: bool = False

    @property
    def rankme(self) -> list[float]:
        return [c["rankme"] for c in self.collapse]

    def summary(self) -> dict:
        return {"label": self.label, "run_id": self.run_id, "step": self.step,
                "geodesic_spearman": self.geodesic_spearman,
                "levels": [{**c, **e, **{f"landscape_{m}/{k}": v for m, ls in self.landscapes.items()
                                           for k, v in ls[i].summary().items()}}
                           for i, (c, e) in enumerate(zip(self.collapse, self.energy_stats))],
                "pngs": {k: str(v) for k, v in self.pngs.items()}}


def _finite(x):
    if isinstance(x, float) and not math.isfinite(x):
        return str(x)
    if isinstance(x, dict):
        return {k: _finite(v) for k, v in x.items()}
    if isinstance(x, list):
        return [_finite(v) for v in x]
    return x


def _resolve_run_id(ref: str | Path, loaded) -> str | None:
    if _RUN_ID.match(str(ref)):
        return str(ref)
    from hjepa.checkpoint import load_checkpoint

    try:
        return load_checkpoint(loaded.path).get("mlflow_run_id")
    except Exception:  # noqa: BLE001 — a missing id only disables the MLflow parts
        return None


def training_histories(run_id: str, tracking_uri: str | None = None,
                       metrics: Sequence[str] = CURVE_METRICS) -> dict[str, dict[int, tuple[list, list]]]:
    """``{metric: {level: (steps, values)}}`` from MLflow; ``probe_r2`` expands to one entry per factor."""
    info = mlflow_io.get_run(run_id, tracking_uri)
    out: dict[str, dict] = {}
    for name in metrics:
        if name == "probe_r2":
            factors = sorted({m.group(2)[len("probe_r2/"):] for key in info.metrics
                              if (m := mlflow_io._LEVEL_KEY.match(key)) and m.group(2).startswith("probe_r2/")})
            for f in factors:
                out[f"probe_r2/{f}"] = mlflow_io.level_metric_histories(info, f"probe_r2/{f}", tracking_uri)
        else:
            out[name] = mlflow_io.level_metric_histories(info, name, tracking_uri)
    return out


def training_loss_history(info: mlflow_io.RunInfo, tracking_uri: str | None = None
                          ) -> dict[str, tuple[list, list]]:
    """``{"total (with regulariser)": (steps, train/loss), "level k prediction": (steps, train/level{k}/pred_loss), …}``."""
    keys = {"total (with regulariser)": "train/loss"}
    keys.update({f"level {k} prediction": f"train/level{k}/pred_loss" for k in range(info.depth)})
    return {label: mlflow_io.metric_history(info.run_id, key, tracking_uri) for label, key in keys.items()
            if key in info.metrics}


def analyze_run(ref: str | Path, out_dir: str | Path, *, tracking_uri: str | None = None,
                num_clips: int | None = None, log_to_mlflow: bool = True, device: str = "cpu",
                resolution: int = 41, seed: int = 0, label: str | None = None) -> RunAnalysis:
    """Analyse one trained run and write its figures to ``out_dir``.

    ``ref``: an MLflow run id, a checkpoint file or a run directory (the MLflow parts — training
    curves and artifact upload — use the run id stored in the checkpoint). PNGs: ``spectra``,
    ``energy_hist``, ``landscape_pca``, ``landscape_random``, ``interpolation`` and, when the run
    is in MLflow, ``training_curves``; plus ``summary.json``. With ``log_to_mlflow`` they are
    uploaded as artifacts of the run under ``analysis/``.
    """
    from hjepa.api import load_run

    out_dir = Path(out_dir)
    with tracking_uri_env(tracking_uri):
        run = load_run(ref, device=device)
        out_dir.mkdir(parents=True, exist_ok=True)  # only once the run is found
        run_id = _resolve_run_id(ref, run)
        info = None
        if run_id is not None:
            try:
                info = mlflow_io.get_run(run_id, tracking_uri)
            except mlflow_io.MLflowLookupError as e:
                log.warning("%s: training curves and artifact upload skipped", e)
        reg = run.cfg.regularizer.per_level or run.cfg.regularizer.name
        if isinstance(reg, (list, tuple)) or not isinstance(reg, str):
            reg = "/".join(map(str, reg))
        if label is None:
            if info is None:
                label = f"{reg} · {Path(str(ref)).name}"
            else:
                label = f"{reg} ({run_id[:6]})" if info.name == reg else f"{reg} · {info.name} ({run_id[:6]})"
        batch, out = forward_eval_batch(run, num_clips)
        model = run.model
        collapse, tcollapse, spectra, tspectra, sv, tsv = [], [], [], [], [], []
        for k in range(model.depth):
            z = out.z[k].float().cpu().reshape(-1, out.z[k].shape[-1])
            zt = out.target[k].float().cpu().reshape(-1, out.target[k].shape[-1])
            collapse.append(collapse_report(z))
            tcollapse.append(collapse_report(zt))
            spectra.append(eigenspectrum(z).numpy())
            tspectra.append(eigenspectrum(zt).numpy())
            sv.append(singular_values(z).numpy())
            tsv.append(singular_values(zt).numpy())
        energies = pair_energies(model, out, seed)
        stats = energy_summary(energies)
        landscapes = {m: [energy_landscape(model, out, k, method=m, resolution=resolution, seed=seed)
                          for k in range(model.depth)] for m in ("pca", "random")}
        interp = []
        for k in range(model.depth):
            a, e = interpolation_energies(model, out, k, seed=seed)
            interp.append((a, e.numpy()))
        res = RunAnalysis(label, run_id, run.step, out_dir, collapse, spectra, tspectra, sv, tsv,
                          [{k: v.numpy() for k, v in e.items()} for e in energies], stats, landscapes, interp)
        head = f"{label} · step {run.step}"
        res.pngs["spectra"] = plots.save(plots.plot_spectra(
            {"online z": spectra, "target z̄": tspectra},
            {"online z": res.rankme, "target z̄": [c["rankme"] for c in tcollapse]},
            singular={"online z": sv, "target z̄": tsv},
            title=f"spectra of the latents — {head}"), out_dir / "spectra.png")
        res.pngs["energy_hist"] = plots.save(plots.plot_energy_histograms(
            res.energies, title=f"energy of true vs shuffled pairs — {head}"), out_dir / "energy_hist.png")
        for m, ls in landscapes.items():
            res.pngs[f"landscape_{m}"] = plots.save(plots.plot_landscapes(
                ls, title=f"energy landscape ({'principal' if m == 'pca' else 'random'} directions) — {head}"),
                out_dir / f"landscape_{m}.png")
        res.pngs["interpolation"] = plots.save(plots.plot_interpolation(
            interp, title=f"energy from compatible to incompatible target — {head}"), out_dir / "interpolation.png")
        if run.cfg.data.name == "rooms":
            _world_energy(res, run, head)
        if info is not None:
            hist = training_histories(run_id, tracking_uri)
            res.pngs["training_curves"] = plots.save(plots.plot_training_curves(
                hist, title=f"training loss and evaluation metrics — {head}",
                train_loss=training_loss_history(info, tracking_uri)), out_dir / "training_curves.png")
        (out_dir / "summary.json").write_text(json.dumps(_finite(res.summary()), indent=2))
        if log_to_mlflow and info is not None:
            mlflow_io.log_artifacts(run_id, out_dir, "analysis", tracking_uri)
            if res.geodesic_spearman is not None:
                mlflow_io.log_metrics(run_id, {f"analysis/level{k}/geodesic_spearman": v
                                               for k, v in enumerate(res.geodesic_spearman)}, run.step, tracking_uri)
            res.logged = True
    return res


def _world_energy(res: RunAnalysis, run, head: str) -> None:
    """Rooms runs: per-level Spearman of the goal energy with the geodesic distance (fixed goals) and
    ``world_energy.png`` (energy maps for the first and last fixed goal)."""
    from .world_energy import geodesic_spearman, plot_world_energy, rooms_env

    env = rooms_env(run.cfg.data)
    action_dim = run.model.levels[0].action_dim
    rhos, maps = geodesic_spearman(run.model, env, action_dim, spacing=0.05)
    res.geodesic_spearman = rhos
    shown = [maps[0], maps[-1]] if len(maps) > 1 else maps
    res.pngs["world_energy"] = plots.save(plot_world_energy(
        shown, env, title=f"energy to the goal's latent (mean ρ_geo over {len(maps)} goals: "
                          + ", ".join(f"L{k} {r:+.2f}" for k, r in enumerate(rhos)) + f") — {head}"),
        res.out_dir / "world_energy.png")


def compare_runs(analyses: Sequence[RunAnalysis], out_dir: str | Path) -> dict[str, Path]:
    """Spectra, energy histograms and principal-direction landscapes of several analysed runs
    side by side: ``compare_spectra.png``, ``compare_energy_hist.png``, ``compare_landscape.png``."""
    out_dir = Path(out_dir)
    labels = [a.label for a in analyses]
    paths = {"compare_spectra": plots.save(plots.plot_spectra(
        {lab: a.spectra for lab, a in zip(labels, analyses)}, {lab: a.rankme for lab, a in zip(labels, analyses)},
        singular={lab: a.singular for lab, a in zip(labels, analyses)},
        title="spectra of the online latents"), out_dir / "compare_spectra.png")}
    paths["compare_energy_hist"] = plots.save(plots.plot_energy_histograms(
        {lab: a.energies for lab, a in zip(labels, analyses)}, title="energy of true vs shuffled pairs"),
        out_dir / "compare_energy_hist.png")
    paths["compare_landscape"] = plots.save(plots.plot_landscapes(
        {lab: a.landscapes["pca"] for lab, a in zip(labels, analyses)},
        title="energy landscape (principal directions) around a true target"), out_dir / "compare_landscape.png")
    return paths


def sweep_report(sweep_id: str, out_dir: str | Path, *, tracking_uri: str | None = None,
                 metrics: Sequence[str] = DEFAULT_SWEEP_METRICS, spectra: bool = True, num_clips: int | None = None,
                 log_to_mlflow: bool = True, device: str = "cpu") -> dict[str, Path]:
    """Compare the runs of one sweep: ``sweep_<metric>.png`` for each metric (columns: levels over
    training + final values; one line per run, labelled by the overrides that vary in the sweep),
    ``sweep_spectra.png`` (eigenspectra from each run's last checkpoint) and ``sweep_summary.json``.
    With ``log_to_mlflow`` the figures are uploaded to every run of the sweep under ``sweep_report/``.
    """
    out_dir = Path(out_dir)
    runs = mlflow_io.runs_in_sweep(sweep_id, tracking_uri)
    out_dir.mkdir(parents=True, exist_ok=True)  # only once the sweep is found
    sweep_id = runs[0].sweep_id or sweep_id
    labels = mlflow_io.sweep_labels(runs)
    paths: dict[str, Path] = {}
    summary: dict = {"sweep_id": sweep_id, "runs": []}
    for r, lab in zip(runs, labels):
        summary["runs"].append({"run_id": r.run_id, "label": lab, "status": r.status, "depth": r.depth,
                                "final": {k: v for k, v in sorted(r.metrics.items()) if k.startswith("eval/")}})
    for metric in metrics:
        if metric == "probe_r2":
            factors = sorted({m.group(2)[len("probe_r2/"):] for r in runs for key in r.metrics
                              if (m := mlflow_io._LEVEL_KEY.match(key)) and m.group(2).startswith("probe_r2/")})
            if not factors:
                continue
            series = [{f: mlflow_io.level_metric_histories(r, f"probe_r2/{f}", tracking_uri) for f in factors}
                      for r in runs]
            rows = factors
        else:
            series = [{"": mlflow_io.level_metric_histories(r, metric, tracking_uri)} for r in runs]
            rows = [""]
            if not any(s[""] for s in series):
                continue
        fig = plots.plot_sweep_metric(metric, series, labels, title=f"{metric} — sweep {sweep_id}", row_names=rows)
        paths[f"sweep_{metric}"] = plots.save(fig, out_dir / f"sweep_{metric.replace('/', '_')}.png")
    if spectra:
        from hjepa.api import load_run

        sp, sv, rk, ok_labels = [], [], [], []
        with tracking_uri_env(tracking_uri):
            for r, lab in zip(runs, labels):
                try:
                    run = load_run(r.run_id, device=device)
                except Exception as e:  # noqa: BLE001 — a run without checkpoint is left out of this figure
                    log.warning("sweep spectra: run %s skipped (%s)", r.run_id, e)
                    continue
                _, out = forward_eval_batch(run, num_clips)
                zs = [z.float().cpu().reshape(-1, z.shape[-1]) for z in out.z]
                sp.append([eigenspectrum(z).numpy() for z in zs])
                sv.append([singular_values(z).numpy() for z in zs])
                rk.append([collapse_report(z)["rankme"] for z in zs])
                ok_labels.append(lab)
        if sp:
            paths["sweep_spectra"] = plots.save(plots.plot_sweep_spectra(
                sp, rk, ok_labels, title=f"spectra of the online latents — sweep {sweep_id}", singular=sv),
                out_dir / "sweep_spectra.png")
            for entry in summary["runs"]:
                if entry["label"] in ok_labels:
                    entry["rankme_checkpoint"] = rk[ok_labels.index(entry["label"])]
    summary["pngs"] = {k: str(v) for k, v in paths.items()}
    (out_dir / "sweep_summary.json").write_text(json.dumps(_finite(summary), indent=2))
    if log_to_mlflow:
        for r in runs:
            mlflow_io.log_artifacts(r.run_id, out_dir, "sweep_report", tracking_uri)
    return paths
