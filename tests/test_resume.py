"""Exact resume (issue 5): a run killed with SIGKILL — or stopped with Ctrl-C — and resumed with
``train.resume=true`` ends bit for bit equal to an uninterrupted run, in one MLflow run.

The reference and interrupted runs go through the real CLI (``python -m hjepa.train``) in
subprocesses; they share one data cache and one MLflow store (each run is found by its output
directory tag). Every run uses ``train.threads=1`` so the CPU kernels are the same in each process.
"""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import mlflow
import pytest
import torch

from hjepa.api import compose, load_run
from hjepa.checkpoint import list_checkpoints, load_checkpoint
from hjepa.train import RUN_INFO_FILE, Trainer, TrainingInterrupted

try:
    from tests.conftest import TINY
except ImportError:  # tests/ without __init__.py
    from conftest import TINY

STEPS = 16
RUN_ARGS = [*TINY, f"train.steps={STEPS}", "train.checkpoint_every=4", "train.eval_every=8", "train.log_every=2",
            "train.threads=1", "train.keep_checkpoints=2"]


def _env(store: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update(MLFLOW_TRACKING_URI=f"sqlite:///{store / 'mlflow.db'}", HJEPA_CACHE=str(store / "cache"),
               PYTHONUNBUFFERED="1", HYDRA_FULL_ERROR="0")
    return env


def _cmd(run_dir: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "hjepa.train", *RUN_ARGS, f"hydra.run.dir={run_dir}", *extra]


def _wait_for(path: Path, proc: subprocess.Popen, timeout: float = 240.0) -> None:
    t0 = time.monotonic()
    while not path.exists():
        if proc.poll() is not None:
            out, err = proc.communicate()
            pytest.fail(f"the run ended (rc={proc.returncode}) before {path.name} appeared:\n{err[-3000:]}")
        if time.monotonic() - t0 > timeout:
            proc.kill()
            pytest.fail(f"{path} did not appear within {timeout} s")
        time.sleep(0.02)


def _runs_of(uri: str, run_dir: Path) -> list:
    client = mlflow.tracking.MlflowClient(tracking_uri=uri)
    exps = [e.experiment_id for e in client.search_experiments()]
    return [r for r in client.search_runs(exps, max_results=1000)
            if r.data.tags.get("hjepa.output_dir") == str(run_dir)]


def _assert_same_final_state(a: Path, b: Path) -> None:
    """Two final checkpoints hold identical weights, optimizer, scheduler, RNG, counters and metrics."""
    ca, cb = load_checkpoint(a), load_checkpoint(b)
    assert ca["step"] == cb["step"] == STEPS
    assert ca["model"].keys() == cb["model"].keys()
    for k in ca["model"]:
        assert torch.equal(ca["model"][k], cb["model"][k]), f"parameter {k} differs"
    sa, sb = ca["optimizer"]["state"], cb["optimizer"]["state"]
    assert sa.keys() == sb.keys()
    for i in sa:
        for name in sa[i]:
            assert torch.equal(sa[i][name], sb[i][name]), f"optimizer state {i}.{name} differs"
    assert ca["scheduler"] == cb["scheduler"]
    assert torch.equal(ca["rng"]["torch"], cb["rng"]["torch"])
    assert ca["first_rankme"] == cb["first_rankme"] and ca["nonfinite_total"] == cb["nonfinite_total"] == 0
    ma = {k: v for k, v in ca["metrics"].items() if k != "train/steps_per_s"}
    mb = {k: v for k, v in cb["metrics"].items() if k != "train/steps_per_s"}
    assert ma == mb  # final loss and every final evaluation metric, exactly
    sig = [k for k in ca["model"] if k.endswith("regularizer.calls")]
    assert sig and all(int(ca["model"][k]) == STEPS for k in sig)  # one SIGReg direction draw per step


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return tmp_path_factory.mktemp("resume_store")


@pytest.fixture(scope="module")
def reference(store):
    """An uninterrupted run: its final checkpoint and MLflow run."""
    run_dir = store / "reference"
    proc = subprocess.run(_cmd(run_dir), env=_env(store), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return run_dir


def test_sigkill_midway_then_resume_equals_uninterrupted_run(store, reference):
    run_dir = store / "killed"
    env = _env(store)
    proc = subprocess.Popen(_cmd(run_dir), env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _wait_for(run_dir / "checkpoints" / "step_00000008.pt", proc)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    left = list_checkpoints(run_dir / "checkpoints")
    assert left and max(load_checkpoint(p)["step"] for p in left) < STEPS  # killed mid-way
    killed_id = (run_dir / RUN_INFO_FILE).read_text()
    uri = env["MLFLOW_TRACKING_URI"]
    [killed_run] = _runs_of(uri, run_dir)
    assert killed_run.info.status == "RUNNING"  # SIGKILL leaves no chance to end it
    assert killed_run.info.run_id in killed_id

    resumed = subprocess.run(_cmd(run_dir, "train.resume=true"), env=env, capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "Traceback" not in resumed.stderr
    assert "with a different config" not in resumed.stderr

    _assert_same_final_state(reference / "checkpoints" / f"step_{STEPS:08d}.pt",
                             run_dir / "checkpoints" / f"step_{STEPS:08d}.pt")
    assert len(list_checkpoints(run_dir / "checkpoints")) == 2  # the newest train.keep_checkpoints

    # one MLflow run for the job: the killed one, continued and finished
    [run] = _runs_of(uri, run_dir)
    assert run.info.run_id == killed_run.info.run_id and run.info.status == "FINISHED"
    assert int(run.data.tags["hjepa.resumed_from_step"]) in (4, 8, 12)
    [ref_run] = _runs_of(uri, reference)
    assert run.data.metrics["train/loss"] == ref_run.data.metrics["train/loss"]
    assert run.data.metrics["eval/level0/rankme"] == ref_run.data.metrics["eval/level0/rankme"]
    client = mlflow.tracking.MlflowClient(tracking_uri=uri)
    assert {a.path for a in client.list_artifacts(run.info.run_id, "checkpoints")} == {
        f"checkpoints/step_{STEPS:08d}.pt"}
    # the library loads the resumed run by its MLflow id
    assert load_run(run.info.run_id, tracking_uri=uri).step == STEPS


def test_ctrl_c_saves_exits_cleanly_and_resumes_exactly(store, reference):
    run_dir = store / "interrupted"
    env = _env(store)
    proc = subprocess.Popen(_cmd(run_dir), env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _wait_for(run_dir / "checkpoints" / "step_00000004.pt", proc)
    time.sleep(0.15)  # land between checkpoints when the machine is fast enough (either way is valid)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err[-3000:]
    assert "Traceback" not in err
    assert "SIGINT: stopped at step" in err and "train.resume=true" in err
    stopped = int(err.split("SIGINT: stopped at step ")[1].split(";")[0])
    assert 4 <= stopped < STEPS
    ck = run_dir / "checkpoints" / f"step_{stopped:08d}.pt"
    assert ck.exists() and load_checkpoint(ck)["step"] == stopped  # saved at the step it stopped
    uri = env["MLFLOW_TRACKING_URI"]
    [run] = _runs_of(uri, run_dir)
    assert run.info.status == "KILLED"

    resumed = subprocess.run(_cmd(run_dir, "train.resume=true"), env=env, capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    _assert_same_final_state(reference / "checkpoints" / f"step_{STEPS:08d}.pt",
                             run_dir / "checkpoints" / f"step_{STEPS:08d}.pt")
    [again] = _runs_of(uri, run_dir)
    assert again.info.run_id == run.info.run_id and again.info.status == "FINISHED"
    assert again.data.tags["hjepa.resumed_from_step"] == str(stopped)


# --------------------------------------------------------------------------- in-process resume mechanics
def _cfg(out_dir: Path, *extra: str):
    return compose([*TINY, "train.steps=8", "train.checkpoint_every=4", "train.eval_every=4", "train.log_every=2",
                    "tracking.enabled=false", "train.keep_checkpoints=3", *extra], out_dir=str(out_dir))


def _sha(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


@pytest.mark.parametrize("reg", ["sigreg", "ema"])
def test_resume_skips_truncated_checkpoint_and_stale_temp_file(tmp_path, tmp_tracking, reg):
    """A checkpoint truncated by a crash is set aside (renamed, not deleted) with a warning; the run
    resumes from the previous one and still ends exactly where an uninterrupted run ends — with
    SIGReg (direction counter) and with EMA targets (momentum schedule, batch-norm statistics)."""
    extra = (f"regularizer={reg}",)
    Trainer(_cfg(tmp_path, *extra)).run()
    ckdir = tmp_path / "checkpoints"
    final = ckdir / "step_00000008.pt"
    want = load_checkpoint(final)
    data = final.read_bytes()
    final.write_bytes(data[: len(data) // 3])  # truncated, as by a crash of a non-atomic writer
    truncated_sha = _sha(final)
    (ckdir / ".tmp_abc123.pt").write_bytes(b"half a checkpoint")  # what a SIGKILL mid-write leaves

    with pytest.warns(RuntimeWarning, match=r"step_00000008\.pt is corrupt or truncated(.|\n)*Resuming from the "
                                            r"newest readable checkpoint .*step_00000004\.pt"):
        tr = Trainer(_cfg(tmp_path, *extra, "train.resume=true"))
        tr.prepare()
    assert tr.step == 4 and tr.resumed_from.name == "step_00000004.pt" and tr.first_rankme
    kept = ckdir / "step_00000008.pt.unreadable"
    assert kept.exists() and _sha(kept) == truncated_sha  # kept for inspection, byte for byte
    assert not (ckdir / ".tmp_abc123.pt").exists()
    tr.run()
    got = load_checkpoint(final)
    for k in want["model"]:
        assert torch.equal(want["model"][k], got["model"][k]), k
    drop = {"train/steps_per_s"}
    assert {k: v for k, v in got["metrics"].items() if k not in drop} == \
        {k: v for k, v in want["metrics"].items() if k not in drop}
    assert got["first_rankme"] == want["first_rankme"] and got["scheduler"] == want["scheduler"]


def test_fresh_run_refuses_a_directory_with_checkpoints(tmp_path, tmp_tracking):
    Trainer(_cfg(tmp_path, "train.steps=4")).run()
    ck = tmp_path / "checkpoints" / "step_00000004.pt"
    before = _sha(ck)
    from hjepa.checkpoint import CheckpointError

    with pytest.raises(CheckpointError, match=r"already holds checkpoints .*step_00000004\.pt.*train\.resume=true"):
        Trainer(_cfg(tmp_path, "train.steps=4")).run()
    assert _sha(ck) == before and [p.name for p in list_checkpoints(ck.parent)] == ["step_00000004.pt"]


def test_resume_of_a_finished_run_is_a_no_op(tmp_path, tmp_tracking):
    first = Trainer(_cfg(tmp_path, "train.steps=4")).run()
    again = Trainer(_cfg(tmp_path, "train.steps=4", "train.resume=true"))
    final = again.run()
    assert again.step == 4 and final["train/loss"] == first["train/loss"]


def test_sigterm_in_process_checkpoints_at_the_step_boundary(tmp_path, tmp_tracking):
    """SIGTERM (cluster pre-emption) is handled like Ctrl-C: the current step finishes, a checkpoint of
    exactly that step is written, and ``TrainingInterrupted`` carries exit code 143."""
    tr = Trainer(_cfg(tmp_path))
    step = tr.train_step
    handler_before = signal.getsignal(signal.SIGTERM)

    def step_then_signal(batch):
        logs = step(batch)
        if tr.step == 4:  # during the 5th step
            os.kill(os.getpid(), signal.SIGTERM)
        return logs

    tr.train_step = step_then_signal
    with pytest.raises(TrainingInterrupted, match=r"SIGTERM: stopped at step 5; checkpoint .*step_00000005\.pt") as e:
        tr.run()
    assert e.value.exit_code == 143 and tr.status == "KILLED"
    assert load_checkpoint(tmp_path / "checkpoints" / "step_00000005.pt")["step"] == 5
    assert signal.getsignal(signal.SIGTERM) == handler_before  # the handler is removed after the run
