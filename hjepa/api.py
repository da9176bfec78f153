"""Library API for notebooks and the CLI tools: compose configs, build models, load trained runs,
and read embeddings and energies of a batch."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import torch
from omegaconf import DictConfig, OmegaConf
from torch import Tensor

from .checkpoint import CheckpointError, latest_checkpoint, load_checkpoint
from .config import check_no_missing_values, register_configs, validate_config
from .data import DataBundle, build_data
from .evaluation import shuffle_permutation
from .mlflow_checkpoints import fetch_run_checkpoint
from .models import HJEPA, JEPAOutput, build_hjepa
from .objectives import OBJECTIVES
from .paths import cache_root

__all__ = ["compose", "build_model", "load_run", "LoadedRun", "resolve_checkpoint", "load_weights_into"]

_RUN_ID = re.compile(r"^[0-9a-f]{32}$")


def compose(overrides: Sequence[str] = (), out_dir: str = ".") -> DictConfig:
    """The resolved training config for Hydra-style ``overrides`` (no Hydra run directory)."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    register_configs()
    conf_dir = str(Path(__file__).parent / "conf")
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=conf_dir, version_base="1.3"):
        cfg = hydra_compose(config_name="config", overrides=[*overrides, f"out_dir={out_dir}"])
    validate_config(cfg)
    return cfg


def build_model(cfg: DictConfig, data: DataBundle | None = None, obs_shape=None, action_dim: int | None = None) -> HJEPA:
    """An untrained ``HJEPA`` for ``cfg``; shapes from ``data`` (or ``obs_shape``/``action_dim``)."""
    validate_config(cfg)
    if data is not None:
        obs_shape, action_dim = data.obs_shape, data.action_dim
    if obs_shape is None or action_dim is None:
        raise ValueError("build_model needs a DataBundle or both obs_shape and action_dim")
    return build_hjepa(cfg.model, cfg.regularizer, tuple(obs_shape), int(action_dim))


def resolve_checkpoint(ref: str | Path, tracking_uri: str | None = None) -> Path:
    """A checkpoint file from a path, a run directory, a ``checkpoints/`` directory or an MLflow run id
    (its newest ``checkpoints/`` artifact, fetched from ``tracking_uri`` — default ``$MLFLOW_TRACKING_URI`` —
    into the per-user cache, see ``hjepa.mlflow_checkpoints``)."""
    p = Path(str(ref)).expanduser()
    if p.is_file():
        return p
    if p.is_dir():
        for d in (p, p / "checkpoints"):
            last = latest_checkpoint(d)
            if last is not None:
                return last
        raise CheckpointError(f"no step_XXXXXXXX.pt checkpoint in {p} or {p / 'checkpoints'}")
    if _RUN_ID.match(str(ref)):
        return fetch_run_checkpoint(str(ref), tracking_uri)
    raise CheckpointError(f"checkpoint {ref} does not exist: expected a step_XXXXXXXX.pt file, a run directory "
                          "or an MLflow run id (32 hex digits)")


def _is_auxiliary(key: str) -> bool:
    """EMA targets and regulariser buffers: state a warm start may lack or not need."""
    return ".target." in key or ".regularizer." in key


def _model_settings_diff(saved_yaml: str, model_cfg) -> str:
    """``model.depth=1 (this run: 2), …`` for the model.* settings that differ from a checkpoint's."""
    try:
        old = OmegaConf.to_container(OmegaConf.create(saved_yaml).model, resolve=False)
        new = OmegaConf.to_container(model_cfg, resolve=True)
    except Exception:  # noqa: BLE001 — only an aid for the message
        return ""
    diff = [f"model.{k}={old.get(k)!r} (this run: {new.get(k)!r})" for k in sorted(set(old) | set(new))
            if k != "init_from" and old.get(k) != new.get(k)]
    return f"; it was trained with {', '.join(diff[:6])}" if diff else ""


def load_weights_into(model: HJEPA, ref: str | Path, tracking_uri: str | None = None, model_cfg=None) -> Path:
    """Initialise ``model`` from a trained checkpoint (``model.init_from``), through the safe loader
    (``weights_only=True``); returns the checkpoint's path.

    A masked-prediction run (``objective=masked``) initialises level 0's encoder only (see
    ``hjepa.objectives.transfer``). Otherwise every encoder, predictor and action-encoder weight
    must match in name and shape. EMA targets
    and regulariser buffers are copied when both sides have them; an EMA target the checkpoint
    lacks (e.g. SIGReg-pretrained, EMA fine-tuned) starts as a copy of its loaded online encoder.
    """
    path = resolve_checkpoint(ref, tracking_uri)
    ck = load_checkpoint(path)
    from .objectives.transfer import checkpoint_objective, load_masked_into_level0

    if checkpoint_objective(ck) == "masked":  # pretrain-then-hierarchy: the encoder becomes level 0's
        return load_masked_into_level0(model, ck, path, str(ref))
    state, own = ck["model"], model.state_dict()
    unexpected = [k for k in state if k not in own and not _is_auxiliary(k)]
    missing = [k for k in own if k not in state and not _is_auxiliary(k)]
    shapes = [f"{k} {tuple(state[k].shape)} vs {tuple(own[k].shape)}" for k in state
              if k in own and tuple(getattr(state[k], "shape", ())) != tuple(own[k].shape)]
    if unexpected or missing or shapes:
        parts = [f"{name}: {', '.join(keys[:4])}{' ...' if len(keys) > 4 else ''}"
                 for name, keys in (("unexpected", unexpected), ("missing", missing), ("shape mismatch", shapes)) if keys]
        hint = _model_settings_diff(ck["config"], model_cfg) if model_cfg is not None else ""
        raise CheckpointError(f"model.init_from={ref}: the weights of {path} do not fit this model ({'; '.join(parts)})"
                              f"{hint}. Use the model.* settings it was trained with")
    model.load_state_dict({k: v for k, v in state.items() if k in own}, strict=False)
    with torch.no_grad():
        for i, lvl in enumerate(model.levels):
            if getattr(lvl, "target", None) is not None and not any(k.startswith(f"levels.{i}.target.") for k in state):
                lvl.target.module.load_state_dict(lvl.encoder.state_dict())
    return path


@dataclass
class LoadedRun:
    """A trained model with its config: embeddings and energies of batches."""

    model: HJEPA
    cfg: DictConfig
    step: int
    path: Path
    factor_names: list[str]

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @torch.no_grad()
    def forward(self, batch: dict[str, Tensor]) -> JEPAOutput:
        self.model.eval()
        return self.model(batch["obs"].to(self.device), batch["actions"].to(self.device))

    def embed(self, batch: dict[str, Tensor]) -> list[Tensor]:
        """Online latents per level: ``[(B, T_k, D), …]``."""
        return [z.cpu() for z in self.forward(batch).z]

    def energies(self, batch: dict[str, Tensor], seed: int = 0) -> list[dict[str, Tensor]]:
        """Per level: energies ``(B, T_k − 1)`` of true pairs and of shuffled (incompatible) pairs."""
        out = self.forward(batch)
        perm = shuffle_permutation(batch["obs"].shape[0], seed).to(self.device)
        return [{"true": self.model.energy(out, k).cpu(), "shuffled": self.model.energy(out, k, perm).cpu()}
                for k in range(self.model.depth)]

    def data(self) -> DataBundle:
        """The datasets this run was trained on (regenerated or read from the cache)."""
        return build_data(self.cfg)


def stored_config(yaml_text: str) -> DictConfig:
    """A checkpoint's config with keys added to hjepa since it was written filled from the current
    defaults (the ``model`` and ``regularizer`` schemas), so older runs keep loading."""
    from .config import ModelConfig, RegularizerConfig

    cfg = OmegaConf.create(yaml_text)
    if "model" in cfg and "macro_action_norm" not in cfg.model:
        cfg.model.macro_action_norm = "layer"  # written before the option existed: the old macro-action encoder
    for key, schema in (("model", ModelConfig), ("regularizer", RegularizerConfig)):
        if key in cfg:
            unknown = sorted(set(cfg[key]) - set(OmegaConf.structured(schema)))
            if unknown:
                raise CheckpointError(f"the run's config has {', '.join(f'{key}.{k}' for k in unknown)}, which this "
                                      "version of hjepa does not know: the run was trained by a newer or modified "
                                      "hjepa; load it with that version")
            merged = OmegaConf.merge(OmegaConf.structured(schema), cfg[key])
            cfg[key] = OmegaConf.create(OmegaConf.to_container(merged, resolve=True))
    return cfg


def _data_cache_for(stored: str | None) -> str:
    """The data cache of a loaded run: the one it was trained with when that is an existing absolute
    folder and ``$HJEPA_CACHE`` is unset, else the per-user cache root (never a folder relative to
    whatever directory the notebook runs in)."""
    if stored and not os.environ.get("HJEPA_CACHE") and Path(stored).is_absolute() and Path(stored).is_dir():
        return str(stored)
    return str(cache_root())


def load_run(ref: str | Path, device: str | torch.device = "cpu", tracking_uri: str | None = None) -> LoadedRun:
    """Load a trained model from a checkpoint path, run directory or MLflow run id (looked up in
    ``tracking_uri``, default ``$MLFLOW_TRACKING_URI``); the file is read with ``weights_only=True``."""
    path = resolve_checkpoint(ref, tracking_uri)
    ck = load_checkpoint(path, map_location=device)
    cfg = stored_config(ck["config"])
    if OmegaConf.select(cfg, "objective.name", default="next_step") == "masked":
        raise CheckpointError(f"{path} is a masked-prediction run (objective=masked): it has no hierarchy to load; "
                              "use it as level 0 of one with model.encoder=tubelet model.init_from=<this run>")
    check_no_missing_values(cfg)
    cfg.data.cache_dir = _data_cache_for(cfg.data.get("cache_dir"))
    meta = ck.get("data", {})
    model = build_hjepa(cfg.model, cfg.regularizer, tuple(meta["obs_shape"]), int(meta["action_dim"]))
    # heads that only trained the world model (the pixel decoder) stay out
    heads = OBJECTIVES.get(OmegaConf.select(cfg, "objective.name", default="next_step"), OBJECTIVES["next_step"]).head_modules
    state = {k: v for k, v in ck["model"].items() if k.split(".", 1)[0] not in heads}
    try:
        model.load_state_dict(state)
    except RuntimeError as e:
        raise CheckpointError(f"{path}: weights do not match the stored config ({str(e).splitlines()[0][:300]})") from e
    model.to(device).eval()
    return LoadedRun(model, cfg, int(ck["step"]), path, list(meta.get("factor_names", [])))
