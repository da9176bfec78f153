"""Analysis of trained hjepa runs: collapse spectra, energy tools, landscapes, sweep reports.

Library use (e.g. from a notebook)::

    from analysis import analyze_run, sweep_report, energy_landscape, pair_energies
    res = analyze_run("<mlflow run id>", "figures/")       # PNGs + summary.json, logged to MLflow
    paths = sweep_report("multirun/2026-11-25/13-00-00", "figures/sweep")

Command line: ``hjepa-analyze run=<id>`` / ``hjepa-analyze sweep=<sweep id>`` (see ``hjepa.analyze``).
The collapse metrics themselves are plain functions in :mod:`hjepa.metrics`.
"""

from .energy import (Landscape, energy_landscape, energy_summary, forward_eval_batch, interpolation_energies,
                     landscape_directions, pair_energies)
from .report import RunAnalysis, analyze_run, compare_runs, sweep_report

__all__ = ["Landscape", "energy_landscape", "energy_summary", "forward_eval_batch", "interpolation_energies",
           "landscape_directions", "pair_energies", "RunAnalysis", "analyze_run", "compare_runs", "sweep_report"]
