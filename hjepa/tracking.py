"""MLflow tracking that never loses a training run.

One ``Tracker`` drives one MLflow run through ``MlflowClient`` with an explicit run id (no
global "active run" state, so several trainers can live in one process). If the backend fails
(unreachable server, locked or unwritable database), the tracker warns once, stops talking to
MLflow, and from then on appends the metrics to a local JSON-lines file (``fallback_path``) so
nothing is lost; training goes on writing its checkpoints.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import time
import warnings
from pathlib import Path
from typing import Any

__all__ = ["Tracker", "resolve_tracking_uri", "flatten", "require_existing_store", "StoreNotFoundError"]

log = logging.getLogger(__name__)

_MAX_PARAMS_PER_BATCH = 100
_MAX_METRICS_PER_BATCH = 1000


def resolve_tracking_uri(uri: str | None = None) -> str:
    """``uri``, else ``$MLFLOW_TRACKING_URI``, else a SQLite store ``mlflow.db`` in the working directory."""
    if uri:
        return uri
    if os.environ.get("MLFLOW_TRACKING_URI"):
        return os.environ["MLFLOW_TRACKING_URI"]
    return f"sqlite:///{Path.cwd() / 'mlflow.db'}"


class StoreNotFoundError(LookupError):
    """A read-only lookup named a local MLflow store that does not exist (nothing was created)."""


def _local_store_path(uri: str) -> Path | None:
    """The file behind ``sqlite:///…`` or the folder behind ``file:…``/a plain path; ``None`` for servers."""
    if uri.startswith("sqlite:///"):
        return Path(uri[len("sqlite:///"):])
    if uri.startswith("file:"):
        from urllib.parse import unquote, urlparse

        return Path(unquote(urlparse(uri).path))
    return None if "://" in uri else Path(uri)


def require_existing_store(uri: str | None = None) -> str:
    """The resolved tracking URI, after checking that a local store (SQLite file or ``file:`` folder)
    exists: MLflow would otherwise create an empty one. ``StoreNotFoundError`` says where it looked and why."""
    resolved = resolve_tracking_uri(uri)
    local = _local_store_path(resolved)
    if local is None or local.exists():
        return resolved
    if uri:
        source = "the tracking URI given"
    elif os.environ.get("MLFLOW_TRACKING_URI"):
        source = "from $MLFLOW_TRACKING_URI"
    else:
        source = f"the default: mlflow.db in the working directory {Path.cwd()}, as $MLFLOW_TRACKING_URI is not set"
    raise StoreNotFoundError(
        f"no MLflow store at {local.absolute()} ({source}); nothing was created there. Point MLFLOW_TRACKING_URI "
        "(or the tracking URI option) at the store the run was logged to, e.g. sqlite:////path/to/mlflow.db")


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


_START_ATTEMPTS = 6


def _is_init_race(err: Exception) -> bool:
    """SQLite errors raised while another process creates or migrates the same store."""
    text = f"{type(err).__name__} {err}".lower()
    return any(m in text for m in ("already exists", "database is locked", "no such table", "alembic", "migration"))


@contextlib.contextmanager
def _store_init_lock(uri: str):
    """Serialise the first contact with a SQLite store across processes (``<db>.lock``): MLflow
    creates and migrates a fresh database on first use, and parallel sweep jobs doing that at
    once leave it half-migrated."""
    if not uri.startswith("sqlite:///"):
        yield
        return
    db = Path(uri[len("sqlite:///"):])
    try:
        import fcntl

        db.parent.mkdir(parents=True, exist_ok=True)
        f = open(f"{db}.lock", "a")
    except (ImportError, OSError):  # no fcntl (Windows) or unwritable folder: MLflow reports the latter
        yield
        return
    with f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _artifact_location(uri: str) -> str | None:
    """Artifacts of a SQLite store live beside the database (``<db dir>/mlartifacts``), not in
    whatever directory the process happens to run in; other stores use their own default."""
    if not uri.startswith("sqlite:///"):
        return None
    return (Path(uri[len("sqlite:///"):]).resolve().parent / "mlartifacts").as_uri()


class Tracker:
    """A thin, failure-tolerant wrapper around one MLflow run.

    ``start(run_id=...)`` resumes an existing run (its status goes back to RUNNING) instead of
    creating a new one; when that run cannot be found in this store, a new run is created with a
    warning. ``resumed`` says which happened.
    """

    def __init__(self, enabled: bool = True, uri: str | None = None, experiment: str = "hjepa",
                 fallback_path: str | os.PathLike | None = None):
        self.enabled = enabled
        self.uri = resolve_tracking_uri(uri)
        self.experiment = experiment
        self.run_id: str | None = None
        self.resumed = False
        self.failure: str | None = None
        self.fallback_path = Path(fallback_path) if fallback_path is not None else None
        self._client = None

    @property
    def _failed(self) -> bool:
        return self.failure is not None

    @property
    def active(self) -> bool:
        return self.enabled and not self._failed and self.run_id is not None

    # ------------------------------------------------------------------ failure handling
    def _fail(self, what: str, err: Exception) -> None:
        if self._failed:
            return
        self.failure = f"{type(err).__name__}: {(str(err).strip().splitlines() or [''])[0][:300]}"
        where = (f"metrics from now on are appended to {self.fallback_path}" if self.fallback_path is not None
                 else "metrics from now on are not recorded")
        msg = (f"MLflow tracking failed while {what} ({self.failure}) at {self.uri}. Training continues and "
               f"checkpoints are still written; nothing more is sent to MLflow and {where}")
        warnings.warn(msg, RuntimeWarning, stacklevel=3)

    def _fallback(self, record: dict[str, Any]) -> None:
        if not (self.enabled and self._failed and self.fallback_path is not None):
            return
        try:
            self.fallback_path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.fallback_path, "a") as f:
                f.write(json.dumps(record) + "\n")
        except OSError as e:  # the last resort failing must not stop training either
            log.warning("could not write %s: %s", self.fallback_path, e)

    @property
    def client(self):
        if self._client is None:
            from mlflow.tracking import MlflowClient

            self._client = MlflowClient(tracking_uri=self.uri)
        return self._client

    # ------------------------------------------------------------------ run lifecycle
    def _experiment_id(self) -> str:
        c = self.client
        exp = c.get_experiment_by_name(self.experiment)
        if exp is not None:
            if exp.lifecycle_stage == "deleted":
                c.restore_experiment(exp.experiment_id)
            return exp.experiment_id
        try:
            return c.create_experiment(self.experiment, artifact_location=_artifact_location(self.uri))
        except Exception:  # noqa: BLE001 — a concurrent sweep job may have created it meanwhile
            exp = c.get_experiment_by_name(self.experiment)
            if exp is None:
                raise
            return exp.experiment_id

    def start(self, run_name: str | None = None, run_id: str | None = None, tags: dict | None = None) -> str | None:
        """Create a run (or resume ``run_id``); returns its id, or ``None`` when tracking is off or failed."""
        if not self.enabled:
            return None
        tags = {k: str(v) for k, v in (tags or {}).items()}
        if run_id is not None:
            try:
                run = self.client.get_run(run_id)
                if run.info.lifecycle_stage == "deleted":
                    raise LookupError(f"run {run_id} was deleted")
                self.client.update_run(run_id, status="RUNNING")
                self.run_id, self.resumed = run_id, True
                if tags:
                    self.set_tags(tags)
                return self.run_id
            except Exception as e:  # noqa: BLE001
                msg = (f"could not resume MLflow run {run_id} in {self.uri} ({type(e).__name__}: "
                       f"{(str(e).strip().splitlines() or [''])[0][:200]}); logging to a new MLflow run instead")
                warnings.warn(msg, RuntimeWarning, stacklevel=2)
        from mlflow.tracking.context.registry import resolve_tags

        for attempt in range(_START_ATTEMPTS):
            try:
                with _store_init_lock(self.uri):
                    exp_id = self._experiment_id()
                    run = self.client.create_run(exp_id, run_name=run_name, tags=resolve_tags(tags))
                self.run_id, self.resumed = run.info.run_id, False
                break
            except Exception as e:  # noqa: BLE001 — any backend failure must not kill training
                if attempt + 1 < _START_ATTEMPTS and _is_init_race(e):
                    # parallel jobs creating the same fresh SQLite store: wait for the winner's migration
                    self._client = None
                    time.sleep(1.0 + (time.time_ns() % 1000) / 500)  # jitter without touching seeded RNGs
                    continue
                self._fail("starting the run", e)
                break
        return self.run_id

    def _call(self, what: str, method: str, *args, **kwargs) -> bool:
        """``client.<method>(*args)`` when the run is active; ``False`` when inactive or failing."""
        if not self.active:
            return False
        try:
            getattr(self.client, method)(*args, **kwargs)
            return True
        except Exception as e:  # noqa: BLE001
            self._fail(what, e)
            return False

    def log_params(self, params: dict[str, Any]) -> None:
        if not self.active:
            return
        from mlflow.entities import Param

        items = [Param(k, (str(v) if v is not None else "null")[:6000]) for k, v in params.items()]
        for i in range(0, len(items), _MAX_PARAMS_PER_BATCH):
            if not self._call("logging params", "log_batch", self.run_id, params=items[i:i + _MAX_PARAMS_PER_BATCH]):
                return

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        metrics = {k: float(v) for k, v in metrics.items()}
        if self.active:
            from mlflow.entities import Metric

            ts = int(time.time() * 1000)
            items = [Metric(k, v, ts, int(step)) for k, v in metrics.items()]
            for i in range(0, len(items), _MAX_METRICS_PER_BATCH):
                if not self._call("logging metrics", "log_batch", self.run_id,
                                  metrics=items[i:i + _MAX_METRICS_PER_BATCH]):
                    break
            else:
                return
        self._fallback({"step": int(step), "time": time.time(), "metrics": metrics})

    def set_tags(self, tags: dict[str, Any]) -> None:
        if self.active:
            from mlflow.entities import RunTag

            if self._call("setting tags", "log_batch", self.run_id,
                          tags=[RunTag(k, str(v)[:5000]) for k, v in tags.items()]):
                return
        self._fallback({"time": time.time(), "tags": {k: str(v) for k, v in tags.items()}})

    def log_artifact(self, path: str | os.PathLike, artifact_path: str | None = None) -> None:
        self._call("logging an artifact", "log_artifact", self.run_id, str(path), artifact_path)

    def end(self, status: str = "FINISHED") -> None:
        if self._call("ending the run", "set_terminated", self.run_id, status):
            return
        if self.enabled and self._failed and self.run_id is not None:
            try:  # one quiet last try: a transient outage should not leave the run RUNNING forever
                self.client.set_terminated(self.run_id, status)
            except Exception:  # noqa: BLE001
                pass
        self._fallback({"time": time.time(), "status": status})
