"""The driver's side of faults, without Ray running: the Parquet callback fed by hand (fake Tune
trials of a two-trial probe sweep, a real :class:`ResultsWriter` on disk).

- Every trial that started gets a status row: Tune calls no hook for the trials it stops when the
  sweep is interrupted, so they are recorded INTERRUPTED with the signal's name.
- SIGINT and SIGTERM are both a graceful stop the first time (the driver's handler), a
  KeyboardInterrupt the second time.
- A disk that fails under the writer (ENOSPC, EROFS) is one :class:`ResultsWriteError` line naming the
  folder, the error and what was kept; the written parts stay intact, no temp file is left, the
  writer writes nothing more, and the callback stops the sweep instead of raising into Tune.
- The results folder is checked for writing before Ray starts.
- HyperBand's bracket count and the concurrency under which it stops nothing, against Ray Tune's own
  ``HyperBandScheduler``.
"""
from __future__ import annotations

import errno
import os
import signal
from types import SimpleNamespace

import pyarrow.parquet as pq
import pytest

from lowbit_sweeps.launch import callbacks
from lowbit_sweeps.launch.callbacks import INTERRUPT, NonFiniteStopper, ParquetCallback, TrialEnds, interrupt
from lowbit_core.families import get_family
from lowbit_core.results import (
    ResultsWriteError, ResultsWriter, data_parts, latest_status, results_schema, writable_problem,
)
from lowbit_core.sweep import Sweep, grid, plan

FAMILY = get_family("probe")
SWEEP = Sweep(name="tiny_driver", family="probe", metric="loss",
              base={"model.hidden": (8,), "model.pretrain_steps": 5, "multi.steps": 3, "multi.report_every": 1},
              space={"model.kind": grid("fp", "binary")}, seeds=(0,))


@pytest.fixture(autouse=True)
def no_interrupt_left():
    """The interrupt is module state of launch.callbacks: clear it around every test."""
    INTERRUPT.clear()
    yield
    INTERRUPT.clear()
    callbacks.INTERRUPT_REASON[0] = "stopped by SIGINT"


def fake_trials() -> list[SimpleNamespace]:
    """The sweep's two trials as Tune would pass them to a callback (id, config, last result)."""
    return [SimpleNamespace(trial_id=f"t{i}", config={"base": t.ray_base, "study": ""}, last_result={})
            for i, t in enumerate(plan(SWEEP).trials)]


def make_callback(folder, listeners=(), flush_rows: int = 2000) -> tuple[ParquetCallback, ResultsWriter]:
    writer = ResultsWriter(folder, results_schema(FAMILY.config_cls, FAMILY.metrics), "run1",
                           flush_rows=flush_rows, flush_seconds=3600)
    ends = TrialEnds(FAMILY, NonFiniteStopper(["loss"]))
    return ParquetCallback(writer, FAMILY, SWEEP.name, {"git_sha": "abc"}, ends, list(listeners)), writer


def report(cb: ParquetCallback, trial, step: int) -> None:
    result = {"loss": 1.0 / (step + 1), "step": step}
    trial.last_result = result
    cb.on_trial_result(step, [], trial, result)


# ---------------------------------------------------------------- statuses after an interrupt
def test_an_interrupt_records_every_started_trial_as_interrupted(tmp_path):
    cb, writer = make_callback(tmp_path)
    a, b = fake_trials()
    cb.on_trial_start(0, [], a)
    cb.on_trial_start(0, [], b)
    for step in range(3):
        report(cb, a, step)
    report(cb, b, 0)
    a_key = cb._trial(a)[1][0][0]
    # a finishes; then SIGTERM: Tune stops b without calling on_trial_complete, then ends the experiment
    cb.on_trial_complete(3, [], a)
    interrupt("stopped by SIGTERM")
    cb.on_experiment_end([a, b])
    writer.close()
    st = latest_status(tmp_path)
    b_key = cb._trial(b)[1][0][0]
    assert {k: (r["status"], r["error"], r["rows"], r["step"]) for k, r in st.items()} == {
        a_key: ("TERMINATED", "", 3, 2),  # completed before the interrupt
        b_key: ("INTERRUPTED", "stopped by SIGTERM", 1, 0),
    }
    assert cb.interrupt_unfinished("again") == 0  # each trial gets one status row


def test_without_an_interrupt_a_finished_trial_is_terminated_and_nothing_else_is_added(tmp_path):
    cb, writer = make_callback(tmp_path)
    a, b = fake_trials()
    cb.on_trial_start(0, [], a)
    report(cb, a, 0)
    cb.on_trial_complete(1, [], a)
    cb.on_experiment_end([a])
    writer.close()
    assert [r["status"] for r in latest_status(tmp_path).values()] == ["TERMINATED"]


def test_a_trial_that_dies_of_the_interrupt_is_interrupted_not_failed(tmp_path):
    """Ctrl-C reaches the workers too (the terminal signals the process group): a trial that errors
    once the interrupt is set is INTERRUPTED; before it, an error is an ERROR."""
    cb, writer = make_callback(tmp_path)
    a, b = fake_trials()
    for t in (a, b):
        cb.on_trial_start(0, [], t)
        report(cb, t, 0)
    cb.on_trial_error(1, [], a)
    interrupt("stopped by SIGINT")
    cb.on_trial_error(1, [], b)
    writer.close()
    st = latest_status(tmp_path)
    assert (st[cb._trial(a)[1][0][0]]["status"], st[cb._trial(a)[1][0][0]]["error"]) == \
        ("ERROR", "failed (no error message recorded)")
    assert (st[cb._trial(b)[1][0][0]]["status"], st[cb._trial(b)[1][0][0]]["error"]) == \
        ("INTERRUPTED", "stopped by SIGINT")


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_the_first_signal_stops_gracefully_and_the_second_raises(sig):
    from lowbit_sweeps.launch.runner import _catch_sigint, _restore_sigint

    before = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    previous = _catch_sigint(INTERRUPT)
    try:
        os.kill(os.getpid(), sig)
        assert INTERRUPT.is_set() and callbacks.INTERRUPT_REASON[0] == f"stopped by {sig.name}"
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), sig)
    finally:
        _restore_sigint(previous)
    assert {s: signal.getsignal(s) for s in before} == before


# ---------------------------------------------------------------- a disk that fails under the writer
def failing_write_table(monkeypatch, fail_on: int, err: int):
    """pyarrow's write_table, but call number ``fail_on`` (1-based) writes half a file and raises
    OSError(err), as a full or read-only disk does."""
    import lowbit_core.results as results

    real, calls = results.pq.write_table, [0]

    def write_table(table, where, *a, **kw):
        calls[0] += 1
        if calls[0] == fail_on:
            with open(where, "wb") as fh:
                fh.write(b"PAR1 half")
            raise OSError(err, os.strerror(err))
        return real(table, where, *a, **kw)

    monkeypatch.setattr(results.pq, "write_table", write_table)


def test_enospc_is_one_line_keeps_the_written_parts_and_leaves_no_temp_file(tmp_path, monkeypatch):
    failing_write_table(monkeypatch, fail_on=2, err=errno.ENOSPC)
    writer = ResultsWriter(tmp_path, results_schema(FAMILY.config_cls, FAMILY.metrics), "run1", flush_rows=2,
                           flush_seconds=3600)
    rows = [{"trial_key": "k", "step": s, "loss": float(s)} for s in range(6)]
    assert writer.add(rows[0]) and writer.add(rows[1])  # part 1 written
    assert writer.add(rows[2])
    with pytest.raises(ResultsWriteError) as info:
        writer.add(rows[3])  # part 2: the disk is full
    line = str(info.value)
    assert line == (f"writing results to {tmp_path} failed: No space left on device (ENOSPC); kept 2 rows of "
                    "this run in 1 parts (and every row of earlier runs); 2 rows received but not written are "
                    "lost, their trials run again on --resume")
    assert "\n" not in line and writer.error is info.value
    # nothing more is written or raised; what still arrives is counted as lost
    assert writer.add(rows[4]) is False and writer.add(rows[4]) is False
    writer.trial_ended({"trial_key": "k", "trial_id": "t", "run_id": "run1", "study": "", "status": "TERMINATED",
                        "error": "", "time": None, "step": 4})
    writer.flush()
    writer.close()
    assert "3 rows received but not written" in str(writer.error)
    assert [p.name for p in data_parts(tmp_path)] == ["part-run1-00000.parquet"]
    assert pq.read_table(data_parts(tmp_path)[0]).column("step").to_pylist() == [0, 1]
    assert not list(tmp_path.glob(".*.tmp")) and not (tmp_path / "_trials").exists()


def test_erofs_on_a_status_file_keeps_the_data_part(tmp_path, monkeypatch):
    failing_write_table(monkeypatch, fail_on=2, err=errno.EROFS)
    writer = ResultsWriter(tmp_path, results_schema(FAMILY.config_cls, FAMILY.metrics), "run1",
                           flush_seconds=3600)
    writer.add({"trial_key": "k", "step": 0, "loss": 1.0})
    writer.trial_ended({"trial_key": "k", "trial_id": "t", "run_id": "run1", "study": "", "status": "TERMINATED",
                        "error": "", "time": None, "step": 0})
    with pytest.raises(ResultsWriteError, match=r"failed: Read-only file system \(EROFS\); kept 1 rows of this run "
                                                r"in 1 parts .*; 0 rows received but not written"):
        writer.flush()
    assert len(data_parts(tmp_path)) == 1 and not list((tmp_path / "_trials").glob(".*"))


def test_a_write_error_stops_the_sweep_instead_of_raising_into_tune(tmp_path, monkeypatch):
    failing_write_table(monkeypatch, fail_on=2, err=errno.ENOSPC)
    cb, writer = make_callback(tmp_path, flush_rows=2)
    a, b = fake_trials()
    cb.on_trial_start(0, [], a)
    for step in range(5):
        report(cb, a, step)  # the second part fails at step 3: no exception reaches Tune
    assert INTERRUPT.is_set() and callbacks.INTERRUPT_REASON[0] == "stopped: results could not be written"
    cb.on_experiment_end([a])
    writer.close()
    assert writer.error is not None and writer.error.kept_rows == 2 and writer.error.lost_rows == 3


# ---------------------------------------------------------------- the results folder, before Ray
def test_a_writable_folder_passes_and_the_probe_leaves_nothing(tmp_path):
    assert writable_problem(tmp_path / "res" / "sweep") is None
    assert list(tmp_path.iterdir()) == []  # probed in tmp_path (the nearest existing parent), then removed


def test_a_file_in_the_way_is_named_with_the_os_error(tmp_path):
    (tmp_path / "res").write_text("not a folder")
    assert writable_problem(tmp_path / "res" / "sweep") == (
        f"cannot write to the results folder {tmp_path / 'res' / 'sweep'} (it would be created in "
        f"{tmp_path / 'res'}): Not a directory")


@pytest.mark.parametrize("err", [errno.EROFS, errno.ENOSPC])
def test_a_read_only_or_full_disk_is_named_with_the_os_error(tmp_path, monkeypatch, err):
    import tempfile

    def mkstemp(*a, **kw):
        raise OSError(err, os.strerror(err))

    monkeypatch.setattr(tempfile, "mkstemp", mkstemp)
    assert writable_problem(tmp_path) == f"cannot write to the results folder {tmp_path}: {os.strerror(err)}"


def test_a_folder_without_write_permission(tmp_path):
    if os.geteuid() == 0:
        pytest.skip("running as root: permission bits do not stop root's writes (the EROFS/ENOTDIR cases cover it)")
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        assert writable_problem(ro / "sweep") == (f"cannot write to the results folder {ro / 'sweep'} (it would be "
                                                  f"created in {ro}): Permission denied")
    finally:
        ro.chmod(0o755)


# ---------------------------------------------------------------- HyperBand and concurrency
@pytest.mark.parametrize("max_t, eta", [(4, 2), (10, 3), (27, 3), (81, 3), (100, 4), (1, 3), (6, 2), (12, 2.5)])
def test_hyperband_brackets_match_ray_tune(max_t, eta):
    from ray.tune.schedulers import HyperBandScheduler

    from lowbit_sweeps.launch.runner import hyperband_brackets
    from lowbit_core.sweep import HyperBand

    assert hyperband_brackets(HyperBand(reduction_factor=eta, max_epochs=max_t)) == \
        HyperBandScheduler(max_t=max_t, reduction_factor=eta)._s_max_1


class FakeTrial:
    """A hashable stand-in for a Tune trial (the scheduler keys its brackets by trial)."""

    def __init__(self, trial_id: str, status: str):
        self.trial_id, self.status = trial_id, status


def brackets_of_trials(concurrent: int, n: int, max_t: int, eta: float) -> list[int]:
    """The bracket index (s) Ray Tune's HyperBandScheduler gives each of ``n`` trials created the way
    Tune's search creates them under ``concurrent``: a new trial only when fewer than ``concurrent``
    are alive, the oldest finishing first."""
    from ray.tune.experiment import Trial
    from ray.tune.schedulers import HyperBandScheduler

    hb = HyperBandScheduler(time_attr="epoch", metric="loss", mode="min", max_t=max_t, reduction_factor=eta)
    alive, out = [], []
    for i in range(n):
        if len(alive) == concurrent:
            hb.on_trial_complete(None, alive.pop(0), {"epoch": max_t, "loss": 1.0})
        trial = FakeTrial(str(i), Trial.RUNNING)
        hb.on_trial_add(None, trial)
        bracket, _ = hb._trial_info[trial]
        out.append(next(s for s, b in enumerate(hb._hyperbands[0]) if b is bracket))
        alive.append(trial)
    return out


@pytest.mark.parametrize("max_t, eta", [(4, 2), (10, 3), (27, 3)])
def test_hyperband_stops_nothing_up_to_its_bracket_count_in_concurrent_trials(max_t, eta):
    """The rule behind check_hyperband_concurrency, on Ray's own scheduler: with at most b trials alive
    every trial lands in the first bracket (s = 0: full budget, never stopped); with b + 1 later
    brackets get trials."""
    from lowbit_sweeps.launch.runner import check_hyperband_concurrency, hyperband_brackets
    from lowbit_core.config import ConfigError
    from lowbit_core.sweep import HyperBand

    spec = HyperBand(reduction_factor=eta, max_epochs=max_t)
    b = hyperband_brackets(spec)
    for c in range(1, b + 1):
        assert set(brackets_of_trials(c, 4 * b, max_t, eta)) == {0}, c
    assert max(brackets_of_trials(b + 1, 4 * b, max_t, eta)) >= 1
    p = SimpleNamespace(scheduler=spec)
    with pytest.raises(ConfigError, match=f"with --max-concurrent {b} would stop no trial: its first bracket runs "
                                          f"{b} trials .* --max-concurrent > {b}, or scheduler ASHA"):
        check_hyperband_concurrency(p, b, f"--max-concurrent {b}")
    check_hyperband_concurrency(p, b + 1, "")
    check_hyperband_concurrency(p, None, "")
