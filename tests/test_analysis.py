"""Energy tools, figures, MLflow read-back, ``hjepa-analyze`` and the sweep report, on tiny trained runs.

One module-scoped store holds three tiny runs: a real Hydra multirun sweep ``model.depth=1,2``
with SIGReg (through the ``hjepa-train -m`` CLI, so the sweep tags are the trainer's own) and a
``regularizer=none`` run of the same config as the depth-2 job, trained in-process.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch

from analysis import mlflow_io, plots
from analysis.energy import (energy_landscape, energy_summary, interpolation_energies, landscape_directions,
                             pair_energies)
from analysis.report import analyze_run, compare_runs, sweep_report
from hjepa.analyze import main as analyze_main
from hjepa.api import compose, load_run
from hjepa.train import Trainer

# the repository's tiny end-to-end config (tests/conftest.py), evaluated every 4 of 20 steps; after
# 20 steps a none run has lost over half its RankMe (~0.35-0.45 of the first value) and a SIGReg
# run has not (>= ~0.7), so an alarm ratio of 0.55 separates them with margin on both sides
TINY = ["data.num_train_episodes=24", "data.num_eval_episodes=8", "data.episode_len=32", "data.clip_len=16",
        "data.batch_size=8", "eval.num_clips=16", "model.latent_dim=32", "model.pred_dim=64",
        "model.encoder_width=16", "train.progress=false", "optim.warmup_steps=5", "train.steps=20",
        "train.eval_every=4", "train.log_every=4", "train.collapse_alarm_ratio=0.55"]


@dataclass
class Store:
    root: Path
    uri: str
    sweep_id: str
    sweep_runs: list  # RunInfo, job order (depth 1, depth 2)
    none_run: str
    none_warnings: list[str]

    @property
    def sigreg_run(self) -> str:
        return self.sweep_runs[1].run_id  # depth 2, the same config as the none run


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    root = tmp_path_factory.mktemp("analysis_store")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MLFLOW_TRACKING_URI", uri)
        mp.setenv("HJEPA_CACHE", str(root / "cache"))
        mp.setenv("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
        mp.chdir(root)
        proc = subprocess.run([sys.executable, "-m", "hjepa.train", "-m", "model.depth=1,2", *TINY], cwd=root,
                              env=dict(os.environ), capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, proc.stderr[-3000:]
        sweep_id = mlflow_io.latest_sweep_id(uri)
        runs = mlflow_io.runs_in_sweep(sweep_id, uri)
        cfg = compose([*TINY, "regularizer=none"], out_dir=str(root / "none"))
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            trainer = Trainer(cfg)
            trainer.run()
        yield Store(root, uri, sweep_id, runs, trainer.tracker.run_id, [str(w.message) for w in caught])


def _history(store, run_id, key):
    return mlflow_io.metric_history(run_id, key, store.uri)[1]


# --------------------------------------------------------------------------- the trainer's collapse alarm
def test_collapse_alarm_fires_for_none_and_not_for_sigreg(store):
    none_alarm = _history(store, store.none_run, "eval/level0/collapse_alarm")
    assert none_alarm[0] == 0.0 and none_alarm[-1] == 1.0  # RankMe fell below 0.55 x its first value
    rk = _history(store, store.none_run, "eval/level0/rankme")
    assert rk[-1] < 0.55 * rk[0]
    assert any("representation collapse" in w for w in store.none_warnings)
    assert "hjepa.collapse_alarm" in mlflow_io.get_run(store.none_run, store.uri).tags
    for k in (0, 1):  # the same config with SIGReg keeps its rank
        assert max(_history(store, store.sigreg_run, f"eval/level{k}/collapse_alarm")) == 0.0
    assert "hjepa.collapse_alarm" not in mlflow_io.get_run(store.sigreg_run, store.uri).tags


# --------------------------------------------------------------------------- MLflow read-back
def test_sweep_runs_found_by_tag_with_labels(store):
    assert store.sweep_id.startswith("multirun/")
    assert [r.depth for r in store.sweep_runs] == [1, 2]
    assert mlflow_io.sweep_labels(store.sweep_runs) == ["model.depth=1", "model.depth=2"]
    suffix = store.sweep_id.split("/", 1)[1]
    assert [r.run_id for r in mlflow_io.runs_in_sweep(suffix, store.uri)] == [r.run_id for r in store.sweep_runs]
    with pytest.raises(mlflow_io.MLflowLookupError, match="no runs tagged"):
        mlflow_io.runs_in_sweep("multirun/1999-01-01/00-00-00", store.uri)
    steps, vals = mlflow_io.metric_history(store.sigreg_run, "eval/level1/rankme", store.uri)
    assert steps == [4, 8, 12, 16, 20] and all(v > 1 for v in vals)
    hist = mlflow_io.level_metric_histories(store.sweep_runs[1], "energy_gap", store.uri)
    assert sorted(hist) == [0, 1]


# --------------------------------------------------------------------------- energy tools
@pytest.fixture(scope="module")
def sigreg_forward(store):
    run = load_run(store.sigreg_run)
    batch = run.data().eval_batch(16)
    return run, batch, run.forward(batch)


def test_energy_tools_go_through_model_distance_and_agree(sigreg_forward):
    run, batch, out = sigreg_forward
    model = run.model
    calls = []
    original = model.distance

    def spy(pred, target):
        calls.append(tuple(target.shape))
        return original(pred, target)

    model.distance = spy
    try:
        energies = pair_energies(model, out)
        alphas, path = interpolation_energies(model, out, 0)
        ls = energy_landscape(model, out, 0, clip=2, step=3, resolution=21)
    finally:
        del model.distance
    assert len(calls) >= 2 + len(alphas) + 3
    ref = run.energies(batch)  # LoadedRun's own true/shuffled energies: the same pairs
    for k in range(model.depth):
        assert torch.allclose(energies[k]["true"], ref[k]["true"], atol=1e-6)
        assert torch.allclose(energies[k]["shuffled"], ref[k]["shuffled"], atol=1e-6)
    assert path.shape == (len(alphas), 16, out.z[0].shape[1] - 1)
    assert torch.allclose(path[0], energies[0]["true"], atol=1e-5)  # α=0: the compatible target
    assert torch.allclose(path[-1], energies[0]["shuffled"], atol=1e-5)  # α=1: the incompatible one
    # the landscape's centre is the true pair, its grid holds the slice energies
    assert ls.energy.shape == (21, 21)
    assert ls.energy_target == pytest.approx(float(energies[0]["true"][2, 3]), rel=1e-5)
    c = ls.energy.shape[0] // 2
    assert ls.energy[c, c] == pytest.approx(ls.energy_target, rel=1e-4)
    others = torch.cat([out.target[0][:2, 4], out.target[0][3:, 4]])
    assert np.allclose(ls.others_energy, model.distance(out.pred[0][2, 3].expand_as(others), others).numpy(),
                       rtol=1e-5)
    assert energy_summary(energies)[0]["energy_gap"] == pytest.approx(
        float(energies[0]["shuffled"].mean() - energies[0]["true"].mean()), rel=1e-4)


def test_l2_landscape_minimum_is_the_projected_prediction(sigreg_forward):
    """For the l2 energy the slice is a paraboloid whose minimum is the prediction's projection."""
    run, _, out = sigreg_forward
    for k in range(run.model.depth):
        first = energy_landscape(run.model, out, k, resolution=11)
        span = 1.2 * max(float(np.abs(first.pred_xy).max()), 1.0)  # a grid that holds the prediction
        ls = energy_landscape(run.model, out, k, resolution=61, span=span)
        step = ls.a[1] - ls.a[0]
        assert np.allclose(ls.pred_xy, first.pred_xy)
        assert np.all(np.abs(ls.grid_min_xy - ls.pred_xy) <= step / 2 + 1e-9)
        assert ls.energy.min() <= ls.energy_target + 1e-7
        # on a grid symmetric about the target, mean(E) = E_target + mean ‖a·u + b·v‖² / D for l2
        assert ls.energy_target < ls.energy.mean()


def test_landscape_directions():
    g = torch.Generator().manual_seed(0)
    scales = torch.tensor([3.0, 1.5, 0.2, 0.1])
    x = torch.randn(5000, 4, generator=g) * scales
    u, v, s = landscape_directions(x, "pca")
    assert float(u.norm()) == pytest.approx(3.0, rel=0.05) and float(v.norm()) == pytest.approx(1.5, rel=0.05)
    assert abs(float(u @ v)) < 1e-8
    assert abs(float(u[0])) == pytest.approx(float(u.norm()), rel=1e-2)  # the first axis
    ref = torch.tensor([3.0, 4.0, 0.0, 0.0])
    u, v, s = landscape_directions(x, "random", ref=ref, seed=3)
    assert float(u.norm()) == pytest.approx(5.0) and float(v.norm()) == pytest.approx(5.0)
    assert abs(float(u @ v)) < 1e-8
    u, v, _ = landscape_directions(torch.ones(50, 4), "pca")  # a collapsed cloud still gives a slice
    assert torch.isfinite(u).all() and torch.isfinite(v).all() and float(u.norm()) > 0 and float(v.norm()) > 0
    with pytest.raises(ValueError, match="pca"):
        landscape_directions(x, "bogus")


# --------------------------------------------------------------------------- hjepa-analyze and figures
def _png(path: Path, min_bytes: int = 15_000) -> None:
    assert path.is_file(), path
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(data) > min_bytes, (path, len(data))


def test_hjepa_analyze_cli_writes_pngs_and_logs_artifacts(store, capsys):
    out = store.root / "ana_cli"
    assert analyze_main([f"run={store.sigreg_run}", f"out={out}", "--resolution", "25"]) == 0
    names = ["spectra", "energy_hist", "landscape_pca", "landscape_random", "interpolation", "training_curves",
             "world_energy"]
    for n in names:
        _png(out / f"{n}.png")
    summary = json.loads((out / "summary.json").read_text())
    assert summary["run_id"] == store.sigreg_run and len(summary["levels"]) == 2
    assert summary["levels"][0]["rankme"] > 10
    artifacts = {a.path for a in mlflow_io.client(store.uri).list_artifacts(store.sigreg_run, "analysis")}
    assert {f"analysis/{n}.png" for n in names} | {"analysis/summary.json"} <= artifacts
    rho = summary["geodesic_spearman"]
    assert len(rho) == 2 and all(-1 <= r <= 1 for r in rho)
    logged = mlflow_io.get_run(store.sigreg_run, store.uri).metrics
    assert [logged[f"analysis/level{k}/geodesic_spearman"] for k in range(2)] == pytest.approx(rho)
    printed = capsys.readouterr().out
    assert "RankMe" in printed and "geodesic distance (Spearman" in printed
    # errors are one clear line and a non-zero exit
    assert analyze_main(["run=0123456789abcdef0123456789abcdef", f"out={out}"]) == 1
    assert "error" in capsys.readouterr().err
    assert analyze_main([]) == 2


def test_sigreg_vs_none_collapse_is_visible(store):
    out = store.root / "ana_cmp"
    res = [analyze_run(r, out / name, resolution=21, log_to_mlflow=False)
           for name, r in (("sigreg", store.sigreg_run), ("none", store.none_run))]
    sig, none = res
    for k in range(2):
        assert sig.rankme[k] > 5 * none.rankme[k]  # ~21 / 16 vs ~2.7 / 2.0 after 20 steps
        assert none.spectra[k].sum() < 0.05 * sig.spectra[k].sum()  # total variance: orders of magnitude lower
        top_sig = sig.singular[k][0] / sig.singular[k].sum()
        top_none = none.singular[k][0] / none.singular[k].sum()
        # one direction (the common offset) carries the none embeddings (~0.85 vs ~0.2 of Σσ)
        assert top_none > 0.6 and top_none > 2.5 * top_sig
        assert none.collapse[k]["cosine_mean"] > 0.9 > 0.5 > sig.collapse[k]["cosine_mean"]
        assert none.collapse[k]["std_mean"] < 0.25 * sig.collapse[k]["std_mean"]
        assert none.energy_stats[k]["auc"] == pytest.approx(0.5, abs=0.1)  # energy cannot tell pairs apart
    paths = compare_runs(res, out)
    for p in paths.values():
        _png(p)
    # the checkpoint-path route works as well (run id read from the checkpoint)
    ck_res = analyze_run(store.root / "none", out / "by_path", resolution=11, log_to_mlflow=False)
    assert ck_res.run_id == store.none_run and "training_curves" in ck_res.pngs


def test_sweep_report_one_command_shows_every_depth(store, capsys):
    out = store.root / "sweep"
    assert analyze_main([f"sweep={store.sweep_id}", f"out={out}"]) == 0
    for name in ("rankme", "energy_gap", "pred_error_norm", "probe_r2"):
        _png(out / f"sweep_{name}.png")
    _png(out / "sweep_spectra.png")
    summary = json.loads((out / "sweep_summary.json").read_text())
    assert [r["label"] for r in summary["runs"]] == ["model.depth=1", "model.depth=2"]
    assert [len(r["rankme_checkpoint"]) for r in summary["runs"]] == [1, 2]
    for r in store.sweep_runs:
        arts = {a.path for a in mlflow_io.client(store.uri).list_artifacts(r.run_id, "sweep_report")}
        assert "sweep_report/sweep_rankme.png" in arts
    # the figure itself: one line per depth in the level-0 panel, the depth-2 run alone at level 1
    series = [{"": mlflow_io.level_metric_histories(r, "rankme", store.uri)} for r in store.sweep_runs]
    fig = plots.plot_sweep_metric("rankme", series, ["model.depth=1", "model.depth=2"])
    ax0, ax1 = fig.axes[0], fig.axes[1]
    assert [ln.get_label() for ln in ax0.get_lines()] == ["model.depth=1", "model.depth=2"]
    assert [ln.get_label() for ln in ax1.get_lines()] == ["model.depth=2"]
    # 'latest' finds the same sweep
    paths = sweep_report("latest", out / "latest", spectra=False, log_to_mlflow=False)
    assert "sweep_rankme" in paths and "sweep_spectra" not in paths
