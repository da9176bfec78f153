"""Checkpoints of MLflow runs, fetched into the per-user cache (``<cache root>/runs/<run id>/``).

Only the newest ``checkpoints/step_XXXXXXXX.pt`` artifact of a run is downloaded, into a hidden
folder beside its final place, then renamed into place; a second lookup of the same run reuses
the file when name and size match. Nothing is left in the system temp folder, and a lookup never
creates a tracking store (``hjepa.tracking.require_existing_store``).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from .checkpoint import CheckpointError, checkpoint_step
from .paths import downloaded_runs_dir
from .tracking import StoreNotFoundError, require_existing_store

__all__ = ["fetch_run_checkpoint"]


def _first_line(e: Exception) -> str:
    return f"{type(e).__name__}: {(str(e).strip().splitlines() or [''])[0][:200]}"


def fetch_run_checkpoint(run_id: str, tracking_uri: str | None = None) -> Path:
    """The newest checkpoint of MLflow run ``run_id`` as a local file under ``downloaded_runs_dir()``."""
    try:
        uri = require_existing_store(tracking_uri)
    except StoreNotFoundError as e:
        raise CheckpointError(f"cannot look up MLflow run {run_id}: {e}") from None
    import mlflow
    from mlflow.tracking import MlflowClient

    try:
        files = MlflowClient(tracking_uri=uri).list_artifacts(run_id, "checkpoints")
    except Exception as e:  # noqa: BLE001 — any MLflow failure becomes one clear message
        raise CheckpointError(f"could not fetch the checkpoint of MLflow run {run_id} from {uri} ({_first_line(e)}); "
                              "check MLFLOW_TRACKING_URI or pass a checkpoint path") from None
    ckpts = [f for f in files if not f.is_dir and checkpoint_step(Path(f.path).name) is not None]
    if not ckpts:
        raise CheckpointError(f"MLflow run {run_id} in {uri} has no checkpoint artifact (did it finish?)")
    newest = max(ckpts, key=lambda f: checkpoint_step(Path(f.path).name))
    folder = downloaded_runs_dir() / run_id
    dest = folder / Path(newest.path).name
    if dest.is_file() and (newest.file_size is None or dest.stat().st_size == newest.file_size):
        return dest
    folder.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".download_", dir=folder))
    try:
        local = mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path=newest.path, dst_path=str(staging),
                                                    tracking_uri=uri)
        os.replace(local, dest)
    except Exception as e:  # noqa: BLE001
        raise CheckpointError(f"could not download {newest.path} of MLflow run {run_id} from {uri} "
                              f"({_first_line(e)})") from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    for old in folder.glob("step_*.pt"):  # an earlier download of a run that has since trained on
        if old != dest:
            old.unlink(missing_ok=True)
    return dest
