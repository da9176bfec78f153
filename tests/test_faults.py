"""Faults and safety (issue 5): non-finite losses, unreadable / foreign / malicious checkpoints,
``model.init_from``, and a failing MLflow backend. Each test checks the message and that nothing
saved was lost."""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import socket
import subprocess
import sys
from pathlib import Path

import mlflow
import pytest
import torch

from hjepa.api import compose, load_run
from hjepa.checkpoint import CheckpointError, list_checkpoints, load_checkpoint
from hjepa.train import FALLBACK_METRICS_FILE, Trainer, TrainingError

try:
    from tests.conftest import TINY
except ImportError:  # tests/ without __init__.py
    from conftest import TINY


def _sha(p: Path) -> str:
    return hashlib.sha256(Path(p).read_bytes()).hexdigest()


def _cfg(out_dir: Path, *extra: str):
    return compose([*TINY, "train.checkpoint_every=4", "train.eval_every=100", "train.log_every=2", *extra],
                   out_dir=str(out_dir))


def _cli(args: list[str], cwd: Path, env_extra: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    env = dict(os.environ, HYDRA_FULL_ERROR="0", **(env_extra or {}))
    return subprocess.run([sys.executable, "-m", "hjepa.train", *TINY, *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=600)


class _Evil:
    """Unpickling this would run ``open(marker, "w")`` — it must never happen."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def _nan_from(trainer: Trainer, steps: set[int] | None = None, start: int | None = None, on_first=None):
    """Make the trainer's loss NaN at the given (0-based) steps, or at every step from ``start`` on."""
    losses = trainer.model.losses

    def patched(out):
        res = losses(out)
        if (steps is not None and trainer.step in steps) or (start is not None and trainer.step >= start):
            if on_first is not None:
                on_first()
            res.total = res.total * float("nan")
        return res

    trainer.model.losses = patched


# --------------------------------------------------------------------------- non-finite losses
def test_nonfinite_losses_are_skipped_then_training_stops_keeping_the_last_good_checkpoint(tmp_path, tmp_tracking):
    tr = Trainer(_cfg(tmp_path, "train.steps=20", "train.max_nonfinite=3"))
    good = tmp_path / "checkpoints" / "step_00000004.pt"
    seen: dict[str, str] = {}
    _nan_from(tr, start=6, on_first=lambda: seen.setdefault("sha", _sha(good)))  # steps 7, 8, 9 are NaN
    with pytest.warns(RuntimeWarning, match="non-finite loss or gradient at step") as rec:
        with pytest.raises(TrainingError) as e:
            tr.run()
    msg = str(e.value)
    assert "non-finite for 3 consecutive steps (up to step 9)" in msg
    assert f"last good checkpoint is {good}" in msg and "optim.lr" in msg
    assert [str(w.message).split(":")[0] for w in rec if "step skipped" in str(w.message)] == [
        f"non-finite loss or gradient at step {k}" for k in (7, 8, 9)]
    # no checkpoint was written during the non-finite streak (step 8), the good one is untouched
    assert [p.name for p in list_checkpoints(good.parent)] == ["step_00000004.pt"]
    assert _sha(good) == seen["sha"]
    assert load_checkpoint(good)["step"] == 4 and load_run(good).step == 4
    client = mlflow.tracking.MlflowClient(tracking_uri=tmp_tracking)
    hist = sorted(client.get_metric_history(tr.tracker.run_id, "train/nonfinite_skipped"), key=lambda m: m.step)
    assert [(m.step, m.value) for m in hist] == [(7, 1.0), (8, 2.0), (9, 3.0)]
    assert client.get_run(tr.tracker.run_id).info.status == "FAILED"


def test_isolated_nonfinite_loss_and_gradient_are_skipped_without_touching_the_weights(tmp_path, tmp_tracking):
    tr = Trainer(_cfg(tmp_path, "train.steps=8", "tracking.enabled=false"))
    _nan_from(tr, steps={2})  # the loss of the 3rd step is NaN
    bad_grad = {"on": False}
    p0 = next(tr.model.parameters())
    p0.register_hook(lambda g: g * float("inf") if bad_grad["on"] else g)
    step = tr.train_step
    skipped = []

    def checked(batch):
        bad_grad["on"] = tr.step == 5  # the gradient of the 6th step is infinite
        before = {k: v.clone() for k, v in tr.model.state_dict().items()}
        logs = step(batch)
        if logs is None:
            skipped.append(tr.step)
            after = tr.model.state_dict()  # no update, no EMA step (the SIGReg draw counter still advances)
            assert all(torch.equal(before[k], after[k]) for k in before if not k.endswith("regularizer.calls"))
        return logs

    tr.train_step = checked
    with pytest.warns(RuntimeWarning, match=r"non-finite loss or gradient at step \d: step skipped \(1/5 in a row\)"):
        final = tr.run()
    assert skipped == [2, 5]
    assert final["train/nonfinite_skipped"] == 2 and tr.step == 8
    assert tr.scheduler.last_epoch == 8  # the LR schedule still follows the step
    ck = load_checkpoint(tmp_path / "checkpoints" / "step_00000008.pt")
    assert ck["nonfinite_total"] == 2 and all(torch.isfinite(v).all() for v in ck["model"].values()
                                              if v.is_floating_point())


def test_cli_divergence_stops_with_a_clear_message_and_keeps_the_checkpoint(tmp_path):
    """A learning rate of 1e30 without clipping blows the weights up after one step: the CLI stops
    after train.max_nonfinite skipped steps with exit code 1 and no traceback."""
    proc = _cli(["train.steps=20", "train.checkpoint_every=1", "optim.lr=1e30", "optim.grad_clip=0",
                 "train.max_nonfinite=2", "tracking.enabled=false", f"hydra.run.dir={tmp_path / 'run'}"], tmp_path,
                {"HJEPA_CACHE": str(tmp_path / "cache")})
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    ck = tmp_path / "run" / "checkpoints" / "step_00000001.pt"
    assert "non-finite for 2 consecutive steps" in proc.stderr and f"last good checkpoint is {ck}" in proc.stderr
    assert "non-finite loss or gradient at step 2: step skipped" in proc.stderr
    assert [p.name for p in list_checkpoints(ck.parent)] == ["step_00000001.pt"] and load_checkpoint(ck)["step"] == 1


# --------------------------------------------------------------------------- unreadable checkpoints
def _bad_files(tmp_path: Path, marker: Path) -> dict[str, Path]:
    d = tmp_path / "bad"
    d.mkdir()
    torch.save({"format": "hjepa-checkpoint", "version": 1, "step": 1, "model": {"w": torch.ones(1000)},
                "config": "{}"}, d / "ok.pt")
    raw = (d / "ok.pt").read_bytes()
    files = {"truncated": raw[: len(raw) // 2], "empty": b"", "garbage": b"not a checkpoint at all" * 10}
    out = {}
    for name, data in files.items():
        (d / f"{name}.pt").write_bytes(data)
        out[name] = d / f"{name}.pt"
    torch.save({"state_dict": {"w": torch.ones(3)}}, d / "foreign.pt")  # another framework's checkpoint
    out["foreign"] = d / "foreign.pt"
    torch.save({"format": "hjepa-checkpoint", "model": {"w": _Evil(marker)}}, d / "evil_zip.pt")
    out["evil_zip"] = d / "evil_zip.pt"
    with open(d / "evil_pickle.pt", "wb") as f:
        pickle.dump(_Evil(marker), f)
    out["evil_pickle"] = d / "evil_pickle.pt"
    return out


@pytest.mark.parametrize("kind,fragment", [
    ("truncated", "is corrupt or truncated"), ("empty", "is corrupt or truncated"), ("garbage", "is corrupt"),
    ("foreign", "is not an hjepa checkpoint"), ("evil_zip", "cannot be loaded safely"),
    ("evil_pickle", "nothing in the file was executed"), ("missing", "does not exist"),
])
def test_unreadable_checkpoints_give_a_clear_error_and_never_run_code(tmp_path, kind, fragment):
    marker = tmp_path / "PWNED"
    files = _bad_files(tmp_path, marker)
    path = files.get(kind, tmp_path / "nope.pt")
    before = _sha(path) if path.exists() else None
    with pytest.raises(CheckpointError) as e:
        load_checkpoint(path)
    assert str(path) in str(e.value) and fragment in str(e.value)
    assert not marker.exists()  # the pickle's payload was not executed
    assert (_sha(path) if path.exists() else None) == before


def test_resume_when_no_checkpoint_can_be_read_fails_and_touches_nothing(tmp_path):
    marker = tmp_path / "PWNED"
    files = _bad_files(tmp_path, marker)
    ckdir = tmp_path / "run" / "checkpoints"
    ckdir.mkdir(parents=True)
    (ckdir / "step_00000004.pt").write_bytes(files["truncated"].read_bytes())
    (ckdir / "step_00000008.pt").write_bytes(files["evil_zip"].read_bytes())
    before = {p.name: _sha(p) for p in ckdir.iterdir()}
    db = tmp_path / "mlflow.db"
    proc = _cli(["train.resume=true", "train.steps=12", f"hydra.run.dir={tmp_path / 'run'}"], tmp_path,
                {"HJEPA_CACHE": str(tmp_path / "cache"), "MLFLOW_TRACKING_URI": f"sqlite:///{db}"})
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert "no checkpoint in" in proc.stderr and "can be read" in proc.stderr and "Nothing was changed" in proc.stderr
    assert "step_00000004.pt is corrupt or truncated" in proc.stderr
    assert "step_00000008.pt holds objects that cannot be loaded safely" in proc.stderr
    assert {p.name: _sha(p) for p in ckdir.iterdir()} == before  # nothing renamed, deleted or added
    assert not marker.exists() and not db.exists()  # no code run, no MLflow run started


# --------------------------------------------------------------------------- model.init_from
def test_init_from_checkpoint_path_and_mlflow_run_id(tmp_path, tmp_tracking):
    src = Trainer(_cfg(tmp_path / "src", "train.steps=4"))
    src.run()
    trained = {k: v.clone() for k, v in src.model.state_dict().items()}
    ck = tmp_path / "src" / "checkpoints" / "step_00000004.pt"
    sha = _sha(ck)
    for ref in (str(ck), str(tmp_path / "src"), src.tracker.run_id):
        warm = Trainer(_cfg(tmp_path / "warm", "train.steps=4", f"model.init_from={ref}", "tracking.enabled=false"))
        warm.prepare()
        assert warm.step == 0 and warm.init_from is not None
        for k, v in warm.model.state_dict().items():
            assert torch.equal(v, trained[k]), (ref, k)
    # a new run from the weights: its own MLflow run, tagged with where it started
    warm = Trainer(_cfg(tmp_path / "warm2", "train.steps=2", f"model.init_from={ck}"))
    warm.run()
    run = mlflow.tracking.MlflowClient(tracking_uri=tmp_tracking).get_run(warm.tracker.run_id)
    assert str(ck) in run.data.tags["hjepa.init_from"] and warm.tracker.run_id != src.tracker.run_id
    # SIGReg-pretrained (no EMA target) -> EMA fine-tuning: the targets start as the loaded encoders
    src2 = Trainer(_cfg(tmp_path / "src2", "train.steps=2", "model.encoder_out_norm=batch", "tracking.enabled=false"))
    src2.run()
    ck2 = tmp_path / "src2" / "checkpoints" / "step_00000002.pt"
    trained = {k: v.clone() for k, v in src2.model.state_dict().items()}
    ema = Trainer(_cfg(tmp_path / "ema", "train.steps=2", f"model.init_from={ck2}", "regularizer=ema",
                       "model.encoder_out_norm=batch", "tracking.enabled=false"))
    ema.prepare()
    for lvl in ema.model.levels:
        for a, b in zip(lvl.target.module.parameters(), lvl.encoder.parameters()):
            assert torch.equal(a, b)
    for k, v in ema.model.state_dict().items():
        if ".target." not in k and ".regularizer." not in k:
            assert torch.equal(v, trained[k]), k
    assert _sha(ck) == sha  # the source checkpoint is only read


def test_init_from_a_mismatched_model_names_the_keys(tmp_path, tmp_tracking):
    src = Trainer(_cfg(tmp_path / "src", "train.steps=2", "model.depth=1", "tracking.enabled=false"))
    src.run()
    ck = tmp_path / "src" / "checkpoints" / "step_00000002.pt"
    tr = Trainer(_cfg(tmp_path / "deep", "train.steps=2", f"model.init_from={ck}", "tracking.enabled=false"))
    with pytest.raises(CheckpointError, match=r"do not fit this model \(missing: .*levels\.1\..*it was trained "
                                              r"with model\.depth=1 \(this run: 2\)"):
        tr.prepare()
    assert not (tmp_path / "deep" / "checkpoints").exists()


@pytest.mark.parametrize("kind,fragment", [("evil_zip", "cannot be loaded safely"),
                                           ("missing", "does not exist")])
def test_cli_init_from_refuses_unsafe_or_missing_files(tmp_path, kind, fragment):
    marker = tmp_path / "PWNED"
    path = _bad_files(tmp_path, marker).get(kind, tmp_path / "missing.pt")
    db = tmp_path / "mlflow.db"
    proc = _cli([f"model.init_from={path}", "train.steps=2", f"hydra.run.dir={tmp_path / 'run'}"], tmp_path,
                {"HJEPA_CACHE": str(tmp_path / "cache"), "MLFLOW_TRACKING_URI": f"sqlite:///{db}"})
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert f"hjepa-train: error: checkpoint {path}" in proc.stderr and fragment in proc.stderr
    assert not marker.exists() and not db.exists() and not (tmp_path / "run" / "checkpoints").exists()


# --------------------------------------------------------------------------- a failing MLflow backend
def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_unreachable_mlflow_server_does_not_lose_the_run(tmp_path, monkeypatch):
    monkeypatch.setenv("HJEPA_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://127.0.0.1:{_closed_port()}")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "5")
    tr = Trainer(_cfg(tmp_path, "train.steps=6"))
    with pytest.warns(RuntimeWarning, match=r"MLflow tracking failed while starting the run .*Training continues "
                                            r"and checkpoints are still written"):
        final = tr.run()
    assert tr.step == 6 and tr.status == "FINISHED" and tr.tracker.run_id is None
    assert load_checkpoint(tmp_path / "checkpoints" / "step_00000006.pt")["metrics"]["train/loss"] == final["train/loss"]
    records = [json.loads(line) for line in (tmp_path / FALLBACK_METRICS_FILE).read_text().splitlines()]
    steps = [r["step"] for r in records if "metrics" in r and "train/loss" in r["metrics"]]
    assert steps == [2, 4, 6]
    assert any("eval/level0/rankme" in r.get("metrics", {}) for r in records)
    assert (tmp_path / "config.yaml").exists()


def test_mlflow_failing_mid_run_keeps_training_and_checkpoints(tmp_path, tmp_tracking, monkeypatch):
    from mlflow.tracking import MlflowClient

    real = MlflowClient.log_batch
    calls = {"n": 0}

    def flaky(self, run_id, metrics=(), *a, **k):
        if metrics:
            calls["n"] += 1
            if calls["n"] > 2:
                raise mlflow.exceptions.MlflowException("database is locked")
        return real(self, run_id, metrics, *a, **k)

    monkeypatch.setattr(MlflowClient, "log_batch", flaky)
    tr = Trainer(_cfg(tmp_path, "train.steps=8"))
    with pytest.warns(RuntimeWarning, match="MLflow tracking failed while logging metrics .*database is locked") as rec:
        tr.run()
    assert sum("MLflow tracking failed" in str(w.message) for w in rec) == 1  # warned once
    assert [p.name for p in list_checkpoints(tmp_path / "checkpoints")] == ["step_00000004.pt", "step_00000008.pt"]
    client = MlflowClient(tracking_uri=tmp_tracking)
    logged = sorted(m.step for m in client.get_metric_history(tr.tracker.run_id, "train/loss"))
    assert logged == [2, 4]  # before the failure
    later = [json.loads(line) for line in (tmp_path / FALLBACK_METRICS_FILE).read_text().splitlines()]
    assert [r["step"] for r in later if "train/loss" in r.get("metrics", {})] == [6, 8]  # after it, on disk


def test_cli_with_an_unusable_mlflow_store_still_trains(tmp_path):
    blocker = tmp_path / "not_a_dir"
    blocker.write_text("a file where the store's directory should be")
    proc = _cli(["train.steps=4", f"hydra.run.dir={tmp_path / 'run'}"], tmp_path,
                {"HJEPA_CACHE": str(tmp_path / "cache"), "MLFLOW_TRACKING_URI": f"sqlite:///{blocker}/mlflow.db"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "MLflow tracking failed while starting the run" in proc.stderr and "Traceback" not in proc.stderr
    assert load_checkpoint(tmp_path / "run" / "checkpoints" / "step_00000004.pt")["step"] == 4
    assert "MLflow failed" in proc.stdout  # the summary says where the metrics went


# --------------------------------------------------------------------------- nothing saved is lost
def test_a_failed_checkpoint_write_stops_cleanly_and_keeps_the_previous_one(tmp_path, tmp_tracking, monkeypatch):
    import errno

    import hjepa.train as train_mod

    real = train_mod.save_checkpoint

    def disk_full(state, directory, step):
        if step == 8:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(state, directory, step)

    monkeypatch.setattr(train_mod, "save_checkpoint", disk_full)
    tr = Trainer(_cfg(tmp_path, "train.steps=12", "tracking.enabled=false"))
    with pytest.raises(TrainingError, match=r"could not write the checkpoint of step 8 .*No space left on device.*"
                                            r"the previous checkpoint .*step_00000004\.pt is intact"):
        tr.run()
    ckdir = tmp_path / "checkpoints"
    assert [p.name for p in ckdir.iterdir()] == ["step_00000004.pt"] and load_checkpoint(ckdir / "step_00000004.pt")


def test_a_rejected_config_leaves_an_existing_run_untouched(tmp_path):
    ckdir = tmp_path / "run" / "checkpoints"
    ckdir.mkdir(parents=True)
    (ckdir / "step_00000004.pt").write_bytes(b"stands for a trained checkpoint")
    before = {p.name: _sha(p) for p in (tmp_path / "run").rglob("*") if p.is_file()}
    proc = _cli(["model.depth=0", "train.resume=true", f"hydra.run.dir={tmp_path / 'run'}"], tmp_path,
                {"HJEPA_CACHE": str(tmp_path / "cache"), "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}"})
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "invalid config: model.depth=0" in proc.stderr and ">= 1" in proc.stderr
    assert {p.name: _sha(p) for p in ckdir.iterdir()} == {"step_00000004.pt": before["step_00000004.pt"]}
    assert not (tmp_path / "mlflow.db").exists()
