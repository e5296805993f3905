"""Faults, with real processes: the driver killed with SIGKILL at several points and resumed, trials
that raise (retried) or turn NaN (stopped, failed), two sweeps at once, and Ctrl-C (SIGINT).

Trials are slowed down with the test-only hook ``LOWBIT_FAULT_INJECT``
(:func:`lowbit_core.faults.fault_injection_hook`), and ``LOWBIT_FLUSH_SECONDS=0`` makes the
driver write a part after every step, so the kill points are sharp. Every driver runs in its own
session (``start_new_session``); Ray processes it leaves behind after a SIGKILL are found by that
session id and killed by pid at the end of each test.
"""
from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest

from conftest import ROOT
from lowbit_core.results import data_parts, finished_trials
from lowbit_core.sweep import load_sweep, plan

pytestmark = pytest.mark.slow  # real Ray processes killed and restarted: minutes

N_SEEDS, STEPS = 6, 5  # 12 trials x 6 reported steps (0..5)

SWEEP_TEXT = f'''"""Tiny probe sweep for the fault tests: 12 trials, a report every step."""
from lowbit_core.sweep import Sweep, grid

SWEEP = Sweep(name="fault_probe", family="probe", metric="loss",
              base={{"model.hidden": (8,), "model.pretrain_steps": 5, "scan.lr_step": 0.05,
                     "multi.steps": {STEPS}, "multi.report_every": 1}},
              space={{"model.kind": grid("fp", "binary")}}, seeds=tuple(range({N_SEEDS})))
'''


@pytest.fixture
def sweep_file(tmp_path):
    f = tmp_path / "fault_probe.py"
    f.write_text(SWEEP_TEXT)
    return f


def expected(sweep_file) -> tuple[int, int]:
    p = plan(load_sweep(sweep_file), "default")
    return p.n_trials, p.n_trials * (STEPS + 1)


def inject_env(marks: Path, rules: list[dict], flush: str = "0") -> dict:
    marks.mkdir(exist_ok=True)
    return {"LOWBIT_FAULT_INJECT": json.dumps({"dir": str(marks), "rules": rules}), "LOWBIT_FLUSH_SECONDS": flush}


class Driver:
    """``python launch/sweep.py ARGS`` in its own session; remembers the session's processes."""

    def __init__(self, args, env: dict | None = None):
        full = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "LOWBIT_FAULT_INJECT")}
        full.update(env or {})
        self.args = [str(a) for a in args]
        self.proc = subprocess.Popen([sys.executable, str(ROOT / "launch" / "sweep.py"), *self.args], cwd=ROOT,
                                     env=full, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True, start_new_session=True)
        self.sid = self.proc.pid

    def wait(self, timeout=180) -> tuple[int, str, str]:
        out, err = self.proc.communicate(timeout=timeout)
        return self.proc.returncode, out, err

    def session_pids(self) -> list[int]:
        return session_pids(self.sid)


def session_pids(sid: int) -> list[int]:
    pids = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit() or int(d.name) == sid:
            continue
        try:
            stat = (d / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()  # after "pid (comm) "
        if int(fields[3]) == sid and fields[0] != "Z":  # fields: state ppid pgrp session ...
            pids.append(int(d.name))
    return pids


def kill_session(sid: int) -> None:
    """Kill what is left of one driver's session, by pid (never by name)."""
    for pid in session_pids(sid):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + 10
    while session_pids(sid) and time.monotonic() < deadline:
        time.sleep(0.1)


@pytest.fixture
def sessions():
    """Session ids of drivers started by a test; their leftovers are killed afterwards."""
    sids: list[int] = []
    yield sids
    for sid in sids:
        kill_session(sid)


def wait_for(cond, what: str, driver: Driver, timeout=120.0, poll=0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        if driver.proc.poll() is not None:
            _, out, err = driver.wait()
            pytest.fail(f"driver ended (rc {driver.proc.returncode}) before {what}:\n{out[-2000:]}\n{err[-3000:]}")
        time.sleep(poll)
    pytest.fail(f"timed out waiting for {what}")


def rows(folder: Path) -> pd.DataFrame:
    if not data_parts(folder):
        return pd.DataFrame(columns=["trial_key", "step", "run_id", "trial_id"])
    return pd.read_parquet(folder, columns=["trial_key", "step", "run_id", "trial_id", "node_id", "loss"])


def statuses(folder: Path) -> pd.DataFrame:
    if not (folder / "_trials").is_dir():
        return pd.DataFrame(columns=["trial_key", "status", "run_id", "error"])
    return pq.read_table(folder / "_trials").to_pandas()


def test_sigkill_at_several_points_then_resume(sweep_file, tmp_path, sessions):
    """Kill the driver (SIGKILL) after its first part, mid-way and near the end, resuming each time:
    the sweep completes, every (trial, step) row exists once, finished trials are never rerun."""
    n_trials, n_rows = expected(sweep_file)
    folder = tmp_path / "res" / "fault_probe"
    env = inject_env(tmp_path / "marks", [{"action": "sleep", "seconds": 0.15}])
    base = [sweep_file, "--results", tmp_path / "res"]
    kill_points = [
        ("first part written", lambda: len(data_parts(folder)) >= 1),
        ("mid-way (half the trials done)", lambda: len(finished_trials(folder)) >= n_trials // 2),
        ("near the end (2 trials left)", lambda: len(finished_trials(folder)) >= n_trials - 2),
    ]
    snapshots = []  # per kill: (finished trial keys, rows on disk)
    table = []
    killed = []
    for i, (name, cond) in enumerate(kill_points):
        d = Driver(base + (["--resume"] if i else []), env)
        sessions.append(d.sid)
        killed.append(d)
        wait_for(cond, name, d)
        os.kill(d.proc.pid, signal.SIGKILL)
        d.wait()
        assert d.proc.returncode == -signal.SIGKILL
        on_disk = rows(folder)
        snapshots.append((finished_trials(folder), on_disk))
        dup = int(on_disk.duplicated(["trial_key", "step"]).sum())
        table.append((name, n_rows, len(on_disk), dup, len(d.session_pids())))
        assert dup == 0
    # the stale Ray processes of the killed drivers (if any) are still around: the rerun must not mind
    rc, out, err = Driver(base + ["--resume"], env).wait()
    assert rc == 0, err[-3000:]
    assert f"all {n_trials} trials finished" in out
    final = rows(folder)
    dup = int(final.duplicated(["trial_key", "step"]).sum())
    table.append(("resumed to the end", n_rows, len(final), dup, "-"))
    print("\nkill point | rows expected | rows found | duplicates | Ray processes of the killed driver "
          "(right after the kill -> after the rerun)")
    for r, d in zip(table, killed + [None]):
        print(" | ".join(map(str, r)) + (f" -> {len(d.session_pids())}" if d else ""))
    assert len(final) == n_rows and dup == 0
    assert final.trial_key.nunique() == n_trials
    assert set(final.groupby("trial_key").step.apply(frozenset)) == {frozenset(range(STEPS + 1))}
    ident = ["trial_key", "step"]
    for done, before in snapshots:
        # nothing written before a kill was rewritten: same run_id and trial_id for every row
        merged = before.merge(final, on=ident, suffixes=("_before", "_after"))
        assert len(merged) == len(before)
        assert (merged.run_id_before == merged.run_id_after).all()
        assert (merged.trial_id_before == merged.trial_id_after).all()
        # a trial finished before a kill was not rerun: all its rows come from that earlier run
        fin = final[final.trial_key.isin(done)]
        assert len(fin) == len(done) * (STEPS + 1)
        assert fin.merge(before, on=ident).shape[0] == len(fin)
    st = statuses(folder)
    assert (st.status == "TERMINATED").all()
    assert st.trial_key.value_counts().max() == 1  # each trial ended exactly once
    assert final.run_id.nunique() >= 2  # the sweep really was split across runs


def test_retry_nan_and_two_sweeps_at_once(sweep_file, tmp_path, sessions):
    """Sweep A (faults injected): a trial that raises once is retried and finishes, one that always
    raises fails after its retries, one whose loss turns NaN is stopped and marked failed; the rest
    finish. Sweep B runs at the same time into another folder, without faults, and is unaffected."""
    n_trials, n_rows = expected(sweep_file)
    marks = tmp_path / "marks"
    rules = [
        {"match": {"seed": 1, "model.kind": "fp"}, "step": 3, "action": "raise", "times": 1},
        {"match": {"seed": 2, "model.kind": "fp"}, "step": 2, "action": "raise", "times": 99},
        {"match": {"seed": 3, "model.kind": "binary"}, "step": 4, "action": "nan", "metric": "loss"},
    ]
    a = Driver([sweep_file, "--results", tmp_path / "a", "--retries", "1"], inject_env(marks, rules, flush="5"))
    b = Driver([sweep_file, "--results", tmp_path / "b"])
    sessions.extend([a.sid, b.sid])
    rc_a, out_a, err_a = a.wait()
    rc_b, out_b, err_b = b.wait()

    assert rc_b == 0, err_b[-3000:]
    df_b = rows(tmp_path / "b" / "fault_probe")
    assert len(df_b) == n_rows and not df_b.duplicated(["trial_key", "step"]).any()
    assert df_b.run_id.nunique() == 1 and df_b.loss.notna().all()

    assert rc_a == 1, err_a[-3000:]
    assert f"2 of {n_trials} trials failed" in err_a and "Traceback" not in err_a
    folder = tmp_path / "a" / "fault_probe"
    df = rows(folder)
    assert df.run_id.nunique() == 1 and not set(df.run_id) & set(df_b.run_id)
    assert not df.duplicated(["trial_key", "step"]).any()
    st = statuses(folder).set_index("trial_key")
    assert st.index.is_unique
    by_cfg = pd.read_parquet(folder, columns=["trial_key", "cfg.seed", "cfg.model.kind"]).drop_duplicates()
    key = {(r["cfg.seed"], r["cfg.model.kind"]): r.trial_key for _, r in by_cfg.iterrows()}
    # retried once (two marker files would mean two faults): finished, every step once
    assert len(list(marks.glob(f"raise-{key[1, 'fp']}-*"))) == 1
    assert st.loc[key[1, "fp"], "status"] == "TERMINATED"
    assert sorted(df[df.trial_key == key[1, "fp"]].step) == list(range(STEPS + 1))
    # always raising: 1 + 1 retry attempts, then ERROR with the exception in the status and the summary
    assert len(list(marks.glob(f"raise-{key[2, 'fp']}-*"))) == 2
    assert st.loc[key[2, "fp"], "status"] == "ERROR" and "injected fault 2" in st.loc[key[2, "fp"], "error"]
    assert f"{key[2, 'fp']}: RuntimeError: injected fault 2" in err_a
    assert sorted(df[df.trial_key == key[2, "fp"]].step) == [0, 1]
    # NaN: stopped at the step that reported it (that row is kept), marked failed with the reason
    nan_rows = df[df.trial_key == key[3, "binary"]].sort_values("step")
    assert list(nan_rows.step) == [0, 1, 2, 3, 4] and nan_rows.loss.isna().tolist() == [False] * 4 + [True]
    reason = "stopped: non-finite loss (nan) at step 4"
    assert st.loc[key[3, "binary"], "status"] == "ERROR" and st.loc[key[3, "binary"], "error"] == reason
    assert f"{key[3, 'binary']}: {reason}" in err_a
    # the sweep went on: every other trial finished with all its steps
    others = set(key.values()) - {key[2, "fp"], key[3, "binary"]}
    assert set(st.index[st.status == "TERMINATED"]) == others
    assert len(df[df.trial_key.isin(others)]) == len(others) * (STEPS + 1)


def test_ctrl_c_flushes_and_prints_how_to_resume(sweep_file, tmp_path, sessions):
    """SIGINT to the driver's process group (what Ctrl-C in a terminal sends): trials stop, what the
    driver had received is on disk, exit 130 with the command that resumes. While it runs, a second
    run into the same folder is refused."""
    n_trials, n_rows = expected(sweep_file)
    folder = tmp_path / "res" / "fault_probe"
    marks = tmp_path / "marks"
    env = inject_env(marks, [{"action": "sleep", "seconds": 0.4}, {"action": "mark"}], flush="600")
    d = Driver([sweep_file, "--results", tmp_path / "res"], env)
    sessions.append(d.sid)
    # flush every 600 s: nothing is on disk until the interrupt, so what is there was flushed by it
    wait_for(lambda: len(list(marks.glob("mark-*"))) >= 2, "first reports", d)
    # meanwhile, a second run into the same folder is refused (the folder's lock), writing nothing
    other = Driver([sweep_file, "--results", tmp_path / "res", "--resume"])
    sessions.append(other.sid)
    rc, _, err = other.wait()
    assert rc == 2 and err.strip() == f"error: another run is writing to {folder}; wait for it or use --results", err
    wait_for(lambda: len(list(marks.glob("mark-*"))) >= 2 * (STEPS + 1), "two trials' worth of reports", d)
    assert not data_parts(folder) and d.proc.poll() is None
    os.killpg(d.sid, signal.SIGINT)
    rc, out, err = d.wait(timeout=120)
    assert rc == 130, err[-3000:]
    assert "Traceback" not in err
    written = int(out.split("(")[1].split(" rows written")[0])
    df = rows(folder)
    assert 0 < written == len(df) < n_rows  # (reports still on their way to the driver are not kept)
    lines = err.strip().splitlines()
    assert any(ln.startswith("interrupted: ") for ln in lines), err[-2000:]
    cmd = lines[-1].strip()
    assert shlex.split(cmd) == ["python", "launch/sweep.py", str(sweep_file), "--results", str(tmp_path / "res"),
                                "--resume"], cmd
    # every trial that reported has a status row: INTERRUPTED (by SIGINT) unless it had finished
    assert_every_started_trial_has_a_status(folder, "stopped by SIGINT")
    # (running that command to the end is what the SIGKILL test and test_slurm.py's signal test do)


def assert_every_started_trial_has_a_status(folder: Path, reason: str) -> pd.DataFrame:
    """Every trial with rows on disk has exactly one status row: TERMINATED with all its steps, or
    INTERRUPTED with ``reason`` and its row count; at least one is INTERRUPTED."""
    df = rows(folder)
    st = statuses(folder)
    assert st.trial_key.is_unique, st.to_string()
    st = st.set_index("trial_key")
    assert set(df.trial_key) <= set(st.index), set(df.trial_key) - set(st.index)
    assert set(st.status) <= {"TERMINATED", "INTERRUPTED"}, st.to_string()
    per_trial = df.groupby("trial_key").step.apply(sorted)
    for key, row in st.iterrows():
        if row.status == "TERMINATED":
            assert per_trial[key] == list(range(STEPS + 1)), key
        else:
            assert row.error == reason and row["rows"] == len(per_trial.get(key, [])), (key, row.to_dict())
    assert (st.status == "INTERRUPTED").sum() >= 1, st.to_string()
    return st


def test_sigterm_stops_like_ctrl_c_and_records_unfinished_trials_as_interrupted(sweep_file, tmp_path, sessions):
    """SIGTERM to the driver (what `scancel --batch --signal=TERM` and SLURM's --signal=B:TERM@120
    send): exit 130 with the command that resumes, no traceback, and in _trials/ a status row for
    every trial that started -- the running ones INTERRUPTED ("stopped by SIGTERM"), as the README
    says; --resume then finishes the sweep with every row once."""
    n_trials, n_rows = expected(sweep_file)
    folder = tmp_path / "res" / "fault_probe"
    env = inject_env(tmp_path / "marks", [{"action": "sleep", "seconds": 0.3}])
    d = Driver([sweep_file, "--results", tmp_path / "res"], env)
    sessions.append(d.sid)
    wait_for(lambda: (folder / "_trials").is_dir() and len(finished_trials(folder)) >= 1, "a finished trial", d)
    os.kill(d.proc.pid, signal.SIGTERM)
    rc, out, err = d.wait(timeout=120)
    assert rc == 130, err[-3000:]
    assert "Traceback" not in err and err.strip().splitlines()[-1].strip().endswith("--resume")
    st = assert_every_started_trial_has_a_status(folder, "stopped by SIGTERM")
    assert len(st) < n_trials
    rc, out, err = Driver([sweep_file, "--results", tmp_path / "res", "--resume"]).wait(timeout=300)
    assert rc == 0, err[-3000:]
    final = rows(folder)
    assert len(final) == n_rows and not final.duplicated(["trial_key", "step"]).any()
    latest = statuses(folder).sort_values("time").drop_duplicates("trial_key", keep="last")
    assert len(latest) == n_trials and set(latest.status) == {"TERMINATED"}


ENOSPC_DRIVER = """
import errno, os, sys
sys.path.insert(0, {root!r})
import lowbit_core.results as results
real, calls = results.pq.write_table, [0]

def write_table(table, where, *args, **kwargs):  # the disk fills up after {limit} files
    calls[0] += 1
    if calls[0] > {limit}:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    return real(table, where, *args, **kwargs)

results.pq.write_table = write_table
from lowbit_sweeps.launch.sweep import main
sys.exit(main(sys.argv[1:]))
"""


def test_disk_full_mid_run_is_one_line_then_resume_completes(sweep_file, tmp_path, sessions):
    """ENOSPC from the Parquet writer of the driver (injected after 3 files): the sweep stops, one
    error line names the folder, the error, what was kept and the --resume command, exit 1, no
    traceback, no temp file; the parts written before are intact, and --resume completes the sweep."""
    n_trials, n_rows = expected(sweep_file)
    folder = tmp_path / "res" / "fault_probe"
    full = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "LOWBIT_FAULT_INJECT")}
    full.update(inject_env(tmp_path / "marks", [{"action": "sleep", "seconds": 0.1}]))
    args = [str(sweep_file), "--results", str(tmp_path / "res")]
    proc = subprocess.Popen([sys.executable, "-c", ENOSPC_DRIVER.format(root=str(ROOT), limit=3), *args], cwd=ROOT,
                            env=full, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)
    sessions.append(proc.pid)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 1, err[-3000:]
    assert "Traceback" not in err
    errors = [ln for ln in err.splitlines() if ln.startswith("error: ")]
    assert len(errors) == 1, err[-3000:]
    line = errors[0]
    assert line.startswith(f"error: writing results to {folder} failed: No space left on device (ENOSPC); kept "), line
    assert line.endswith("; free space or make the folder writable, then continue with: python launch/sweep.py "
                         f"{shlex.join(args)} --resume"), line
    kept = rows(folder)
    assert 0 < len(kept) < n_rows and f"kept {len(kept)} rows of this run in {len(data_parts(folder))} parts" in line
    assert not list(folder.rglob(".*.tmp"))
    rc, out, err = Driver(args + ["--resume"]).wait(timeout=300)
    assert rc == 0, err[-3000:]
    final = rows(folder)
    assert len(final) == n_rows and not final.duplicated(["trial_key", "step"]).any()
    ident = ["trial_key", "step"]
    assert len(kept.merge(final, on=ident)) == len(kept)  # nothing written before the error was lost
