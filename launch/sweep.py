#!/usr/bin/env python
"""lowbit-sweeps CLI: ``python launch/sweep.py SWEEP_FILE [options]`` (installed: ``lowbit-sweep``).

Runs the sweep with Ray Tune on this machine (or the cluster at ``--address`` / ``$RAY_ADDRESS``) and
writes long-format Parquet under ``--results/<sweep name>/``. Exit status: 0 when every trial
finished, 1 when some failed (a summary is printed) or the results folder could not be written
mid-run (disk full, read-only: one line with what was kept and the command that resumes), 2 for bad
input (one line, nothing written), 130 when interrupted by Ctrl-C or SIGTERM (what was reported is
kept, unfinished trials are recorded as INTERRUPTED; rerun with --resume).
"""
from __future__ import annotations

import argparse
import os
import shlex
import sys
from pathlib import Path

if not __package__:
    # Run as a script (python launch/sweep.py): import `lowbit_sweeps.*` from the checkout, and drop
    # this folder from the path so its module names cannot shadow other packages' imports.
    _here = Path(__file__).resolve().parent
    sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _here]
    sys.path.insert(0, str(_here.parent))

import lowbit_sweeps.launch.cluster  # noqa: E402,F401  -- sets Ray/Tune environment defaults before ray is imported
from lowbit_core.config import ConfigError  # noqa: E402

INSTALLED = Path(sys.argv[0]).name == "lowbit-sweep"
"""Started as the installed command: messages then name ``lowbit-sweep`` / ``lowbit-report``."""
PROG = "lowbit-sweep" if INSTALLED else "python launch/sweep.py"
REPORT = "lowbit-report" if INSTALLED else "python analysis/report.py"


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, exit 2 (argparse prints usage + message otherwise)
        sys.stderr.write(f"error: {message} (see --help)\n")
        raise SystemExit(2)


def _version() -> str:
    from importlib import metadata

    try:
        return metadata.version("lowbit-sweeps")
    except metadata.PackageNotFoundError:
        return "unknown (not installed)"


def _epilog() -> str:
    """Plain text under --help: the families and shipped sweeps (read from their registries), and
    where to read more."""
    from lowbit_core.families import family_names
    from lowbit_core.sweep import shipped_sweeps

    shipped = ", ".join(shipped_sweeps()) or "none found"
    return (f"families: {', '.join(family_names())} (or a plug-in's; see README, 'Extending')\n"
            f"shipped sweeps (run by name, e.g. {PROG} vste_window; --list shows their questions): {shipped}\n"
            f"exit status: 0 all trials finished, 1 some failed or the results could not be written, 2 bad input, "
            f"130 interrupted\n"
            f"report: {REPORT} RESULTS_DIR; more: the project's README.md")


def shipped_listing() -> str:
    """Each shipped sweep: its name, family, the first line of its docstring and the questions of the
    meeting record it bears on (``Sweep.questions``; :mod:`lowbit_core.questions`)."""
    import ast
    import textwrap

    from lowbit_core.questions import resolve
    from lowbit_core.sweep import load_sweep, shipped_sweeps

    blocks = []
    for name, path in shipped_sweeps().items():
        sweep = load_sweep(path)
        doc = (ast.get_docstring(ast.parse(path.read_text(encoding="utf-8"))) or "").strip().splitlines()
        lines = [f"{name} ({sweep.family}): {doc[0] if doc else ''}".rstrip(": ")]
        questions = resolve(sweep.questions)
        for q in questions:
            lines += textwrap.wrap(f"{q.id}: {q.text}", width=100, initial_indent="  answers ",
                                   subsequent_indent="    ")
        if not questions:
            lines.append("  answers none of the meeting record's questions")
        blocks.append("\n".join(lines))
    return "\n".join(blocks) if blocks else "no shipped sweeps found"


SLURM_SCRIPT = Path(__file__).resolve().parent / "slurm" / "ray_sweep.sbatch"
"""The SLURM batch script (a Ray cluster on the job's nodes, then this CLI on the first), shipped in
the package: ``sbatch "$(lowbit-sweep --slurm-script)" SWEEP ...`` works without a checkout."""


def slurm_script() -> str:
    """``--slurm-script``: the path of :data:`SLURM_SCRIPT` (ConfigError when the installation lacks it)."""
    if not SLURM_SCRIPT.is_file():
        raise ConfigError(f"the SLURM script is missing from this installation: {SLURM_SCRIPT}")
    return str(SLURM_SCRIPT)


class _PrintAndExit(argparse.Action):
    """An option that prints ``const()`` and exits 0, like ``--version`` (no sweep file needed); a
    ConfigError is one line, exit 2. ``--list`` and ``--slurm-script``."""

    def __init__(self, option_strings, dest, **kw):
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, **kw)

    def __call__(self, parser, namespace, values, option_string=None):
        try:
            print(self.const())
        except ConfigError as exc:
            parser.exit(2, f"error: {exc}\n")
        parser.exit(0)


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog=PROG, formatter_class=argparse.RawDescriptionHelpFormatter, epilog=_epilog(),
                description="Run a lowbit-sweeps sweep with Ray Tune, on this machine or a Ray cluster, and write "
                            "long-format Parquet\nresults under --results/<sweep name>/.")
    p.add_argument("--version", action="version", version=f"lowbit-sweeps {_version()}")
    p.add_argument("--list", action=_PrintAndExit, const=shipped_listing, help="list the shipped sweeps with the questions they answer, then exit")
    p.add_argument("--slurm-script", action=_PrintAndExit, const=slurm_script,
                   help='print the path of the SLURM batch script, then exit: sbatch "$(%(prog)s --slurm-script)" SWEEP ...')
    p.add_argument("sweep_file", help="a sweep module (sweeps/vste_window.py) or a shipped sweep's name (vste_window)")
    p.add_argument("--address", default=os.environ.get("RAY_ADDRESS"),
                   help="Ray cluster to join (host:port); default $RAY_ADDRESS, else start Ray here")
    p.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config key (typed), e.g. --set multi.lr=0.01 --set seeds=[0,1]")
    p.add_argument("--smoke", action="store_true", help="the smoke profile (about a minute on 2 CPUs)")
    p.add_argument("--profile", default=None, help="named profile: default, smoke, full, ...")
    p.add_argument("--dry-run", action="store_true", help="print the trials and resources, then exit")
    p.add_argument("--show", action="store_true", help="print the resolved sweep (after the profile and --set) as a "
                   "sweep file that runs the same trials, then exit")
    p.add_argument("--estimate", action="store_true", help="time a few steps of each kind of trial here and print "
                   "trial-hours, device-hours, wall time and an sbatch --time; writes nothing (launch/estimate.py)")
    p.add_argument("--devices", type=int, default=None, metavar="N",
                   help="with --estimate: the wall time on N devices (default: --max-concurrent, else 1)")
    p.add_argument("--results", default="results", help="results root (default: results/)")
    p.add_argument("--resume", action="store_true", help="continue an interrupted run in the same folder")
    p.add_argument("--extend", action="store_true",
                   help="resume, widening the recorded sweep on purpose (more seeds, grid values or Optuna samples)")
    p.add_argument("--max-concurrent", type=int, default=None, metavar="N", help="at most N trials at once")
    p.add_argument("--retries", type=int, default=None, metavar="N",
                   help="restart a trial that raises up to N times (default: the sweep's `retries`, else 0)")
    p.add_argument("--settle", action="store_true",
                   help="run, decide the sweep's questions, and add seeds in rounds only to undecided comparisons "
                        "(alpha spent over the looks) until each is decided, --max-seeds or --budget; continues "
                        "the folder's sweep when it has one (launch/settle.py)")
    p.add_argument("--max-seeds", type=int, default=None, metavar="N",
                   help="with --settle: at most N seeds per cell (default 16)")
    p.add_argument("--budget", type=float, default=None, metavar="HOURS",
                   help="with --settle: stop before a round whose estimate would pass HOURS of wall time")
    p.add_argument("--margin", dest="margins", action="append", default=[], metavar="ID=VALUE",
                   help="with --settle: the smallest effect that matters for question ID (default: the question's)")
    p.add_argument("--log", dest="trackers", action="append", default=[], metavar="TRACKER",
                   help="also log to an experiment tracker: mlflow, tensorboard or wandb (repeatable; offline "
                        "by default, under the results folder)")
    return p


def _profile(args) -> str:
    if args.smoke and args.profile not in (None, "smoke"):
        raise ConfigError(f"--smoke conflicts with --profile {args.profile}; give one of them")
    return "smoke" if args.smoke else (args.profile or "default")


def print_plan(plan) -> None:
    from lowbit_core.config import flatten
    from lowbit_core.sweep import describe_plan

    s = plan.sweep
    print(f"sweep {s.name} (family {plan.family.name}, profile {plan.profile}): {plan.n_trials} trials, "
          f"metric {s.metric} ({s.mode}), resources per trial: {s.resources.cpu} CPU"
          + (f", {s.resources.gpu} GPU when present" if s.resources.gpu else ""))
    rows = [(t.key, flatten(t.config)) for t in plan.trials] or [(st.key, flatten(st.config)) for st in plan.studies]
    varying = [k for k in rows[0][1] if len({str(r[1][k]) for r in rows}) > 1] if rows else []
    if plan.is_optuna:
        print(f"Optuna (TPE) search: {len(plan.studies)} studies x {plan.sweep.search.num_samples} samples")
    if plan.scheduler:
        settings = {k: v for k, v in describe_plan(plan)["scheduler"].items() if k != "type"}
        print(f"early stopping: {type(plan.scheduler).__name__} on {s.metric} ({s.mode}), epochs as time: "
              + ", ".join(f"{k}={v}" for k, v in settings.items()))
    folded = sum(len(t.points) for t in plan.trials if t.points)
    if folded:
        print(f"folded: {', '.join(plan.sweep.fold)} -- {folded} grid points run batched inside "
              f"{sum(1 for t in plan.trials if t.points)} trials")
    # the family's per-trial description (train: the model's OPs and parameter size), as extra columns
    described = [plan.family.describe(x.config) for x in plan.trials or plan.studies] if plan.family.describe else []
    extra = list(described[0]) if described else []
    table = [["study" if plan.is_optuna else "trial"] + varying + (["searched"] if plan.is_optuna else []) + extra]
    for i, (key, flat) in enumerate(rows):
        cells = [key] + [str(flat[k]) for k in varying]
        if plan.is_optuna:
            cells.append(", ".join(f"{k}~{type(d).__name__}({d.low:g},{d.high:g})"
                                   for k, d in plan.studies[i].distributions.items()))
        table.append(cells + [described[i][k] for k in extra] if described else cells)
    widths = [max(len(r[j]) for r in table) for j in range(len(table[0]))]
    for r in table:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip())
    common = base_differences(plan)
    print("common config (differs from the family defaults): "
          + (", ".join(f"{k}={v}" for k, v in common.items()) or "none") + "; --show prints it as a sweep file")


def base_differences(plan) -> dict:
    """The trials' common config where it differs from the family's defaults (after profile and --set)."""
    from lowbit_core.config import flatten

    defaults = flatten(plan.family.config_cls())
    configs = [flatten(t.config) for t in plan.trials] or [flatten(st.config) for st in plan.studies]
    axes = set(plan.space) | {"seed"}
    return {k: v for k, v in configs[0].items()
            if k not in axes and v != defaults.get(k) and all(c.get(k) == v for c in configs)} if configs else {}


def show_sweep(plan) -> str:
    """The resolved sweep as a sweep file's text: a diff of the family's defaults, its grid axes, seeds,
    metric and questions; Optuna distributions are shown as in the file."""
    s = plan.sweep
    space = ", ".join(f"{k!r}: grid({', '.join(map(repr, v))})" if isinstance(v, tuple) else f"{k!r}: {v!r}"
                      for k, v in plan.space.items())
    base = ",\n          ".join(f"{k!r}: {v!r}" for k, v in base_differences(plan).items())
    questions = ", ".join(repr(q if isinstance(q, str) else q.id) for q in s.questions)
    return "\n".join([
        f'"""{s.name}, resolved (profile {plan.profile}{", --set " + ", ".join(f"{k}={v}" for k, v in plan.overrides.items()) if plan.overrides else ""})."""',
        "from lowbit_core.sweep import Resources, Sweep, grid", "",
        f"SWEEP = Sweep(name={s.name + '_copy'!r}, family={plan.family.name!r}, metric={s.metric!r}, mode={s.mode!r},",
        f"    resources={s.resources!r}, fold={tuple(s.fold)!r},",
        f"    seeds={tuple(plan.seeds)!r}, questions=({questions}{',' if len(s.questions) == 1 else ''}),",
        f"    base={{{base}}},", f"    space={{{space}}})"])


def _planned(args):
    """The checked plan of the command line ``args``; ConfigError (one line) for bad input."""
    from lowbit_sweeps.launch.trackers import check_trackers
    from lowbit_core.families import get_family
    from lowbit_core.sweep import find_sweep_file, load_sweep, parse_set, plan, sweep_file_sha256

    if args.max_concurrent is not None and args.max_concurrent < 1:
        raise ConfigError(f"--max-concurrent must be >= 1, got {args.max_concurrent}")
    if args.retries is not None and args.retries < 0:
        raise ConfigError(f"--retries must be >= 0, got {args.retries}")
    args.trackers = check_trackers(args.trackers)
    if not args.settle and (args.max_seeds is not None or args.budget is not None or args.margins):
        raise ConfigError("--max-seeds, --budget and --margin go with --settle")
    if args.settle and (args.max_seeds is not None and args.max_seeds < 2 or args.budget is not None and args.budget <= 0):
        raise ConfigError(f"--max-seeds must be >= 2 and --budget > 0 hours, got {args.max_seeds} and {args.budget}")
    path = find_sweep_file(args.sweep_file)
    sweep = load_sweep(path)
    overrides, seeds = parse_set(get_family(sweep.family), args.sets)
    return plan(sweep, _profile(args), overrides, seeds, source_sha256=sweep_file_sha256(path),
                source_path=str(path.resolve()), settle=getattr(args, "settle_rounds", ()))


def _summarize(outcome, words: list[str]) -> int:
    """Print where the results are and how the run ended; the exit status (0 all finished, 1 some
    failed or unfinished, 130 interrupted: with the command that resumes, from ``words``)."""
    print(f"results: {outcome.folder} ({outcome.rows_written} rows written this run)")
    if outcome.write_error:
        words = [a for a in words if a not in ("--resume", "--extend")]
        print(f"error: {outcome.write_error}; free space or make the folder writable, then continue with: {PROG} "
              f"{' '.join(map(shlex.quote, words))} --resume", file=sys.stderr)
        return 1
    if outcome.interrupted:
        words = [a for a in words if a not in ("--resume", "--extend")]
        print(f"interrupted: {outcome.done}/{outcome.total} trials done; continue with:\n  {PROG} "
              f"{' '.join(map(shlex.quote, words))} --resume", file=sys.stderr)
        return 130
    if outcome.failed:
        print(f"{outcome.failed} of {outcome.total} trials failed:", file=sys.stderr)
        for key, line in outcome.failures[:20]:
            print(f"  {key}: {line}", file=sys.stderr)
        return 1
    if not outcome.ok:
        print(f"only {outcome.done} of {outcome.total} trials finished", file=sys.stderr)
        if outcome.incomplete:
            print("counted as finished but incomplete on disk (--resume runs them again):", file=sys.stderr)
            for key, line in outcome.incomplete[:20]:
                print(f"  {key}: {line}", file=sys.stderr)
        return 1
    early = f" ({outcome.stopped} stopped early by the scheduler)" if outcome.stopped else ""
    print(f"all {outcome.total} trials finished{early}; report: {REPORT} {outcome.folder}")
    return 0


def run(argv=None) -> int:
    """The CLI on ``argv`` (default ``sys.argv[1:]``): dry run, or run the sweep; the exit status."""
    args = build_parser().parse_args(argv)
    words = sys.argv[1:] if argv is None else [str(a) for a in argv]
    try:
        the_plan = _planned(args)
        if args.show:
            print(show_sweep(the_plan))
            return 0
        if args.dry_run:
            print_plan(the_plan)
            return 0
        if args.estimate:
            from lowbit_sweeps.launch.estimate import run_estimate

            return run_estimate(the_plan, args.devices, args.max_concurrent)
        from lowbit_sweeps.launch.runner import run_plan

        if args.settle:
            from lowbit_sweeps.launch.settle import run_settle

            def make_plan(rounds):
                args.settle_rounds = rounds
                return _planned(args)

            def run_once(plan, resume, extend):
                outcome = run_plan(plan, Path(args.results), args.address, resume, args.max_concurrent, args.retries,
                                   command=[sys.argv[0], *words], extend=extend, trackers=args.trackers)
                return _summarize(outcome, words)

            return run_settle(args, make_plan, run_once)
        outcome = run_plan(the_plan, Path(args.results), args.address, args.resume, args.max_concurrent,
                           args.retries, command=[sys.argv[0], *words], extend=args.extend, trackers=args.trackers)
    except ConfigError as exc:
        sys.stderr.write(f"error: {exc}\n")
        return 2
    except KeyboardInterrupt:  # while Ray was starting, before the sweep ran
        sys.stderr.write("interrupted before the sweep started; nothing was written by this run\n")
        return 130
    finally:
        if "ray" in sys.modules:
            import ray

            if ray.is_initialized():
                ray.shutdown()
    return _summarize(outcome, words)


def main(argv=None) -> int:
    """Entry point (``lowbit-sweep`` and ``python launch/sweep.py``): :func:`run`, where a closed
    stdout (``--dry-run | head``) ends quietly with status 0."""
    try:
        return run(argv)
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())
