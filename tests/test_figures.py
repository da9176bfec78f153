"""Figure layout: titles fit, coinciding lines stay visible, legends cover no data, axes do not
exaggerate small changes (issue 13, point 5). No training: synthetic inputs."""

from __future__ import annotations

import numpy as np

from analysis import plots


def _renderer(fig):
    fig.canvas.draw()
    return fig.canvas.get_renderer()


def test_long_titles_are_wrapped_inside_the_figure():
    title = "energy from compatible to incompatible target — sigreg · rooms-d2-sigreg-s0-051206 (3f9a2b) · step 300"
    alphas = np.linspace(0, 1, 5)
    fig = plots.plot_interpolation([(alphas, np.ones((5, 3))), (alphas, np.ones((5, 3)))], title=title)
    r = _renderer(fig)
    box = fig._suptitle.get_window_extent(r)
    assert "\n" in fig._suptitle.get_text()
    assert box.x0 >= 0 and box.x1 <= fig.bbox.width


def test_coinciding_spectra_both_stay_visible():
    s = [np.geomspace(1, 1e-3, 16)]
    fig = plots.plot_spectra({"online z": s, "target z̄": s}, {"online z": [5.0], "target z̄": [5.0]}, singular={
        "online z": s, "target z̄": s})
    for ax in fig.axes[:2]:
        online, target = ax.get_lines()[:2]
        np.testing.assert_array_equal(online.get_ydata(), target.get_ydata())
        assert online.get_linewidth() > 1.5 * target.get_linewidth()  # the wide line shows around the thin one
        assert target.get_linestyle() != online.get_linestyle() and target.get_zorder() > online.get_zorder()


def test_training_curves_show_the_training_loss_and_keep_zero_in_view():
    steps = list(range(10, 310, 10))
    loss = {"total": (steps, list(np.geomspace(1.0, 0.05, len(steps)))),
            "level 0 prediction": (steps, list(np.geomspace(0.8, 0.04, len(steps))))}
    hist = {"rankme": {0: ([100, 200, 300], [40.1, 40.3, 40.2])},
            "energy_gap": {0: ([100, 200, 300], [0.50, 0.51, 0.52])},
            "probe_r2/x": {0: ([100, 200, 300], [0.30, 0.31, 0.32])}}
    fig = plots.plot_training_curves(hist, train_loss=loss)
    ax_loss, ax_rank, ax_gap, ax_r2 = fig.axes[:4]
    assert ax_loss.get_title().startswith("training loss") and ax_loss.get_yscale() == "log"
    assert [ln.get_label() for ln in ax_loss.get_lines()] == ["total", "level 0 prediction"]
    assert len(ax_loss.get_lines()[0].get_xdata()) == 30
    for ax in (ax_rank, ax_gap, ax_r2):
        lo, hi = ax.get_ylim()
        assert lo <= 0 < hi  # a 0.5 % change of RankMe is a flat line, not a cliff
    assert ax_rank.get_ylim()[1] < 45 and ax_r2.get_ylim()[1] >= 1.0


def test_sweep_legend_is_outside_every_panel():
    hist = {0: ([10, 20], [1.0, 2.0]), 1: ([10, 20], [1.5, 2.5])}
    series = [{"": {0: hist[0]}}, {"": hist}, {"": hist}]
    fig = plots.plot_sweep_metric("rankme", series, ["model.depth=1", "model.depth=2", "model.depth=3"])
    assert all(ax.get_legend() is None for ax in fig.axes)
    r = _renderer(fig)
    legend = fig.legends[0].get_window_extent(r)
    for ax in fig.axes:
        assert not legend.overlaps(ax.get_window_extent(r))
    assert [t.get_text() for t in fig.legends[0].get_texts()] == ["model.depth=1", "model.depth=2", "model.depth=3"]


def test_identical_series_say_so_in_the_legend():
    s = [np.geomspace(1, 1e-3, 8)]
    fig = plots.plot_spectra({"online z": s, "target z̄": s, "other": [s[0] * 2]})
    labels = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert labels == ["online z", "target z̄ (identical to online z)", "other"]


def test_narrow_energy_ranges_keep_their_tick_labels():
    rng = np.random.default_rng(0)
    narrow = [{"true": 0.14 + 0.001 * rng.random(50), "shuffled": 0.14 + 0.001 * rng.random(50)}]
    fig = plots.plot_energy_histograms({"none": narrow})
    fig.canvas.draw()
    ax = fig.axes[0]
    labels = [t.get_text() for t in ax.get_xticklabels(minor=True) + ax.get_xticklabels() if t.get_text()]
    assert labels  # a collapsed run's energies still have numbers on their axis
