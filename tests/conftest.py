import os
from pathlib import Path

import pytest
import torch

# Tests run on 2 CPU cores in CI: keep torch from oversubscribing them.
torch.set_num_threads(min(2, torch.get_num_threads()))
os.environ.setdefault("HYDRA_FULL_ERROR", "0")
# Tests keep generated data and checkpoints fetched from MLflow in the repository's git-ignored
# .cache/hjepa (reused between sessions), not in the user's cache; a test needing another place sets
# HJEPA_CACHE itself.
os.environ.setdefault("HJEPA_CACHE", str(Path(__file__).resolve().parents[1] / ".cache" / "hjepa"))


@pytest.fixture
def tmp_tracking(tmp_path, monkeypatch):
    """An isolated MLflow SQLite store and data cache for one test."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("HJEPA_CACHE", str(tmp_path / "cache"))
    return uri


# A configuration small enough for end-to-end tests on 2 cores.
TINY = [
    "data.num_train_episodes=24", "data.num_eval_episodes=8", "data.episode_len=32", "data.clip_len=16",
    "data.batch_size=8",
    "eval.num_clips=16", "model.latent_dim=32", "model.pred_dim=64", "model.encoder_width=16",
    "train.progress=false", "optim.warmup_steps=5",
]


@pytest.fixture
def tiny_overrides():
    return list(TINY)
