"""End-to-end training: the loss falls, the MLflow run holds the contract metrics, the library API loads it."""

import math

import mlflow
import pytest
import torch

import hjepa
from hjepa.api import compose, load_run
from hjepa.train import Trainer, lr_lambda


def _metric_history(client, run_id, key):
    return [m.value for m in sorted(client.get_metric_history(run_id, key), key=lambda m: m.step)]


def test_lr_schedule_warmup_then_cosine():
    f = lr_lambda(10, 110, 0.1)
    assert f(0) == pytest.approx(0.1) and f(9) == pytest.approx(1.0)
    assert f(60) == pytest.approx(0.55)
    assert f(110) == pytest.approx(0.1) and f(500) == pytest.approx(0.1)


def test_short_training_run_loss_falls_and_is_tracked(tmp_path, tmp_tracking, tiny_overrides):
    cfg = compose([*tiny_overrides, "train.steps=40", "train.log_every=5", "train.eval_every=20"], out_dir=str(tmp_path))
    trainer = Trainer(cfg)
    final = trainer.run()
    run_id = trainer.tracker.run_id
    assert run_id
    client = mlflow.tracking.MlflowClient(tracking_uri=tmp_tracking)
    loss = _metric_history(client, run_id, "train/loss")
    assert len(loss) == 8
    assert sum(loss[-3:]) / 3 < 0.6 * sum(loss[:2]) / 2  # the loss falls (SIGReg-dominated early on)
    run = client.get_run(run_id)
    for key in ["train/loss", "train/level0/pred_loss", "train/level0/reg_loss", "train/level1/pred_loss",
                "eval/level0/rankme", "eval/level0/energy_gap", "eval/level1/rankme", "eval/level0/probe_r2/pos_x",
                "eval/level1/probe_r2/room_id"]:
        assert key in run.data.metrics, key
        assert math.isfinite(run.data.metrics[key])
    assert run.data.params["model.depth"] == "2" and run.data.params["regularizer.name"] == "sigreg"
    arts = {a.path for a in client.list_artifacts(run_id)}
    assert "config.yaml" in arts and "checkpoints" in arts
    ckpts = [a.path for a in client.list_artifacts(run_id, "checkpoints")]
    assert ckpts == ["checkpoints/step_00000040.pt"]
    assert final["eval/level0/rankme"] == pytest.approx(run.data.metrics["eval/level0/rankme"])
    # position is decodable from level-0 latents after a short run (probe R² on held-out episodes)
    assert final["eval/level0/probe_r2/pos_x"] > 0.3

    # the library API loads the run by MLflow id and reproduces its energies
    loaded = load_run(run_id)
    assert loaded.step == 40 and loaded.model.depth == 2 and loaded.factor_names[0] == "pos_x"
    batch = trainer.data.eval_batch(8)
    zs = loaded.embed(batch)
    assert [tuple(z.shape) for z in zs] == [(8, 16, 32), (8, 4, 32)]
    e = loaded.energies(batch)
    assert e[0]["true"].shape == (8, 15) and e[1]["shuffled"].shape == (8, 3)
    ref = trainer.model.eval()(batch["obs"], batch["actions"])
    torch.testing.assert_close(zs[0], ref.z[0].detach())


def test_notebook_api_builds_model_and_data(tmp_path, tmp_tracking, tiny_overrides):
    cfg = hjepa.compose([*tiny_overrides, "model.depth=1"])
    data = hjepa.build_data(cfg)
    model = hjepa.build_model(cfg, data)
    batch = data.eval_batch(4)
    assert batch["obs"].shape == (4, 16, 3, 32, 32) and batch["obs"].dtype == torch.float32
    assert 0.0 <= float(batch["obs"].min()) and float(batch["obs"].max()) <= 1.0
    out = model(batch["obs"], batch["actions"])
    assert model.depth == 1 and out.pred[0].shape == (4, 16, 32)


@pytest.mark.slow
def test_collapse_without_regulariser_and_not_with_sigreg_or_ema(tmp_path, tmp_tracking):
    """Acceptance: same budget, `none` collapses (RankMe < 2) while sigreg and ema stay >= 10x higher."""
    ranks = {}
    for reg in ("none", "sigreg", "ema"):
        cfg = compose([f"regularizer={reg}", "train.progress=false"], out_dir=str(tmp_path / reg))
        ranks[reg] = Trainer(cfg).run()["eval/level0/rankme"]
    assert ranks["none"] < 2
    assert ranks["sigreg"] > 10 * ranks["none"] and ranks["ema"] > 10 * ranks["none"]


def test_collapse_small_version(tmp_path, tmp_tracking, tiny_overrides):
    """CI-sized version of the collapse acceptance check: `none` ends far below `sigreg`."""
    ranks = {}
    for reg in ("none", "sigreg"):
        cfg = compose([*tiny_overrides, f"regularizer={reg}", "train.steps=60", "train.eval_every=60",
                       "model.depth=1", "optim.lr=2e-3"], out_dir=str(tmp_path / reg))
        ranks[reg] = Trainer(cfg).run()["eval/level0/rankme"]
    assert ranks["none"] < 3
    assert ranks["sigreg"] > 4 * ranks["none"]
