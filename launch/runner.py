"""Running a planned sweep with Ray Tune: resume bookkeeping, the plan file, Tuner set-up, the run summary."""
from __future__ import annotations

import fcntl
import math
import os
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from lowbit_sweeps.launch.plan_record import matching_plan, new_record, record_run
from lowbit_sweeps.launch.trackers import check_reachable, prepare_environment
from lowbit_core.config import ConfigError, flatten
from lowbit_core.results import (
    DONE_STATUSES, STOPPED_EARLY, ResultsWriteError, ResultsWriter, data_parts, existing_steps, finished_trials,
    latest_status, quarantine_damaged, remove_stale_temp_files, results_schema, rows_per_trial, writable_problem,
)
from lowbit_core.sweep import ASHA, EPOCH, LogUniform, Plan, Study, Uniform, resolve_trial

if TYPE_CHECKING:  # launch.callbacks imports ray: only when a sweep runs
    from lowbit_sweeps.launch.callbacks import NonFiniteStopper, ParquetCallback, Progress, ProgressCallback

PROJECT_ROOT = Path(__file__).resolve().parents[1]


@dataclass
class Outcome:
    total: int
    done: int
    """Trials that ended without failing (earlier runs' included), ``stopped`` of them stopped early."""
    failed: int
    failures: list[tuple[str, str]] = field(default_factory=list)
    interrupted: bool = False
    rows_written: int = 0
    folder: Path | None = None
    best: float = math.nan
    stopped: int = 0
    write_error: str = ""
    """One line when writing results failed mid-run (disk full, read-only: the sweep was stopped)."""
    incomplete: list[tuple[str, str]] = field(default_factory=list)
    """Trials the run counted as finished that are not, with why (:func:`verify_finished`)."""

    @property
    def ok(self) -> bool:
        return not self.interrupted and not self.write_error and self.failed == 0 and self.done >= self.total \
            and not self.incomplete


def git_sha(folder: str | Path | None = None) -> str:
    """The commit (``-dirty`` with uncommitted changes to tracked files) of the git repository holding
    ``folder`` (the sweep file's folder: the user's research code), else of the library's checkout,
    else "unknown" (an installed library outside a repository; rows still carry its version)."""
    for where in ([Path(folder)] if folder else []) + [PROJECT_ROOT]:
        try:
            sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=where, capture_output=True, text=True,
                                 timeout=5).stdout.strip()
            dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=where,
                                   capture_output=True, text=True, timeout=5).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            continue
        if sha:
            return sha + ("-dirty" if dirty else "")
    return "unknown"


def new_run_id() -> str:
    """A unique, time-sortable run id: UTC ``YYYYmmddTHHMMSS-<6 hex>``."""
    return time.strftime("%Y%m%dT%H%M%S", time.gmtime()) + "-" + uuid.uuid4().hex[:6]


class FolderLock:
    """An exclusive flock on ``<folder>/_lock`` (released by the OS even on SIGKILL)."""

    def __init__(self, folder: Path):
        self.path = folder / "_lock"

    def _take(self, fh) -> None:
        """Lock ``fh`` (an open lock file) or close it and raise ConfigError: another run holds it."""
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.close()
            raise ConfigError(f"another run is writing to {self.path.parent}; wait for it or use --results") from None

    def probe(self) -> None:
        """Raise that ConfigError now if another run holds the lock (before Ray starts); writes
        nothing: only an existing lock file is opened, and it is released again at once."""
        if self.path.exists():
            with open(self.path) as fh:
                self._take(fh)

    def __enter__(self):
        self.fh = open(self.path, "a+")
        self._take(self.fh)
        return self

    def __exit__(self, *exc):
        fcntl.flock(self.fh, fcntl.LOCK_UN)
        self.fh.close()


def prepare_folder(results: Path, sweep_name: str, resume: bool, record: dict, extend: bool = False) -> Path:
    """The sweep's result folder, checked before anything is written: no other run is writing to it;
    without --resume it must not already hold results; with --resume its recorded plan, if any, must
    match ``record``; with --extend (a resume) ``record`` may widen it (:func:`launch.plan_record.matching_plan`)."""
    folder = results / sweep_name
    FolderLock(folder).probe()
    if not resume and data_parts(folder):
        raise ConfigError(f"{folder} already holds results; pass --resume to continue that sweep, or "
                          f"--results DIR to write somewhere else")
    if resume:
        matching_plan(folder, record, extend)
    return folder


def _tune_domain(dist):
    """The Ray Tune search domain of a sweep distribution (IntUniform's ``high`` is included)."""
    from ray import tune

    if isinstance(dist, LogUniform):
        return tune.loguniform(dist.low, dist.high)
    if isinstance(dist, Uniform):
        return tune.uniform(dist.low, dist.high)
    return tune.randint(dist.low, dist.high + 1)


def _study_rows(folder: Path, plan: Plan) -> dict[str, dict]:
    """study key -> trial key -> :class:`launch.optuna_state.Rows`: what the Parquet parts hold about
    each trial of the plan's Optuna studies (its searched parameters, first row's time, last step and
    the metric there, and the metric per epoch where the family reports epochs)."""
    import pyarrow.parquet as pq

    from lowbit_sweeps.launch.optuna_state import Rows

    metric = plan.sweep.metric
    searched = sorted({k for st in plan.studies for k in st.distributions})
    studies = {st.key: st for st in plan.studies}
    wanted = ["trial_key", "study", "step", "time", metric, EPOCH, *(f"cfg.{k}" for k in searched)]
    out: dict[str, dict] = {}
    for part in data_parts(folder):
        names = set(pq.read_schema(part).names)
        table = pq.read_table(part, columns=[c for c in wanted if c in names])
        for row in table.to_pylist():
            study = studies.get(row.get("study"))
            if study is None:
                continue
            r = out.setdefault(study.key, {}).get(row["trial_key"])
            if r is None:
                r = Rows({k: row.get(f"cfg.{k}") for k in study.distributions}, row.get("time"), row["step"],
                         row.get(metric))
                out[study.key][row["trial_key"]] = r
            if row.get("time") is not None and (r.first_time is None or row["time"] < r.first_time):
                r.first_time = row["time"]
            if row["step"] >= r.last_step:
                r.last_step, r.last_value = row["step"], row.get(metric)
            if row.get(EPOCH) is not None and row.get(metric) is not None:
                r.by_epoch[int(row[EPOCH])] = row[metric]
    return out


def _params_key(family, study: Study, params: dict) -> str:
    """The trial key of ``study``'s configuration with the searched ``params``."""
    return resolve_trial(family, {"base": flatten(study.config), "study": study.key, **params})[1]


def _ray_config_key(family, config: dict) -> str:
    return resolve_trial(family, config)[1]


def flush_seconds() -> float:
    """``$LOWBIT_FLUSH_SECONDS`` (default 5): at most this much reported data is lost if the driver dies."""
    text = os.environ.get("LOWBIT_FLUSH_SECONDS", "5")
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value >= 0:
        raise ConfigError(f"LOWBIT_FLUSH_SECONDS must be a number >= 0, got {text!r}")
    return value


KEEP_CHECKPOINTS = 2
"""Checkpoints Ray keeps per trial (the newest ones); the one before the newest is the fallback if the
newest was cut short."""


def earlier_checkpoints(folder: Path, done: set[str], keep: int = KEEP_CHECKPOINTS,
                        steps: set[tuple[str, int]] | None = None) -> dict[str, list[str]]:
    """For ``--resume``: trial key -> checkpoint folders that earlier runs left under ``<folder>/_ray``,
    best first (at most ``keep``), for every trial key not in ``done``.

    Found by their markers (:data:`lowbit_core.training.checkpoint.MARKER_FILE`, written next to each
    state), not by Ray's folder names. A folder qualifies when its marker parses, its ``state.pt`` has
    the marker's size (the trial checks the digest and loads it, falling back to the next folder), and
    every step ``1 .. marker step`` of that key is already in the Parquet parts: resuming from it then
    loses no row (rows not flushed before the kill are reported again) and duplicates none (the writer
    skips (trial_key, step) pairs already on disk). Best = highest step, then newest file. ``steps``: the
    (trial_key, step) pairs on disk when the caller has read them already (default: read the parts).
    """
    from lowbit_core.training.checkpoint import MARKER_FILE, STATE_FILE, read_marker

    ray_root = folder / "_ray"
    found: dict[str, list[tuple[int, float, str]]] = {}
    for marker_path in ray_root.rglob(MARKER_FILE) if ray_root.is_dir() else ():
        ckpt = marker_path.parent
        try:
            marker = read_marker(ckpt)
            stat = (ckpt / STATE_FILE).stat()
        except (OSError, ValueError):
            continue
        if marker["trial_key"] in done or stat.st_size != marker["size"]:
            continue
        found.setdefault(marker["trial_key"], []).append((marker["step"], stat.st_mtime, str(ckpt.resolve())))
    if not found:
        return {}
    on_disk: dict[str, set[int]] = {}
    for key, step in existing_steps(folder) if steps is None else steps:
        if key in found:
            on_disk.setdefault(key, set()).add(step)
    out = {}
    for key, candidates in found.items():
        steps = on_disk.get(key, set())
        ok = sorted((c for c in candidates if set(range(1, c[0] + 1)) <= steps), reverse=True)
        if ok:
            out[key] = [path for _, _, path in ok[:keep]]
    return out


def _catch_sigint(event):
    """First Ctrl-C or SIGTERM: set ``event`` (:func:`launch.callbacks.interrupt`, with the signal's
    name for the INTERRUPTED status rows; the stopper ends every trial, Tune returns, what was
    reported is flushed); a second one raises KeyboardInterrupt. Main thread only. Returns the
    handlers it replaced (for :func:`_restore_sigint`)."""
    import signal
    import threading

    from lowbit_sweeps.launch.callbacks import interrupt

    if threading.current_thread() is not threading.main_thread():
        return None

    def handler(signum, frame):
        if event.is_set():
            raise KeyboardInterrupt
        interrupt(f"stopped by {signal.Signals(signum).name}")
        event.set()

    return {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}


def _restore_sigint(previous) -> None:
    import signal

    for sig, handler in (previous or {}).items():
        signal.signal(sig, handler)


@dataclass
class _Run:
    """One invocation's driver-side state under the folder's lock: the writer and what it counts."""

    folder: Path
    run_id: str
    writer: ResultsWriter
    progress: Progress
    stopper: NonFiniteStopper
    parquet_cb: ParquetCallback
    progress_cb: ProgressCallback
    done: set[str]
    """Trial keys earlier runs finished or stopped early (``--resume``; empty otherwise)."""
    stopped_before: set[str] = field(default_factory=set)
    """Those of ``done`` that a scheduler stopped early."""


def _check_retries(sweep, retries: int | None) -> int:
    """``retries`` (default: the sweep's), or ConfigError when it is negative."""
    retries = sweep.retries if retries is None else retries
    if retries < 0:
        raise ConfigError(f"--retries must be >= 0, got {retries}")
    return retries


def _start_cluster(sweep, address: str | None, runtime_env: dict | None = None) -> tuple[dict, int]:
    """Start or join Ray (SIGTERM then interrupts like Ctrl-C) with ``runtime_env`` (the plug-in
    modules shipped to the workers, :func:`lowbit_core.plugins.runtime_env`); returns (the per-trial
    resource request, how many trials fit at once by CPU). ConfigError when one trial needs more CPUs
    than the cluster has. The GPU share is requested only where the cluster has GPUs."""
    from lowbit_sweeps.launch.cluster import cluster_resources, interrupt_on_sigterm, start_ray

    start_ray(address, runtime_env)
    interrupt_on_sigterm()
    res = cluster_resources()
    if sweep.resources.cpu > res.get("CPU", 0):
        raise ConfigError(f"each trial needs {sweep.resources.cpu} CPU but the Ray cluster has {res.get('CPU', 0)}")
    request = {"cpu": sweep.resources.cpu}
    if sweep.resources.gpu > 0 and res.get("GPU", 0) > 0:
        request["gpu"] = sweep.resources.gpu
    return request, max(1, int(res.get("CPU", 1) // sweep.resources.cpu))


def _quarantine(folder: Path, sweep_name: str) -> None:
    """Move the folder's damaged parts to ``_damaged/`` (:func:`lowbit_core.results.quarantine_damaged`),
    printing one line for each to stderr."""
    for damaged in quarantine_damaged(folder, sweep_name):
        print(damaged.line(), file=sys.stderr)


def _open_run(plan: Plan, folder: Path, resume: bool, record: dict, flush_every: float, concurrency: int,
              extend: bool = False, trackers: list[str] = ()) -> _Run:
    """Under the folder's lock: clear stale temp files, record this run in ``_sweep.json``, move damaged
    parts aside and read what earlier runs finished (``--resume``), and set up the writer, progress,
    callbacks and trackers."""
    from lowbit_sweeps.launch.callbacks import NonFiniteStopper, ParquetCallback, Progress, ProgressCallback, TrialEnds
    from lowbit_sweeps.launch.trackers import tracker_listeners

    sweep = plan.sweep
    remove_stale_temp_files(folder)
    run_id = new_run_id()
    record_run(folder, record, run_id, resume, extend)
    if resume:
        _quarantine(folder, sweep.name)
    writer = ResultsWriter(folder, results_schema(plan.family.config_cls, plan.family.metrics), run_id,
                           flush_seconds=flush_every)
    done = finished_trials(folder, steps=writer.seen) if resume else set()
    stopped_before = {k for k, row in latest_status(folder).items() if row["status"] == STOPPED_EARLY} & done
    progress = Progress(total=plan.n_trials, metric=sweep.metric, mode=sweep.mode, slots=concurrency)
    stopper = NonFiniteStopper([sweep.metric] + (["loss"] if "loss" in plan.family.metrics else []))
    ends = TrialEnds(plan.family, stopper, type(plan.scheduler).__name__ if plan.scheduler else None)
    listeners = tracker_listeners(list(trackers), folder, sweep.name, run_id, plan.family.metrics)
    parquet_cb = ParquetCallback(writer, plan.family, sweep.name, {"git_sha": record["git_sha"]}, ends, listeners)
    progress_cb = ProgressCallback(progress, plan.family, ends)
    return _Run(folder, run_id, writer, progress, stopper, parquet_cb, progress_cb, done, stopped_before)


def make_scheduler(plan: Plan):
    """A fresh Ray Tune scheduler for one Tuner of ``plan`` (None without one): ``ASHAScheduler`` or
    ``HyperBandScheduler``, time in epochs; metric and mode come from the Tuner's config."""
    from ray.tune.schedulers import ASHAScheduler, HyperBandScheduler

    spec = plan.scheduler
    if spec is None:
        return None
    if isinstance(spec, ASHA):
        return ASHAScheduler(time_attr=EPOCH, max_t=spec.max_epochs, grace_period=spec.grace_period,
                             reduction_factor=spec.reduction_factor, brackets=spec.brackets)
    return HyperBandScheduler(time_attr=EPOCH, max_t=spec.max_epochs, reduction_factor=spec.reduction_factor)


def hyperband_brackets(spec) -> int:
    """How many brackets Ray Tune's ``HyperBandScheduler`` makes for ``spec`` (a :class:`HyperBand`
    with ``max_epochs`` resolved): ``s_max + 1 = round(log(max_epochs) / log(reduction_factor)) + 1``
    (Li et al. 2018, Algorithm 1, with R = max_epochs and eta = reduction_factor), as Ray computes it."""
    import numpy as np

    return int(np.round(np.log(spec.max_epochs) / np.log(spec.reduction_factor))) + 1


def check_hyperband_concurrency(plan: Plan, concurrent: int | None, what: str) -> None:
    """ConfigError (one line) when the sweep's HyperBand provably stops no trial because at most
    ``concurrent`` trials are alive at once (None: no limit; ``what`` names the limit).

    Ray Tune places a trial in a bracket when the search creates it, in order: the first bracket
    (s = 0) holds ``b`` = :func:`hyperband_brackets` trials that all run the full ``max_epochs`` and
    are never stopped, and it takes each new trial while fewer than ``b`` of its trials are alive
    (a finished trial leaves it). Under a limit of ``concurrent`` the search creates a trial only
    when one of the slots is free (a paused trial keeps its slot), so with ``concurrent <= b`` the
    first bracket holds fewer than ``b`` alive trials whenever a new one arrives: it takes every
    trial and nothing is stopped. (With ``concurrent > b`` later brackets get trials; whether they
    stop any then depends on timing.)"""
    from lowbit_core.sweep import HyperBand

    spec = plan.scheduler
    if not isinstance(spec, HyperBand) or concurrent is None:
        return
    b = hyperband_brackets(spec)
    if concurrent <= b:
        raise ConfigError(
            f"HyperBand(reduction_factor={spec.reduction_factor:g}, max_epochs={spec.max_epochs}) with {what} "
            f"would stop no trial: its first bracket runs {b} trials to the end and takes every new trial while "
            f"fewer than {b} of them are alive, which {concurrent} at a time never exceeds; valid: no "
            f"--max-concurrent (every trial gets its bracket up front), --max-concurrent > {b}, or scheduler "
            "ASHA(...), which stops trials at any concurrency")


def _trainable(plan: Plan, run: _Run, resume: bool, request: dict):
    """The family's trainable with its resources and parameters: on ``--resume`` the checkpoints of
    trials killed with the driver (they continue from them, same trial key), and the driver's working
    directory (relative data paths are the driver's; Tune runs each trial in its own folder)."""
    from ray import tune

    from lowbit_core.trainables import trainable_for

    resume_from = earlier_checkpoints(run.folder, run.done, steps=run.writer.seen) if resume else {}
    trainable = tune.with_parameters(trainable_for(plan.sweep.family), resume=resume_from, cwd=os.getcwd(),
                                     plugins=tuple(s.module for s in plan.plugins), fingerprint=plan.fingerprint)
    return tune.with_resources(trainable, request)


def _tuner_factory(plan: Plan, run: _Run, trainable, max_concurrent: int | None, retries: int):
    """``make(param_space, num_samples=1, search_alg=None) -> tune.Tuner`` for this run: the sweep's
    metric and mode, its scheduler (a fresh one per Tuner), actors reused, trial folders named by trial
    id under ``<folder>/_ray/<run id>``, the run's callbacks and stopper, ``retries`` restarts, the
    newest checkpoints kept."""
    from ray import tune

    sweep = plan.sweep

    def make(param_space: dict, num_samples: int = 1, search_alg=None, scheduler=None):
        return tune.Tuner(
            trainable,
            param_space=param_space,
            tune_config=tune.TuneConfig(
                metric=sweep.metric, mode=sweep.mode, num_samples=num_samples, search_alg=search_alg,
                scheduler=scheduler or make_scheduler(plan), max_concurrent_trials=max_concurrent, reuse_actors=True,
                trial_dirname_creator=lambda t: t.trial_id,
            ),
            run_config=tune.RunConfig(
                name=run.run_id, storage_path=str((run.folder / "_ray").resolve()), verbose=0,
                callbacks=[run.parquet_cb, run.progress_cb], stop=run.stopper,
                failure_config=tune.FailureConfig(max_failures=retries),
                checkpoint_config=tune.CheckpointConfig(num_to_keep=KEEP_CHECKPOINTS),
            ),
        )

    return make


def _fit_grid(plan: Plan, run: _Run, make_tuner) -> None:
    """One Tuner over every grid trial not finished before (trials as JSON text, :attr:`Trial.ray_base`)."""
    from ray import tune

    finished = [set(t.keys) <= run.done for t in plan.trials]
    todo = [t for t, f in zip(plan.trials, finished) if not f]
    run.progress.already_done = sum(finished)
    run.progress.already_stopped = sum(1 for t, f in zip(plan.trials, finished) if f and set(t.keys) & run.stopped_before)
    if todo:
        make_tuner({"base": tune.grid_search([t.ray_base for t in todo]), "study": ""}).fit()


def _fit_optuna(plan: Plan, run: _Run, make_tuner, resume: bool, concurrency: int) -> None:
    """One Tuner per study until an interrupt, at most ``concurrency`` trials at once: OptunaSearch on
    the run's study in the study's journal (:mod:`launch.optuna_state`), which knows the trials
    finished before (``--resume``, ``--extend``) and runs the unfinished ones again with their exact
    parameters (same trial key, from their checkpoints) before sampling the rest; the sweep's ASHA
    starts with the earlier trials' rung records (:func:`launch.optuna_state.warm_asha`)."""
    from functools import partial

    import optuna
    from ray.tune.search import ConcurrencyLimiter
    from ray.tune.search.optuna import OptunaSearch

    from lowbit_sweeps.launch.optuna_state import (KeyedOptunaSearch, TrialSeededTPE, continue_study, journal_trials,
                                                   new_study, open_journal, study_name, warm_asha)

    sweep = plan.sweep
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    rows = _study_rows(run.folder, plan) if resume else {}
    for study in plan.studies:
        if run.stopper.interrupt.is_set():
            break
        key_of = partial(_params_key, plan.family, study)
        storage = open_journal(run.folder, study.key, run.run_id)
        known = rows.get(study.key, {})
        cont = continue_study(journal_trials(storage, key_of) if resume else [], known, run.done, study.num_samples)
        run.progress.already_done += len(cont.finished)
        run.progress.already_stopped += len({k.key for k in cont.finished} & run.stopped_before)
        for k in cont.finished:
            run.progress.offer(k.value)
        space = {"base": flatten(study.config), "study": study.key,
                 **{k: _tune_domain(d) for k, d in study.distributions.items()}}
        # studies of one seed share the sampler's seed (paired across optimizers); different seeds
        # draw independently
        sampler = TrialSeededTPE(sweep.search.sampler_seed * 100_003 + getattr(study.config, "seed", 0))
        name = study_name(sweep.name, study.key, run.run_id)
        new_study(storage, name, "minimize" if sweep.mode == "min" else "maximize",
                  OptunaSearch.convert_search_space(space), cont, sampler)
        if cont.remaining <= 0:
            continue
        searcher = KeyedOptunaSearch(metric=sweep.metric, mode=sweep.mode, sampler=sampler, study_name=name,
                                     storage=storage, key_of=key_of)
        scheduler = make_scheduler(plan)
        if scheduler is not None:
            history = {k: r.by_epoch for k, r in known.items() if r.by_epoch}
            scheduler = warm_asha(scheduler, history, partial(_ray_config_key, plan.family))
        make_tuner(space, num_samples=cont.remaining, scheduler=scheduler,
                   search_alg=ConcurrencyLimiter(searcher, max_concurrent=concurrency)).fit()


def _fit(plan: Plan, run: _Run, make_tuner, resume: bool, concurrency: int) -> bool:
    """Run the trials (grid, or Optuna studies at most ``concurrency`` trials at once) with the first
    Ctrl-C or SIGTERM turned into a graceful stop; always record every started trial without a status
    as INTERRUPTED (after an interrupt), flush the writer (a write error is kept in ``run.writer.error``)
    and end the progress line. Returns whether the run was interrupted (Ctrl-C, SIGTERM, write error)."""
    from lowbit_sweeps.launch.callbacks import INTERRUPT_REASON

    interrupted = False
    run.stopper.interrupt.clear()
    previous = _catch_sigint(run.stopper.interrupt)
    try:
        if plan.is_optuna:
            _fit_optuna(plan, run, make_tuner, resume, concurrency)
        else:
            _fit_grid(plan, run, make_tuner)
    except KeyboardInterrupt:
        interrupted = True
    finally:
        _restore_sigint(previous)
        stopped = run.stopper.interrupt.is_set()
        interrupted = interrupted or stopped
        if interrupted:
            run.parquet_cb.interrupt_unfinished(INTERRUPT_REASON[0] if stopped else "stopped by SIGINT")
        try:
            run.writer.close()
        except ResultsWriteError:
            pass  # kept in run.writer.error: the CLI reports it in one line
        run.progress_cb.finish()
    return interrupted


def verify_finished(plan: Plan, folder: Path, claimed: int) -> tuple[int, list[tuple[str, str]]]:
    """Read back what the run counted: (the plan's trials finished on disk, the incomplete ones as
    (trial key, why)). A trial is finished when its latest ``_trials/`` status is TERMINATED or
    STOPPED_EARLY and every row that status counted is in the Parquet parts (a status without a row
    count needs one row); a grid trial needs all its folded keys, an Optuna study counts at most
    ``num_samples`` distinct finished keys. A done status with rows missing is listed with the
    counts; ``claimed`` (the trials the progress counted done) above the finished count with no such
    trial to blame (a configuration run twice) is listed as one line."""
    latest = latest_status(folder)
    on_disk = rows_per_trial(existing_steps(folder))
    if plan.is_optuna:
        studies = {s.key for s in plan.studies}
        ours = {k for k, row in latest.items() if row.get("study") in studies}
    else:
        ours = {k for t in plan.trials for k in t.keys}
    incomplete, complete = [], set()
    for key in sorted(ours & set(latest)):
        row = latest[key]
        if row["status"] not in DONE_STATUSES:
            continue
        need = 1 if row.get("rows") is None else int(row["rows"])
        if on_disk.get(key, 0) >= need:
            complete.add(key)
        else:
            incomplete.append((key, f"{row['status']} at step {row.get('step')} with {need} rows, "
                                    f"{on_disk.get(key, 0)} on disk"))
    if plan.is_optuna:
        done = sum(min(s.num_samples, sum(1 for k in complete if latest[k]["study"] == s.key)) for s in plan.studies)
    else:
        done = sum(set(t.keys) <= complete for t in plan.trials)
    if claimed > done and not incomplete:
        incomplete.append(("(sweep)", f"{claimed} trials counted as finished, {done} distinct trials finished on disk"))
    return done, incomplete


def _outcome(plan: Plan, run: _Run, interrupted: bool) -> Outcome:
    """The run's summary: trials done (earlier runs' included; read back from disk,
    :func:`verify_finished`), failed with their errors, rows written."""
    p = run.progress
    done, incomplete = verify_finished(plan, run.folder, p.already_done + p.done)
    return Outcome(total=plan.n_trials, done=done, failed=p.failed, failures=p.failures,
                   interrupted=interrupted, rows_written=run.writer.rows_written, folder=run.folder, best=p.best,
                   stopped=p.already_stopped + p.stopped, incomplete=incomplete,
                   write_error=str(run.writer.error or ""))


def run_plan(plan: Plan, results: Path, address: str | None, resume: bool, max_concurrent: int | None,
             retries: int | None = None, command: list[str] | None = None, extend: bool = False,
             trackers: list[str] = ()) -> Outcome:
    """Run every trial of ``plan`` that has not finished before; write Parquet under results/<sweep>
    and the plan, ``_sweep.json`` (:mod:`launch.plan_record`; ``command``: default ``sys.argv``).

    A trial that raises is restarted up to ``retries`` times (default: the sweep's ``retries``);
    one whose loss turns NaN/inf is stopped and counted as failed; one the sweep's scheduler stops
    is recorded as stopped early. ``extend``: a resume that may widen the recorded plan (more seeds,
    grid values, Optuna samples). ``trackers``: ``--log`` names (:mod:`launch.trackers`). A resume
    moves damaged parts to ``_damaged/`` and reruns the trials they held. Bad input (also a
    ``--resume`` of a different plan) raises ConfigError before anything is written.
    """
    retries = _check_retries(plan.sweep, retries)
    flush_every = flush_seconds()
    resume = resume or extend
    record = new_record(plan, sys.argv if command is None else command,
                        git_sha(Path(plan.source_path).parent if plan.source_path else None))
    folder = prepare_folder(results, plan.sweep.name, resume, record, extend)
    problem = writable_problem(folder)
    if problem:
        raise ConfigError(f"{problem}; valid: a writable folder (--results DIR)")
    check_hyperband_concurrency(plan, max_concurrent, f"--max-concurrent {max_concurrent}")
    prepare_environment(list(trackers))
    check_reachable(list(trackers))
    from lowbit_core.plugins import runtime_env

    request, concurrency = _start_cluster(plan.sweep, address, runtime_env(list(plan.plugins)))
    slots = min(max_concurrent or concurrency, concurrency)
    if plan.is_optuna and not max_concurrent:  # the Optuna search runs at most `concurrency` trials at once
        check_hyperband_concurrency(plan, concurrency, f"{concurrency} trials at once (the Ray cluster's CPUs)")
    folder.mkdir(parents=True, exist_ok=True)  # only after every refusal: bad input leaves no folder
    with FolderLock(folder):
        run = _open_run(plan, folder, resume, record, flush_every, slots, extend, trackers)
        make_tuner = _tuner_factory(plan, run, _trainable(plan, run, resume, request), max_concurrent, retries)
        interrupted = _fit(plan, run, make_tuner, resume, max_concurrent or concurrency)
    return _outcome(plan, run, interrupted)
