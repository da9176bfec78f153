"""MLflow tracking that never loses a training run.

If the backend fails (unreachable server, locked or corrupt database), the tracker warns once,
stops logging, and training goes on writing its checkpoints.
"""

from __future__ import annotations

import logging
import os
import warnings
from pathlib import Path
from typing import Any

__all__ = ["Tracker", "resolve_tracking_uri", "flatten"]

log = logging.getLogger(__name__)


def resolve_tracking_uri(uri: str | None = None) -> str:
    """``uri``, else ``$MLFLOW_TRACKING_URI``, else a SQLite store ``mlflow.db`` in the working directory."""
    if uri:
        return uri
    if os.environ.get("MLFLOW_TRACKING_URI"):
        return os.environ["MLFLOW_TRACKING_URI"]
    return f"sqlite:///{Path.cwd() / 'mlflow.db'}"


def flatten(d: dict, prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` → ``{"a.b": 1}`` (lists kept as strings)."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flatten(v, key + "."))
        else:
            out[key] = v
    return out


class Tracker:
    """A thin, failure-tolerant wrapper around one MLflow run."""

    def __init__(self, enabled: bool = True, uri: str | None = None, experiment: str = "hjepa"):
        self.enabled = enabled
        self.uri = resolve_tracking_uri(uri)
        self.experiment = experiment
        self.run_id: str | None = None
        self._failed = False

    @property
    def active(self) -> bool:
        return self.enabled and not self._failed and self.run_id is not None

    def _fail(self, what: str, err: Exception) -> None:
        if not self._failed:
            msg = (f"MLflow tracking failed while {what} ({type(err).__name__}: {str(err).splitlines()[0][:200]}); "
                   "training continues and checkpoints are still written, but nothing more is logged to "
                   f"{self.uri}")
            warnings.warn(msg, RuntimeWarning, stacklevel=3)
            log.warning(msg)
        self._failed = True

    def start(self, run_name: str | None = None, run_id: str | None = None, tags: dict | None = None) -> str | None:
        if not self.enabled:
            return None
        try:
            import mlflow

            mlflow.set_tracking_uri(self.uri)
            if run_id is None:
                mlflow.set_experiment(self.experiment)
                run = mlflow.start_run(run_name=run_name, tags=tags)
            else:
                run = mlflow.start_run(run_id=run_id)
            self.run_id = run.info.run_id
        except Exception as e:  # noqa: BLE001 — any backend failure must not kill training
            self._fail("starting the run", e)
        return self.run_id

    def _call(self, what: str, fn, *args, **kwargs) -> None:
        if not self.active:
            return
        try:
            fn(*args, **kwargs)
        except Exception as e:  # noqa: BLE001
            self._fail(what, e)

    def log_params(self, params: dict[str, Any]) -> None:
        import mlflow

        params = {k: (str(v) if v is not None else "null")[:6000] for k, v in params.items()}
        self._call("logging params", mlflow.log_params, params)

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        import mlflow

        self._call("logging metrics", mlflow.log_metrics, {k: float(v) for k, v in metrics.items()}, step=step)

    def set_tags(self, tags: dict[str, Any]) -> None:
        import mlflow

        self._call("setting tags", mlflow.set_tags, {k: str(v) for k, v in tags.items()})

    def log_artifact(self, path: str | os.PathLike, artifact_path: str | None = None) -> None:
        import mlflow

        self._call("logging an artifact", mlflow.log_artifact, str(path), artifact_path)

    def end(self, status: str = "FINISHED") -> None:
        if not self.active:
            return
        import mlflow

        self._call("ending the run", mlflow.end_run, status=status)
