"""Long-format Parquet results: a Ray-free writer (the driver's Tune callback feeds it) and readers.

Layout of ``<results>/<sweep>/``::

    part-<run_id>-<seq>.parquet   data: one row per reported step of a trial
    _trials/<run_id>-<seq>.parquet  one row per ended trial: trial_key, status, error, step, rows
    _sweep.json                    the plan (JSON): family, profile, metric, axes, seeds, ..., runs
    _damaged/                      parts a --resume found damaged (moved here, never deleted)
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
  so columns never vanish when pyarrow unifies parts. List metrics (curves) are ``list<double>``;
- a status row records how many rows its trial has on disk (``rows``): a trial counts as done only
  while they are all there (:func:`finished_trials`), so rows lost with a damaged part are run again;
- a damaged part (unreadable, or foreign: not a results table, or another sweep's rows) is reported
  in one line by every reader that meets it, and :func:`quarantine_damaged` moves it to ``_damaged/``;
- a row Arrow cannot convert to the schema (a value of the wrong type) is refused on its own
  (:attr:`ResultsWriter.rejected`, one line each) and never costs another row: ``add`` refuses it, and
  a part whose table cannot be built is written row by row without it.
"""
from __future__ import annotations

import errno
import json
import os
import time
import typing
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import pyarrow as pa
import pyarrow.parquet as pq

from lowbit_core.config import dotted_keys
from lowbit_core.metric_values import describe

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
    ("step", pa.int64()), ("rows", pa.int64()),
])
"""One row per ended trial. ``status``: TERMINATED (ran to its end), STOPPED_EARLY (a scheduler such as
ASHA stopped it; ``error`` says by what and at which epoch), ERROR or INTERRUPTED; ``step``: its last
reported step; ``rows``: how many (trial_key, step) rows of it were on disk or buffered when it ended
(null in folders from before these columns)."""

FINISHED, STOPPED_EARLY = "TERMINATED", "STOPPED_EARLY"
DONE_STATUSES = (FINISHED, STOPPED_EARLY)
"""Statuses of trials that need no rerun (a trial stopped early by the scheduler is not failed)."""

DAMAGED_DIR = "_damaged"

_METRIC_TYPES = {"float": pa.float64(), "int": pa.int64(), "str": pa.string(), "list[float]": pa.list_(pa.float64())}


def _arrow_type(tp: Any) -> pa.DataType:
    if tp is bool:
        return pa.bool_()
    if tp is int:
        return pa.int64()
    if tp is float:
        return pa.float64()
    if typing.get_origin(tp) is typing.Annotated:
        return _arrow_type(typing.get_args(tp)[0])
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
    try:
        write(tmp)
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        # a full or read-only disk: leave no half-written temp file behind (best effort)
        try:
            tmp.unlink(missing_ok=True)
        except OSError:
            pass
        raise
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


def status_files(folder: str | Path) -> list[Path]:
    return sorted((Path(folder) / "_trials").glob("*.parquet"))


def latest_status(folder: str | Path) -> dict[str, dict]:
    """The latest status row (a dict of :data:`TRIAL_STATUS` columns; the newer ones may be absent)
    per trial_key from ``_trials/``."""
    latest: dict[str, dict] = {}
    for part in status_files(folder):
        for row in pq.read_table(part).to_pylist():
            prev = latest.get(row["trial_key"])
            if prev is None or row["time"] >= prev["time"]:
                latest[row["trial_key"]] = row
    return latest


def trial_status(folder: str | Path) -> dict[str, str]:
    """Latest status per trial_key from ``_trials/`` (TERMINATED, STOPPED_EARLY, ERROR, INTERRUPTED)."""
    return {k: row["status"] for k, row in latest_status(folder).items()}


def rows_per_trial(steps) -> dict[str, int]:
    """trial_key -> how many of the (trial_key, step) pairs ``steps`` it has."""
    counts: dict[str, int] = {}
    for key, _ in steps:
        counts[key] = counts.get(key, 0) + 1
    return counts


def finished_trials(folder: str | Path, steps: set[tuple[str, int]] | None = None) -> set[str]:
    """Trial keys that need no rerun: latest status TERMINATED or STOPPED_EARLY, and every row the
    status counted still on disk (``steps``: the (trial_key, step) pairs on disk, default: read them).
    A trial whose rows went with a damaged part (moved to ``_damaged/``) is therefore unfinished. For
    status rows from before the ``rows`` column, one row on disk is taken as enough."""
    latest = latest_status(folder)
    on_disk = rows_per_trial(existing_steps(folder) if steps is None else steps)
    return {k for k, row in latest.items()
            if row["status"] in DONE_STATUSES and on_disk.get(k, 0) >= _rows_needed(row)}


def _rows_needed(status_row: dict) -> int:
    rows = status_row.get("rows")
    return 1 if rows is None else int(rows)


class ResultsError(ValueError):
    """The input is not a usable results directory; the message is one line (what is wrong; what is valid)."""


REQUIRED_COLUMNS = ("trial_key", "step")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def part_problem(table: pa.Table, required: tuple[str, ...], sweep: str | None = None) -> str | None:
    """Why a readable Parquet table is not a part of this folder (foreign), or None: it lacks a
    ``required`` column, or its ``sweep`` column names another sweep than ``sweep``."""
    missing = [c for c in required if c not in table.column_names]
    if missing:
        return f"foreign: no {', '.join(missing)} column (not a results table of lowbit-sweeps)"
    if sweep and "sweep" in table.column_names:
        others = sorted({v for v in table.column("sweep").to_pylist() if v is not None} - {sweep})
        if others:
            return f"foreign: rows of sweep {', '.join(others)}, not {sweep}"
    return None


def read_part(path: Path, required: tuple[str, ...] = ("trial_key", "step"),
              sweep: str | None = None) -> tuple[pa.Table | None, str | None]:
    """(table, None) for an intact Parquet file, (None, why it is damaged) otherwise: unreadable
    (truncated, not Parquet, corrupt pages) or foreign (:func:`part_problem`)."""
    try:
        table = pq.read_table(path)
    except Exception as exc:  # noqa: BLE001 -- pyarrow raises several types for damaged files
        return None, "unreadable: " + _first_line(exc).split(f"{path}': ", 1)[-1]
    problem = part_problem(table, required, sweep)
    return (None, problem) if problem else (table, None)


def damaged_line(path: Path, reason: str) -> str:
    """The one line naming a damaged file and why (readers print it; --resume adds where it went)."""
    return f"damaged part {path} ({reason})"


def _read_tables(paths: list[Path], required: tuple[str, ...], on_damaged, sweep: str | None = None):
    """DataFrames of the intact files of ``paths``. A damaged one raises ResultsError naming it, or,
    with ``on_damaged``, is skipped after ``on_damaged(path, reason)``."""
    frames = []
    for path in paths:
        table, reason = read_part(path, required, sweep)
        if reason is None:
            frames.append(table.to_pandas())
        elif on_damaged is None:
            raise ResultsError(f"{damaged_line(path, reason)}; valid: a Parquet file written by the sweep")
        else:
            on_damaged(path, reason)
    return frames


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


def read_results(folder: str | Path, on_damaged=None, sweep: str | None = None):
    """All data rows of a sweep folder as a pandas DataFrame (union of columns across parts; empty
    when there are none). A damaged part raises :class:`ResultsError` naming it; with
    ``on_damaged(path, reason)`` it is reported there and skipped (``sweep``: the folder's sweep
    name, so that another sweep's part counts as foreign)."""
    return concat_parts(_read_tables(data_parts(folder), REQUIRED_COLUMNS, on_damaged, sweep))


def load_results(results_dir: str | Path, on_damaged=None, sweep: str | None = None):
    """All data rows of ``results_dir``, duplicates of (trial_key, step) dropped (last part wins).

    Raises ResultsError when the directory is missing, holds no part files, holds no rows, or
    lacks the columns every results table has; also for a damaged part unless ``on_damaged`` is
    given (then that part is skipped and reported: :func:`read_results`).
    """
    root = Path(results_dir)
    if not root.exists():
        raise ResultsError(f"{root} does not exist; valid: a results directory such as results/<sweep>")
    if not root.is_dir():
        raise ResultsError(f"{root} is not a directory; valid: a results directory such as results/<sweep>")
    if not data_parts(root):
        raise ResultsError(f"no part-*.parquet files in {root}; valid: a results directory written by launch/sweep.py")
    damaged: list[Path] = []

    def note(path, reason):
        damaged.append(path)
        on_damaged(path, reason)

    df = read_results(root, note if on_damaged else None, sweep)
    if len(damaged) == len(data_parts(root)):
        raise ResultsError(f"every part file in {root} is damaged; valid: a results directory with at least one "
                           "intact part")
    missing = [c for c in REQUIRED_COLUMNS if c not in df.columns]
    if missing:
        raise ResultsError(f"{root} parts lack column(s) {', '.join(missing)}; valid: results tables with "
                           f"{', '.join(REQUIRED_COLUMNS)} columns")
    if df.empty:
        raise ResultsError(f"the part files in {root} hold no rows; valid: a sweep that reported at least one step")
    return df.drop_duplicates(subset=["trial_key", "step"], keep="last").reset_index(drop=True)


def load_trial_status(results_dir: str | Path, on_damaged=None):
    """The latest status row per trial from ``_trials/*.parquet`` as a DataFrame, or None when there
    are none. A resumed run may add a second status row for a trial; the latest ``time`` wins. A
    damaged status file raises ResultsError, or is skipped and reported to ``on_damaged``."""
    files = status_files(results_dir)
    if not files:
        return None
    df = concat_parts(_read_tables(files, ("trial_key", "status"), on_damaged))
    if df.empty or "trial_key" not in df.columns or "status" not in df.columns:
        return None
    if "time" in df.columns:
        df = df.sort_values("time", kind="stable")
    return df.drop_duplicates(subset=["trial_key"], keep="last").reset_index(drop=True)


@dataclass(frozen=True)
class Damaged:
    """A file :func:`quarantine_damaged` moved: where it was, where it is now, and why."""

    path: Path
    moved_to: Path
    reason: str

    def line(self) -> str:
        return f"{damaged_line(self.path, self.reason)}: moved to {self.moved_to}; the trials it held run again"


def _free_name(folder: Path, name: str) -> Path:
    """``folder/name``, or ``folder/name.1``, ``.2``, ... where that exists already (nothing is overwritten)."""
    target, n = folder / name, 0
    while target.exists():
        n += 1
        target = folder / f"{name}.{n}"
    return target


def quarantine_damaged(folder: str | Path, sweep: str | None = None) -> list[Damaged]:
    """Move every damaged data part and status file of ``folder`` (:func:`read_part`; ``sweep``: the
    folder's sweep, so that another sweep's part counts as foreign) into ``folder/_damaged/`` (status
    files into ``_damaged/_trials/``), never deleting one. Call it holding the folder's lock, before
    the writer reads what is on disk: the trials whose rows went then count as unfinished
    (:func:`finished_trials`), and a trial whose status went has none, so both run again."""
    folder = Path(folder)
    found = [(p, read_part(p, REQUIRED_COLUMNS, sweep)[1], folder / DAMAGED_DIR) for p in data_parts(folder)]
    found += [(p, read_part(p, ("trial_key", "status"))[1], folder / DAMAGED_DIR / "_trials")
              for p in status_files(folder)]
    moved = []
    for path, reason, target_dir in found:
        if reason is None:
            continue
        target_dir.mkdir(parents=True, exist_ok=True)
        target = _free_name(target_dir, path.name)
        os.replace(path, target)
        moved.append(Damaged(path, target, reason))
    return moved


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


def writable_problem(folder: str | Path, probe_bytes: int = 4096) -> str | None:
    """None when files can be written where ``folder``'s parts will go, else one line naming the
    folder and the OS error. Probes the folder, or where it does not exist yet its nearest existing
    parent (where it would be created): a hidden temp file of ``probe_bytes`` bytes is written,
    fsynced and removed, so a read-only file system (EROFS), missing permission (EACCES), a file in
    the way (ENOTDIR) or a full disk (ENOSPC) shows here, before anything is started."""
    import tempfile

    folder = Path(folder)
    probe = folder
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    try:
        fd, name = tempfile.mkstemp(prefix=".lowbit-write-check-", dir=probe)
        try:
            os.write(fd, b"\0" * probe_bytes)
            os.fsync(fd)
        finally:
            os.close(fd)
            os.unlink(name)
    except OSError as exc:
        where = "" if probe == folder else f" (it would be created in {probe})"
        return f"cannot write to the results folder {folder}{where}: {exc.strerror or exc}"
    return None


class ResultsWriteError(OSError):
    """Writing a data part or status file failed (disk full, read-only file system, ...): an OSError
    with the original's errno and strerror. ``str()`` is one line: the folder, the OS error, and what
    was kept (``lost_rows`` grows while the writer drops what still arrives)."""

    def __init__(self, folder: Path, error: OSError, kept_rows: int, parts: int, lost_rows: int):
        super().__init__(error.errno, error.strerror or str(error))
        self.folder, self.error = folder, error
        self.kept_rows, self.parts, self.lost_rows = kept_rows, parts, lost_rows

    def __str__(self) -> str:
        err = self.error
        name = errno.errorcode.get(err.errno, "") if err.errno else ""
        return (f"writing results to {self.folder} failed: {err.strerror or err}{f' ({name})' if name else ''}; "
                f"kept {self.kept_rows} rows of this run in {self.parts} parts (and every row of earlier runs); "
                f"{self.lost_rows} rows received but not written are lost, their trials run again on --resume")


@dataclass(frozen=True)
class Rejected:
    """A row the writer could not store (:meth:`ResultsWriter.add`, :meth:`ResultsWriter.flush`):
    whose it was and why, in one line."""

    trial_id: str | None
    trial_key: str
    step: int
    reason: str


_ARROW_ERRORS = (pa.ArrowException, TypeError, ValueError, OverflowError)
_INT64 = (-2 ** 63, 2 ** 63)


def _plain_check(tp: pa.DataType):
    """A fast test that a Python value certainly converts to ``tp`` (plain Python values only), or None
    where every value takes the slow test (a one-row Arrow conversion)."""
    if tp == pa.string():
        return lambda v: type(v) is str
    if tp == pa.int64():
        return lambda v: type(v) is int and _INT64[0] <= v < _INT64[1]
    if tp == pa.float64():
        return lambda v: type(v) is float or (type(v) is int and -2 ** 53 <= v <= 2 ** 53)
    if tp == pa.bool_():
        return lambda v: type(v) is bool
    if pa.types.is_timestamp(tp):
        from datetime import datetime

        return lambda v: isinstance(v, datetime)
    if tp == pa.list_(pa.float64()):
        return lambda v: type(v) is list and all(type(x) is float for x in v)
    return None


class ResultsWriter:
    """Buffers rows and writes them as atomic Parquet parts; skips (trial_key, step) already written.

    A row that cannot be stored in the schema (a metric of the wrong type) is refused alone and
    recorded in ``rejected`` (:class:`Rejected`); the caller marks its trial failed. The rows of every
    other trial are written as usual.

    The first OSError while writing (ENOSPC, EROFS, ...) raises :class:`ResultsWriteError` (kept in
    ``error``); from then on the writer writes nothing more: ``add`` and ``trial_ended`` drop what
    they get (counted in the error's lost rows), ``flush`` and ``close`` return at once."""

    def __init__(self, folder: str | Path, schema: pa.Schema, run_id: str,
                 flush_rows: int = 2000, flush_seconds: float = 5.0):
        self.folder = Path(folder)
        self.schema, self.run_id = schema, run_id
        self.flush_rows, self.flush_seconds = flush_rows, flush_seconds
        self.folder.mkdir(parents=True, exist_ok=True)
        self._seen = existing_steps(self.folder)
        self._count = rows_per_trial(self._seen)
        self._rows: list[dict] = []
        self._status: list[dict] = []
        self._seq = 0
        self._status_seq = 0
        self._last_flush = time.monotonic()
        self.rows_written = 0
        self.rows_skipped = 0
        self.error: ResultsWriteError | None = None
        self.rejected: list[Rejected] = []
        """Rows refused (wrong types), oldest first; their trials' buffered statuses say ERROR."""
        self._checks = {f.name: _plain_check(f.type) for f in schema}

    @property
    def seen(self) -> set[tuple[str, int]]:
        """The (trial_key, step) pairs on disk or written by this writer (not to be modified)."""
        return self._seen

    def rows_of(self, trial_key: str) -> int:
        """How many rows of ``trial_key`` are on disk or buffered."""
        return self._count.get(trial_key, 0)

    def add(self, row: dict) -> bool:
        """Buffer ``row``; False (and nothing buffered) when its (trial_key, step) is written already,
        or when it cannot be stored (:meth:`row_problem`; then recorded in ``rejected``)."""
        ident = (row["trial_key"], int(row["step"]))
        if self.error is not None:
            if ident not in self._seen:
                self._seen.add(ident)
                self.error.lost_rows += 1
            return False
        if ident in self._seen:
            self.rows_skipped += 1
            return False
        unknown = set(row) - set(self.schema.names)
        if unknown:
            raise KeyError(f"columns not in the results schema: {sorted(unknown)}")
        problem = self.row_problem(row)
        if problem is not None:
            self._reject(row, problem)
            return False
        self._seen.add(ident)
        self._count[ident[0]] = self._count.get(ident[0], 0) + 1
        self._rows.append(row)
        self._maybe_flush()
        return True

    def trial_ended(self, status_row: dict) -> None:
        """Record a trial's end (a dict with the TRIAL_STATUS columns; ``rows`` defaults to the trial's
        rows on disk or buffered); written after its data."""
        if self.error is not None:
            return
        self._status.append({"rows": self.rows_of(status_row["trial_key"]), **status_row})
        self._maybe_flush()

    def _maybe_flush(self) -> None:
        if len(self._rows) >= self.flush_rows or time.monotonic() - self._last_flush >= self.flush_seconds:
            self.flush()

    def flush(self) -> None:
        """Write buffered data rows, then buffered trial statuses (so a status implies its data).
        An OSError raises :class:`ResultsWriteError` (see the class); after one, nothing is written."""
        if self.error is not None:
            return
        try:
            self._flush()
        except OSError as exc:
            self.error = ResultsWriteError(self.folder, exc, self.rows_written, self._seq, len(self._rows))
            self._rows, self._status = [], []
            raise self.error from None

    def row_problem(self, row: dict) -> str | None:
        """None when ``row`` converts to the schema, else one line: the first column that does not,
        with its Arrow type and the value (``column 'loss' (double) cannot hold str 'abc'``). Plain
        Python values of the column's type pass a fast test; anything else a one-row conversion."""
        if all(v is None or (check is not None and check(v))
               for v, check in ((v, self._checks.get(k)) for k, v in row.items())):
            return None
        try:
            pa.Table.from_pylist([row], schema=self.schema)
            return None
        except _ARROW_ERRORS as exc:
            whole = exc
        for name, value in row.items():
            if value is None:
                continue
            try:
                pa.array([value], type=self.schema.field(name).type)
            except _ARROW_ERRORS:
                return f"column {name!r} ({self.schema.field(name).type}) cannot hold {describe(value)}"
        return f"row cannot be stored: {_first_line(whole)}"

    def _reject(self, row: dict, reason: str, buffered: bool = False) -> None:
        """Record ``row`` as refused; with ``buffered`` (it was counted when added) uncount it and mark
        its trial's buffered status rows ERROR (with ``reason``), counting the rows it still has."""
        key, step = row["trial_key"], int(row["step"])
        line = f"results row of step {step} not written: {reason}"
        self.rejected.append(Rejected(row.get("trial_id"), key, step, line))
        if buffered:
            self._seen.discard((key, step))
            self._count[key] = max(0, self._count.get(key, 0) - 1)
            for status in self._status:
                if status["trial_key"] == key:
                    status["rows"] = self.rows_of(key)
                    if status["status"] in DONE_STATUSES:
                        status["status"], status["error"] = "ERROR", line

    def _data_table(self) -> pa.Table | None:
        """The buffered rows as one table. When Arrow cannot build it (a value of the wrong type),
        each row is converted on its own: the bad ones are refused (:meth:`_reject`), the rest kept.
        None when no row is left."""
        try:
            return pa.Table.from_pylist(self._rows, schema=self.schema)
        except _ARROW_ERRORS:
            pass
        good = []
        for row in self._rows:
            problem = self.row_problem(row)
            if problem is None:
                good.append(row)
            else:
                self._reject(row, problem, buffered=True)
        self._rows = good
        return pa.Table.from_pylist(good, schema=self.schema) if good else None

    def _flush(self) -> None:
        self._last_flush = time.monotonic()
        if self._rows:
            table = self._data_table()
            if table is not None:
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
