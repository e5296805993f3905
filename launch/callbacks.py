"""Driver-side Tune callbacks: Parquet rows (via lowbit_core.results) and one progress line."""
from __future__ import annotations

import math
import re
import threading
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from ray import tune

from lowbit_core.config import flatten
from lowbit_core.families import Family
from lowbit_core.metric_values import MetricTypeError, coerce_metric
from lowbit_core.results import FINISHED, STOPPED_EARLY, ResultsWriteError, ResultsWriter
from lowbit_core.sweep import EPOCH, resolve_points
from lowbit_core.sweep import resolve_trial as resolve


def _error_line(trial) -> str:
    """One line: the exception (last traceback line) and the innermost frame that raised it."""
    path = getattr(trial, "error_file", None)
    if not path:
        return "failed (no error message recorded)"
    try:
        with open(path) as fh:
            lines = [ln.strip() for ln in fh if ln.strip()]
    except OSError:
        return "failed (error file unreadable)"
    if not lines:
        return "failed"
    frames = [ln for ln in lines if ln.startswith('File "')]
    where = ""
    if frames:
        m = re.match(r'File "(.+)", line (\d+), in (.+)', frames[-1])
        if m:
            where = f" (at {Path(m.group(1)).name}:{m.group(2)} in {m.group(3)})"
    stored = getattr(trial, "path", None)  # the trial's folder under <results>/<sweep>/_ray/
    return f"{lines[-1]}{where}; traceback: {Path(stored) / 'error.txt' if stored else path}"


# Set by the driver's SIGINT/SIGTERM handler (launch.runner) or when results cannot be written: the
# stopper then ends every trial. Module-level because Tune pickles its stopper and an Event cannot be
# pickled.
INTERRUPT = threading.Event()
INTERRUPT_REASON = ["stopped by SIGINT"]
"""Why :data:`INTERRUPT` was set: the ``error`` of the INTERRUPTED status rows (:func:`interrupt`)."""


def interrupt(reason: str) -> None:
    """Stop every trial (:data:`INTERRUPT`), ``reason`` (e.g. "stopped by SIGTERM") going into their
    INTERRUPTED status rows; the first reason of a run stays."""
    if not INTERRUPT.is_set():
        INTERRUPT_REASON[0] = reason
        INTERRUPT.set()


class NonFiniteStopper(tune.Stopper):
    """Stops a trial whose watched metric (the sweep's metric and ``loss``) is reported NaN or inf.

    Runs on the driver before the callbacks see the result, so the row with the non-finite value is
    still written; the callbacks then record the trial as failed (``reasons[trial_id]``) instead of
    finished, the sweep goes on, and a later ``--resume`` runs it again. A NaN is deterministic, so
    it is not retried (``Sweep.retries`` covers trials that raise).
    """

    def __init__(self, metrics):
        self.metrics = tuple(dict.fromkeys(metrics))
        self.reasons: dict[str, str] = {}
        self.interrupt = INTERRUPT

    def __call__(self, trial_id, result) -> bool:
        if trial_id in self.reasons:  # failed already (e.g. a row the results writer refused)
            return True
        for name in self.metrics:
            value = result.get(name)
            if isinstance(value, (int, float)) and not math.isfinite(value):
                step = result.get("step", result.get("training_iteration"))
                self.reasons.setdefault(trial_id, f"stopped: non-finite {name} ({value}) at step {step}")
                return True
        return False

    def stop_all(self) -> bool:
        return INTERRUPT.is_set()

    def __getstate__(self):
        return {k: v for k, v in self.__dict__.items() if k != "interrupt"}

    def __setstate__(self, state):
        self.__dict__.update(state, interrupt=INTERRUPT)


class TrialEnds:
    """How a trial that Tune reports complete (not errored) ended, the same for every callback:
    ERROR (stopped by the :class:`NonFiniteStopper`, or failed by :meth:`fail`: a row of it the
    results writer refused; with its reason), INTERRUPTED (Ctrl-C / SIGTERM
    cut it short), STOPPED_EARLY (the sweep's scheduler stopped it before its planned epochs: Tune
    completes such a trial like a finished one, so the last reported epoch tells them apart), or
    TERMINATED (it ran to its end)."""

    def __init__(self, family: Family, stopper: NonFiniteStopper | None = None, scheduler: str | None = None):
        self.family, self.stopper, self.scheduler = family, stopper, scheduler
        self.epoch_key = family.epoch_key
        self._failed: dict[str, str] = {}

    def fail(self, trial_id: str, reason: str) -> None:
        """Mark a trial failed with ``reason`` (the first reason stays): it ends as ERROR, and the
        stopper (when there is one) stops it at its next result."""
        reasons = self.stopper.reasons if self.stopper is not None else self._failed
        reasons.setdefault(trial_id, reason)

    def failure(self, trial_id: str) -> str | None:
        """Why the trial failed (:meth:`fail`, a non-finite metric), or None."""
        reason = self.stopper.reasons.get(trial_id) if self.stopper is not None else None
        return reason or self._failed.get(trial_id)

    def planned_epochs(self, trial) -> int | None:
        if self.scheduler is None or self.epoch_key is None:
            return None
        return int(flatten(resolve(self.family, trial.config)[0])[self.epoch_key])

    def stopped_early(self, trial) -> str | None:
        """'stopped early by ASHA at epoch 3 of 10' for a trial the scheduler stopped, else None."""
        planned = self.planned_epochs(trial)
        epoch = (trial.last_result or {}).get(EPOCH)
        if planned is None or not isinstance(epoch, int) or epoch >= planned:
            return None
        return f"stopped early by {self.scheduler} at epoch {epoch} of {planned}"

    def ended(self, trial) -> tuple[str, str]:
        """(status, reason) of a completed trial."""
        reason = self.failure(trial.trial_id)
        if reason:
            return "ERROR", reason
        if self.stopper is not None and self.stopper.interrupt.is_set():
            # stopped by Ctrl-C / SIGTERM (or cut short at the same moment): not finished, so --resume reruns it
            return "INTERRUPTED", INTERRUPT_REASON[0]
        early = self.stopped_early(trial)
        return (STOPPED_EARLY, early) if early else (FINISHED, "")


def last_step(trial) -> int | None:
    result = trial.last_result or {}
    step = result.get("step", result.get("training_iteration"))
    return int(step) if isinstance(step, (int, float)) else None


class ParquetCallback(tune.Callback):
    """Turns every reported result into one long-format row; records each trial's end.

    ``listeners`` (the experiment trackers, :class:`launch.trackers.TrackerForwarder`) follow what is
    written: ``setup(**info)`` when a Tuner starts, ``row_added(trial, trial_key, row)`` for each row
    the writer takes (not a (trial_key, step) already written), ``trial_ended(trial, failed)`` and
    ``experiment_ended(trials, **info)``.

    Every trial that started gets a status row: Tune calls no hook for the trials it stops when the
    sweep is interrupted, so the driver calls :meth:`interrupt_unfinished` then. When the writer
    fails (:class:`lowbit_core.results.ResultsWriteError`: disk full, read-only) the sweep is stopped
    (:func:`interrupt`) instead of raising into Tune; the driver reports ``writer.error``. A row the
    writer refuses (a value that does not fit its column: ``writer.rejected``) fails only its trial
    (:meth:`TrialEnds.fail`: stopped, recorded as ERROR with the one-line reason), never another
    trial's rows."""

    def __init__(self, writer: ResultsWriter, family: Family, sweep: str, provenance: dict, ends: TrialEnds,
                 listeners: list | None = None):
        self.writer, self.family, self.ends = writer, family, ends
        self.static = {"sweep": sweep, "family": family.name, "run_id": writer.run_id, **provenance}
        self._trials: dict[str, tuple[str, list[tuple[str, dict]]]] = {}
        self._unfinished: dict[str, object] = {}  # trial id -> trial, from its start to its status row
        self.listeners = list(listeners or [])
        self._rejected_seen = 0

    def _write(self, fn, *args) -> bool:
        """``fn(*args)`` (a writer call); a write failure stops the sweep instead of raising into Tune;
        each row the writer refused fails its trial (:meth:`TrialEnds.fail`)."""
        try:
            return fn(*args)
        except ResultsWriteError:
            interrupt("stopped: results could not be written")
            return False
        finally:
            rejected = getattr(self.writer, "rejected", ())
            for r in rejected[self._rejected_seen:]:
                if r.trial_id:
                    self.ends.fail(r.trial_id, r.reason)
            self._rejected_seen = len(rejected)

    def setup(self, stop=None, num_samples=None, total_num_samples=None, **info):
        for listener in self.listeners:
            listener.setup(stop=stop, num_samples=num_samples, total_num_samples=total_num_samples, **info)

    def _trial(self, trial) -> tuple[str, list[tuple[str, dict]]]:
        """(study, [(key, cfg columns)] of every grid point the trial runs: one unless folded)."""
        if trial.trial_id not in self._trials:
            points = [(key, {f"cfg.{k}": v for k, v in flatten(cfg).items()})
                      for cfg, key in resolve_points(self.family, trial.config)]
            self._trials[trial.trial_id] = (trial.config.get("study", ""), points)
        return self._trials[trial.trial_id]

    def on_trial_start(self, iteration, trials, trial, **info):
        self._unfinished[trial.trial_id] = trial

    def on_trial_result(self, iteration, trials, trial, result, **info):
        self._unfinished[trial.trial_id] = trial
        study, points = self._trial(trial)
        key, cols = points[int(result.get("_point", 0))]
        row = {k: self._value(k, v) for k, v in result.items() if k in self.family.metrics}
        row.update(self.static)
        row.update(cols)
        row.update(
            trial_id=trial.trial_id, trial_key=key, study=study, step=int(result.get("step", result.get("training_iteration", 0))),
            seed=cols.get("cfg.seed"), host=result.get("_host") or result.get("hostname"),
            node_ip=result.get("node_ip"), node_id=result.get("_node_id"), device=result.get("_device"), time=datetime.now(timezone.utc),
            **{"ver.python": result.get("_ver_python"), "ver.torch": result.get("_ver_torch"),
               "ver.ray": result.get("_ver_ray"), "ver.lowbit_sweeps": result.get("_ver_lowbit_sweeps")},
        )
        if self._write(self.writer.add, row):
            for listener in self.listeners:
                listener.row_added(trial, key, row)

    def _value(self, name: str, value):
        """A reported metric as its declared type (the trial converted it already; a value that does
        not convert is left for the writer to refuse, which fails its trial)."""
        try:
            return coerce_metric(name, self.family.metrics[name], value)
        except (MetricTypeError, ValueError):
            return value

    def _ended(self, trial, status: str, error: str = "") -> None:
        self._unfinished.pop(trial.trial_id, None)
        study, points = self._trial(trial)
        for key, _ in points:
            self._write(self.writer.trial_ended, {
                "trial_key": key, "trial_id": trial.trial_id, "run_id": self.writer.run_id, "study": study,
                "status": status, "error": error, "time": datetime.now(timezone.utc), "step": last_step(trial)})
        for listener in self.listeners:
            listener.trial_ended(trial, failed=status == "ERROR")

    def on_trial_complete(self, iteration, trials, trial, **info):
        self._ended(trial, *self.ends.ended(trial))

    def on_trial_error(self, iteration, trials, trial, **info):
        if INTERRUPT.is_set():
            # Ctrl-C in a terminal signals the whole process group: a worker's trial then dies of the
            # same interrupt (KeyboardInterrupt, a killed actor); --resume reruns it either way
            self._ended(trial, "INTERRUPTED", INTERRUPT_REASON[0])
            return
        self._ended(trial, "ERROR", _error_line(trial))

    def interrupt_unfinished(self, reason: str) -> int:
        """An INTERRUPTED status row (``error`` = ``reason``) for every trial that started and has no
        status row yet; how many trials. Called by the driver after an interrupt."""
        unfinished = list(self._unfinished.values())
        for trial in unfinished:
            self._ended(trial, "INTERRUPTED", reason)
        return len(unfinished)

    def on_step_end(self, iteration, trials, **info):
        self._write(self.writer._maybe_flush)

    def on_experiment_end(self, trials, **info):
        if INTERRUPT.is_set():  # before the trackers' end: W&B waits for the runs of unended trials
            self.interrupt_unfinished(INTERRUPT_REASON[0])
        self._write(self.writer.flush)
        for listener in self.listeners:
            listener.experiment_ended(trials, **info)


def clock(seconds: float) -> str:
    """A duration as ``45s``, ``3m05s`` or ``1h02m``."""
    s = int(round(max(0.0, seconds)))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s // 60 % 60:02d}m"


@dataclass
class Progress:
    """Counts across every Tuner of one sweep run (Optuna sweeps run one Tuner per study). ``done``
    counts trials that ended without failing (``stopped`` of them stopped early by the scheduler);
    ``already_*`` count those of earlier runs (``--resume``). ``slots``: trials that run at once."""

    total: int
    metric: str
    mode: str
    already_done: int = 0
    already_stopped: int = 0
    done: int = 0
    stopped: int = 0
    failed: int = 0
    running: int = 0
    best: float = math.nan
    failures: list[tuple[str, str]] = field(default_factory=list)
    slots: int = 1
    started: float = field(default_factory=time.monotonic)
    durations: list[float] = field(default_factory=list)
    running_since: dict[str, float] = field(default_factory=dict)

    def offer(self, value) -> None:
        if value is None or not isinstance(value, (int, float)) or math.isnan(value):
            return
        if math.isnan(self.best) or (value < self.best if self.mode == "min" else value > self.best):
            self.best = float(value)

    def trial_started(self, trial_id: str, now: float | None = None) -> None:
        self.running_since.setdefault(trial_id, time.monotonic() if now is None else now)

    def trial_ended(self, trial_id: str, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        start = self.running_since.pop(trial_id, None)
        if start is not None:
            self.durations.append(now - start)

    def seconds_left(self, now: float | None = None) -> float | None:
        """Estimated seconds until every trial has ended, from the mean duration D of the trials this
        run ended: each running trial needs D minus what it ran (at least 0), each not yet started one
        D, shared over the slots (at most one per trial left). None before any trial has ended."""
        if not self.durations:
            return None
        now = time.monotonic() if now is None else now
        mean = sum(self.durations) / len(self.durations)
        left = max(0, self.total - self.already_done - self.done - self.failed)
        running = [max(0.0, mean - (now - t)) for t in self.running_since.values()]
        work = sum(running) + max(0, left - len(running)) * mean
        return work / max(1, min(self.slots, left)) if left else 0.0

    def line(self, now: float | None = None) -> str:
        now = time.monotonic() if now is None else now
        best = "-" if math.isnan(self.best) else f"{self.best:.5g}"
        notes = ([f"{self.already_stopped + self.stopped} stopped early"] if self.already_stopped + self.stopped else []) \
            + ([f"{self.already_done} from before"] if self.already_done else [])
        left = self.seconds_left(now)
        return (f"trials {self.already_done + self.done}/{self.total} done"
                + (f" ({', '.join(notes)})" if notes else "")
                + f", {self.running} running, {self.failed} failed | best {self.metric} {best} | "
                  f"{clock(now - self.started)} elapsed, {'?' if left is None else '~' + clock(left)} left")

    def short_line(self, now: float | None = None) -> str:
        """The line's compact form for a narrow terminal: counts, best value, elapsed and left."""
        now = time.monotonic() if now is None else now
        best = "-" if math.isnan(self.best) else f"{self.best:.4g}"
        left = self.seconds_left(now)
        return (f"{self.already_done + self.done}/{self.total} done, {self.running} run, {self.failed} failed"
                f" | best {best} | {clock(now - self.started)}, {'?' if left is None else '~' + clock(left)} left")


def fit_width(line: str, short: str, width: int) -> str:
    """``line`` if it fits in ``width`` - 1 columns (a full-width line wraps and then scrolls instead of
    being rewritten in place), else the ``short`` form, cut with '…' if even that is too long."""
    room = max(10, width - 1)
    if len(line) <= room:
        return line
    return short if len(short) <= room else short[: room - 1] + "…"


class ProgressCallback(tune.Callback):
    """One progress line: rewritten in place on a terminal (fitted to its width), a line per change
    (at most every 10 s) in logs."""

    def __init__(self, progress: Progress, family: Family, ends: TrialEnds, stream=None):
        self.p, self.family, self.ends = progress, family, ends
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self._last_line, self._last_time = "", 0.0

    def _show(self, force: bool = False) -> None:
        line = self.p.line()
        now = time.monotonic()
        if line == self._last_line and not force:
            return
        if self.tty:
            import shutil

            line = fit_width(line, self.p.short_line(), shutil.get_terminal_size((80, 24)).columns)
            if line == self._last_line and not force:
                return
            self.stream.write("\r" + line.ljust(len(self._last_line)))
        elif force or now - self._last_time >= 10.0:
            self.stream.write(line + "\n")
        else:
            return
        self.stream.flush()
        self._last_line, self._last_time = line, now

    def on_trial_start(self, iteration, trials, trial, **info):
        self.p.trial_started(trial.trial_id)

    def on_step_end(self, iteration, trials, **info):
        self.p.running = sum(1 for t in trials if t.status == "RUNNING")
        self._show()

    def on_trial_complete(self, iteration, trials, trial, **info):
        self.p.trial_ended(trial.trial_id)
        status, reason = self.ends.ended(trial)
        if status == "ERROR":
            self.p.failed += 1
            self.p.failures.append((resolve(self.family, trial.config)[1], reason))
        elif status != "INTERRUPTED":
            self.p.done += 1
            self.p.stopped += status == STOPPED_EARLY
            self.p.offer((trial.last_result or {}).get(self.p.metric))
        self._show()

    def on_trial_error(self, iteration, trials, trial, **info):
        self.p.trial_ended(trial.trial_id)
        self.p.failed += 1
        _, key = resolve(self.family, trial.config)
        self.p.failures.append((key, _error_line(trial)))
        self._show()

    def finish(self) -> None:
        self.p.running = 0
        self._show(force=True)
        if self.tty:
            self.stream.write("\n")
            self.stream.flush()
