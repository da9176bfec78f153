"""``python -m theory``: every theory check and the bridge experiment's small version, one table.

    python -m theory                 # all checks + the small bridge (depth 1, 2, 3), a few minutes on 2 cores
    python -m theory --ci            # all checks + a tiny bridge (depth 3 only), what CI runs (~30 s)
    python -m theory --no-bridge     # the closed-form / simulation checks only (seconds)

Prints one table (claim, expected, measured, pass/fail, the test that asserts it), writes the
bridge's level × τ heat map under ``--out`` and exits 1 if any row fails.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from .checks import Row, run_checks

CHECK_TEST = "tests/test_theory_checks.py::test_theory_check[{}]"
BRIDGE_TEST = "tests/test_theory_checks.py::test_python_m_theory_ci"


def bridge_rows(tier: str, out: Path) -> list[Row]:
    from . import bridge

    depths = (3,) if tier == "ci" else (1, 2, 3)
    overrides = bridge.CI_OVERRIDES if tier == "ci" else bridge.SMALL_OVERRIDES
    runs = bridge.fresh_dir(out / "runs")
    print(f"bridge training runs in {runs}")
    res = bridge.run_bridge(depths, overrides, out_dir=runs, checks=bridge.small_checks)
    print(f"\nbridge ({tier}: {' '.join(overrides)}), probe R² at each window's last frame: "
          "measured / theory e^(-2S/τ) keep|drop")
    print(bridge.format_table(res))
    fig = bridge.plot_heatmaps(res, out / "timescales_heatmap.png")
    print(f"figure: {fig}")
    return [Row(f"bridge_{i}", c.claim, c.expected, c.measured, c.passed, BRIDGE_TEST) for i, c in enumerate(res.checks)]


def format_rows(rows: list[Row]) -> str:
    lines = ["| # | claim | expected | measured | result | test |", "|---:|---|---|---|---|---|"]
    for i, r in enumerate(rows, 1):
        test = CHECK_TEST.format(r.name) if not r.name.startswith("bridge_") else r.test
        detail = f" (detail: {r.test})" if not r.name.startswith("bridge_") else ""
        lines.append(f"| {i} | {r.claim} | {r.expected} | {r.measured} | {'PASS' if r.passed else 'FAIL'} | "
                     f"{test}{detail} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m theory", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    tier = p.add_mutually_exclusive_group()
    tier.add_argument("--ci", action="store_true", help="a tiny bridge run (depth 3 only)")
    tier.add_argument("--no-bridge", action="store_true", help="skip the bridge experiment")
    p.add_argument("--out", default="outputs/theory", help="where the bridge's runs and figure go")
    a = p.parse_args(argv)
    t0 = time.time()
    rows = run_checks()
    if not a.no_bridge:
        rows += bridge_rows("ci" if a.ci else "small", Path(a.out))
    print()
    print(format_rows(rows))
    failed = sum(not r.passed for r in rows)
    print(f"\n{len(rows) - failed}/{len(rows)} passed in {time.time() - t0:.0f} s")
    return 1 if failed else 0


if __name__ == "__main__":
    from .bridge import cli

    sys.exit(cli(main, "python -m theory"))
