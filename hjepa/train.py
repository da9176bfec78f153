"""Training: ``hjepa-train`` (Hydra) and the ``Trainer`` it drives.

* One MLflow run per job; a resumed job continues the same MLflow run.
* Atomic rotating checkpoints (``<out_dir>/checkpoints/step_XXXXXXXX.pt``) holding everything an
  exact resume needs: model (with EMA targets and the SIGReg direction counters), optimizer,
  LR scheduler, RNG states, the step (the data order is a pure function of seed and step), the
  collapse-alarm reference values and the non-finite counters. ``train.resume=true`` with the
  same output directory continues a killed run bit for bit (CPU).
* A non-finite loss or gradient skips the step (counted in ``train/nonfinite_skipped``); after
  ``train.max_nonfinite`` in a row training stops, naming the last good checkpoint. No
  checkpoint is written while the loss is non-finite, so good checkpoints are never rotated away.
* Ctrl-C / SIGTERM finish the current step, save a checkpoint and exit (code 130 / 143).
* DDP under ``torchrun`` (gloo on CPU, nccl on GPU): every rank draws the same global batch and
  keeps its slice; SIGReg reduces its statistic over ranks; logged training scalars are averaged
  over ranks; only rank 0 evaluates, logs to MLflow and writes checkpoints.
"""

from __future__ import annotations

import json
import logging
import math
import os
import random
import signal
import sys
import threading
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf
from tqdm.auto import tqdm

from . import distributed as dist
from .checkpoint import (CheckpointError, atomic_write_text, find_resumable, latest_checkpoint, list_checkpoints,
                         load_checkpoint, quarantine, remove_stale_temp_files, rotate_checkpoints, save_checkpoint)
from .config import ConfigError, register_configs, validate_config
from .data import DataBundle, DataValidationError, build_data
from .reference_probes import reference_probes
from .accel import DeviceBatches, TrainStep, build_adamw, data_fits_device, keep_freed_memory
from .models import HJEPA, momentum_schedule
from .models.data_init import data_init
from .objectives import build_objective
from .sweeps import sweep_id
from .tracking import Tracker, flatten

__all__ = ["Trainer", "TrainingError", "TrainingInterrupted", "train", "main", "lr_lambda", "seed_everything",
           "resolve_device", "RUN_INFO_FILE", "FALLBACK_METRICS_FILE"]

log = logging.getLogger("hjepa.train")

RUN_INFO_FILE = "run.json"  # <out_dir>/run.json: the MLflow run of this output directory
FALLBACK_METRICS_FILE = "metrics_fallback.jsonl"  # metrics written here when MLflow fails

# config keys that do not change what is computed: a resume may change them without a warning
_RESUME_FREE_KEYS = ("train.resume", "train.progress", "train.device", "train.threads", "train.log_every",
                     "train.eval_every", "train.checkpoint_every", "train.keep_checkpoints", "train.max_nonfinite",
                     "train.collapse_stop", "out_dir", "tracking.", "model.init_from", "data.cache_dir",
                     "model.attention_backend", "train.data_on_device", "train.compile", "train.channels_last",
                     "train.keep_host_memory")


class TrainingError(RuntimeError):
    """Training cannot go on (e.g. the loss stayed non-finite); the message says what to do."""

    exit_code = 1


class TrainingInterrupted(TrainingError):
    """Stopped by SIGINT (Ctrl-C) or SIGTERM after saving a checkpoint."""

    def __init__(self, msg: str, signum: int = signal.SIGINT):
        super().__init__(msg)
        self.signum = int(signum)
        self.exit_code = 128 + self.signum


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def lr_lambda(warmup: int, total: int, min_ratio: float):
    """Linear warm-up for ``warmup`` steps, then cosine decay to ``min_ratio`` at ``total``."""

    def f(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        frac = min((step - warmup) / max(total - warmup, 1), 1.0)
        return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * frac))

    return f


def _rng_state() -> dict[str, Any]:
    np_state = np.random.get_state()
    py = random.getstate()
    return {"torch": torch.get_rng_state(), "python": [py[0], list(py[1]), py[2]],
            "numpy": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *np_state[2:]],
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []}


def _set_rng_state(s: dict[str, Any]) -> None:
    torch.set_rng_state(s["torch"].cpu())
    py = s["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    n = s["numpy"]
    key = n[1].numpy() if isinstance(n[1], torch.Tensor) else np.asarray(n[1])
    np.random.set_state((n[0], key.astype(np.uint32), *n[2:]))
    if s.get("cuda") and torch.cuda.is_available() and len(s["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all([t.cpu() for t in s["cuda"]])


def _config_drift(saved_yaml: str, cfg: DictConfig) -> list[str]:
    """Keys whose value differs between a checkpoint's config and ``cfg`` (ignoring keys that do
    not change the computation)."""
    try:
        old = flatten(OmegaConf.to_container(OmegaConf.create(saved_yaml), resolve=False))
    except Exception:  # noqa: BLE001 — an unreadable stored config is reported as a drift of everything
        return ["(the checkpoint's config cannot be parsed)"]
    new = flatten(OmegaConf.to_container(cfg, resolve=True))
    keys = sorted(set(old) | set(new))
    return [f"{k}: {old.get(k)!r} -> {new.get(k)!r}" for k in keys
            if not any(k == f or (f.endswith(".") and k.startswith(f)) for f in _RESUME_FREE_KEYS)
            and str(old.get(k)) != str(new.get(k))]


class _StopRequests:
    """SIGINT/SIGTERM set a flag that the training loop reads after each step, so the checkpoint is
    taken at a step boundary. A second Ctrl-C more than 2 s after the first aborts at once
    (``KeyboardInterrupt``, nothing saved); repeats within 2 s (e.g. ``torchrun`` forwarding the
    terminal's signal) are ignored."""

    def __init__(self):
        self.signum: int | None = None
        self._t = 0.0
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> "_StopRequests":
        if threading.current_thread() is threading.main_thread():
            for s in (signal.SIGINT, signal.SIGTERM):
                try:
                    self._previous[s] = signal.signal(s, self._handle)
                except (ValueError, OSError):  # pragma: no cover — embedded interpreters
                    pass
        return self

    def __exit__(self, *exc) -> None:
        for s, h in self._previous.items():
            try:
                signal.signal(s, h)
            except (ValueError, OSError, TypeError):  # pragma: no cover
                pass
        self._previous.clear()

    def _handle(self, signum, frame) -> None:
        now = time.monotonic()
        if self.signum is None:
            self.signum, self._t = signum, now
            name = signal.Signals(signum).name
            print(f"\nhjepa: {name} received: finishing this step, saving a checkpoint, then stopping "
                  "(Ctrl-C again to abort without saving)", file=sys.stderr, flush=True)
        elif signum == signal.SIGINT and now - self._t > 2.0:
            raise KeyboardInterrupt


class Trainer:
    """Trains the module of the configured objective (``objective=<name>``; default: an ``HJEPA``) from a resolved config.

    ``run()`` returns the final metrics (also logged to MLflow). The checkpoint directory is
    ``<out_dir>/checkpoints``.
    """

    def __init__(self, cfg: DictConfig, data: DataBundle | None = None):
        validate_config(cfg)
        self.cfg = cfg
        self.rank, self.world = dist.rank(), dist.world_size()
        self.is_main = self.rank == 0
        if cfg.data.batch_size % self.world:
            raise ConfigError("data.batch_size", cfg.data.batch_size,
                              f"the global batch must be divisible by the number of processes ({self.world}): "
                              f"use a multiple of {self.world}")
        # every rank uses rank 0's output directory (Hydra's timestamped run dirs may differ by a second)
        self.out_dir = Path(dist.broadcast_object(str(Path(cfg.out_dir).absolute())))
        self.ckpt_dir = self.out_dir / "checkpoints"
        if cfg.train.threads > 0:
            torch.set_num_threads(cfg.train.threads)
        self.device = dist.device(resolve_device(cfg.train.device))
        if self.device.type == "cpu" and cfg.train.keep_host_memory:
            keep_freed_memory()  # hjepa.accel.host_memory: a step's large tensors reused, not page-faulted
        seed_everything(cfg.seed)
        self.data = data if data is not None else build_data(cfg)
        self.objective = build_objective(cfg, self.data.obs_shape, self.data.action_dim)  # objective=<name>
        self.model = self.objective.module
        self.model.to(self.device)
        self.ddp_model = dist.wrap(self.model, self.device)
        o = cfg.optim
        t = cfg.train
        self.optimizer = build_adamw([p for p in self.model.parameters() if p.requires_grad], o, self.device)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lr_lambda(o.warmup_steps, cfg.train.steps, o.min_lr_ratio))
        self.stepper = TrainStep(self.model, self.optimizer, device=self.device, forward_model=self.ddp_model,
                                 precision=t.precision, compile=t.compile, compile_mode=t.compile_mode,
                                 grad_clip=o.grad_clip, defer_checks=self.device.type == "cuda" and self.world == 1,
                                 all_finite=dist.all_finite, channels_last=t.channels_last, objective=self.objective)
        self.step = 0
        self.tracker = Tracker(cfg.tracking.enabled and self.is_main, cfg.tracking.uri, cfg.tracking.experiment,
                               fallback_path=self.out_dir / FALLBACK_METRICS_FILE)
        self.eval_batch = self.data.eval_batch(cfg.eval.num_clips)
        self.first_rankme: dict[int, float] = {}
        self.nonfinite_streak = 0
        self.nonfinite_total = 0
        self.last_metrics: dict[str, float] = {}
        self.status = "FINISHED"
        self.resumed_from: Path | None = None
        self.init_from: Path | None = None
        self._prepared = False
        self._started = False  # run() got past the start-up checks
        self._saved_step: int | None = None
        self._resume_ck: dict[str, Any] | None = None  # rank 0: the checkpoint read while choosing it

    # ------------------------------------------------------------------ checkpoints
    def state_dict(self) -> dict[str, Any]:
        return {"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(), "rng": _rng_state(),
                "config": OmegaConf.to_yaml(self.cfg, resolve=True), "mlflow_run_id": self.tracker.run_id,
                "first_rankme": {str(k): v for k, v in self.first_rankme.items()},
                "nonfinite_total": self.nonfinite_total, "nonfinite_streak": self.nonfinite_streak,
                "metrics": dict(self.last_metrics), "world_size": self.world,
                "data": {"obs_shape": list(self.data.obs_shape), "action_dim": self.data.action_dim,
                         "factor_names": list(self.data.factor_names)}}

    def _weights_finite(self) -> bool:
        return all(bool(torch.isfinite(t).all()) for t in self.model.state_dict().values() if t.is_floating_point())

    def save(self) -> Path | None:
        """Write a checkpoint of the current step (rank 0 only) and keep the newest
        ``train.keep_checkpoints``. Refuses to write non-finite weights (returns ``None``)."""
        if not self.is_main:
            return None
        if self._saved_step == self.step:
            return latest_checkpoint(self.ckpt_dir)
        if not self._weights_finite():
            msg = (f"not writing a checkpoint at step {self.step}: the weights are not finite; the last good "
                   f"checkpoint {latest_checkpoint(self.ckpt_dir)} is kept")
            warnings.warn(msg, RuntimeWarning, stacklevel=2)
            return None
        try:
            path = save_checkpoint(self.state_dict(), self.ckpt_dir, self.step)
        except OSError as e:  # disk full, quota, permissions: stop rather than train on without checkpoints
            raise TrainingError(f"could not write the checkpoint of step {self.step} to {self.ckpt_dir} ({e}); "
                                f"the previous checkpoint {latest_checkpoint(self.ckpt_dir)} is intact. Free space or "
                                "fix the directory, then continue with train.resume=true") from None
        rotate_checkpoints(self.ckpt_dir, self.cfg.train.keep_checkpoints)
        self._saved_step = self.step
        return path

    def _choose_start(self) -> Path | None:
        """Rank 0: the checkpoint to resume from (``None``: start at step 0), after checking the
        output directory. Unreadable newer checkpoints are renamed ``*.unreadable`` with a warning."""
        existing = list_checkpoints(self.ckpt_dir)
        if not self.cfg.train.resume:
            if existing:
                raise CheckpointError(
                    f"{self.ckpt_dir} already holds checkpoints of an earlier run (newest: {existing[-1].name}). "
                    "Continue it with train.resume=true, or start a new run in another output directory "
                    "(hydra.run.dir=...). Nothing was changed")
            remove_stale_temp_files(self.ckpt_dir)
            return None
        if not existing:
            log.info("train.resume=true but %s holds no checkpoint: starting from step 0", self.ckpt_dir)
            remove_stale_temp_files(self.ckpt_dir)
            return None
        path, self._resume_ck, bad = find_resumable(self.ckpt_dir)  # raises when none can be read (nothing touched)
        remove_stale_temp_files(self.ckpt_dir)  # half-written files of a killed save
        for p, why in bad:
            moved = quarantine(p)
            msg = (f"{why}\nResuming from the newest readable checkpoint {path} instead; the unreadable file "
                   f"was kept as {moved}")
            warnings.warn(msg, RuntimeWarning, stacklevel=2)
        return path

    def _load_resume(self, path: Path) -> None:
        ck = getattr(self, "_resume_ck", None) or load_checkpoint(path, map_location=self.device)
        self._resume_ck = None
        try:
            self.model.load_state_dict(ck["model"])
            self.optimizer.load_state_dict(ck["optimizer"])
            self.scheduler.load_state_dict(ck["scheduler"])
            _set_rng_state(ck["rng"])
            self.step = int(ck["step"])
            self.first_rankme = {int(k): float(v) for k, v in ck.get("first_rankme", {}).items()}
            self.nonfinite_total = int(ck.get("nonfinite_total", 0))
            self.nonfinite_streak = int(ck.get("nonfinite_streak", 0))
            self.last_metrics = {str(k): float(v) for k, v in ck.get("metrics", {}).items()}
        except (RuntimeError, ValueError, KeyError, TypeError, AttributeError, IndexError) as e:
            raise CheckpointError(f"{path} does not match this model/optimizer config "
                                  f"({(str(e).splitlines() or [''])[0][:300]}); resume with the config it was "
                                  "trained with (see its config.yaml)") from None
        if int(ck.get("world_size", self.world)) != self.world:
            log.warning("%s was written by %s process(es), resumed with %d: the data order is the same, results "
                        "match up to floating-point reduction order", path, ck.get("world_size"), self.world)
        drift = _config_drift(ck["config"], self.cfg) if self.is_main else []
        if drift:
            msg = (f"resuming {path} with a different config, so the result will not equal an uninterrupted run: "
                   + "; ".join(drift[:10]) + (" ..." if len(drift) > 10 else ""))
            warnings.warn(msg, RuntimeWarning, stacklevel=2)
        self._resume_run_id = ck.get("mlflow_run_id")
        self.resumed_from = path
        self._saved_step = self.step
        log.info("resumed from %s at step %d", path, self.step)

    def _run_info(self) -> dict[str, Any]:
        try:
            return json.loads((self.out_dir / RUN_INFO_FILE).read_text())
        except (OSError, ValueError):
            return {}

    def prepare(self) -> None:
        """Decide how the run starts (resume, ``model.init_from`` or fresh) — collectively under DDP.

        Called by ``run()``; raises ``CheckpointError`` for an output directory that holds another
        run's checkpoints (without ``train.resume``), unreadable checkpoints, or weights that do not
        fit the model. Nothing is written before these checks pass.
        """
        if self._prepared:
            return
        decision: tuple[str, str | None]
        if self.is_main:
            try:
                path = self._choose_start()
                decision = ("ok", str(path) if path is not None else None)
            except CheckpointError as e:
                decision = ("error", str(e))
        else:
            decision = ("ok", None)
        decision = dist.broadcast_object(decision)
        if decision[0] == "error":
            raise CheckpointError(decision[1])
        self._resume_run_id = None
        if decision[1] is not None:
            self._load_resume(Path(decision[1]))
        elif self.cfg.model.init_from:
            self.init_from = self.objective.load_weights(self.cfg.model.init_from, tracking_uri=self.tracker.uri)
            log.info("model weights initialised from %s", self.init_from)
        elif self.cfg.model.data_init_levels:  # hjepa/models/data_init.py
            data_init(self.model, self.data, self.cfg.model, self.device)
        if self.cfg.train.resume and self._resume_run_id is None and self.is_main:
            self._resume_run_id = self._run_info().get("mlflow_run_id")  # killed before its first checkpoint
        self._prepared = True

    # ------------------------------------------------------------------ tracking
    def _start_tracking(self) -> None:
        if not self.is_main:
            return
        self.out_dir.mkdir(parents=True, exist_ok=True)
        resolved = OmegaConf.to_yaml(self.cfg, resolve=True)
        cfg_path = self.out_dir / "config.yaml"
        if self.resumed_from is None or not cfg_path.exists():
            atomic_write_text(cfg_path, resolved)
        tags = {**_hydra_tags(), "hjepa.output_dir": str(self.out_dir)}
        if self.init_from is not None:
            tags["hjepa.init_from"] = f"{self.cfg.model.init_from} ({self.init_from})"
        self.tracker.start(run_name=self.cfg.tracking.run_name or _default_run_name(self.cfg), run_id=self._resume_run_id,
                           tags=tags)
        if self.tracker.run_id is not None and not self.tracker.resumed:
            self.tracker.log_params(flatten(OmegaConf.to_container(self.cfg, resolve=True)))
            self.tracker.log_artifact(cfg_path)
        if self.tracker.resumed:
            self.tracker.set_tags({"hjepa.resumed_from_step": self.step,
                                   "hjepa.resumed_from": str(self.resumed_from or "(no checkpoint: step 0)")})
        if self.tracker.run_id is not None:
            atomic_write_text(self.out_dir / RUN_INFO_FILE, json.dumps(
                {"mlflow_run_id": self.tracker.run_id, "tracking_uri": self.tracker.uri,
                 "experiment": self.tracker.experiment}, indent=2))

    # ------------------------------------------------------------------ training
    def train_step(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor | float] | None:
        """One optimisation step; returns the scalars to log (0-d tensors), or ``None`` when the step was skipped
        because the loss or gradient was non-finite (on any rank)."""
        cfg = self.cfg
        obs, act = batch["obs"].to(self.device, non_blocking=True), batch["actions"].to(self.device, non_blocking=True)
        m = momentum_schedule(self.step, cfg.train.steps, cfg.regularizer.ema_momentum, cfg.regularizer.ema_momentum_end)
        losses = self.stepper.step(obs, act, m)  # the objective's forward + losses, backward, AdamW, EMA update
        if losses is None:
            self._skip_schedule()
            return None
        self.scheduler.step()
        # tensors, not floats: reading them back syncs a GPU, so that waits for the logging steps
        return {"train/loss": losses.total, "train/grad_norm": losses.grad_norm,
                "train/lr": self.scheduler.get_last_lr()[0], **losses.logs}

    def _skip_schedule(self) -> None:
        """A skipped step still advances the LR schedule: the LR stays a function of the step."""
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # "lr_scheduler.step() before optimizer.step()"
            self.scheduler.step()

    def evaluate(self) -> dict[str, float]:
        metrics = self.objective.evaluate(self.eval_batch, self.data.factor_names, self.device)
        # the references rebuild the HJEPA untrained: only objectives whose module is one (not masked's token model)
        if self.step >= self.cfg.train.steps and self.cfg.eval.reference_probes and isinstance(self.objective.module, HJEPA):
            metrics.update(reference_probes(self.cfg, self.eval_batch, self.data.factor_names, self.data.obs_shape,
                                            self.data.action_dim, self.device))
        alarms = {}
        for k in range(self.objective.num_levels):
            r = metrics[f"eval/level{k}/rankme"]
            first = self.first_rankme.setdefault(k, r)
            alarm = r < self.cfg.train.collapse_alarm_ratio * first
            metrics[f"eval/level{k}/collapse_alarm"] = float(alarm)
            if alarm:
                alarms[k] = (r, first)
        if alarms:
            msg = "; ".join(f"level {k}: RankMe {r:.2f} < {self.cfg.train.collapse_alarm_ratio} x first value {f:.2f}"
                            for k, (r, f) in alarms.items())
            warnings.warn(f"representation collapse at step {self.step}: {msg}", RuntimeWarning, stacklevel=2)
            self.tracker.set_tags({"hjepa.collapse_alarm": f"step {self.step}: {msg}"})
        self.tracker.log_metrics(metrics, self.step)
        self.last_metrics.update(metrics)
        return metrics

    def run(self) -> dict[str, float]:
        cfg = self.cfg
        self.prepare()
        self._start_tracking()
        self._started = True
        total = cfg.train.steps
        if self.step >= total:
            log.info("the run is already complete (step %d of %d)", self.step, total)
        loader = self.data.train_loader(cfg.seed, start_step=self.step, num_steps=max(total - self.step, 0),
                                        rank=self.rank, world_size=self.world)
        if data_fits_device(cfg.train.data_on_device, self.data.train, self.device):
            loader = DeviceBatches(self.data.train, loader.batch_sampler, self.device)
        self.stepper.set_skipped(self.nonfinite_total, self.nonfinite_streak)
        # a DataLoader iterator draws a base seed from the global RNG: keep that out of the RNG stream, so
        # the stream is the same whether the loop started at step 0 or at a resumed step
        rng = torch.get_rng_state()
        batches = iter(loader)
        torch.set_rng_state(rng)
        bar = tqdm(total=total, initial=self.step, disable=not (cfg.train.progress and self.is_main),
                   desc="hjepa", dynamic_ncols=True, mininterval=1.0)
        t0, steps_done = time.time(), 0
        try:
            with _StopRequests() as stop:
                for batch in batches:
                    logs = self.train_step(batch)
                    self.step += 1
                    if logs is None:
                        self._on_nonfinite()
                    else:
                        self.nonfinite_streak = 0
                        steps_done += 1
                        if self.step % cfg.train.log_every == 0 or self.step == total:
                            self._fold_deferred_nonfinite()
                            logs = dist.mean_dict(logs)
                            logs["train/steps_per_s"] = steps_done / max(time.time() - t0, 1e-9)
                            if self.nonfinite_total:
                                logs["train/nonfinite_skipped"] = self.nonfinite_total
                            self.tracker.log_metrics(logs, self.step)
                            self.last_metrics.update(logs)
                            bar.set_postfix(loss=f"{logs['train/loss']:.4f}", refresh=False)
                    if self.step % cfg.train.eval_every == 0 or self.step == total:
                        collapsed = False
                        if self.is_main:
                            m = self.evaluate()
                            collapsed = cfg.train.collapse_stop and any(m[f"eval/level{k}/collapse_alarm"]
                                                                        for k in range(self.objective.num_levels))
                        if dist.any_true(collapsed):
                            self.save()
                            log.warning("stopping early at step %d: collapse alarm (train.collapse_stop=true)",
                                        self.step)
                            break
                    if (self.step % cfg.train.checkpoint_every == 0 or self.step == total) and not self.nonfinite_streak:
                        self.save()
                    bar.update(1)
                    if dist.any_true(stop.signum is not None) and self.step < total:  # (done anyway at the end)
                        self._interrupted(stop.signum or signal.SIGTERM)
        except TrainingInterrupted:
            self.status = "KILLED"
            bar.close()
            self.tracker.end("KILLED")
            raise
        except KeyboardInterrupt:  # a second Ctrl-C: abort without saving
            self.status = "KILLED"
            bar.close()
            self.tracker.end("KILLED")
            raise
        except BaseException:
            self.status = "FAILED"
            bar.close()
            self.tracker.end("FAILED")
            raise
        bar.close()
        return self._finish()

    def _interrupted(self, signum: int) -> None:
        name = signal.Signals(signum).name
        if not self.is_main:
            raise TrainingInterrupted(f"{name}: stopped at step {self.step} (rank 0 writes the checkpoint)", signum)
        path = self.save() if not self.nonfinite_streak else None
        path = path or latest_checkpoint(self.ckpt_dir)
        raise TrainingInterrupted(
            f"{name}: stopped at step {self.step}; checkpoint {path if path else '(none: weights not finite)'}. "
            f"Resume with the same output directory ({self.out_dir}) and train.resume=true", signum)

    def _fold_deferred_nonfinite(self) -> None:
        """CUDA: the skip counts kept on the device (``TrainStep``) are read on logging steps only."""
        total, streak = self.stepper.read_skipped() if self.stepper.defer_checks else (0, 0)
        if total > self.nonfinite_total:
            self.nonfinite_total, self.nonfinite_streak = total - 1, max(streak - 1, 0)
            self._on_nonfinite()

    def _on_nonfinite(self) -> None:
        """Called after a skipped step (``self.step`` already counts it)."""
        self.nonfinite_streak += 1
        self.nonfinite_total += 1
        warnings.warn(f"non-finite loss or gradient at step {self.step}: step skipped "
                      f"({self.nonfinite_streak}/{self.cfg.train.max_nonfinite} in a row)", RuntimeWarning, stacklevel=2)
        self.tracker.log_metrics({"train/nonfinite_skipped": self.nonfinite_total}, self.step)
        self.last_metrics["train/nonfinite_skipped"] = self.nonfinite_total
        if self.nonfinite_streak >= self.cfg.train.max_nonfinite:
            last = latest_checkpoint(self.ckpt_dir)
            where = (f"The last good checkpoint is {last if last else '(none written yet)'}" if self.is_main
                     else "Rank 0 names the last good checkpoint")
            raise TrainingError(
                f"the loss was non-finite for {self.nonfinite_streak} consecutive steps (up to step {self.step}); "
                f"training stopped. {where}. Lower "
                "optim.lr, keep optim.grad_clip > 0, check the data for NaN/inf, or raise train.max_nonfinite; "
                "continue from the checkpoint with train.resume=true")

    def _finish(self) -> dict[str, float]:
        if self.is_main:
            last = latest_checkpoint(self.ckpt_dir)
            if last is not None:
                self.tracker.log_artifact(last, "checkpoints")
            self.tracker.end(self.status)
        return dict(self.last_metrics)

    def summary(self) -> None:
        """Print the run id, final metrics and the command that opens them (nothing when the run
        never started, e.g. rejected at start-up)."""
        if not (self.is_main and self._started):
            return
        m = self.last_metrics
        keys = ["train/loss"] + [k for k in sorted(m) if k.startswith("eval/") and
                                 any(k.endswith(s) for s in ("rankme", "energy_gap", "pred_error_norm"))]
        lines = [f"  {k:32s} {m[k]:.4f}" for k in keys if k in m]
        if m.get("train/nonfinite_skipped"):
            lines.append(f"  {'non-finite steps skipped':32s} {int(m['train/nonfinite_skipped'])}")
        ck = latest_checkpoint(self.ckpt_dir)
        uri = self.tracker.uri
        head = (f"hjepa run finished at step {self.step}" if self.status == "FINISHED"
                else f"hjepa run stopped at step {self.step} ({self.status})")
        if not self.tracker.enabled:
            track = ["  MLflow        : (tracking off)"]
        else:
            rid = self.tracker.run_id or "(none)"
            if self.tracker.failure:
                rid += f" — MLflow failed ({self.tracker.failure}); later metrics in {self.tracker.fallback_path}"
            track = [f"  MLflow run id : {rid}", f"  tracking URI  : {uri}"]
        opener = uri if uri.startswith(("http://", "https://")) else f"mlflow ui --backend-store-uri {uri}"
        tail = [f"  open with     : {opener}"] if self.tracker.enabled else []
        print("\n".join(["", "=" * 72, head, *track, f"  checkpoint    : {ck}", *lines, *tail, "=" * 72]),
              flush=True)


def _default_run_name(cfg: DictConfig) -> str:
    """``<data>-d<depth>-<regularizers>-s<seed>-<HHMMSS>``: readable, and distinct across seeds and jobs
    (MLflow's own random names repeat here because the global RNG is seeded before the run starts)."""
    from .config import level_regularizers

    regs = "+".join(dict.fromkeys(level_regularizers(cfg.regularizer, cfg.model.depth)))
    obj = cfg.objective.name if "objective" in cfg and cfg.objective.name != "next_step" else f"d{cfg.model.depth}"
    return f"{cfg.data.name}-{obj}-{regs}-s{cfg.seed}-{time.strftime('%H%M%S')}"


def _hydra_tags() -> dict[str, str]:
    """Sweep grouping and the override string, when running under Hydra."""
    try:
        from hydra.core.hydra_config import HydraConfig

        hc = HydraConfig.get()
    except (ImportError, ValueError):
        return {}
    tags = {"hjepa.overrides": " ".join(hc.overrides.task) or "(none)", "hjepa.output_dir": hc.runtime.output_dir}
    if str(hc.mode) == "RunMode.MULTIRUN":
        tags["hjepa.sweep_id"] = sweep_id(hc.sweep.dir)
        tags["hjepa.job_num"] = str(hc.job.num)
    return tags


def train(cfg: DictConfig) -> dict[str, float]:
    """Train from a config (library entry point). Returns the final metrics."""
    trainer = Trainer(cfg)
    try:
        return trainer.run()
    finally:
        trainer.summary()


def _cli_formatwarning(message, category, filename, lineno, line=None) -> str:
    """hjepa's own warnings on the command line: one line, without the source line."""
    if f"{os.sep}hjepa{os.sep}" in str(filename):
        return f"hjepa-train: {category.__name__}: {message}\n"
    return _default_formatwarning(message, category, filename, lineno, line)


_default_formatwarning = warnings.formatwarning


def _hydra_main(cfg: DictConfig) -> float | None:
    logging.basicConfig(level=logging.INFO, format="[%(name)s] %(message)s")
    warnings.formatwarning = _cli_formatwarning
    prefix = f"[rank {dist.rank()}] " if dist.launched_by_torchrun() else ""
    try:
        with dist.process_group():
            prefix = f"[rank {dist.rank()}] " if dist.is_distributed() else ""
            metrics = train(cfg)
    except (ConfigError, DataValidationError, CheckpointError, TrainingError, dist.DistributedSetupError) as e:
        # user errors: a clear message and a non-zero exit, no traceback (Hydra would print one)
        print(f"hjepa-train: {prefix}error: {e}", file=sys.stderr, flush=True)
        code = 2 if isinstance(e, (ConfigError, DataValidationError, dist.DistributedSetupError)) else \
            getattr(e, "exit_code", 1)
        sys.exit(code)
    except KeyboardInterrupt:
        print(f"hjepa-train: {prefix}aborted (Ctrl-C) without saving; earlier checkpoints are kept",
              file=sys.stderr, flush=True)
        sys.exit(130)
    return metrics.get("train/loss")


def main() -> None:
    """Console entry point ``hjepa-train``: Hydra CLI with friendly errors for user mistakes."""
    import hydra

    register_configs()
    conf_dir = str(Path(__file__).parent / "conf")
    wrapped = hydra.main(config_path=conf_dir, config_name="config", version_base="1.3")(_hydra_main)
    wrapped()


if __name__ == "__main__":
    main()
