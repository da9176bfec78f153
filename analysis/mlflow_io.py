"""Reading hjepa runs back from MLflow: metric histories, the runs of a sweep, labels, artifacts.

Every function takes an optional ``tracking_uri``; the default is hjepa's own resolution
(``$MLFLOW_TRACKING_URI``, else ``sqlite:///mlflow.db`` in the working directory).
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path

from hjepa.tracking import StoreNotFoundError, require_existing_store, resolve_tracking_uri

__all__ = ["RunInfo", "client", "get_run", "metric_history", "level_metric_histories", "runs_in_sweep",
           "latest_sweep_id", "sweep_labels", "log_artifacts", "parse_overrides", "SWEEP_TAG", "MLflowLookupError"]

SWEEP_TAG = "hjepa.sweep_id"
OVERRIDES_TAG = "hjepa.overrides"
_LEVEL_KEY = re.compile(r"^eval/level(\d+)/(.+)$")


class MLflowLookupError(LookupError):
    """A run or sweep that the tracking store does not hold; the message says where it looked."""


@dataclass
class RunInfo:
    """The parts of an MLflow run the analysis needs."""

    run_id: str
    name: str
    status: str
    start_time: int
    tags: dict[str, str] = field(default_factory=dict)
    params: dict[str, str] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)  # latest values

    @property
    def sweep_id(self) -> str | None:
        return self.tags.get(SWEEP_TAG)

    @property
    def overrides(self) -> dict[str, str]:
        return parse_overrides(self.tags.get(OVERRIDES_TAG, ""))

    @property
    def depth(self) -> int:
        """Number of levels with logged evaluation metrics (or the ``model.depth`` param)."""
        levels = {int(m.group(1)) for k in self.metrics if (m := _LEVEL_KEY.match(k))}
        if levels:
            return max(levels) + 1
        return int(self.params.get("model.depth", 1))


def client(tracking_uri: str | None = None):
    """An ``MlflowClient`` of an existing store (a lookup never creates an empty ``mlflow.db``)."""
    from mlflow.tracking import MlflowClient

    try:
        return MlflowClient(tracking_uri=require_existing_store(tracking_uri))
    except StoreNotFoundError as e:
        raise MLflowLookupError(str(e)) from None


def _info(run) -> RunInfo:
    return RunInfo(run.info.run_id, run.info.run_name or run.info.run_id[:8], run.info.status,
                   int(run.info.start_time or 0), dict(run.data.tags), dict(run.data.params), dict(run.data.metrics))


def get_run(run_id: str, tracking_uri: str | None = None) -> RunInfo:
    """One run by id; ``MLflowLookupError`` naming the store when it is not there."""
    c = client(tracking_uri)
    try:
        return _info(c.get_run(run_id))
    except Exception as e:  # noqa: BLE001 — MLflow raises its own exception types per backend
        raise MLflowLookupError(f"MLflow run {run_id!r} not found in {resolve_tracking_uri(tracking_uri)} "
                                f"({type(e).__name__}); set MLFLOW_TRACKING_URI or --tracking-uri") from e


def metric_history(run_id: str, key: str, tracking_uri: str | None = None) -> tuple[list[int], list[float]]:
    """``(steps, values)`` of one metric, sorted by step (the last value logged at a step wins)."""
    hist = client(tracking_uri).get_metric_history(run_id, key)
    by_step: dict[int, tuple[int, float]] = {}
    for m in hist:
        prev = by_step.get(m.step)
        if prev is None or m.timestamp >= prev[0]:
            by_step[m.step] = (m.timestamp, m.value)
    steps = sorted(by_step)
    return steps, [by_step[s][1] for s in steps]


def level_metric_histories(run: RunInfo, name: str, tracking_uri: str | None = None
                           ) -> dict[int, tuple[list[int], list[float]]]:
    """``{level: (steps, values)}`` of ``eval/level{k}/<name>`` for every level the run logged."""
    out = {}
    for key in sorted(run.metrics):
        m = _LEVEL_KEY.match(key)
        if m and m.group(2) == name:
            out[int(m.group(1))] = metric_history(run.run_id, key, tracking_uri)
    return dict(sorted(out.items()))


def _experiment_ids(c) -> list[str]:
    from mlflow.entities import ViewType

    return [e.experiment_id for e in c.search_experiments(view_type=ViewType.ALL)]


def _search(c, filter_string: str, order_by=None) -> list:
    exps = _experiment_ids(c)
    if not exps:
        return []
    runs, token = [], None
    while True:
        page = c.search_runs(exps, filter_string=filter_string, max_results=1000, order_by=order_by, page_token=token)
        runs.extend(page)
        token = page.token
        if not token:
            return runs


def runs_in_sweep(sweep_id: str, tracking_uri: str | None = None) -> list[RunInfo]:
    """All runs tagged ``hjepa.sweep_id = sweep_id`` (in any experiment), in job order.

    ``sweep_id`` may be the full tag value or a unique suffix of it (e.g. ``2026-11-25/13-00-00``),
    or ``latest`` for the most recently started sweep.
    """
    c = client(tracking_uri)
    if sweep_id == "latest":
        sweep_id = latest_sweep_id(tracking_uri)
    q = sweep_id.replace("'", "\\'")
    runs = _search(c, f"tags.`{SWEEP_TAG}` = '{q}'")
    if not runs:
        cand = _search(c, f"tags.`{SWEEP_TAG}` LIKE '%{q}'")
        ids = sorted({r.data.tags[SWEEP_TAG] for r in cand})
        if len(ids) > 1:
            raise MLflowLookupError(f"sweep id {sweep_id!r} matches several sweeps: {ids}; give the full id")
        runs = cand
    if not runs:
        known = sorted({r.data.tags[SWEEP_TAG] for r in _search(c, f"tags.`{SWEEP_TAG}` LIKE '%'")})
        raise MLflowLookupError(f"no runs tagged {SWEEP_TAG}={sweep_id!r} in {resolve_tracking_uri(tracking_uri)}; "
                                f"known sweeps: {known[-10:] or '(none)'}")
    infos = [_info(r) for r in runs]

    def order(r: RunInfo):
        try:
            return (0, int(r.tags.get("hjepa.job_num", "")), r.start_time)
        except ValueError:
            return (1, 0, r.start_time)

    return sorted(infos, key=order)


def latest_sweep_id(tracking_uri: str | None = None) -> str:
    c = client(tracking_uri)
    runs = _search(c, f"tags.`{SWEEP_TAG}` LIKE '%'", order_by=["attributes.start_time DESC"])
    if not runs:
        raise MLflowLookupError(f"no sweep runs (tag {SWEEP_TAG}) in {resolve_tracking_uri(tracking_uri)}")
    return runs[0].data.tags[SWEEP_TAG]


def parse_overrides(text: str) -> dict[str, str]:
    """``"model.depth=2 regularizer=none"`` → ``{"model.depth": "2", "regularizer": "none"}``."""
    out = {}
    try:
        tokens = shlex.split(text)
    except ValueError:
        tokens = text.split()
    for tok in tokens:
        if "=" in tok:
            k, v = tok.split("=", 1)
            out[k.lstrip("+~")] = v
    return out


def sweep_labels(runs: list[RunInfo]) -> list[str]:
    """A short label per run: the overrides that differ between the runs of a sweep
    (e.g. ``model.depth=3``), else the run name."""
    ovs = [r.overrides for r in runs]
    keys = sorted({k for o in ovs for k in o})
    varying = [k for k in keys if len({o.get(k) for o in ovs}) > 1]
    if not varying:  # fall back on params that differ (runs started outside Hydra)
        ps = [r.params for r in runs]
        pkeys = sorted({k for p in ps for k in p} - {"out_dir", "tracking.run_name"})
        varying_p = [k for k in pkeys if len({p.get(k) for p in ps}) > 1]
        if varying_p and len(varying_p) <= 3:
            return [" ".join(f"{k}={p.get(k)}" for k in varying_p) for p in ps]
        names = [r.name for r in runs]
        return names if len(set(names)) == len(names) else [f"{r.name} ({r.run_id[:6]})" for r in runs]
    return [" ".join(f"{k}={o.get(k, '-')}" for k in varying) for o in ovs]


def log_artifacts(run_id: str, local_dir: str | Path, artifact_path: str | None = "analysis",
                  tracking_uri: str | None = None) -> None:
    """Upload every file of ``local_dir`` as artifacts of an existing (possibly finished) run."""
    client(tracking_uri).log_artifacts(run_id, str(local_dir), artifact_path)


def log_metrics(run_id: str, metrics: dict[str, float], step: int = 0, tracking_uri: str | None = None) -> None:
    """Log ``{key: value}`` to an existing (possibly finished) run at ``step``."""
    c = client(tracking_uri)
    for key, value in metrics.items():
        c.log_metric(run_id, key, float(value), step=step)
