"""Reading a sweep's results directory: data parts, trial-status parts, input checks.

Layout (the results contract): ``RESULTS_DIR/part-*.parquet`` hold long-format rows (one per
reported step of a trial); names starting with ``_`` or ``.`` are not data. ``_trials/*.parquet``
hold one status row per finished trial (``trial_key``, ``status`` in TERMINATED/ERROR, ``error``).
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq

REQUIRED_COLUMNS = ("trial_key", "step")


class ResultsError(ValueError):
    """The input is not a usable results directory; the message is one line (what is wrong; what is valid)."""


def part_files(results_dir: Path) -> list[Path]:
    """The data part files of ``results_dir`` (``part-*.parquet`` at the top level), sorted by name."""
    return sorted(p for p in Path(results_dir).glob("part-*.parquet") if p.is_file())


def _read_parquet(path: Path) -> pd.DataFrame:
    """One Parquet file as a DataFrame; an unreadable file is a ResultsError naming it."""
    try:
        return pq.read_table(path).to_pandas()
    except Exception as exc:  # pyarrow raises several types for damaged files
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ResultsError(f"cannot read {path}: {first}; valid: a Parquet file written by the sweep") from None


def concat_parts(frames: list[pd.DataFrame]) -> pd.DataFrame:
    """Rows of all ``frames`` stacked; columns are the union (missing cells are null).

    Parts written by different code versions may carry different columns, so they are read one by
    one and aligned here rather than through a single dataset schema.
    """
    frames = [f for f in frames if len(f.columns)]
    if not frames:
        return pd.DataFrame()
    nonempty = [f for f in frames if len(f)] or frames[:1]
    return pd.concat(nonempty, ignore_index=True, sort=False)


def load_results(results_dir: str | Path) -> pd.DataFrame:
    """All data rows of ``results_dir``, duplicates of (trial_key, step) dropped (last part wins).

    Raises ResultsError when the directory is missing, holds no part files, holds no rows, or
    lacks the columns every results table has.
    """
    root = Path(results_dir)
    if not root.exists():
        raise ResultsError(f"{root} does not exist; valid: a results directory such as results/<sweep>")
    if not root.is_dir():
        raise ResultsError(f"{root} is not a directory; valid: a results directory such as results/<sweep>")
    files = part_files(root)
    if not files:
        raise ResultsError(
            f"no part-*.parquet files in {root}; valid: a results directory written by launch/sweep.py"
        )
    df = concat_parts([_read_parquet(p) for p in files])
    missing = [c for c in REQUIRED_COLUMNS if c not in df.columns]
    if missing:
        raise ResultsError(
            f"{root} parts lack column(s) {', '.join(missing)}; valid: results tables with "
            f"{', '.join(REQUIRED_COLUMNS)} columns"
        )
    if df.empty:
        raise ResultsError(f"the part files in {root} hold no rows; valid: a sweep that reported at least one step")
    return df.drop_duplicates(subset=["trial_key", "step"], keep="last").reset_index(drop=True)


def load_trial_status(results_dir: str | Path) -> pd.DataFrame | None:
    """The latest status row per trial from ``_trials/*.parquet``, or None when there are none.

    A resumed run may add a second status row for a trial; the one with the latest ``time``
    (or, without times, the last one read) is kept.
    """
    files = sorted(Path(results_dir, "_trials").glob("*.parquet"))
    if not files:
        return None
    df = concat_parts([_read_parquet(p) for p in files])
    if df.empty or "trial_key" not in df.columns or "status" not in df.columns:
        return None
    if "time" in df.columns:
        df = df.sort_values("time", kind="stable")
    return df.drop_duplicates(subset=["trial_key"], keep="last").reset_index(drop=True)


def error_line(text) -> str:
    """The last line of a trial's error text (at most 200 characters), or '(no message)'."""
    lines = str(text or "").strip().splitlines()
    return lines[-1][:200] if lines else "(no message)"


def failed_trials(status: pd.DataFrame | None) -> pd.DataFrame:
    """The status rows whose latest status is ERROR (empty frame when there are none)."""
    if status is None:
        return pd.DataFrame(columns=["trial_key", "status", "error"])
    return status[status["status"].astype(str) == "ERROR"].reset_index(drop=True)
