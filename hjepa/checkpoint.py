"""Atomic, rotating, safely loaded checkpoints.

A checkpoint is a plain dict of tensors, numbers, strings, lists and dicts — loadable with
``torch.load(..., weights_only=True)``, so loading one can never execute code.
"""

from __future__ import annotations

import os
import re
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import torch

__all__ = ["CheckpointError", "save_checkpoint", "load_checkpoint", "latest_checkpoint", "list_checkpoints",
           "rotate_checkpoints", "CHECKPOINT_FORMAT"]

CHECKPOINT_FORMAT = "hjepa-checkpoint"
CHECKPOINT_VERSION = 1
_NAME = re.compile(r"^step_(\d{8})\.pt$")


class CheckpointError(RuntimeError):
    """A checkpoint is missing, corrupt, truncated, foreign or incompatible."""


def save_checkpoint(state: dict[str, Any], directory: str | os.PathLike, step: int) -> Path:
    """Write ``state`` to ``<directory>/step_XXXXXXXX.pt`` atomically (temp file, fsync, rename)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"step_{step:08d}.pt"
    payload = {"format": CHECKPOINT_FORMAT, "version": CHECKPOINT_VERSION, "step": int(step), **state}
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp_", suffix=".pt")
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(payload, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return path


def list_checkpoints(directory: str | os.PathLike) -> list[Path]:
    """Checkpoints in ``directory`` ordered by step (oldest first)."""
    directory = Path(directory)
    if not directory.is_dir():
        return []
    return sorted((p for p in directory.iterdir() if _NAME.match(p.name)), key=lambda p: p.name)


def latest_checkpoint(directory: str | os.PathLike) -> Path | None:
    ckpts = list_checkpoints(directory)
    return ckpts[-1] if ckpts else None


def rotate_checkpoints(directory: str | os.PathLike, keep: int) -> None:
    """Delete all but the newest ``keep`` checkpoints."""
    for p in list_checkpoints(directory)[:-keep]:
        p.unlink(missing_ok=True)


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load and check an hjepa checkpoint with ``weights_only=True``.

    Raises ``CheckpointError`` naming the file and the problem for a missing, truncated,
    corrupt or foreign file (e.g. a pickled object or another framework's checkpoint).
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist; pass the path of a step_XXXXXXXX.pt file "
                              "(or an MLflow run id)")
    try:
        obj = torch.load(path, map_location=map_location, weights_only=True)
    except (RuntimeError, EOFError, zipfile.BadZipFile, ValueError, OSError) as e:
        raise CheckpointError(f"checkpoint {path} is corrupt or truncated and cannot be read ({type(e).__name__}: "
                              f"{str(e).splitlines()[0][:200]}); use an earlier checkpoint") from e
    except Exception as e:  # weights_only refuses arbitrary pickled objects with UnpicklingError
        raise CheckpointError(f"checkpoint {path} holds objects that cannot be loaded safely (weights_only=True): "
                              f"{type(e).__name__}: {str(e).splitlines()[0][:200]}. It is not an hjepa checkpoint "
                              "or was written by untrusted code") from e
    if not isinstance(obj, dict) or obj.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path} is not an hjepa checkpoint (no '{CHECKPOINT_FORMAT}' marker); "
                              "it may come from another framework")
    if obj.get("version", 0) > CHECKPOINT_VERSION:
        raise CheckpointError(f"{path} was written by a newer hjepa (format version {obj['version']}); upgrade hjepa")
    for key in ("model", "config", "step"):
        if key not in obj:
            raise CheckpointError(f"checkpoint {path} lacks '{key}'; it is incomplete")
    return obj
