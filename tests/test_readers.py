"""Reading a sweep's results folder: the Parquet parts are the record. ``lowbit_sweeps.read_results``
gives pandas' rows of the parts (every ``cfg.*`` column), skips a damaged part with a warning and
takes the union of columns when parts differ; the README's DuckDB and Polars recipes, which read
``part-*.parquet`` (the bare folder trips both over ``_sweep.json`` and ``_trials/``), give the same
rows (run when duckdb / polars are installed; neither is a dependency). Folders are written by the
driver's own writer, no Ray."""
from __future__ import annotations

import glob
from datetime import datetime, timezone

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from lowbit_core.families import get_family
from lowbit_core.results import ResultsError, ResultsWriter, data_parts, results_schema, write_plan
from lowbit_sweeps import read_results

SWEEP = "tiny_read"
KEYS = ("k0", "k1", "k2")


def write_folder(folder):
    """A probe sweep's folder as the driver writes it: 3 trials x 3 steps in 3 parts, their status
    rows in ``_trials/``, the plan ``_sweep.json``."""
    fam = get_family("probe")
    writer = ResultsWriter(folder, results_schema(fam.config_cls, fam.metrics), "r1")
    for i, key in enumerate(KEYS):
        for step in range(3):
            writer.add({"trial_key": key, "step": step, "sweep": SWEEP, "run_id": "r1", "cfg.seed": i,
                        "cfg.model.kind": "binary" if i % 2 else "fp", "loss": 1.0 / (step + 1 + i)})
        writer.trial_ended({"trial_key": key, "trial_id": key, "run_id": "r1", "study": "", "status": "TERMINATED",
                            "error": "", "time": datetime.now(timezone.utc), "step": 2})
        writer.flush()
    writer.close()
    write_plan(folder, {"name": SWEEP, "family": "probe"})
    return folder


def add_older_part(folder):
    """A part with fewer columns, as an earlier code version wrote it."""
    pq.write_table(pa.table({"trial_key": ["old"], "step": [0], "sweep": [SWEEP], "loss": [0.5]}),
                   folder / "part-0-older.parquet")


def ordered(df: pd.DataFrame) -> pd.DataFrame:
    return df.sort_values(["trial_key", "step"]).reset_index(drop=True)[sorted(df.columns)]


def test_read_results_equals_pandas_read_of_the_parts(tmp_path):
    folder = write_folder(tmp_path / SWEEP)
    assert len(data_parts(folder)) == 3 and (folder / "_trials").is_dir() and (folder / "_sweep.json").is_file()
    got = read_results(folder)
    want = pd.read_parquet(folder)
    assert len(got) == 9 and {"cfg.seed", "cfg.model.kind", "cfg.multi.lr"} <= set(got.columns)
    pd.testing.assert_frame_equal(ordered(got), ordered(want))
    assert read_results(str(folder)).shape == got.shape  # a str path too
    assert got.groupby("trial_key")["cfg.seed"].first().to_dict() == {"k0": 0, "k1": 1, "k2": 2}


def test_a_damaged_part_is_skipped_with_a_warning(tmp_path):
    folder = write_folder(tmp_path / SWEEP)
    first, *rest = data_parts(folder)
    first.write_bytes(first.read_bytes()[:40])  # truncated
    with pytest.warns(UserWarning, match=rf"damaged part {first} \(unreadable: .*\); skipped"):
        got = read_results(folder)
    want = pd.concat([pd.read_parquet(p) for p in rest], ignore_index=True)
    pd.testing.assert_frame_equal(ordered(got), ordered(want))
    assert set(got.trial_key) == {"k1", "k2"}


def test_another_sweeps_part_is_skipped_and_an_empty_folder_is_one_line(tmp_path):
    folder = write_folder(tmp_path / SWEEP)
    pq.write_table(pa.table({"trial_key": ["x"], "step": [0], "sweep": ["other"]}), folder / "part-z.parquet")
    with pytest.warns(UserWarning, match="foreign: rows of sweep other, not tiny_read"):
        assert len(read_results(folder)) == 9
    with pytest.raises(ResultsError, match="no part-\\*.parquet files in"):
        read_results(tmp_path)


def test_parts_with_other_columns_are_read_as_their_union(tmp_path):
    folder = write_folder(tmp_path / SWEEP)
    add_older_part(folder)
    got = read_results(folder)
    assert len(got) == 10 and "cfg.seed" in got.columns
    old = got[got.trial_key == "old"].iloc[0]
    assert old.loss == 0.5 and pd.isna(old["cfg.seed"])
    # pandas on the bare folder takes one part's columns: read_results keeps them all
    assert len(pd.read_parquet(folder).columns) < len(got.columns)


def test_the_duckdb_recipe_reads_the_same_rows(tmp_path, monkeypatch):
    duckdb = pytest.importorskip("duckdb")
    folder = write_folder(tmp_path / "results" / SWEEP)
    add_older_part(folder)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(Exception):  # the bare folder: _sweep.json is no Parquet file
        duckdb.sql(f"SELECT count(*) FROM read_parquet('results/{SWEEP}/*')").fetchall()
    # the README's recipe
    df = duckdb.sql(f"SELECT * FROM read_parquet('results/{SWEEP}/part-*.parquet', union_by_name = true)").df()
    want = read_results(folder)
    assert len(df) == len(want) == 10 and set(df.columns) == set(want.columns)
    assert sorted(zip(df.trial_key, df.step)) == sorted(zip(want.trial_key, want.step))


def test_the_polars_recipe_reads_the_same_rows(tmp_path, monkeypatch):
    pl = pytest.importorskip("polars")
    folder = write_folder(tmp_path / "results" / SWEEP)
    add_older_part(folder)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(Exception):  # the bare folder: _sweep.json and _trials/ beside the parts
        pl.read_parquet(f"results/{SWEEP}")
    # the README's recipe
    df = pl.concat([pl.read_parquet(p) for p in sorted(glob.glob(f"results/{SWEEP}/part-*.parquet"))],
                   how="diagonal_relaxed")
    want = read_results(folder)
    assert df.height == len(want) == 10 and set(df.columns) == set(want.columns)
    assert sorted(zip(df["trial_key"], df["step"])) == sorted(zip(want.trial_key, want.step))
