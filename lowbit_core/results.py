"""Long-format Parquet results: a Ray-free writer (the driver's Tune callback feeds it) and readers.

Layout of ``<results>/<sweep>/``::

    part-<run_id>-<seq>.parquet   data: one row per reported step of a trial
    _trials/<run_id>-<seq>.parquet  one row per ended trial: trial_key, status, error
    _sweep.json                    the plan (JSON): family, profile, metric, axes, seeds, ..., runs
    _ray/                          Ray Tune's own state

Readers of Parquet folders (``pandas.read_parquet``, pyarrow datasets) skip names starting with ``_``
or ``.``, so ``pandas.read_parquet("results/<sweep>")`` returns exactly the data rows.

Guarantees:
- every part is written to a hidden temp file, fsynced, then renamed: a crash loses at most the rows
  not yet flushed and never leaves a truncated part;
- a trial's status row is written only after its data rows are on disk;
- the writer loads the (trial_key, step) pairs already present and never writes one twice, so a
  resumed run adds no duplicates;
- all parts of a sweep share one schema fixed from the family's declared metrics and config fields,
  so columns never vanish when pyarrow unifies parts. List metrics (curves) are ``list<double>``.
"""
from __future__ import annotations

import json
import os
import time
import typing
import uuid
from pathlib import Path
from typing import Any, Literal

import pyarrow as pa
import pyarrow.parquet as pq

from lowbit_core.config import dotted_keys

PLAN_FILE = "_sweep.json"
"""The plan, next to the data: what the sweep runs and every run into the folder (:func:`write_plan`)."""

PROVENANCE: dict[str, pa.DataType] = {
    "sweep": pa.string(), "family": pa.string(), "run_id": pa.string(), "trial_id": pa.string(),
    "trial_key": pa.string(), "study": pa.string(), "step": pa.int64(), "seed": pa.int64(),
    "git_sha": pa.string(), "host": pa.string(), "node_ip": pa.string(), "node_id": pa.string(),
    "device": pa.string(),
    "time": pa.timestamp("ms", tz="UTC"), "ver.python": pa.string(), "ver.torch": pa.string(),
    "ver.ray": pa.string(), "ver.lowbit_sweeps": pa.string(),
}

TRIAL_STATUS = pa.schema([
    ("trial_key", pa.string()), ("trial_id", pa.string()), ("run_id", pa.string()), ("study", pa.string()),
    ("status", pa.string()), ("error", pa.string()), ("time", pa.timestamp("ms", tz="UTC")),
])

_METRIC_TYPES = {"float": pa.float64(), "int": pa.int64(), "str": pa.string(), "list[float]": pa.list_(pa.float64())}


def _arrow_type(tp: Any) -> pa.DataType:
    if tp is bool:
        return pa.bool_()
    if tp is int:
        return pa.int64()
    if tp is float:
        return pa.float64()
    if tp is str or typing.get_origin(tp) in (Literal, tuple):
        return pa.string()  # tuples are stored as JSON text so they can be grouped on
    raise TypeError(f"no Parquet type for config type {tp}")


def results_schema(config_cls: type, metrics: dict[str, str]) -> pa.Schema:
    """Provenance columns, then every metric, then ``cfg.<dotted key>`` for every config field."""
    fields = [pa.field(k, t) for k, t in PROVENANCE.items()]
    clash = set(metrics) & set(PROVENANCE)
    if clash:
        raise ValueError(f"metric names clash with provenance columns: {sorted(clash)}")
    fields += [pa.field(k, _METRIC_TYPES[t]) for k, t in metrics.items()]
    fields += [pa.field(f"cfg.{k}", _arrow_type(t)) for k, t in dotted_keys(config_cls).items()]
    return pa.schema(fields)


def _replace_atomic(path: Path, write) -> None:
    """Create or replace ``path`` atomically: ``write(tmp)`` fills a hidden temp file next to it
    (``.<name>.<hex>.tmp``), which is fsynced, renamed over ``path``, and the folder fsynced. A crash
    leaves the old file or the new one, never a mix (at most a stale temp file:
    :func:`remove_stale_temp_files`)."""
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:6]}.tmp")
    write(tmp)
    with open(tmp, "rb") as fh:
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def _write_atomic(table: pa.Table, path: Path) -> None:
    _replace_atomic(path, lambda tmp: pq.write_table(table, tmp))


def remove_stale_temp_files(folder: Path) -> None:
    """Temp files of a writer that was killed between write and rename (hidden, never read)."""
    for pattern in (".part-*.tmp", "_trials/.*.tmp", f".{PLAN_FILE}.*.tmp"):
        for tmp in folder.glob(pattern):
            tmp.unlink(missing_ok=True)


def data_parts(folder: str | Path) -> list[Path]:
    return sorted(Path(folder).glob("part-*.parquet"))


def existing_steps(folder: str | Path) -> set[tuple[str, int]]:
    """(trial_key, step) pairs already on disk."""
    seen: set[tuple[str, int]] = set()
    for part in data_parts(folder):
        t = pq.read_table(part, columns=["trial_key", "step"])
        seen.update(zip(t.column("trial_key").to_pylist(), t.column("step").to_pylist()))
    return seen


def trial_status(folder: str | Path) -> dict[str, str]:
    """Latest status per trial_key from ``_trials/`` ('TERMINATED' or 'ERROR')."""
    status: dict[str, tuple[Any, str]] = {}
    for part in sorted((Path(folder) / "_trials").glob("*.parquet")):
        for row in pq.read_table(part).to_pylist():
            prev = status.get(row["trial_key"])
            if prev is None or row["time"] >= prev[0]:
                status[row["trial_key"]] = (row["time"], row["status"])
    return {k: v[1] for k, v in status.items()}


def finished_trials(folder: str | Path) -> set[str]:
    return {k for k, s in trial_status(folder).items() if s == "TERMINATED"}


class ResultsError(ValueError):
    """The input is not a usable results directory; the message is one line (what is wrong; what is valid)."""


REQUIRED_COLUMNS = ("trial_key", "step")


def _read_parquet(path: Path):
    """One Parquet file as a DataFrame; an unreadable file is a ResultsError naming it."""
    try:
        return pq.read_table(path).to_pandas()
    except Exception as exc:  # pyarrow raises several types for damaged files
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ResultsError(f"cannot read {path}: {first}; valid: a Parquet file written by the sweep") from None


def concat_parts(frames: list):
    """Rows of all ``frames`` stacked; columns are the union (missing cells are null).

    Parts written by different code versions may carry different columns, so they are read one by
    one and aligned here rather than through a single dataset schema.
    """
    import pandas as pd

    frames = [f for f in frames if len(f.columns)]
    if not frames:
        return pd.DataFrame()
    nonempty = [f for f in frames if len(f)] or frames[:1]
    return pd.concat(nonempty, ignore_index=True, sort=False)


def read_results(folder: str | Path):
    """All data rows of a sweep folder as a pandas DataFrame (union of columns across parts; empty
    when there are none). A damaged part raises :class:`ResultsError` naming it."""
    return concat_parts([_read_parquet(p) for p in data_parts(folder)])


def load_results(results_dir: str | Path):
    """All data rows of ``results_dir``, duplicates of (trial_key, step) dropped (last part wins).

    Raises ResultsError when the directory is missing, holds no part files, holds no rows, or
    lacks the columns every results table has.
    """
    root = Path(results_dir)
    if not root.exists():
        raise ResultsError(f"{root} does not exist; valid: a results directory such as results/<sweep>")
    if not root.is_dir():
        raise ResultsError(f"{root} is not a directory; valid: a results directory such as results/<sweep>")
    if not data_parts(root):
        raise ResultsError(f"no part-*.parquet files in {root}; valid: a results directory written by launch/sweep.py")
    df = read_results(root)
    missing = [c for c in REQUIRED_COLUMNS if c not in df.columns]
    if missing:
        raise ResultsError(f"{root} parts lack column(s) {', '.join(missing)}; valid: results tables with "
                           f"{', '.join(REQUIRED_COLUMNS)} columns")
    if df.empty:
        raise ResultsError(f"the part files in {root} hold no rows; valid: a sweep that reported at least one step")
    return df.drop_duplicates(subset=["trial_key", "step"], keep="last").reset_index(drop=True)


def load_trial_status(results_dir: str | Path):
    """The latest status row per trial from ``_trials/*.parquet`` as a DataFrame, or None when there
    are none. A resumed run may add a second status row for a trial; the latest ``time`` wins."""
    files = sorted(Path(results_dir, "_trials").glob("*.parquet"))
    if not files:
        return None
    df = concat_parts([_read_parquet(p) for p in files])
    if df.empty or "trial_key" not in df.columns or "status" not in df.columns:
        return None
    if "time" in df.columns:
        df = df.sort_values("time", kind="stable")
    return df.drop_duplicates(subset=["trial_key"], keep="last").reset_index(drop=True)


def write_plan(folder: str | Path, plan: dict) -> Path:
    """Write the sweep's plan (``_sweep.json``: JSON object) atomically: temp file, fsync, rename."""
    path = Path(folder) / PLAN_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(plan, indent=2, sort_keys=True, default=str) + "\n"
    _replace_atomic(path, lambda tmp: tmp.write_text(text))
    return path


def read_plan(folder: str | Path) -> dict | None:
    """The plan recorded next to the data (``_sweep.json``), or None for a folder from before plans
    were recorded. An unreadable plan raises :class:`ResultsError` naming the file."""
    path = Path(folder) / PLAN_FILE
    if not path.exists():
        return None
    try:
        plan = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ResultsError(f"cannot read {path}: {exc}; valid: the JSON plan written by launch/sweep.py") from None
    if not isinstance(plan, dict):
        raise ResultsError(f"{path} is not a JSON object; valid: the JSON plan written by launch/sweep.py")
    return plan


class ResultsWriter:
    """Buffers rows and writes them as atomic Parquet parts; skips (trial_key, step) already written."""

    def __init__(self, folder: str | Path, schema: pa.Schema, run_id: str,
                 flush_rows: int = 2000, flush_seconds: float = 5.0):
        self.folder = Path(folder)
        self.schema, self.run_id = schema, run_id
        self.flush_rows, self.flush_seconds = flush_rows, flush_seconds
        self.folder.mkdir(parents=True, exist_ok=True)
        self._seen = existing_steps(self.folder)
        self._rows: list[dict] = []
        self._status: list[dict] = []
        self._seq = 0
        self._status_seq = 0
        self._last_flush = time.monotonic()
        self.rows_written = 0
        self.rows_skipped = 0

    @property
    def seen(self) -> set[tuple[str, int]]:
        """The (trial_key, step) pairs on disk or written by this writer (not to be modified)."""
        return self._seen

    def add(self, row: dict) -> None:
        ident = (row["trial_key"], int(row["step"]))
        if ident in self._seen:
            self.rows_skipped += 1
            return
        unknown = set(row) - set(self.schema.names)
        if unknown:
            raise KeyError(f"columns not in the results schema: {sorted(unknown)}")
        self._seen.add(ident)
        self._rows.append(row)
        self._maybe_flush()

    def trial_ended(self, status_row: dict) -> None:
        """Record a trial's end (a dict with the TRIAL_STATUS columns); written after its data."""
        self._status.append(status_row)
        self._maybe_flush()

    def _maybe_flush(self) -> None:
        if len(self._rows) >= self.flush_rows or time.monotonic() - self._last_flush >= self.flush_seconds:
            self.flush()

    def flush(self) -> None:
        """Write buffered data rows, then buffered trial statuses (so a status implies its data)."""
        self._last_flush = time.monotonic()
        if self._rows:
            table = pa.Table.from_pylist(self._rows, schema=self.schema)
            _write_atomic(table, self.folder / f"part-{self.run_id}-{self._seq:05d}.parquet")
            self._seq += 1
            self.rows_written += len(self._rows)
            self._rows = []
        if self._status:
            table = pa.Table.from_pylist(self._status, schema=TRIAL_STATUS)
            (self.folder / "_trials").mkdir(exist_ok=True)
            _write_atomic(table, self.folder / "_trials" / f"{self.run_id}-{self._status_seq:05d}.parquet")
            self._status_seq += 1
            self._status = []

    def close(self) -> None:
        self.flush()
