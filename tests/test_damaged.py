"""A damaged part in a results folder (a truncated or foreign ``part-*.parquet``, e.g. from an
interrupted copy between machines): the readers name it in one line; ``--resume`` moves it to
``_damaged/`` (never deletes it) and reruns the trials whose rows it held, although their status rows
say they finished (a status row records its trial's row count), so the folder ends complete; the
report reads the intact parts and names the damaged one. Unit tests of the pieces (with a hypothesis
property: after quarantine and a rerun of what is unfinished, every row exists exactly once), then
the real CLI.
"""
from __future__ import annotations

import shutil
from datetime import datetime, timedelta, timezone

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import run_script, run_sweep
from lowbit_core.config import flatten
from lowbit_core.probes.config import ProbeConfig
from lowbit_core.results import (DAMAGED_DIR, TRIAL_STATUS, ResultsError, ResultsWriter, data_parts,
                                 existing_steps, finished_trials, load_results, load_trial_status,
                                 quarantine_damaged, read_part, results_schema, status_files)

SCHEMA = results_schema(ProbeConfig, {"loss": "float"})
CFG = {f"cfg.{k}": v for k, v in flatten(ProbeConfig()).items()}
T0 = datetime(2025, 1, 1, tzinfo=timezone.utc)


def row(key: str, step: int, sweep: str = "s") -> dict:
    return {"sweep": sweep, "family": "probe", "run_id": "r", "trial_id": "t", "trial_key": key, "study": "",
            "step": step, "seed": 0, "time": T0 + timedelta(seconds=step), "loss": 1.0 / (step + 1), **CFG}


def ended(key: str, seconds: int = 0) -> dict:
    return {"trial_key": key, "trial_id": "t", "run_id": "r", "study": "", "status": "TERMINATED", "error": "",
            "time": T0 + timedelta(seconds=seconds), "step": None}


def write_trials(folder, trials: dict[str, int], per_part: int = 1, run_id: str = "r0") -> ResultsWriter:
    """Each trial's steps 0..n-1, a part every ``per_part`` rows, then its status (rows counted)."""
    w = ResultsWriter(folder, SCHEMA, run_id, flush_rows=per_part, flush_seconds=1e9)
    for key, n in trials.items():
        for step in range(n):
            w.add(row(key, step))
        w.trial_ended(ended(key))
    w.close()
    return w


def truncate(path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def foreign_table(path) -> None:
    pq.write_table(pa.table({"x": [1, 2, 3]}), path)


# ---------------------------------------------------------------- pieces
def test_read_part_tells_intact_truncated_and_foreign(tmp_path):
    write_trials(tmp_path, {"a": 2})
    good = data_parts(tmp_path)[0]
    assert read_part(good)[1] is None
    cut = tmp_path / "part-cut.parquet"
    shutil.copy(good, cut)
    truncate(cut)
    assert read_part(cut)[1].startswith("unreadable: ") and str(cut) not in read_part(cut)[1]
    junk = tmp_path / "part-junk.parquet"
    junk.write_bytes(b"not parquet at all")
    assert read_part(junk)[1].startswith("unreadable: ")
    other = tmp_path / "part-other.parquet"
    foreign_table(other)
    assert read_part(other)[1] == "foreign: no trial_key, step column (not a results table of lowbit-sweeps)"
    theirs = tmp_path / "part-theirs.parquet"
    pq.write_table(pa.Table.from_pylist([row("z", 0, sweep="another")], schema=SCHEMA), theirs)
    assert read_part(theirs, sweep="s")[1] == "foreign: rows of sweep another, not s"
    assert read_part(theirs)[1] is None  # without the folder's sweep name it is a results table


def test_readers_name_a_damaged_part_in_one_line_or_skip_it(tmp_path):
    write_trials(tmp_path, {"a": 3, "b": 3})
    parts = data_parts(tmp_path)
    truncate(parts[1])
    with pytest.raises(ResultsError) as ei:
        load_results(tmp_path)
    msg = str(ei.value)
    assert "\n" not in msg and msg.startswith(f"damaged part {parts[1]} (unreadable: ")
    seen = []
    df = load_results(tmp_path, on_damaged=lambda p, why: seen.append(p))
    assert seen == [parts[1]] and len(df) == 5
    for p in parts:
        if p != parts[1]:
            truncate(p)
    with pytest.raises(ResultsError, match="every part file in .* is damaged"):
        load_results(tmp_path, on_damaged=lambda p, why: None)


def test_damaged_status_file_is_named_or_skipped(tmp_path):
    write_trials(tmp_path, {"a": 1, "b": 1})
    files = status_files(tmp_path)
    truncate(files[0])
    with pytest.raises(ResultsError, match="damaged part .*_trials"):
        load_trial_status(tmp_path)
    seen = []
    st_ = load_trial_status(tmp_path, on_damaged=lambda p, why: seen.append(p))
    assert seen == [files[0]] and set(st_.trial_key) == {"b"}


def test_quarantine_moves_never_deletes_and_reruns_what_it_took(tmp_path):
    write_trials(tmp_path, {"a": 3, "b": 3, "c": 3}, per_part=3)  # one part per trial
    parts = data_parts(tmp_path)
    truncate(parts[1])  # trial b's rows
    cut_bytes = parts[1].read_bytes()
    (tmp_path / DAMAGED_DIR).mkdir()
    (tmp_path / DAMAGED_DIR / parts[1].name).write_bytes(b"an earlier damaged file of that name")
    assert finished_trials(tmp_path, steps={("a", 0), ("a", 1), ("a", 2)}) == {"a"}  # rows counted
    moved = quarantine_damaged(tmp_path, "s")
    assert [m.path for m in moved] == [parts[1]] and not parts[1].exists()
    assert moved[0].moved_to == tmp_path / DAMAGED_DIR / f"{parts[1].name}.1"  # the earlier one is kept
    assert moved[0].moved_to.read_bytes() == cut_bytes
    line = moved[0].line()
    assert "\n" not in line and line.startswith(f"damaged part {parts[1]} (unreadable") and "moved to" in line
    # b's status says TERMINATED, but its rows went: it is unfinished again
    assert finished_trials(tmp_path) == {"a", "c"}
    assert quarantine_damaged(tmp_path, "s") == []


def test_a_status_row_from_before_the_rows_column_needs_one_row(tmp_path):
    old = pa.schema([f for f in TRIAL_STATUS if f.name not in ("step", "rows")])
    (tmp_path / "_trials").mkdir()
    pq.write_table(pa.Table.from_pylist([{k: v for k, v in ended("a").items() if k in old.names}], schema=old),
                   tmp_path / "_trials" / "old.parquet")
    assert finished_trials(tmp_path, steps=set()) == set()
    assert finished_trials(tmp_path, steps={("a", 5)}) == {"a"}


damage_plans = st.fixed_dictionaries({
    "steps": st.lists(st.integers(1, 5), min_size=1, max_size=5),
    "per_part": st.integers(1, 4),
    "damage": st.lists(st.sampled_from(["truncate", "foreign", "junk"]), min_size=1, max_size=6),
    "picks": st.lists(st.integers(0, 30), min_size=1, max_size=6),
})


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(plan=damage_plans)
def test_property_quarantine_then_rerun_leaves_every_row_exactly_once(plan, tmp_path_factory):
    folder = tmp_path_factory.mktemp("prop")
    trials = {f"k{i}": n for i, n in enumerate(plan["steps"])}
    write_trials(folder, trials, per_part=plan["per_part"])
    parts = data_parts(folder)
    for how, pick in zip(plan["damage"], plan["picks"]):
        p = parts[pick % len(parts)]
        if how == "truncate" and p.stat().st_size > 8:
            truncate(p)
        elif how == "foreign":
            foreign_table(p)
        else:
            p.write_bytes(b"junk")
    damaged_names = {p.name for p in parts if read_part(p)[1]}
    moved = quarantine_damaged(folder, "s")
    assert {m.path.name for m in moved} == damaged_names
    assert all(m.moved_to.exists() for m in moved)  # nothing deleted
    intact = existing_steps(folder)
    done = finished_trials(folder)
    assert done == {k for k, n in trials.items() if all((k, s) in intact for s in range(n))}
    # the rerun of every unfinished trial (what --resume does) completes the folder, no row twice
    w = ResultsWriter(folder, SCHEMA, "r1", flush_seconds=1e9)
    for key, n in trials.items():
        if key not in done:
            for step in range(n):
                w.add(row(key, step))
            w.trial_ended(ended(key, seconds=10))
    w.close()
    df = pd.read_parquet(folder)
    assert len(df) == sum(trials.values()) and not df.duplicated(["trial_key", "step"]).any()
    assert finished_trials(folder) == set(trials)


# ---------------------------------------------------------------- the CLI
SWEEP_TEXT = '''"""Tiny probe sweep for the damaged-part tests: 6 trials of 4 reported steps."""
from lowbit_core.sweep import Sweep, grid

SWEEP = Sweep(name="tiny_damaged", family="probe", metric="loss",
              base={"model.hidden": (8,), "model.pretrain_steps": 5, "scan.lr_step": 0.05, "multi.steps": 3,
                    "multi.report_every": 1},
              space={"model.kind": grid("fp", "binary")}, seeds=(0, 1, 2))
'''
N_TRIALS, N_ROWS = 6, 24


@pytest.mark.slow
def test_resume_moves_damaged_parts_aside_and_completes_the_folder(tmp_path, shared_ray):
    sweep_file = tmp_path / "tiny_damaged.py"
    sweep_file.write_text(SWEEP_TEXT)
    res = run_sweep(sweep_file, "--results", tmp_path / "res", env={"LOWBIT_FLUSH_SECONDS": "0"}, timeout=600,
                    ray=shared_ray)
    assert res.returncode == 0, res.stderr[-3000:]
    folder = tmp_path / "res" / "tiny_damaged"
    complete = pd.read_parquet(folder).sort_values(["trial_key", "step"]).reset_index(drop=True)
    assert len(complete) == N_ROWS
    parts = data_parts(folder)
    assert len(parts) >= 3, parts
    # an interrupted copy: one part cut short, one replaced by another program's table
    truncate(parts[0])
    foreign_table(parts[-1])
    damaged = [parts[0], parts[-1]]
    lost = {k for k, _ in set(zip(complete.trial_key, complete.step)) - existing_steps_of(folder, damaged)}

    rep = run_script("analysis/report.py", folder, timeout=300)
    assert rep.returncode == 0, rep.stderr[-3000:]
    warn = [ln for ln in rep.stderr.splitlines() if ln.startswith("warning: damaged part")]
    assert [ln.split(" (")[0] for ln in warn] == [f"warning: damaged part {p}" for p in damaged]
    text = (folder / "_report" / "report.md").read_text()
    assert "Left out, damaged:" in text and parts[0].name in text and parts[-1].name in text

    cut = {p.name: p.read_bytes() for p in damaged}
    res = run_sweep(sweep_file, "--results", tmp_path / "res", "--resume", timeout=600, ray=shared_ray)
    assert res.returncode == 0, res.stderr[-3000:]
    lines = [ln for ln in res.stderr.splitlines() if ln.startswith("damaged part")]
    assert len(lines) == 2 and "Traceback" not in res.stderr
    for p, line in zip(damaged, lines):
        assert line.startswith(f"damaged part {p} (") and f"moved to {folder / DAMAGED_DIR / p.name}" in line
        assert (folder / DAMAGED_DIR / p.name).read_bytes() == cut[p.name]  # moved, not deleted
    assert "unreadable" in lines[0] and "foreign: no trial_key, step column" in lines[1]
    after = pd.read_parquet(folder).sort_values(["trial_key", "step"]).reset_index(drop=True)
    # complete again: every (trial, step) once, with the values of the uninterrupted run
    assert len(after) == N_ROWS and not after.duplicated(["trial_key", "step"]).any()
    pd.testing.assert_frame_equal(after[["trial_key", "step", "loss"]], complete[["trial_key", "step", "loss"]])
    rerun = set(after[after.run_id != complete.run_id.iloc[0]].trial_key)
    assert lost <= rerun and rerun, (lost, rerun)  # the trials whose rows went ran again
    assert f"all {N_TRIALS} trials finished" in res.stdout
    rep = run_script("analysis/report.py", folder, timeout=300)
    assert rep.returncode == 0 and "damaged" not in rep.stderr, rep.stderr[-2000:]


def existing_steps_of(folder, damaged) -> set:
    """(trial_key, step) of the intact parts (the damaged ones left out)."""
    out = set()
    for p in data_parts(folder):
        if p not in damaged:
            t = pq.read_table(p, columns=["trial_key", "step"])
            out.update(zip(t.column("trial_key").to_pylist(), t.column("step").to_pylist()))
    return out
