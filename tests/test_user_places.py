"""Where hjepa writes outside the working directory: the per-user cache, MLflow checkpoint downloads,
and read-only lookups that must not create a tracking store."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest

from hjepa.analyze import main as analyze_main
from hjepa.api import _data_cache_for, compose, load_run
from hjepa.checkpoint import CheckpointError
from hjepa.paths import cache_root
from hjepa.train import Trainer

from .conftest import TINY


@pytest.fixture(scope="module")
def logged_run(tmp_path_factory):
    """A 2-step tiny run logged to its own SQLite store: ``(store root, tracking URI, run id)``."""
    root = tmp_path_factory.mktemp("logged_run")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MLFLOW_TRACKING_URI", uri)
        mp.setenv("HJEPA_CACHE", str(root / "data_cache"))
        cfg = compose([*TINY, "train.steps=2", "train.eval_every=2", "train.log_every=1"], out_dir=str(root / "run"))
        trainer = Trainer(cfg)
        trainer.run()
    return root, uri, trainer.tracker.run_id


@pytest.fixture
def private_tmp(tmp_path, monkeypatch):
    """The system temp folder of this process, empty at the start."""
    tmp = tmp_path / "system_tmp"
    tmp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp))
    return tmp


def test_cache_root_order(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("HJEPA_CACHE", raising=False)
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    assert cache_root() == tmp_path / "home" / ".cache" / "hjepa"
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/ignored")  # the XDG spec: relative values are ignored
    assert cache_root() == tmp_path / "home" / ".cache" / "hjepa"
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_root() == tmp_path / "xdg" / "hjepa"
    assert compose().data.cache_dir == str(tmp_path / "xdg" / "hjepa")
    monkeypatch.setenv("HJEPA_CACHE", str(tmp_path / "mine"))
    assert compose().data.cache_dir == str(tmp_path / "mine")
    assert compose(["data.cache_dir=/data/elsewhere"]).data.cache_dir == "/data/elsewhere"  # still overridable
    # a loaded run keeps the absolute cache it was trained with only when it exists and $HJEPA_CACHE is unset
    assert _data_cache_for(".cache/hjepa") == str(tmp_path / "mine")
    monkeypatch.delenv("HJEPA_CACHE")
    assert _data_cache_for(".cache/hjepa") == str(tmp_path / "xdg" / "hjepa")
    assert _data_cache_for(str(tmp_path)) == str(tmp_path)
    assert _data_cache_for(str(tmp_path / "gone")) == str(tmp_path / "xdg" / "hjepa")


def test_load_run_by_id_downloads_into_the_cache_and_leaves_no_temp_files(logged_run, private_tmp, tmp_path,
                                                                          monkeypatch):
    root, uri, run_id = logged_run
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("HJEPA_CACHE", str(tmp_path / "cache"))
    run = load_run(run_id)
    assert run.path == tmp_path / "cache" / "runs" / run_id / "step_00000002.pt"
    assert run.step == 2
    assert sorted(p.name for p in run.path.parent.iterdir()) == ["step_00000002.pt"]  # no staging folder left
    mtime = run.path.stat().st_mtime_ns
    assert load_run(run_id).path == run.path and run.path.stat().st_mtime_ns == mtime  # reused, not fetched again
    assert list(private_tmp.iterdir()) == []


def test_hjepa_analyze_of_a_run_id_leaves_no_temp_files(logged_run, private_tmp, tmp_path, monkeypatch):
    root, uri, run_id = logged_run
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("HJEPA_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("MPLCONFIGDIR", str(tmp_path / "mpl"))
    out = tmp_path / "ana"
    assert analyze_main([f"run={run_id}", f"out={out}", "--resolution", "5", "--clips", "8"]) == 0
    assert (out / "spectra.png").is_file()
    assert list(private_tmp.iterdir()) == []


def test_read_only_lookups_create_no_store_and_say_where_they_looked(logged_run, tmp_path, monkeypatch, capsys):
    _, _, run_id = logged_run
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setenv("HJEPA_CACHE", str(tmp_path / "cache"))
    with pytest.raises(CheckpointError) as e:
        load_run(run_id)
    msg = str(e.value)
    assert str(elsewhere / "mlflow.db") in msg and "MLFLOW_TRACKING_URI" in msg and "working directory" in msg
    assert analyze_main(["sweep=latest"]) == 1
    assert f"no MLflow store at {elsewhere / 'mlflow.db'}" in capsys.readouterr().err
    assert analyze_main([f"run={run_id}"]) == 1
    assert list(elsewhere.iterdir()) == []  # no empty mlflow.db, no output folder
    assert not (tmp_path / "cache").exists()


def test_a_run_loaded_from_another_directory_reads_its_data_without_writing_there(logged_run, tmp_path, monkeypatch):
    root, uri, run_id = logged_run
    elsewhere = tmp_path / "notebook"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.delenv("HJEPA_CACHE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    run = load_run(run_id)
    assert run.path.parent == tmp_path / "xdg" / "hjepa" / "runs" / run_id
    assert run.cfg.data.cache_dir == str(root / "data_cache")  # the existing cache it was trained with
    batch = run.data().eval_batch(4)
    assert tuple(batch["obs"].shape) == (4, 16, 3, 32, 32)
    assert list(elsewhere.iterdir()) == []
