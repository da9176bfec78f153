"""Hydra multirun sweeps: the id every job tags its MLflow run with (``hjepa.sweep_id``), and the
summary printed when ``hjepa-train -m ...`` ends (a Hydra callback, registered in
``hjepa/conf/config.yaml``), naming the sweep id and the ``hjepa-analyze`` command that compares its runs."""

from __future__ import annotations

import os
import shlex
import sys
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback

__all__ = ["sweep_id", "SweepSummary", "summary_lines"]


def sweep_id(sweep_dir: str | os.PathLike) -> str:
    """``$HJEPA_SWEEP_ID``, else the sweep directory as written in the config (e.g. ``multirun/2026-11-27/05-10-00``)."""
    return os.environ.get("HJEPA_SWEEP_ID") or Path(str(sweep_dir)).as_posix()


def summary_lines(sid: str, tracking_uri: str | None = None) -> list[str]:
    """What the end of a multirun prints: the sweep id and the commands that analyse it."""
    uri = f" --tracking-uri {shlex.quote(tracking_uri)}" if tracking_uri else ""
    return ["", "=" * 72, "hjepa sweep finished",
            f"  sweep id      : {sid}",
            f"  compare runs  : hjepa-analyze sweep={shlex.quote(sid)}{uri}",
            f"  (the newest sweep of the store is also: hjepa-analyze sweep=latest{uri})", "=" * 72]


class SweepSummary(Callback):
    """Prints :func:`summary_lines` at the end of a multirun (nothing for single runs)."""

    def on_multirun_end(self, config: Any, **kwargs: Any) -> None:
        tracking = config.get("tracking") or {}
        if not tracking.get("enabled", True):
            return
        print("\n".join(summary_lines(sweep_id(config.hydra.sweep.dir), tracking.get("uri"))), file=sys.stdout,
              flush=True)
