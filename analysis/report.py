"""Write a sweep's plots and report.md next to its Parquet results, in ``RESULTS_DIR/_report/``.

Usage: ``python analysis/report.py RESULTS_DIR`` (e.g. results/vste_window). The report goes into
the ``_report`` subfolder because Parquet readers skip names starting with ``_``: PNG files beside the
parts would break ``pandas.read_parquet(RESULTS_DIR)``. Prints the paths it wrote and exits 0. Bad input (missing directory, no part files, no rows) prints one line
``error: ...`` to stderr, writes nothing and exits 2.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

if __package__ in (None, ""):
    # Run as a script: import `analysis.*` from the repository root, and drop this folder from the
    # path so its module names (load, tables, ...) cannot shadow other packages' imports.
    _here = Path(__file__).resolve().parent
    sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _here]
    sys.path.insert(0, str(_here.parent))

from analysis.load import ResultsError, load_results, load_trial_status  # noqa: E402
from analysis.summary import has_budget_violation, write_report  # noqa: E402
from analysis.training import is_train_sweep, write_train_report  # noqa: E402

USAGE_EXIT = 2
REPORT_DIR = "_report"


class _OneLineParser(argparse.ArgumentParser):
    """argparse, but a usage error is a single stderr line and exit status 2."""

    def error(self, message: str):
        self.exit(USAGE_EXIT, f"error: {message}; usage: python analysis/report.py RESULTS_DIR\n")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = _OneLineParser(prog="python analysis/report.py", description=__doc__.splitlines()[0])
    parser.add_argument("results_dir", metavar="RESULTS_DIR", help="directory with the sweep's part-*.parquet files")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """CLI entry: load, check, write; return the exit status."""
    args = parse_args(argv)
    results_dir = Path(args.results_dir)
    try:
        df = load_results(results_dir)
        status = load_trial_status(results_dir)
    except ResultsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return USAGE_EXIT
    # The report follows the experiment family: training sweeps (one row per epoch) get accuracy
    # curves and paired differences; probe sweeps the budget-probe report.
    writer = write_train_report if is_train_sweep(df) else write_report
    for path in writer(df, status, results_dir / REPORT_DIR):
        print(path)
    if has_budget_violation(df):
        print("warning: some rows exceed the budget (max_abs_delta > cfg.budget.epsilon); see report.md",
              file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
