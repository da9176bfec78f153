"""``hjepa-analyze``: figures of trained runs and sweeps (PNG files + MLflow artifacts).

Examples::

    hjepa-analyze run=<mlflow run id>                  # -> hjepa_analysis/<run id>/*.png, logged to the run
    hjepa-analyze --run <id A> --run <id B> --out cmp  # each run, plus side-by-side comparison figures
    hjepa-analyze run=outputs/2026-11-25/13-00-00      # a run directory or checkpoint file works too
    hjepa-analyze sweep=multirun/2026-11-25/13-00-00   # one figure per metric comparing the sweep's runs
    hjepa-analyze sweep=latest --tracking-uri sqlite:///mlflow.db

``key=value`` tokens (as in docs/design.md) are the same as ``--key value``.
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import sys
from pathlib import Path

__all__ = ["main", "build_parser"]

_KV = re.compile(r"^([A-Za-z_][A-Za-z0-9_-]*)=(.*)$")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="hjepa-analyze", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Collapse spectra, energy histograms, energy landscapes and training curves of hjepa runs, "
                    "or a report comparing the runs of a sweep. Writes PNGs to --out and logs them to MLflow.",
        epilog=__doc__.split("Examples::", 1)[1])
    p.add_argument("--run", action="append", default=[], metavar="REF",
                   help="MLflow run id, checkpoint file or run directory (repeat to compare runs)")
    p.add_argument("--sweep", metavar="SWEEP_ID",
                   help="value of the MLflow tag hjepa.sweep_id (e.g. multirun/2026-11-25/13-00-00), a unique "
                        "suffix of it, or 'latest'")
    p.add_argument("--out", metavar="DIR", help="output folder (default: hjepa_analysis/<run id or sweep>)")
    p.add_argument("--tracking-uri", metavar="URI", help="MLflow store (default: $MLFLOW_TRACKING_URI, else "
                                                         "sqlite:///mlflow.db in the working directory)")
    p.add_argument("--clips", type=int, default=None, help="held-out clips to analyse (default: eval.num_clips)")
    p.add_argument("--resolution", type=int, default=41, help="landscape grid points per axis")
    p.add_argument("--device", default="cpu")
    p.add_argument("--seed", type=int, default=0, help="seed of the shuffles and random directions")
    p.add_argument("--no-log", action="store_true", help="do not upload the figures to MLflow")
    p.add_argument("--no-spectra", action="store_true", help="sweep: skip loading checkpoints for spectra")
    return p


def _normalise_argv(argv: list[str]) -> list[str]:
    """``run=abc`` → ``--run abc`` (``tracking_uri=…`` → ``--tracking-uri …``)."""
    out = []
    for tok in argv:
        m = _KV.match(tok)
        if m and not tok.startswith("-"):
            out += ["--" + m.group(1).replace("_", "-"), m.group(2)]
        else:
            out.append(tok)
    return out


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_") or "run"


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(_normalise_argv(list(sys.argv[1:] if argv is None else argv)))
    logging.basicConfig(level=logging.WARNING, format="[%(name)s] %(message)s")
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    if not args.run and not args.sweep:
        print("hjepa-analyze: error: give a run (run=<id> / --run) or a sweep (sweep=<id> / --sweep)", file=sys.stderr)
        return 2
    from omegaconf.errors import ConfigAttributeError, ConfigKeyError

    from hjepa.checkpoint import CheckpointError
    from hjepa.config import ConfigError
    from hjepa.data import DataValidationError

    from analysis import mlflow_io
    from analysis.report import analyze_run, compare_runs, sweep_report

    log = not args.no_log
    try:
        if args.run:
            base = Path(args.out) if args.out else None
            results = []
            for ref in args.run:
                name = _safe(Path(ref).name if not re.match(r"^[0-9a-f]{32}$", ref) else ref)
                if base is None:
                    out = Path("hjepa_analysis") / name
                else:
                    out = base / name if len(args.run) > 1 else base
                res = analyze_run(ref, out, tracking_uri=args.tracking_uri, num_clips=args.clips, log_to_mlflow=log,
                                  device=args.device, resolution=args.resolution, seed=args.seed)
                results.append(res)
                print(f"\n{res.label}  (run {res.run_id}, step {res.step})")
                for k, (c, e) in enumerate(zip(res.collapse, res.energy_stats)):
                    print(f"  level {k}: RankMe {c['rankme']:7.2f}  std_mean {c['std_mean']:.3g}  "
                          f"cosine {c['cosine_mean']:+.3f}  alpha {c['powerlaw_alpha']:.2f}  "
                          f"E_true {e['energy_true']:.3g}  E_shuffled {e['energy_shuffled']:.3g}  "
                          f"(ratio {e['energy_ratio']:.2f}, AUC {e['auc']:.2f})")
                if res.geodesic_spearman is not None:
                    print("  energy-to-goal vs geodesic distance (Spearman, mean over fixed goals): "
                          + "  ".join(f"level {k} {r:+.3f}" for k, r in enumerate(res.geodesic_spearman)))
                for key, p in res.pngs.items():
                    print(f"  {key:17s} {p}")
                print(f"  {'logged to MLflow':17s} {'yes (artifacts/analysis)' if res.logged else 'no'}")
            if len(results) > 1:
                cmp_dir = base if base is not None else Path("hjepa_analysis") / "compare"
                paths = compare_runs(results, cmp_dir)
                print("\ncomparison:")
                for key, p in paths.items():
                    print(f"  {key:20s} {p}")
        if args.sweep:
            if args.sweep == "latest":
                args.sweep = mlflow_io.latest_sweep_id(args.tracking_uri)
            out = Path(args.out) if args.out and not args.run else \
                Path("hjepa_analysis") / ("sweep_" + _safe(args.sweep))
            paths = sweep_report(args.sweep, out, tracking_uri=args.tracking_uri, spectra=not args.no_spectra,
                                 num_clips=args.clips, log_to_mlflow=log, device=args.device)
            print(f"\nsweep report {args.sweep}:")
            for key, p in paths.items():
                print(f"  {key:24s} {p}")
            print(f"  {'summary':24s} {out / 'sweep_summary.json'}")
    except (CheckpointError, mlflow_io.MLflowLookupError, DataValidationError) as e:
        print(f"hjepa-analyze: error: {e}", file=sys.stderr)
        return 1
    except ConfigError as e:  # e.g. a stored config with a mandatory value left unset (???)
        print(f"hjepa-analyze: error: {e}", file=sys.stderr)
        return 2
    except (ConfigAttributeError, ConfigKeyError) as e:
        key = getattr(e, "full_key", None) or str(e).splitlines()[0]
        print(f"hjepa-analyze: error: the checkpoint's stored config has no {key!s}: it was written by an older "
              "hjepa whose settings differ from this version's; analyse it with the hjepa version that trained it",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
