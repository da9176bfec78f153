"""Atomic, rotating, safely loaded checkpoints.

A checkpoint is a plain dict of tensors, numbers, strings, lists and dicts — loadable with
``torch.load(..., weights_only=True)``, so loading one can never execute code.

Files are ``<dir>/step_XXXXXXXX.pt``. A write goes to a hidden temporary file in the same
directory, is flushed and fsync'ed, then renamed over the final name (``os.replace`` is atomic),
so a process killed mid-write leaves either the old state or the new one, never half a file.
"""

from __future__ import annotations

import logging
import os
import pickle
import re
import tempfile
import warnings
import zipfile
from pathlib import Path
from typing import Any

import torch

__all__ = ["CheckpointError", "save_checkpoint", "load_checkpoint", "latest_checkpoint", "list_checkpoints",
           "rotate_checkpoints", "remove_stale_temp_files", "find_resumable", "quarantine",
           "atomic_write_text", "CHECKPOINT_FORMAT", "CHECKPOINT_VERSION"]

log = logging.getLogger(__name__)

CHECKPOINT_FORMAT = "hjepa-checkpoint"
CHECKPOINT_VERSION = 1
_NAME = re.compile(r"^step_(\d{8,})\.pt$")
_TMP_PREFIX = ".tmp_"
QUARANTINE_SUFFIX = ".unreadable"


class CheckpointError(RuntimeError):
    """A checkpoint is missing, corrupt, truncated, foreign or incompatible."""


def _fsync_dir(directory: Path) -> None:
    """Make a rename durable (POSIX); a no-op where directories cannot be opened (Windows)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _default_mode() -> int:
    """The permissions a plain ``open(..., "w")`` would give (``mkstemp`` makes files 0600)."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def save_checkpoint(state: dict[str, Any], directory: str | os.PathLike, step: int) -> Path:
    """Write ``state`` to ``<directory>/step_XXXXXXXX.pt`` atomically (temp file, fsync, rename)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"step_{step:08d}.pt"
    payload = {"format": CHECKPOINT_FORMAT, "version": CHECKPOINT_VERSION, "step": int(step), **state}
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=_TMP_PREFIX, suffix=".pt")
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(payload, f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, _default_mode())
        os.replace(tmp, path)
        _fsync_dir(directory)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return path


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Write a small text file atomically (temp file in the same directory, then rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=_TMP_PREFIX, suffix=".txt")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, _default_mode())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return path


def checkpoint_step(path: str | os.PathLike) -> int | None:
    m = _NAME.match(Path(path).name)
    return int(m.group(1)) if m else None


def list_checkpoints(directory: str | os.PathLike) -> list[Path]:
    """Checkpoints in ``directory`` ordered by step (oldest first)."""
    directory = Path(directory)
    if not directory.is_dir():
        return []
    return sorted((p for p in directory.iterdir() if _NAME.match(p.name) and p.is_file()),
                  key=lambda p: checkpoint_step(p))


def latest_checkpoint(directory: str | os.PathLike) -> Path | None:
    ckpts = list_checkpoints(directory)
    return ckpts[-1] if ckpts else None


def rotate_checkpoints(directory: str | os.PathLike, keep: int) -> list[Path]:
    """Delete all but the newest ``keep`` checkpoints; returns the deleted paths."""
    if keep < 1:
        raise ValueError(f"keep must be >= 1, got {keep}")
    gone = list_checkpoints(directory)[:-keep]
    for p in gone:
        p.unlink(missing_ok=True)
    return gone


def remove_stale_temp_files(directory: str | os.PathLike) -> list[Path]:
    """Remove the temporary files a process killed in the middle of a write left behind."""
    directory = Path(directory)
    if not directory.is_dir():
        return []
    stale = [p for p in directory.iterdir() if p.name.startswith(_TMP_PREFIX) and p.is_file()]
    for p in stale:
        p.unlink(missing_ok=True)
    return stale


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load and check an hjepa checkpoint with ``weights_only=True``.

    Raises ``CheckpointError`` naming the file and the problem for a missing, truncated,
    corrupt or foreign file (e.g. a pickled object or another framework's checkpoint). Nothing
    in the file is ever executed: the unpickler only builds tensors and plain containers.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist; pass the path of a step_XXXXXXXX.pt file, "
                              "a run directory, or an MLflow run id")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch's notes on pickle protocols of foreign files
            obj = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        why = _refusal(e)
        if "GLOBAL" in why:  # weights_only refuses any pickled class or function
            raise CheckpointError(f"checkpoint {path} holds objects that cannot be loaded safely ({why}); "
                                  "weights_only=True refused them and nothing in the file was executed. It is not "
                                  "an hjepa checkpoint, or it was written by other code") from None
        raise CheckpointError(f"checkpoint {path} is corrupt or not a PyTorch checkpoint: the safe loader "
                              f"(weights_only=True) refused it ({why}) and nothing in the file was executed") from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, ValueError, OSError, KeyError, IndexError,
            AttributeError, TypeError, UnicodeDecodeError) as e:
        raise CheckpointError(f"checkpoint {path} is corrupt or truncated and cannot be read ({type(e).__name__}: "
                              f"{(str(e).splitlines() or [''])[0][:200]}); use an earlier checkpoint") from None
    except Exception as e:  # noqa: BLE001 — any other reader failure is still a bad file, said clearly
        raise CheckpointError(f"checkpoint {path} cannot be read ({type(e).__name__}: "
                              f"{(str(e).splitlines() or [''])[0][:200]}); use an earlier checkpoint") from None
    if not isinstance(obj, dict) or obj.get("format") != CHECKPOINT_FORMAT:
        what = f"a {type(obj).__name__}" if not isinstance(obj, dict) else f"a dict with keys {sorted(obj)[:8]}"
        raise CheckpointError(f"{path} is not an hjepa checkpoint (it holds {what}, without the "
                              f"'{CHECKPOINT_FORMAT}' marker); it may come from another framework")
    if not isinstance(obj.get("version"), int) or obj["version"] > CHECKPOINT_VERSION:
        raise CheckpointError(f"{path} was written by a newer hjepa (format version {obj.get('version')}); "
                              "upgrade hjepa")
    for key in ("model", "config", "step"):
        if key not in obj:
            raise CheckpointError(f"checkpoint {path} lacks '{key}'; it is incomplete")
    if not isinstance(obj["model"], dict):
        raise CheckpointError(f"checkpoint {path}: 'model' is not a state dict; the file is damaged or foreign")
    return obj


def _refusal(e: Exception) -> str:
    """The informative line of torch's weights-only refusal (which global or opcode was refused)."""
    lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
    for ln in lines:
        if re.search(r"GLOBAL|Unsupported|unsupported|not allowed", ln) and not ln.startswith("Weights only load"):
            return ln[:200]
    return (lines[-1] if lines else type(e).__name__)[:200]


def find_resumable(directory: str | os.PathLike, map_location: str | torch.device = "cpu"
                   ) -> tuple[Path | None, dict[str, Any] | None, list[tuple[Path, str]]]:
    """The newest checkpoint in ``directory`` that loads: ``(path, checkpoint, unreadable)``.

    ``unreadable`` lists the newer checkpoints that failed to load, with the reason, newest first.
    Raises ``CheckpointError`` when checkpoints exist but none of them can be read. Nothing is
    modified here (see ``quarantine``).
    """
    bad: list[tuple[Path, str]] = []
    for path in reversed(list_checkpoints(directory)):
        try:
            return path, load_checkpoint(path, map_location), bad
        except CheckpointError as e:
            bad.append((path, str(e)))
    if bad:
        raise CheckpointError("no checkpoint in {} can be read, so training cannot resume:\n{}\nNothing was changed; "
                              "remove or replace these files, or start a new run in another output directory "
                              "without train.resume".format(directory, "\n".join(f"  - {m}" for _, m in bad)))
    return None, None, []


def quarantine(path: str | os.PathLike) -> Path:
    """Rename an unreadable checkpoint to ``<name>.unreadable`` (kept for inspection, never rotated,
    resumed from or overwritten)."""
    path = Path(path)
    target = path.with_name(path.name + QUARANTINE_SUFFIX)
    n = 1
    while target.exists():
        target = path.with_name(f"{path.name}{QUARANTINE_SUFFIX}.{n}")
        n += 1
    os.replace(path, target)
    return target
