"""The progress line (launch/callbacks.py Progress) without Ray: trials done / stopped early / from
before, running, failed, the best metric, elapsed time and the estimate of the time left from the
durations of the trials that ended, checked against hand-computed values on a fixed clock."""
from __future__ import annotations

import pytest

from conftest import ROOT  # noqa: F401 -- puts the repository on sys.path
from lowbit_sweeps.launch.callbacks import Progress, clock


def progress(**kw) -> Progress:
    return Progress(total=10, metric="test_acc", mode="max", started=0.0, **kw)


@pytest.mark.parametrize("seconds, text", [(0, "0s"), (44.6, "45s"), (60, "1m00s"), (185, "3m05s"),
                                           (3725, "1h02m"), (-3, "0s")])
def test_clock(seconds, text):
    assert clock(seconds) == text


def test_line_before_any_trial_ended_has_no_estimate():
    p = progress(slots=2)
    p.trial_started("a", now=1.0)
    p.running = 1
    assert p.line(now=31.0) == "trials 0/10 done, 1 running, 0 failed | best test_acc - | 31s elapsed, ? left"


def test_estimate_from_finished_durations_shared_over_slots():
    p = progress(slots=2)
    for tid, start in (("a", 0.0), ("b", 0.0)):
        p.trial_started(tid, now=start)
    p.trial_ended("a", now=60.0)   # 60 s
    p.trial_ended("b", now=100.0)  # 100 s: mean 80 s
    p.done = 2
    p.trial_started("c", now=100.0)
    p.trial_started("d", now=100.0)
    p.running = 2
    # at t=120: c and d need 80-20 = 60 s each; 6 trials not started need 80 s each
    # work = 2*60 + 6*80 = 600 s over 2 slots -> 300 s
    assert p.seconds_left(now=120.0) == pytest.approx(300.0)
    p.offer(0.41)
    p.offer(0.39)  # mode max: 0.41 stays
    assert p.line(now=120.0) == ("trials 2/10 done, 2 running, 0 failed | best test_acc 0.41 | "
                                 "2m00s elapsed, ~5m00s left")


def test_running_trials_past_the_mean_count_zero_and_slots_cap_at_trials_left():
    p = progress(slots=4, already_done=8)
    p.trial_started("a", now=0.0)
    p.trial_ended("a", now=10.0)
    p.done = 1
    p.trial_started("b", now=0.0)  # running 30 s already, more than the mean: 0 left for it
    # 1 trial left (b, running): work 0 -> 0
    assert p.seconds_left(now=30.0) == 0.0
    p2 = progress(slots=4, already_done=8)
    p2.trial_started("a", now=0.0)
    p2.trial_ended("a", now=10.0)
    p2.done = 1
    # 1 trial left, not started: 10 s of work on one slot, not shared over 4
    assert p2.seconds_left(now=10.0) == pytest.approx(10.0)


def test_stopped_early_and_earlier_runs_are_counted():
    p = progress(already_done=3, already_stopped=1, done=4, stopped=2, failed=1, slots=2)
    line = p.line(now=5.0)
    assert line.startswith("trials 7/10 done (3 stopped early, 3 from before), 0 running, 1 failed |"), line


def test_a_retried_trial_keeps_its_first_start():
    p = progress()
    p.trial_started("a", now=0.0)
    p.trial_started("a", now=50.0)  # Tune restarts it after a failure
    p.trial_ended("a", now=70.0)
    assert p.durations == [70.0]


class _Tty:
    def __init__(self):
        self.text = ""

    def isatty(self):
        return True

    def write(self, s):
        self.text += s

    def flush(self):
        pass


@pytest.mark.parametrize("columns", [80, 60, 40])
def test_the_line_fits_the_terminal_so_it_is_rewritten_in_place(monkeypatch, columns):
    """On an 80-column terminal the ~88-character line wrapped and scrolled (66 lines for 12 trials)."""
    from lowbit_sweeps.launch.callbacks import ProgressCallback

    monkeypatch.setenv("COLUMNS", str(columns))
    p = Progress(total=120, metric="single_best_loss", mode="min", started=0.0, slots=2)
    p.already_done, p.already_stopped, p.best = 37, 3, 0.354536
    cb = ProgressCallback(p, family=None, ends=None, stream=_Tty())
    for i in range(5):
        p.trial_started(f"t{i}", now=float(i))
        cb._show(force=True)
    assert len(p.line()) > 80  # the full line does not fit any of these widths
    shown = [seg for seg in cb.stream.text.split("\r") if seg]
    assert shown and all(len(seg.rstrip()) <= columns - 1 for seg in shown) and "\n" not in cb.stream.text
    assert all("/120 done" in seg and ("best 0.3545" in seg or columns < 60) for seg in shown)
