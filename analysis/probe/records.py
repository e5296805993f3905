"""The probe report's verdict records: the question each comparison answers, per-seed pairing, and
the two-pass helper for callers outside a report.

Every verdict the probe report prints is :meth:`analysis.common.verdicts.Recorder.verdict` of one
comparison (``verdicts.json``); its text is rendered from that record. A function that makes
verdicts takes ``rec`` (None: a fresh :class:`Recorder`, whose verdicts are the raw, unadjusted
ones, as before records); :func:`decided` runs such a function twice around
:meth:`Recorder.adjust`, as ``write_decided`` does for the whole report.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from lowbit_sweeps.analysis.common.verdicts import Recorder

MULTISTEP = "multistep-vs-single"
VSTE = "vste-vs-nste"
DG_BOUND = "dg-upper-bound"
BUDGET = "budget-binds"
DISCRETE = "discrete-methods"
OTHER = None
"""Question ids of the probe's comparisons (:mod:`lowbit_core.questions`); None: other comparisons."""
REL_LOSS = "(L_method - L_ref)/L_ref of best_loss"
"""The metric of a method-against-reference comparison on final best_loss."""


def recorder(rec: Recorder | None, plan=None) -> Recorder:
    """``rec``, or a fresh :class:`Recorder` (raw verdicts: nothing adjusts it)."""
    return rec if rec is not None else Recorder(plan)


def decided(fn, plan=None):
    """``(fn(rec), rec)`` with decided verdicts: a fresh Recorder collects ``fn``'s comparisons,
    :meth:`Recorder.adjust` decides them (Holm per question), and ``fn`` runs again to render them."""
    rec = Recorder(plan)
    fn(rec)
    rec.adjust()
    return fn(rec), rec


def per_seed(frame: pd.DataFrame, value: str, seed: str | None) -> pd.Series:
    """``value`` averaged per seed over that seed's rows (non-finite values dropped), indexed by the
    seed as text (all rows one seed without a seed column)."""
    if value not in frame.columns or frame.empty:
        return pd.Series(dtype=float)
    v = pd.to_numeric(frame[value], errors="coerce").astype(float)
    ok = np.isfinite(v)
    if not ok.any():
        return pd.Series(dtype=float)
    by = frame.loc[ok, seed].astype(str).to_numpy() if seed else np.zeros(int(ok.sum()), dtype=int).astype(str)
    return v[ok].groupby(by, sort=True).mean()


def seed_diff(a: pd.Series, b: pd.Series) -> np.ndarray:
    """``a - b`` on the seeds both have (paired on seed)."""
    both = a.index.intersection(b.index)
    return (a[both] - b[both]).to_numpy(dtype=float)
