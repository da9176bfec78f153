"""Multi-process training (issue 5): ``torchrun --nproc_per_node=2 -m hjepa.train`` on CPU (gloo)
matches a single process on the same global batch; only rank 0 logs to MLflow and writes
checkpoints; a global batch that does not split over the ranks is rejected up front."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import mlflow
import pytest
import torch

from hjepa.checkpoint import list_checkpoints, load_checkpoint

try:
    from tests.conftest import TINY
except ImportError:  # tests/ without __init__.py
    from conftest import TINY

ARGS = [*TINY, "train.steps=6", "train.log_every=2", "train.eval_every=6", "train.checkpoint_every=3",
        "train.threads=1"]


def _env(tmp_path: Path) -> dict[str, str]:
    return dict(os.environ, MLFLOW_TRACKING_URI=f"sqlite:///{tmp_path / 'mlflow.db'}",
                HJEPA_CACHE=str(tmp_path / "cache"), HYDRA_FULL_ERROR="0", PYTHONUNBUFFERED="1",
                OMP_NUM_THREADS="1")


def _torchrun(n: int, args: list[str], tmp_path: Path) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={n}",
           "-m", "hjepa.train", *args]
    return subprocess.run(cmd, cwd=tmp_path, env=_env(tmp_path), capture_output=True, text=True, timeout=600)


def _runs_of(uri: str, run_dir: Path) -> list:
    client = mlflow.tracking.MlflowClient(tracking_uri=uri)
    exps = [e.experiment_id for e in client.search_experiments()]
    return [r for r in client.search_runs(exps) if r.data.tags.get("hjepa.output_dir") == str(run_dir)]


def test_two_processes_match_one_process_on_the_same_global_batch(tmp_path):
    single = subprocess.run([sys.executable, "-m", "hjepa.train", *ARGS, f"hydra.run.dir={tmp_path / 'single'}"],
                            cwd=tmp_path, env=_env(tmp_path), capture_output=True, text=True, timeout=600)
    assert single.returncode == 0, single.stderr[-3000:]
    ddp = _torchrun(2, [*ARGS, f"hydra.run.dir={tmp_path / 'ddp'}"], tmp_path)
    assert ddp.returncode == 0, ddp.stderr[-5000:]

    a = load_checkpoint(tmp_path / "single" / "checkpoints" / "step_00000006.pt")
    b = load_checkpoint(tmp_path / "ddp" / "checkpoints" / "step_00000006.pt")
    assert a["world_size"] == 1 and b["world_size"] == 2
    for k, v in a["model"].items():
        if v.is_floating_point():  # same updates up to the order of float reductions
            torch.testing.assert_close(b["model"][k], v, rtol=1e-4, atol=1e-5, msg=k)
        else:
            assert torch.equal(b["model"][k], v), k  # e.g. the SIGReg direction counters
    # the logged training scalars are global: the loss averaged over ranks, SIGReg on the global batch
    # (on half the batch per rank the statistic would be about half as large)
    for key in ("train/loss", "train/level0/pred_loss", "train/level0/reg_loss", "train/level1/reg_loss",
                "eval/level0/rankme", "eval/level1/sigreg_stat"):
        assert b["metrics"][key] == pytest.approx(a["metrics"][key], rel=1e-4), key

    # only rank 0 tracks and checkpoints: one MLflow run, the usual rotating checkpoint files
    uri = _env(tmp_path)["MLFLOW_TRACKING_URI"]
    [run] = _runs_of(uri, tmp_path / "ddp")
    assert run.info.status == "FINISHED" and run.data.metrics["train/loss"] == pytest.approx(a["metrics"]["train/loss"],
                                                                                              rel=1e-4)
    client = mlflow.tracking.MlflowClient(tracking_uri=uri)
    assert [m.step for m in sorted(client.get_metric_history(run.info.run_id, "train/loss"), key=lambda m: m.step)] \
        == [2, 4, 6]  # logged once per step, not once per rank
    assert [p.name for p in list_checkpoints(tmp_path / "ddp" / "checkpoints")] == ["step_00000003.pt",
                                                                                    "step_00000006.pt"]
    assert not [p for p in (tmp_path / "ddp" / "checkpoints").iterdir() if p.name.startswith(".tmp_")]


def test_global_batch_must_split_evenly_over_ranks(tmp_path):
    proc = _torchrun(2, [*ARGS, "data.batch_size=7", f"hydra.run.dir={tmp_path / 'run'}"], tmp_path)
    assert proc.returncode != 0
    out = proc.stdout + proc.stderr
    assert "invalid config: data.batch_size=7" in out and "divisible by the number of processes (2)" in out
    assert not (tmp_path / "mlflow.db").exists() and not (tmp_path / "run" / "checkpoints").exists()


@pytest.mark.parametrize("gpus", [0, 1])
def test_more_processes_than_gpus_is_a_clear_user_error(gpus, monkeypatch, capsys, tmp_path):
    """``torchrun --nproc_per_node=2 -m hjepa.train train.device=cuda`` on a one-GPU machine: no CUDA
    traceback, one line naming the GPU count and the fix, exit code 2 (GPUs faked by monkeypatching)."""
    import warnings

    from hjepa import distributed as dist
    from hjepa.api import compose
    from hjepa.train import _hydra_main

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: gpus)
    monkeypatch.setattr(torch.cuda, "set_device", lambda *_: pytest.fail("set_device reached"))
    monkeypatch.setattr(warnings, "formatwarning", warnings.formatwarning)  # _hydra_main replaces it
    for k, v in dict(WORLD_SIZE="2", RANK="1", LOCAL_RANK="1", LOCAL_WORLD_SIZE="2", MASTER_ADDR="127.0.0.1",
                     MASTER_PORT="29999").items():
        monkeypatch.setenv(k, v)
    with pytest.raises(dist.DistributedSetupError) as e:
        with dist.process_group():
            pass
    assert f"2 processes on this node, but it has {gpus} GPU(s)" in str(e.value)
    assert f"--nproc_per_node={gpus}" in str(e.value)
    with pytest.raises(SystemExit) as ex:
        _hydra_main(compose(["train.device=cuda"], out_dir=str(tmp_path)))
    assert ex.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "error: torchrun started 2 processes on this node, but it has" in err[0]
    assert not dist.is_distributed()
