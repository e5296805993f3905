"""Which configuration keys vary, how trials group over seeds, and each trial's final row.

A report is shaped by the data: the ``cfg.*`` columns that take more than one value (other than the
seed) define the configuration groups, and statistics are taken over seeds inside each group. In
Optuna sweeps the keys that vary inside one study are the searched hyperparameters, not grid axes.
"""
from __future__ import annotations

import pandas as pd

from lowbit_sweeps.analysis.common.format import fmt_value

SEED_COLUMNS = ("seed", "cfg.seed")
KIND = "cfg.model.kind"


def seed_column(df: pd.DataFrame) -> str | None:
    """The name of the seed column (provenance ``seed`` first, then ``cfg.seed``), or None."""
    return next((c for c in SEED_COLUMNS if c in df.columns), None)


def distinct_values(df, col: str) -> list[str]:
    """The distinct non-null values of ``df[col]`` as short text, sorted (empty if no such column)."""
    if col not in df.columns:
        return []
    return [fmt_value(v) for v in sorted(df[col].dropna().unique(), key=str)]


def hashable(series: pd.Series) -> pd.Series:
    """``series`` with list/array cells turned into text, so it can be counted and grouped."""
    if series.dtype == object and series.map(lambda v: isinstance(v, (list, tuple)) or hasattr(v, "shape")).any():
        return series.map(lambda v: str(list(v)) if v is not None and not isinstance(v, str) else v)
    return series


def n_values(series: pd.Series) -> int:
    """Distinct values of ``series``, null counted as one value."""
    return hashable(series).nunique(dropna=False)


def collapsed_columns(df: pd.DataFrame, label: str, candidates: list[str]) -> list[str]:
    """The ``candidates`` that vary but take a single value per value of the ``label`` column: they
    vary only because the label does, so the label stands for them."""
    if label not in df.columns:
        return []
    by = df.groupby(df[label], sort=False)
    return [c for c in candidates if n_values(df[c]) > 1 and all(n_values(g[c]) == 1 for _, g in by)]


def is_optuna(df: pd.DataFrame) -> bool:
    """Whether the rows come from an Optuna sweep (a non-empty ``study`` on some row)."""
    return "study" in df.columns and (df["study"].fillna("").astype(str) != "").any()


def searched_keys(df: pd.DataFrame) -> list[str]:
    """The cfg.* keys that vary inside at least one Optuna study (the searched hyperparameters)."""
    if not is_optuna(df):
        return []
    studies = df[df["study"].fillna("").astype(str) != ""]
    cfg = [c for c in df.columns if c.startswith("cfg.") and c != "cfg.seed"]
    return [c for c in cfg if any(n_values(g[c]) > 1 for _, g in studies.groupby("study"))]


def varying_keys(df: pd.DataFrame, skip=()) -> list[str]:
    """The cfg.* columns that take more than one value, in column order, except cfg.seed, Optuna's
    searched keys and ``skip``; the model kind first."""
    skip = {"cfg.seed", *searched_keys(df), *skip}
    keys = [c for c in df.columns if c.startswith("cfg.") and c not in skip and n_values(df[c]) > 1]
    return ([KIND] if KIND in keys else []) + [k for k in keys if k != KIND]


def iter_groups(df: pd.DataFrame, keys: list[str]):
    """Yield ``(values tuple, sub-frame)`` for each group of ``keys`` (all rows when no keys), sorted."""
    if not keys:
        yield (), df
        return
    for values, sub in df.groupby([hashable(df[k]).rename(k) for k in keys], dropna=False, sort=True):
        yield (values if isinstance(values, tuple) else (values,)), sub


def rows_matching(df: pd.DataFrame, sel: dict) -> pd.DataFrame:
    """Rows of ``df`` whose columns equal ``sel``'s values (text comparison, so ints and floats match)."""
    mask = pd.Series(True, index=df.index)
    for k, v in sel.items():
        mask &= df[k].map(fmt_value) == fmt_value(v)
    return df[mask]


def final_rows(df: pd.DataFrame) -> pd.DataFrame:
    """One row per trial: the row with the largest step for that trial_key."""
    idx = df.sort_values(["trial_key", "step"], kind="stable").groupby("trial_key", sort=True).tail(1).index
    return df.loc[idx].reset_index(drop=True)


def paired_rows(frame: pd.DataFrame, axis: str, value, reference, on: list[str], metric: str) -> pd.DataFrame:
    """Rows with ``axis == value`` matched to rows with ``axis == reference`` on equal ``on`` columns
    (compared as text; the first of duplicate rows is kept on each side; no ``on``: every row with
    every row). Columns: ``on`` (the value side's cells), ``value`` and ``reference_value`` (numeric
    ``metric``); pairs with a null side are dropped."""
    keys = [f"_m:{k}" for k in on]

    def side(v, name: str) -> pd.DataFrame:
        sub = rows_matching(frame, {axis: v})
        out = pd.DataFrame({f"_m:{k}": sub[k].map(fmt_value) for k in on}, index=sub.index)
        out[name] = pd.to_numeric(sub[metric], errors="coerce") if metric in sub.columns else float("nan")
        for k in on:
            out[k] = sub[k]
        return out.drop_duplicates(subset=keys, keep="first") if keys else out

    a, b = side(value, "value"), side(reference, "reference_value").drop(columns=on)
    pairs = a.merge(b, on=keys, how="inner") if keys else a.merge(b, how="cross")
    pairs = pairs.dropna(subset=["value", "reference_value"])
    return pairs.drop(columns=keys).reset_index(drop=True)
