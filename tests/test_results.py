"""Tests of lowbit_core/results.py: the results schema, atomic Parquet parts that pandas reads back as
written, resume without duplicate (trial_key, step) rows (with a hypothesis property over several
writers, flushes and crashes), trial statuses written after their data, and one schema per sweep."""
from __future__ import annotations

import tempfile
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import lowbit_core.results as results
from lowbit_core.config import flatten
from lowbit_core.probes.config import ProbeConfig
from lowbit_core.results import (PROVENANCE, TRIAL_STATUS, ResultsWriter, data_parts, existing_steps,
                                 finished_trials, read_results, results_schema, trial_status)

METRICS = {"loss": "float", "best_loss": "float", "n_flips": "int", "note": "str",
           "scan_lr": "list[float]", "scan_loss": "list[float]"}
SCHEMA = results_schema(ProbeConfig, METRICS)
CFG_COLS = {f"cfg.{k}": v for k, v in flatten(ProbeConfig()).items()}
T0 = datetime(2025, 1, 1, tzinfo=timezone.utc)
NEVER = 1e9  # flush_seconds: no time-based flushes in tests


def row(key: str, step: int, **metrics) -> dict:
    return {"sweep": "s", "family": "probe", "run_id": "r", "trial_id": f"t_{key}", "trial_key": key,
            "study": "", "step": step, "seed": 0, "time": T0 + timedelta(seconds=step), **CFG_COLS, **metrics}


def status(key: str, st_: str, seconds: int = 0, error: str = "") -> dict:
    return {"trial_key": key, "trial_id": f"t_{key}", "run_id": "r", "study": "", "status": st_,
            "error": error, "time": T0 + timedelta(seconds=seconds)}


def writer(folder, run_id="r0", flush_rows=10_000, schema=SCHEMA) -> ResultsWriter:
    return ResultsWriter(folder, schema, run_id, flush_rows=flush_rows, flush_seconds=NEVER)


def on_disk(folder) -> pd.DataFrame:
    return pd.read_parquet(folder).sort_values(["trial_key", "step"]).reset_index(drop=True)


# ---------------------------------------------------------------- schema
def test_schema_columns_and_types():
    s = SCHEMA
    n_cfg = len(CFG_COLS)
    assert n_cfg > 30
    assert s.names[:len(PROVENANCE)] == list(PROVENANCE)
    assert s.names[len(PROVENANCE):len(PROVENANCE) + len(METRICS)] == list(METRICS)
    assert s.names[len(PROVENANCE) + len(METRICS):] == [f"cfg.{k}" for k in flatten(ProbeConfig())]
    assert len(s.names) == len(set(s.names)) == len(PROVENANCE) + len(METRICS) + n_cfg
    t = {f.name: f.type for f in s}
    for name in ("sweep", "family", "run_id", "trial_id", "trial_key", "study", "git_sha", "host", "node_ip",
                 "device", "ver.python", "ver.torch", "ver.ray", "ver.lowbit_sweeps"):
        assert t[name] == pa.string(), name
    assert t["step"] == pa.int64() and t["seed"] == pa.int64()
    assert t["time"] == pa.timestamp("ms", tz="UTC")
    assert t["loss"] == pa.float64() and t["n_flips"] == pa.int64() and t["note"] == pa.string()
    assert t["scan_lr"] == pa.list_(pa.float64()) and t["scan_loss"] == pa.list_(pa.float64())
    assert t["cfg.model.hidden"] == pa.string()          # tuple field -> JSON text
    assert t["cfg.model.kind"] == pa.string()            # Literal
    assert t["cfg.data.root"] == pa.string()
    assert t["cfg.data.batch_size"] == pa.int64() and t["cfg.seed"] == pa.int64()
    assert t["cfg.multi.lr"] == pa.float64() and t["cfg.budget.epsilon"] == pa.float64()


def test_probe_family_schema():
    from lowbit_core.families import get_family
    fam = get_family("probe")
    s = results_schema(fam.config_cls, fam.metrics)
    assert s.field("scan_lr").type == pa.list_(pa.float64())
    assert s.field("scan_loss").type == pa.list_(pa.float64())
    assert s.field("rel_improvement_best").type == pa.float64()
    assert s.field("cfg.model.hidden").type == pa.string()
    assert all(f"cfg.{k}" in s.names for k in flatten(ProbeConfig()))


def test_schema_bool_and_errors():
    @dataclass(frozen=True)
    class C:
        flag: bool = False
        mode: Literal["a", "b"] = "a"
        sizes: tuple[float, ...] = ()

    s = results_schema(C, {"loss": "float"})
    assert s.field("cfg.flag").type == pa.bool_()
    assert s.field("cfg.mode").type == pa.string() and s.field("cfg.sizes").type == pa.string()
    with pytest.raises(ValueError, match="step"):
        results_schema(C, {"step": "int"})
    with pytest.raises(KeyError):
        results_schema(C, {"loss": "complex"})

    @dataclass(frozen=True)
    class D:
        d: dict = None  # type: ignore[assignment]

    with pytest.raises(TypeError):
        results_schema(D, {})


# ---------------------------------------------------------------- write and read back
def test_flushed_rows_read_back_with_pandas(tmp_path):
    w = writer(tmp_path)
    rows = [
        row("a", 0, loss=1.0, n_flips=0, note="start"),
        row("a", 10, loss=0.5, best_loss=0.5, scan_lr=[1e-3, 2e-3, 3e-3], scan_loss=[0.9, 0.8, 0.85]),
        row("b", 0),                                             # no metrics at all
        row("b", 5, loss=float("nan"), scan_lr=[], note=None),   # NaN stays NaN, empty list stays empty
    ]
    for r in rows:
        w.add(r)
    assert data_parts(tmp_path) == []  # nothing before a flush
    w.flush()
    assert w.rows_written == 4 and w.rows_skipped == 0
    assert [p.name for p in data_parts(tmp_path)] == ["part-r0-00000.parquet"]

    df = on_disk(tmp_path)
    assert list(df.columns) == SCHEMA.names
    assert len(df) == 4
    assert list(df["trial_key"]) == ["a", "a", "b", "b"] and list(df["step"]) == [0, 10, 0, 5]
    assert df["step"].dtype == np.int64
    assert df.loc[0, "loss"] == 1.0 and df.loc[1, "loss"] == 0.5
    assert pd.isna(df.loc[2, "loss"]) and np.isnan(df.loc[3, "loss"])
    assert pd.isna(df.loc[0, "best_loss"]) and df.loc[1, "best_loss"] == 0.5
    assert df.loc[0, "n_flips"] == 0 and pd.isna(df.loc[1, "n_flips"])
    assert df.loc[0, "note"] == "start" and pd.isna(df.loc[1, "note"]) and pd.isna(df.loc[3, "note"])
    # curves come back as float arrays, ready to plot
    lr = df.loc[1, "scan_lr"]
    assert isinstance(lr, np.ndarray) and lr.dtype == np.float64
    np.testing.assert_array_equal(lr, [1e-3, 2e-3, 3e-3])
    np.testing.assert_array_equal(df.loc[1, "scan_loss"], [0.9, 0.8, 0.85])
    assert df.loc[0, "scan_lr"] is None or pd.isna(df.loc[0, "scan_lr"])
    assert len(df.loc[3, "scan_lr"]) == 0
    # provenance and config columns
    assert list(df["time"]) == [r["time"] for r in rows]
    assert str(df["time"].dt.tz) == "UTC"
    assert (df["cfg.model.hidden"] == "[128, 128]").all()
    assert (df["cfg.multi.lr"] == ProbeConfig().multi.lr).all()
    assert (df["cfg.model.kind"] == "binary").all() and pd.isna(df.loc[0, "git_sha"])
    # read_results and existing_steps agree
    rr = read_results(tmp_path).sort_values(["trial_key", "step"]).reset_index(drop=True)
    assert list(rr["step"]) == [0, 10, 0, 5]
    assert existing_steps(tmp_path) == {("a", 0), ("a", 10), ("b", 0), ("b", 5)}


def test_flush_rows_threshold_splits_parts(tmp_path):
    w = writer(tmp_path, flush_rows=3)
    for step in range(7):
        w.add(row("a", step, loss=float(step)))
    assert [p.name for p in data_parts(tmp_path)] == ["part-r0-00000.parquet", "part-r0-00001.parquet"]
    assert [pq.read_metadata(p).num_rows for p in data_parts(tmp_path)] == [3, 3]
    w.close()
    assert [pq.read_metadata(p).num_rows for p in data_parts(tmp_path)] == [3, 3, 1]
    assert list(on_disk(tmp_path)["loss"]) == [float(s) for s in range(7)]
    w.close()  # closing twice writes nothing new
    assert len(data_parts(tmp_path)) == 3


def test_time_based_flush(tmp_path):
    w = ResultsWriter(tmp_path, SCHEMA, "r0", flush_rows=10_000, flush_seconds=0.0)
    w.add(row("a", 0))
    assert len(data_parts(tmp_path)) == 1


def test_temp_files_and_trials_not_read_by_pandas(tmp_path):
    w = writer(tmp_path)
    w.add(row("a", 0, loss=1.0))
    w.add(row("a", 1, loss=2.0))
    w.trial_ended(status("a", "TERMINATED"))
    w.close()
    assert (tmp_path / "_trials").is_dir() and len(list((tmp_path / "_trials").glob("*.parquet"))) == 1
    # the atomic write leaves no temp files behind
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []
    assert list((tmp_path / "_trials").glob(".*")) == []
    # a crash mid-write leaves a hidden temp file (here: garbage) and Ray keeps its state in _ray/
    (tmp_path / ".part-r9-00000.parquet.abc123.tmp").write_bytes(b"PAR1 truncated garbage")
    (tmp_path / "_ray").mkdir()
    (tmp_path / "_ray" / "junk.parquet").write_bytes(b"not parquet")
    df = on_disk(tmp_path)
    assert list(df["step"]) == [0, 1] and list(df["loss"]) == [1.0, 2.0]
    assert "status" not in df.columns
    assert len(read_results(tmp_path)) == 2
    assert existing_steps(tmp_path) == {("a", 0), ("a", 1)}


def test_empty_folder_readers(tmp_path):
    assert existing_steps(tmp_path) == set()
    assert trial_status(tmp_path) == {} and finished_trials(tmp_path) == set()
    assert read_results(tmp_path).empty


# ---------------------------------------------------------------- resume / dedupe
def test_second_writer_skips_pairs_already_on_disk(tmp_path):
    w1 = writer(tmp_path, "run1")
    w1.add(row("a", 0, loss=1.0))
    w1.add(row("a", 10, loss=0.9))
    w1.add(row("b", 0, loss=3.0))
    w1.close()
    w2 = writer(tmp_path, "run2")  # a resumed run
    w2.add(row("a", 0, loss=-1.0))   # already there: skipped, the first value stays
    w2.add(row("a", 10, loss=-1.0))  # skipped
    w2.add(row("a", 20, loss=0.8))   # new
    w2.add(row("b", 10, loss=2.0))   # new
    w2.add(row("b", 10, loss=-2.0))  # duplicate within this writer: skipped
    w2.close()
    assert (w2.rows_written, w2.rows_skipped) == (2, 3)
    df = on_disk(tmp_path)
    assert list(zip(df["trial_key"], df["step"], df["loss"])) == [
        ("a", 0, 1.0), ("a", 10, 0.9), ("a", 20, 0.8), ("b", 0, 3.0), ("b", 10, 2.0)]
    assert sorted(p.name for p in data_parts(tmp_path)) == ["part-run1-00000.parquet", "part-run2-00000.parquet"]


def test_unflushed_rows_are_lost_and_can_be_rewritten(tmp_path):
    w1 = writer(tmp_path, "run1")
    w1.add(row("a", 0, loss=1.0))
    w1.flush()
    w1.add(row("a", 1, loss=1.1))  # never flushed: the process "crashes"
    del w1
    w2 = writer(tmp_path, "run2")
    w2.add(row("a", 1, loss=5.0))
    w2.close()
    df = on_disk(tmp_path)
    assert list(zip(df["step"], df["loss"])) == [(0, 1.0), (1, 5.0)]


def test_unknown_column_raises_keyerror(tmp_path):
    w = writer(tmp_path)
    with pytest.raises(KeyError, match="accuracy"):
        w.add(row("a", 0, accuracy=0.9))
    # the rejected row did not claim its (trial_key, step)
    w.add(row("a", 0, loss=1.0))
    w.close()
    assert w.rows_written == 1
    assert list(on_disk(tmp_path)["loss"]) == [1.0]


@dataclass
class WriterPlan:
    rows: list  # (trial_key, step)
    flush_rows: int
    closed: bool


writer_plans = st.lists(
    st.builds(WriterPlan,
              rows=st.lists(st.tuples(st.sampled_from(["a", "b", "c"]), st.integers(0, 6)), max_size=15),
              flush_rows=st.integers(1, 6),
              closed=st.booleans()),
    min_size=1, max_size=4)


@settings(max_examples=40, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(plans=writer_plans)
def test_property_union_of_writers_has_exactly_the_flushed_rows(plans):
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "sweep"
        flushed: dict[tuple[str, int], float] = {}  # the model: what must be on disk, with its value
        counter = 0
        for i, wp in enumerate(plans):
            w = ResultsWriter(folder, SCHEMA, f"run{i}", flush_rows=wp.flush_rows, flush_seconds=NEVER)
            seen = set(flushed)
            buffer: list[tuple[tuple[str, int], float]] = []
            for key, step in wp.rows:
                counter += 1
                w.add(row(key, step, loss=float(counter)))
                if (key, step) in seen:
                    continue
                seen.add((key, step))
                buffer.append(((key, step), float(counter)))
                if len(buffer) >= wp.flush_rows:
                    flushed.update(buffer)
                    buffer = []
            if wp.closed:
                w.close()
                flushed.update(buffer)
            # else: the writer is abandoned with its buffer (a crash)
        got = read_results(folder)
        pairs = list(zip(got["trial_key"], got["step"])) if len(got) else []
        losses = list(got["loss"]) if len(got) else []
        assert len(pairs) == len(set(pairs)), "duplicate (trial_key, step) on disk"
        assert dict(zip(pairs, losses)) == flushed
        assert existing_steps(folder) == set(flushed)
        if flushed:
            assert len(pd.read_parquet(folder)) == len(flushed)


# ---------------------------------------------------------------- trial statuses
def test_trial_status_latest_per_key_and_finished(tmp_path):
    w1 = writer(tmp_path, "run1")
    w1.add(row("a", 0))
    w1.add(row("b", 0))
    w1.add(row("c", 0))
    w1.trial_ended(status("a", "ERROR", 1, "RuntimeError: boom"))
    w1.trial_ended(status("b", "TERMINATED", 1))
    w1.trial_ended(status("c", "ERROR", 1, "x"))
    w1.close()
    assert trial_status(tmp_path) == {"a": "ERROR", "b": "TERMINATED", "c": "ERROR"}
    assert finished_trials(tmp_path) == {"b"}
    w2 = writer(tmp_path, "run2")  # the resumed run re-runs a and finishes it
    w2.add(row("a", 1))
    w2.trial_ended(status("a", "TERMINATED", 2))
    w2.close()
    assert trial_status(tmp_path) == {"a": "TERMINATED", "b": "TERMINATED", "c": "ERROR"}
    assert finished_trials(tmp_path) == {"a", "b"}
    t = pq.read_table(sorted((tmp_path / "_trials").glob("*.parquet"))[0])
    assert t.schema.equals(TRIAL_STATUS, check_metadata=False)
    assert t.column("error").to_pylist() == ["RuntimeError: boom", "", "x"]


def test_trial_status_by_time_not_file_order(tmp_path):
    # "a-..." sorts before "z-..." but holds the later status
    wz = writer(tmp_path, "z")
    wz.trial_ended(status("k", "ERROR", seconds=1))
    wz.close()
    wa = writer(tmp_path, "a")
    wa.trial_ended(status("k", "TERMINATED", seconds=2))
    wa.close()
    assert trial_status(tmp_path) == {"k": "TERMINATED"}
    assert finished_trials(tmp_path) == {"k"}


def test_status_never_on_disk_without_its_data(tmp_path):
    w = writer(tmp_path)
    w.add(row("a", 0, loss=1.0))
    w.add(row("a", 10, loss=0.5))
    w.trial_ended(status("a", "TERMINATED"))
    # buffered: neither on disk
    assert data_parts(tmp_path) == [] and trial_status(tmp_path) == {}
    w.flush()
    assert trial_status(tmp_path) == {"a": "TERMINATED"}
    assert {("a", 0), ("a", 10)} <= existing_steps(tmp_path)


def test_status_written_after_data_and_not_at_all_if_data_write_fails(tmp_path, monkeypatch):
    order: list[str] = []
    real = results._write_atomic

    def recording(table, path):
        order.append(path.parent.name if path.parent.name == "_trials" else "data")
        real(table, path)

    monkeypatch.setattr(results, "_write_atomic", recording)
    w = writer(tmp_path)
    w.add(row("a", 0))
    w.trial_ended(status("a", "TERMINATED"))
    w.flush()
    assert order == ["data", "_trials"]

    def failing(table, path):
        if path.parent.name != "_trials":
            raise OSError("disk full")
        real(table, path)

    monkeypatch.setattr(results, "_write_atomic", failing)
    w.add(row("b", 0))
    w.trial_ended(status("b", "TERMINATED"))
    with pytest.raises(OSError):
        w.flush()
    assert "b" not in trial_status(tmp_path)
    assert ("b", 0) not in existing_steps(tmp_path)


def test_trial_ended_flushes_with_data_when_threshold_reached(tmp_path):
    w = writer(tmp_path, flush_rows=2)
    w.add(row("a", 0))
    w.trial_ended(status("a", "TERMINATED"))  # below the threshold: stays buffered
    assert trial_status(tmp_path) == {}
    w.add(row("a", 1))  # reaches the threshold: data, then the status
    assert existing_steps(tmp_path) == {("a", 0), ("a", 1)}
    assert trial_status(tmp_path) == {"a": "TERMINATED"}


# ---------------------------------------------------------------- one schema per sweep
def test_all_parts_share_identical_schema(tmp_path):
    w1 = writer(tmp_path, "run1", flush_rows=2)
    w1.add(row("a", 0, loss=1.0))                              # floats only
    w1.add(row("a", 1))                                        # nothing
    w1.add(row("b", 0, scan_lr=[0.1], scan_loss=[1.0]))        # lists only
    w1.add(row("b", 1, note="x", n_flips=3))                   # str and int only
    w1.close()
    w2 = writer(tmp_path, "run2")
    w2.add(row("c", 0))                                        # an all-null part
    w2.close()
    parts = data_parts(tmp_path)
    assert len(parts) == 3
    schemas = [pq.read_schema(p) for p in parts]
    for s in schemas:
        assert s.equals(SCHEMA, check_metadata=False)
        assert s.equals(schemas[0], check_metadata=True)
    df = pd.read_parquet(tmp_path)
    assert list(df.columns) == SCHEMA.names and len(df) == 5
    t = pq.read_table(tmp_path)
    assert t.schema.field("scan_lr").type == pa.list_(pa.float64())
    assert t.schema.field("n_flips").type == pa.int64()


def test_plan_round_trips_atomically_and_replaces(tmp_path):
    plan = {"name": "s", "axes": {"model.kind": ["fp", "binary"]}, "seeds": [0, 1], "runs": []}
    path = results.write_plan(tmp_path / "s", plan)
    assert path == tmp_path / "s" / results.PLAN_FILE and results.read_plan(tmp_path / "s") == plan
    results.write_plan(tmp_path / "s", {**plan, "runs": [{"run_id": "r1"}]})
    assert results.read_plan(tmp_path / "s")["runs"] == [{"run_id": "r1"}]
    assert sorted(p.name for p in (tmp_path / "s").iterdir()) == [results.PLAN_FILE]  # no temp file left
    assert results.read_plan(tmp_path / "none") is None


def test_unreadable_plan_is_a_results_error(tmp_path):
    (tmp_path / results.PLAN_FILE).write_text("{not json")
    with pytest.raises(results.ResultsError, match="cannot read"):
        results.read_plan(tmp_path)
    (tmp_path / results.PLAN_FILE).write_text("[1, 2]")
    with pytest.raises(results.ResultsError, match="not a JSON object"):
        results.read_plan(tmp_path)


def test_stale_temp_files_of_every_writer_are_removed(tmp_path):
    (tmp_path / "_trials").mkdir()
    stale = [tmp_path / ".part-r-00000.parquet.abc123.tmp", tmp_path / "_trials" / ".r-00000.parquet.abc123.tmp",
             tmp_path / f".{results.PLAN_FILE}.abc123.tmp"]
    for p in stale:
        p.write_bytes(b"cut short")
    kept = tmp_path / "part-r-00000.parquet"
    kept.write_bytes(b"data")
    results.remove_stale_temp_files(tmp_path)
    assert not any(p.exists() for p in stale) and kept.exists()
