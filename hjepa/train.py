"""Training: ``hjepa-train`` (Hydra) and the ``Trainer`` it drives.

One MLflow run per job; atomic rotating checkpoints holding everything needed for an exact
resume; non-finite losses skipped and counted; Ctrl-C saves and exits; DDP under ``torchrun``.
"""

from __future__ import annotations

import logging
import math
import os
import random
import signal
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf
from tqdm.auto import tqdm

from . import distributed as dist
from .checkpoint import (CheckpointError, latest_checkpoint, load_checkpoint, rotate_checkpoints,
                         save_checkpoint)
from .config import ConfigError, register_configs, validate_config
from .data import DataBundle, DataValidationError, build_data
from .evaluation import evaluate
from .models import HJEPA, build_hjepa, momentum_schedule
from .tracking import Tracker, flatten

__all__ = ["Trainer", "TrainingError", "train", "main", "lr_lambda", "seed_everything", "resolve_device"]

log = logging.getLogger("hjepa.train")


class TrainingError(RuntimeError):
    """Training cannot go on (e.g. the loss stayed non-finite); the message says what to do."""


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
    return {"torch": torch.get_rng_state(), "python": random.getstate(),
            "numpy": [np_state[0], np_state[1].tolist(), *np_state[2:]],
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []}


def _set_rng_state(s: dict[str, Any]) -> None:
    torch.set_rng_state(s["torch"])
    py = s["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    n = s["numpy"]
    np.random.set_state((n[0], np.asarray(n[1], dtype=np.uint32), *n[2:]))
    if s.get("cuda") and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(s["cuda"])


class Trainer:
    """Trains an ``HJEPA`` from a resolved config.

    ``run()`` returns the final evaluation metrics (also logged to MLflow). The checkpoint
    directory is ``<out_dir>/checkpoints``.
    """

    def __init__(self, cfg: DictConfig, data: DataBundle | None = None):
        validate_config(cfg)
        self.cfg = cfg
        self.out_dir = Path(cfg.out_dir)
        self.ckpt_dir = self.out_dir / "checkpoints"
        self.rank, self.world = dist.rank(), dist.world_size()
        self.is_main = self.rank == 0
        if cfg.train.threads > 0:
            torch.set_num_threads(cfg.train.threads)
        self.device = dist.device(resolve_device(cfg.train.device))
        seed_everything(cfg.seed)
        self.data = data if data is not None else build_data(cfg)
        self.model: HJEPA = build_hjepa(cfg.model, cfg.regularizer, self.data.obs_shape, self.data.action_dim)
        self.model.to(self.device)
        if cfg.model.init_from:
            from .api import load_weights_into

            load_weights_into(self.model, cfg.model.init_from)
        self.ddp_model = dist.wrap(self.model, self.device)
        o = cfg.optim
        self.optimizer = torch.optim.AdamW([p for p in self.model.parameters() if p.requires_grad], lr=o.lr,
                                           betas=tuple(o.betas), weight_decay=o.weight_decay)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lr_lambda(o.warmup_steps, cfg.train.steps, o.min_lr_ratio))
        self.step = 0
        self.tracker = Tracker(cfg.tracking.enabled and self.is_main, cfg.tracking.uri, cfg.tracking.experiment)
        self.eval_batch = self.data.eval_batch(cfg.eval.num_clips)
        self.first_rankme: dict[int, float] = {}
        self.nonfinite_streak = 0
        self.nonfinite_total = 0
        self.last_metrics: dict[str, float] = {}
        self.status = "FINISHED"

    # ------------------------------------------------------------------ checkpoints
    def state_dict(self) -> dict[str, Any]:
        return {"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(), "rng": _rng_state(),
                "config": OmegaConf.to_yaml(self.cfg, resolve=True), "mlflow_run_id": self.tracker.run_id,
                "first_rankme": {str(k): v for k, v in self.first_rankme.items()},
                "nonfinite_total": self.nonfinite_total,
                "data": {"obs_shape": list(self.data.obs_shape), "action_dim": self.data.action_dim,
                         "factor_names": list(self.data.factor_names)}}

    def save(self) -> Path | None:
        if not self.is_main:
            return None
        path = save_checkpoint(self.state_dict(), self.ckpt_dir, self.step)
        rotate_checkpoints(self.ckpt_dir, self.cfg.train.keep_checkpoints)
        return path

    def resume(self) -> str | None:
        """Restore from the newest checkpoint in ``ckpt_dir``; returns its MLflow run id."""
        path = latest_checkpoint(self.ckpt_dir)
        if path is None:
            log.info("train.resume=true but %s holds no checkpoint: starting from step 0", self.ckpt_dir)
            return None
        ck = load_checkpoint(path, map_location=self.device)
        try:
            self.model.load_state_dict(ck["model"])
            self.optimizer.load_state_dict(ck["optimizer"])
        except (RuntimeError, ValueError, KeyError) as e:
            raise CheckpointError(f"{path} does not match this model/optimizer config ({str(e).splitlines()[0]}); "
                                  "resume with the config it was trained with") from e
        self.scheduler.load_state_dict(ck["scheduler"])
        _set_rng_state(ck["rng"])
        self.step = int(ck["step"])
        self.first_rankme = {int(k): float(v) for k, v in ck.get("first_rankme", {}).items()}
        self.nonfinite_total = int(ck.get("nonfinite_total", 0))
        log.info("resumed from %s at step %d", path, self.step)
        return ck.get("mlflow_run_id")

    # ------------------------------------------------------------------ tracking
    def _start_tracking(self, run_id: str | None) -> None:
        if not self.is_main:
            return
        tags = _hydra_tags()
        self.tracker.start(run_name=self.cfg.tracking.run_name, run_id=run_id, tags=tags)
        if run_id is None:
            self.tracker.log_params(flatten(OmegaConf.to_container(self.cfg, resolve=True)))
            cfg_path = self.out_dir / "config.yaml"
            cfg_path.parent.mkdir(parents=True, exist_ok=True)
            cfg_path.write_text(OmegaConf.to_yaml(self.cfg, resolve=True))
            self.tracker.log_artifact(cfg_path)

    # ------------------------------------------------------------------ training
    def train_step(self, batch: dict[str, torch.Tensor]) -> dict[str, float] | None:
        """One optimisation step; returns the scalars to log, or ``None`` when the step was skipped
        because the loss or gradient was non-finite."""
        cfg = self.cfg
        obs, act = batch["obs"].to(self.device, non_blocking=True), batch["actions"].to(self.device, non_blocking=True)
        out = self.ddp_model(obs, act)
        losses = self.model.losses(out)
        self.optimizer.zero_grad(set_to_none=True)
        if not dist.all_finite(losses.total):
            return None
        losses.total.backward()
        gnorm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), cfg.optim.grad_clip if cfg.optim.grad_clip > 0
                                               else float("inf"))
        if not dist.all_finite(gnorm):
            self.optimizer.zero_grad(set_to_none=True)
            return None
        self.optimizer.step()
        self.scheduler.step()
        m = momentum_schedule(self.step, cfg.train.steps, cfg.regularizer.ema_momentum, cfg.regularizer.ema_momentum_end)
        self.model.update_targets(m)
        logs = {"train/loss": float(losses.total.detach()), "train/grad_norm": float(gnorm),
                "train/lr": self.scheduler.get_last_lr()[0]}
        for k in range(self.model.depth):
            logs[f"train/level{k}/pred_loss"] = float(losses.pred[k])
            logs[f"train/level{k}/reg_loss"] = float(losses.reg[k])
            if losses.rollout[k] is not None:
                logs[f"train/level{k}/rollout_loss"] = float(losses.rollout[k])
        return logs

    def evaluate(self) -> dict[str, float]:
        metrics = evaluate(self.model, self.eval_batch, self.data.factor_names, self.cfg.eval.probe_l2, self.device)
        alarms = {}
        for k in range(self.model.depth):
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
        run_id = self.resume() if cfg.train.resume else None
        self._start_tracking(run_id)
        total = cfg.train.steps
        loader = self.data.train_loader(cfg.seed, start_step=self.step, num_steps=total - self.step,
                                        rank=self.rank, world_size=self.world)
        bar = tqdm(total=total, initial=self.step, disable=not (cfg.train.progress and self.is_main),
                   desc="hjepa", dynamic_ncols=True, mininterval=1.0)
        t0, steps_done = time.time(), 0
        try:
            for batch in loader:
                logs = self.train_step(batch)
                if logs is None:
                    self._on_nonfinite()
                    self.step += 1
                    continue
                self.nonfinite_streak = 0
                self.step += 1
                steps_done += 1
                if self.step % cfg.train.log_every == 0 or self.step == total:
                    logs["train/steps_per_s"] = steps_done / max(time.time() - t0, 1e-9)
                    self.tracker.log_metrics(logs, self.step)
                    self.last_metrics.update(logs)
                    bar.set_postfix(loss=f"{logs['train/loss']:.4f}", refresh=False)
                if self.is_main and (self.step % cfg.train.eval_every == 0 or self.step == total):
                    m = self.evaluate()
                    stop = cfg.train.collapse_stop and any(m[f"eval/level{k}/collapse_alarm"]
                                                           for k in range(self.model.depth))
                    if stop:
                        self.save()
                        self.status = "FINISHED"
                        log.warning("stopping early: collapse alarm (train.collapse_stop=true)")
                        break
                if self.step % cfg.train.checkpoint_every == 0 or self.step == total:
                    self.save()
                bar.update(1)
        except KeyboardInterrupt:
            self.status = "KILLED"
            path = self.save()
            bar.close()
            self.tracker.end("KILLED")
            raise TrainingError(f"interrupted at step {self.step}; checkpoint saved to {path}. Resume with the same "
                                f"output directory and train.resume=true") from None
        except TrainingError:
            self.status = "FAILED"
            bar.close()
            self.tracker.end("FAILED")
            raise
        bar.close()
        final = self._finish()
        return final

    def _on_nonfinite(self) -> None:
        self.nonfinite_streak += 1
        self.nonfinite_total += 1
        warnings.warn(f"non-finite loss or gradient at step {self.step}: step skipped "
                      f"({self.nonfinite_streak}/{self.cfg.train.max_nonfinite} in a row)", RuntimeWarning, stacklevel=2)
        self.tracker.log_metrics({"train/nonfinite_skipped": self.nonfinite_total}, self.step)
        if self.nonfinite_streak >= self.cfg.train.max_nonfinite:
            last = latest_checkpoint(self.ckpt_dir)
            raise TrainingError(
                f"the loss was non-finite for {self.nonfinite_streak} consecutive steps (step {self.step}); training "
                f"stopped. The last good checkpoint is {last if last else '(none written yet)'}. Lower optim.lr, "
                "check the data for NaN/inf, or raise train.max_nonfinite")

    def _finish(self) -> dict[str, float]:
        if self.is_main:
            last = latest_checkpoint(self.ckpt_dir)
            if last is not None:
                self.tracker.log_artifact(last, "checkpoints")
            self.tracker.end(self.status)
        return dict(self.last_metrics)

    def summary(self) -> None:
        """Print the run id, final metrics and the command that opens them."""
        if not self.is_main:
            return
        m = self.last_metrics
        keys = ["train/loss"] + [k for k in sorted(m) if k.startswith("eval/") and
                                 any(k.endswith(s) for s in ("rankme", "energy_gap", "pred_error_norm"))]
        lines = [f"  {k:32s} {m[k]:.4f}" for k in keys if k in m]
        ck = latest_checkpoint(self.ckpt_dir)
        uri = self.tracker.uri
        print("\n".join([
            "", "=" * 72,
            f"hjepa run finished at step {self.step} ({self.status})",
            f"  MLflow run id : {self.tracker.run_id or '(tracking off or failed)'}",
            f"  tracking URI  : {uri}",
            f"  checkpoint    : {ck}",
            *lines,
            f"  open with     : mlflow ui --backend-store-uri {uri}",
            "=" * 72]), flush=True)


def _hydra_tags() -> dict[str, str]:
    """Sweep grouping and the override string, when running under Hydra."""
    try:
        from hydra.core.hydra_config import HydraConfig

        hc = HydraConfig.get()
    except (ImportError, ValueError):
        return {}
    tags = {"hjepa.overrides": " ".join(hc.overrides.task) or "(none)", "hjepa.output_dir": hc.runtime.output_dir}
    if str(hc.mode) == "RunMode.MULTIRUN":
        tags["hjepa.sweep_id"] = os.environ.get("HJEPA_SWEEP_ID") or str(Path(hc.sweep.dir).as_posix())
        tags["hjepa.job_num"] = str(hc.job.num)
    return tags


def train(cfg: DictConfig) -> dict[str, float]:
    """Train from a config (library entry point). Returns the final metrics."""
    trainer = Trainer(cfg)
    try:
        return trainer.run()
    finally:
        trainer.summary()


def _raise_interrupt(signum, frame) -> None:
    """SIGTERM (e.g. a cluster pre-emption) is handled like Ctrl-C: checkpoint, then exit."""
    raise KeyboardInterrupt


def _hydra_main(cfg: DictConfig) -> float | None:
    logging.basicConfig(level=logging.INFO, format="[%(name)s] %(message)s")
    try:
        with dist.process_group():
            metrics = train(cfg)
    except (ConfigError, DataValidationError, CheckpointError, TrainingError) as e:
        # user errors: a clear message and a non-zero exit, no traceback (Hydra would print one)
        print(f"hjepa-train: error: {e}", file=sys.stderr)
        sys.exit(2 if isinstance(e, (ConfigError, DataValidationError)) else 1)
    return metrics.get("train/loss")


def main() -> None:
    """Console entry point ``hjepa-train``: Hydra CLI with friendly errors for user mistakes."""
    import hydra

    register_configs()
    conf_dir = str(Path(__file__).parent / "conf")
    wrapped = hydra.main(config_path=conf_dir, config_name="config", version_base="1.3")(_hydra_main)
    signal.signal(signal.SIGTERM, _raise_interrupt)
    wrapped()


if __name__ == "__main__":
    main()
