"""Write a sweep's plots and report.md next to its Parquet results, in ``RESULTS_DIR/_report/``.

Usage: ``python analysis/report.py RESULTS_DIR`` (e.g. results/vste_window), or the installed
``lowbit-report RESULTS_DIR``. The report follows the sweep's family, read from its plan
(``_sweep.json``); for folders without a plan, from the rows (the ``family`` column, else the
columns each family reports). The report goes into the ``_report`` subfolder because Parquet readers
skip names starting with ``_``: PNG files beside the parts would break ``pandas.read_parquet(RESULTS_DIR)``.
Prints the paths it wrote and exits 0. Bad input (missing directory, no part files, no rows, an
unreadable plan, a family without a report) prints one line ``error: ...`` to stderr, writes
nothing and exits 2. A damaged part (unreadable, or another sweep's) is left out: one line on stderr
names it, the report is made from the intact parts and says at its top which files it left out.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

if __package__ in (None, ""):
    # Run as a script: import `lowbit_sweeps.analysis.*` from the repository root, and drop this folder from the
    # path so its names (common, probe, train, ...) cannot shadow other packages' imports.
    _here = Path(__file__).resolve().parent
    sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _here]
    sys.path.insert(0, str(_here.parent))

import importlib  # noqa: E402
import pkgutil  # noqa: E402

from lowbit_sweeps import analysis  # noqa: E402
from lowbit_sweeps.analysis.common.load import ResultsError, load_results, load_trial_status  # noqa: E402
from lowbit_core.results import damaged_line  # noqa: E402
from lowbit_sweeps.analysis.common.plan import SweepPlan  # noqa: E402
from lowbit_sweeps.analysis.common.writing import REPORT_NAME, FamilyReport  # noqa: E402
from lowbit_sweeps.analysis import generic  # noqa: E402

USAGE_EXIT = 2
REPORT_DIR = "_report"
PROG = "python analysis/report.py" if __package__ in (None, "") else "lowbit-report"
# One report per family, in the order tried on folders without a plan (probe claims the rest).
def _family_reports() -> tuple[FamilyReport, ...]:
    """Every family's own report: each package ``analysis/<family>/`` that exports ``REPORT`` (adding
    one touches no shared file). Ordered for folders without a plan, where the first report that
    claims the rows is used: the probe report, the first family's, claims the rest, so it comes last."""
    found = []
    for info in pkgutil.iter_modules(analysis.__path__):
        if info.ispkg:
            report = getattr(importlib.import_module(f"{analysis.__name__}.{info.name}"), "REPORT", None)
            if isinstance(report, FamilyReport) and report.name != generic.NAME:
                found.append(report)
    return tuple(sorted(found, key=lambda r: (r.name == "probe", r.name)))


REPORTS: tuple[FamilyReport, ...] = _family_reports()


class OneLineParser(argparse.ArgumentParser):
    """argparse, but a usage error is a single stderr line and exit status 2."""

    def error(self, message: str):
        self.exit(USAGE_EXIT, f"error: {message}; usage: {PROG} RESULTS_DIR\n")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = OneLineParser(prog=PROG, description=__doc__.splitlines()[0])
    parser.add_argument("results_dir", metavar="RESULTS_DIR", help="directory with the sweep's part-*.parquet files")
    parser.add_argument("--book", action="store_true", help="RESULTS_DIR holds sweep folders: write the findings "
                        "book, organized by question, to RESULTS_DIR/_book/ (analysis/book)")
    parser.add_argument("--no-estimates", action="store_true", help="with --book: do not time the runs it proposes")
    parser.add_argument("--publish", metavar="DIR", default=None, help="with --book: also copy the book, its figures "
                        "and the verdict records (no Parquet) to DIR, e.g. docs/findings")
    return parser.parse_args(argv)


def family_report(df, plan: SweepPlan) -> FamilyReport:
    """The report of the plan's family: its own (``analysis/<family>/``, or the import path the
    family declares), else the generic one; without a plan, the first report that claims the rows."""
    if plan.family is None:
        return next(r for r in REPORTS if r.detects(df))
    for r in REPORTS:
        if r.name == plan.family:
            return r
    if plan.report:  # a plug-in family's own report, by import path
        module, _, attr = plan.report.partition(":")
        try:
            report = getattr(importlib.import_module(module), attr or "REPORT")
        except Exception as exc:  # noqa: BLE001 -- a user's report module failing is one line
            raise ResultsError(f"the report {plan.report!r} of family {plan.family!r} could not be imported: "
                               f"{type(exc).__name__}: {exc}") from None
        if not isinstance(report, FamilyReport):
            raise ResultsError(f"{plan.report!r} is a {type(report).__name__}, not an analysis FamilyReport")
        return report
    return generic.REPORT


def note_damaged(report_md: Path, damaged: list[str]) -> None:
    """Put the damaged files a report left out at the top of its markdown (after the title)."""
    lines = report_md.read_text(encoding="utf-8").split("\n")
    note = ["> **Left out, damaged:** " + "; ".join(damaged) + ". The rows they held are missing from this "
            "report; `--resume` moves such files to `_damaged/` and runs their trials again.", ""]
    report_md.write_text("\n".join(lines[:2] + note + lines[2:]), encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    """CLI entry: load, check, write; return the exit status."""
    args = parse_args(argv)
    results_dir = Path(args.results_dir)
    if args.publish and not args.book:
        print(f"error: --publish goes with --book; usage: {PROG} --book RESULTS_DIR --publish DIR", file=sys.stderr)
        return USAGE_EXIT
    if args.book:
        from lowbit_sweeps.analysis.book import write_book

        try:
            written = write_book(results_dir, estimates=not args.no_estimates)
            if args.publish:
                from lowbit_sweeps.analysis.book import publish

                written += publish(results_dir, args.publish)
        except ResultsError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return USAGE_EXIT
        print("\n".join(map(str, written)))
        return 0
    damaged: list[str] = []

    def skip(path, reason):
        damaged.append(f"`{path.name}` ({reason})")
        print(f"warning: {damaged_line(path, reason)}; left out, the report reads the intact files", file=sys.stderr)

    try:
        plan = SweepPlan.read(results_dir)
        df = load_results(results_dir, on_damaged=skip, sweep=plan.name)
        status = load_trial_status(results_dir, on_damaged=skip)
        report = family_report(df, plan)
    except ResultsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return USAGE_EXIT
    written = report.write(df, status, results_dir / REPORT_DIR, plan)
    if damaged:
        note_damaged(next(p for p in written if p.name == REPORT_NAME), damaged)
    for path in written:
        print(path)
    for line in report.warnings(df):
        print(line, file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
