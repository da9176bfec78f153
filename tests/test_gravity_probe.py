"""experiments/gravity_probe.py: the linear and MLP readouts behind docs/timescales.md's gravity diagnosis."""

import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parents[1] / "experiments"))
import gravity_probe  # noqa: E402


def _data(n: int, seed: int):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 4, generator=g)
    y = torch.stack([x[:, 0] + 0.5 * x[:, 1], x[:, 2] * x[:, 3]], 1)  # one linear target, one product
    return x, y


def test_ridge_reads_the_linear_target_and_not_the_product():
    x_tr, y_tr = _data(2000, 0)
    x_te, y_te = _data(500, 1)
    r2 = gravity_probe.ridge_r2(x_tr, y_tr, x_te, y_te)
    assert r2[0] > 0.99 and abs(r2[1]) < 0.05


def test_mlp_reads_the_product_that_ridge_cannot():
    x_tr, y_tr = _data(2000, 0)
    x_te, y_te = _data(500, 1)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # small matrices: one thread is fastest (4 s), and CI's two cores stay free
    try:
        r2 = gravity_probe.mlp_r2(x_tr, y_tr, x_te, y_te, epochs=40)
    finally:
        torch.set_num_threads(threads)
    assert r2[0] > 0.95 and r2[1] > 0.8


def test_windows_cut_consecutive_non_overlapping_windows():
    x = torch.arange(2 * 10 * 1, dtype=torch.float32).reshape(2, 10, 1)
    w = gravity_probe.windows(x, 4)
    assert w.shape == (4, 4, 1)  # 2 clips x 2 complete windows, the last 2 frames dropped
    assert w[1, :, 0].tolist() == [4.0, 5.0, 6.0, 7.0] and w[2, 0, 0] == 10.0


def test_run_needs_a_level_one(tmp_path, monkeypatch, capsys):
    class Flat:
        class model:
            depth = 1

    monkeypatch.setattr("hjepa.api.load_run", lambda ref: Flat)
    with pytest.raises(SystemExit, match="depth-1 model"):
        gravity_probe.from_run("somewhere", 10)


def test_a_missing_run_is_a_one_line_error(tmp_path):
    import subprocess

    r = subprocess.run([sys.executable, str(Path(gravity_probe.__file__)), "--run", str(tmp_path / "nowhere")],
                       capture_output=True, text=True)
    assert r.returncode != 0 and "error:" in r.stderr and "does not exist" in r.stderr
    assert "Traceback" not in r.stderr


def test_positions_a_linear_readout_gets_the_centroid_but_not_one_ball():
    """Ball 0's colour turns with the regime's hue, so which blob is ball 0 is a product of colour and
    place: a linear readout of single frames gets the two balls' centroid, not ball 0 alone."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        res = gravity_probe.positions(train_episodes=24, eval_episodes=8, mlp=False)
    finally:
        torch.set_num_threads(threads)
    ball0, _ = res["ball 0 (x / y)"]
    centroid, mlp = res["centroid of both balls (x / y)"]
    assert mlp is None
    assert (centroid > 0.85).all()
    assert (ball0 < centroid - 0.2).all()
