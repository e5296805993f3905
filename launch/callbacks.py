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
from lowbit_core.results import ResultsWriter
from lowbit_core.sweep import resolve_points
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


# Set by the driver's SIGINT handler (launch.runner): the stopper then ends every trial at its next
# step. Module-level because Tune pickles its stopper and an Event cannot be pickled.
INTERRUPT = threading.Event()


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


class ParquetCallback(tune.Callback):
    """Turns every reported result into one long-format row; records each trial's end."""

    def __init__(self, writer: ResultsWriter, family: Family, sweep: str, provenance: dict,
                 stopper: NonFiniteStopper | None = None):
        self.writer, self.family, self.stopper = writer, family, stopper
        self.static = {"sweep": sweep, "family": family.name, "run_id": writer.run_id, **provenance}
        self._trials: dict[str, tuple[str, list[tuple[str, dict]]]] = {}

    def _trial(self, trial) -> tuple[str, list[tuple[str, dict]]]:
        """(study, [(key, cfg columns)] of every grid point the trial runs: one unless folded)."""
        if trial.trial_id not in self._trials:
            points = [(key, {f"cfg.{k}": v for k, v in flatten(cfg).items()})
                      for cfg, key in resolve_points(self.family, trial.config)]
            self._trials[trial.trial_id] = (trial.config.get("study", ""), points)
        return self._trials[trial.trial_id]

    def on_trial_result(self, iteration, trials, trial, result, **info):
        study, points = self._trial(trial)
        key, cols = points[int(result.get("_point", 0))]
        row = {k: v for k, v in result.items() if k in self.family.metrics}
        row.update(self.static)
        row.update(cols)
        row.update(
            trial_id=trial.trial_id, trial_key=key, study=study, step=int(result.get("step", result.get("training_iteration", 0))),
            seed=cols.get("cfg.seed"), host=result.get("_host") or result.get("hostname"),
            node_ip=result.get("node_ip"), node_id=result.get("_node_id"), device=result.get("_device"), time=datetime.now(timezone.utc),
            **{"ver.python": result.get("_ver_python"), "ver.torch": result.get("_ver_torch"),
               "ver.ray": result.get("_ver_ray"), "ver.lowbit_sweeps": result.get("_ver_lowbit_sweeps")},
        )
        self.writer.add(row)

    def _ended(self, trial, status: str, error: str = "") -> None:
        study, points = self._trial(trial)
        for key, _ in points:
            self.writer.trial_ended({"trial_key": key, "trial_id": trial.trial_id, "run_id": self.writer.run_id,
                                     "study": study, "status": status, "error": error,
                                     "time": datetime.now(timezone.utc)})

    def on_trial_complete(self, iteration, trials, trial, **info):
        reason = self.stopper.reasons.get(trial.trial_id) if self.stopper else None
        if self.stopper is not None and self.stopper.interrupt.is_set() and not reason:
            # stopped by Ctrl-C (or cut short at the same moment): not finished, so --resume reruns it
            self._ended(trial, "INTERRUPTED", "stopped by SIGINT")
            return
        self._ended(trial, "ERROR" if reason else "TERMINATED", reason or "")

    def on_trial_error(self, iteration, trials, trial, **info):
        self._ended(trial, "ERROR", _error_line(trial))

    def on_step_end(self, iteration, trials, **info):
        self.writer._maybe_flush()

    def on_experiment_end(self, trials, **info):
        self.writer.flush()


@dataclass
class Progress:
    """Counts across every Tuner of one sweep run (Optuna sweeps run one Tuner per study)."""

    total: int
    metric: str
    mode: str
    already_done: int = 0
    done: int = 0
    failed: int = 0
    running: int = 0
    best: float = math.nan
    failures: list[tuple[str, str]] = field(default_factory=list)

    def offer(self, value) -> None:
        if value is None or not isinstance(value, (int, float)) or math.isnan(value):
            return
        if math.isnan(self.best) or (value < self.best if self.mode == "min" else value > self.best):
            self.best = float(value)

    def line(self) -> str:
        best = "-" if math.isnan(self.best) else f"{self.best:.5g}"
        prior = f" ({self.already_done} from before)" if self.already_done else ""
        return (f"trials {self.already_done + self.done}/{self.total} done{prior}, {self.running} running, "
                f"{self.failed} failed | best {self.metric} {best}")


class ProgressCallback(tune.Callback):
    """One progress line: rewritten in place on a terminal, a line per change (at most every 10 s) in logs."""

    def __init__(self, progress: Progress, family: Family, stream=None, stopper: NonFiniteStopper | None = None):
        self.p, self.family, self.stopper = progress, family, stopper
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self._last_line, self._last_time = "", 0.0

    def _show(self, force: bool = False) -> None:
        line = self.p.line()
        now = time.monotonic()
        if line == self._last_line and not force:
            return
        if self.tty:
            self.stream.write("\r" + line.ljust(len(self._last_line)))
        elif force or now - self._last_time >= 10.0:
            self.stream.write(line + "\n")
        else:
            return
        self.stream.flush()
        self._last_line, self._last_time = line, now

    def on_step_end(self, iteration, trials, **info):
        self.p.running = sum(1 for t in trials if t.status == "RUNNING")
        self._show()

    def on_trial_complete(self, iteration, trials, trial, **info):
        reason = self.stopper.reasons.get(trial.trial_id) if self.stopper else None
        if reason:
            self.p.failed += 1
            self.p.failures.append((resolve(self.family, trial.config)[1], reason))
        else:
            self.p.done += 1
            self.p.offer((trial.last_result or {}).get(self.p.metric))
        self._show()

    def on_trial_error(self, iteration, trials, trial, **info):
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
