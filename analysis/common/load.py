"""Reading a sweep's results folder: the one reader of the on-disk format is
:mod:`lowbit_core.results`; this module adds the error lines of failed trials.

Layout (the results contract): ``RESULTS_DIR/part-*.parquet`` hold long-format rows (one per
reported step of a trial); names starting with ``_`` or ``.`` are not data. ``_trials/*.parquet``
hold one status row per ended trial (``trial_key``, ``status`` in TERMINATED / STOPPED_EARLY / ERROR /
INTERRUPTED, ``error``: the error, or for STOPPED_EARLY which scheduler stopped it at which epoch);
``_sweep.json`` holds the plan (read by :mod:`analysis.common.plan`).
"""
from __future__ import annotations

import pandas as pd

from lowbit_core.results import STOPPED_EARLY, ResultsError, load_results, load_trial_status

__all__ = ["ResultsError", "load_results", "load_trial_status", "error_line", "failed_trials", "stopped_trials"]


def error_line(text) -> str:
    """The last line of a trial's error text (at most 200 characters), or '(no message)'."""
    lines = str(text or "").strip().splitlines()
    return lines[-1][:200] if lines else "(no message)"


def failed_trials(status: pd.DataFrame | None) -> pd.DataFrame:
    """The status rows whose latest status is ERROR (empty frame when there are none)."""
    if status is None:
        return pd.DataFrame(columns=["trial_key", "status", "error"])
    return status[status["status"].astype(str) == "ERROR"].reset_index(drop=True)


def stopped_trials(status: pd.DataFrame | None) -> dict[str, str]:
    """trial_key -> reason ('stopped early by ASHA at epoch 2 of 10') of the trials whose latest
    status is STOPPED_EARLY: the sweep's scheduler stopped them, they did not fail."""
    if status is None or not len(status):
        return {}
    rows = status[status["status"].astype(str) == STOPPED_EARLY]
    return dict(zip(rows["trial_key"], rows["error"].fillna("stopped early").astype(str)))
