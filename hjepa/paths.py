"""Per-user places hjepa writes to outside the working directory.

The cache root is ``$HJEPA_CACHE``, else ``$XDG_CACHE_HOME/hjepa``, else ``~/.cache/hjepa``. It
holds the generated datasets (``data.cache_dir`` defaults to it) and, under ``runs/<run id>/``,
the checkpoints downloaded from MLflow by ``load_run(<run id>)`` and ``hjepa-analyze``.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["cache_root", "downloaded_runs_dir"]


def cache_root() -> Path:
    """``$HJEPA_CACHE``, else ``$XDG_CACHE_HOME/hjepa``, else ``~/.cache/hjepa`` (absolute, not created)."""
    if os.environ.get("HJEPA_CACHE"):
        return Path(os.environ["HJEPA_CACHE"]).expanduser().absolute()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg and Path(xdg).expanduser().is_absolute() else Path.home() / ".cache"
    return (base / "hjepa").absolute()


def downloaded_runs_dir() -> Path:
    """Where checkpoints fetched from MLflow are kept: ``<cache root>/runs`` (one folder per run id)."""
    return cache_root() / "runs"
