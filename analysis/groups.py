"""Which configuration keys vary, how trials group over seeds, and each trial's final row.

A report is shaped by the data, not by the sweep's name: the ``cfg.*`` columns that take more than
one value (other than the seed) define the configuration groups, and statistics are taken over
seeds inside each group. The three estimator columns collapse into one label (``estimator``)
because ``clip`` and ``window`` mean something only for their own estimator. In Optuna sweeps the
keys that vary inside one study are the searched hyperparameters, not grid axes.

Method sweeps (``cfg.method`` in ste/dg/cdg with some non-STE method) get a ``method`` label per trial
('multi-step STE (sgd)', 'DG S=4', 'CDG (refresh 20)'); the cfg.method, cfg.dg.* and cfg.multi.*
columns that take one value per label (they vary only because the method does: each method leaves
the other methods' sections at their defaults) collapse into it, like the estimator columns do.
"""
from __future__ import annotations

import math

import pandas as pd

ESTIMATOR = "estimator"
ESTIMATOR_COLUMNS = ("cfg.estimator.name", "cfg.estimator.clip", "cfg.estimator.window")
SEED_COLUMNS = ("seed", "cfg.seed")
KIND = "cfg.model.kind"
NOISE = "cfg.multi.noise"
OPTIMIZER = "cfg.multi.optimizer"
BATCH = "cfg.data.batch_size"
METHOD = "method"
METHOD_COLUMN = "cfg.method"
METHOD_SECTIONS = ("cfg.dg.", "cfg.multi.")


def fmt_value(value) -> str:
    """A config value as short text: integral floats without '.0', other floats to 6 digits."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() and abs(value) < 1e15 else f"{value:.6g}"
    return str(value)


def distinct_values(df, col: str) -> list[str]:
    """The distinct non-null values of ``df[col]`` as short text, sorted (empty if no such column)."""
    if col not in df.columns:
        return []
    return [fmt_value(v) for v in sorted(df[col].dropna().unique(), key=str)]


def estimator_label(name, clip, window) -> str:
    """'identity', 'value_clip c=0.5' or 'window t=0.1' (the parameter shown only where it matters)."""
    if name is None or (isinstance(name, float) and math.isnan(name)):
        return "identity"
    if name == "value_clip":
        return f"value_clip c={fmt_value(clip)}"
    if name == "window":
        return f"window t={fmt_value(window)}"
    return str(name)


def add_estimator_column(df: pd.DataFrame) -> pd.DataFrame:
    """``df`` with an ``estimator`` label column built from the cfg.estimator.* columns (if any)."""
    if "cfg.estimator.name" not in df.columns:
        return df
    cols = [df[c] if c in df.columns else pd.Series(None, index=df.index, dtype=object) for c in ESTIMATOR_COLUMNS]
    labels = [estimator_label(n, c, w) for n, c, w in zip(*(col.astype(object) for col in cols))]
    return df.assign(**{ESTIMATOR: labels})


def _is_null(value) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def method_label(method, steps=None, optimizer=None, refresh=None) -> str:
    """'multi-step STE (sgd)', 'DG S=1 (single-step)', 'DG S=4', 'CDG' or 'CDG (refresh 20)'.
    A null method is STE (parts written before methods existed); null parameters take their defaults."""
    method = "ste" if _is_null(method) else str(method)
    if method == "ste":
        return f"multi-step STE ({'sgd' if _is_null(optimizer) else optimizer})"
    if method == "dg":
        s = 1 if _is_null(steps) else int(steps)
        return "DG S=1 (single-step)" if s == 1 else f"DG S={s}"
    if method == "cdg":
        r = 1 if _is_null(refresh) else int(refresh)
        return "CDG" if r <= 1 else f"CDG (refresh {r})"
    return method


def has_other_methods(df: pd.DataFrame) -> bool:
    """Whether ``df`` holds trials of a method other than STE (then a ``method`` label is added)."""
    return METHOD_COLUMN in df.columns and bool((method_family(df) != "ste").any())


def method_family(df: pd.DataFrame) -> pd.Series:
    """The cfg.method value per row ('ste' where the column is missing or null)."""
    if METHOD_COLUMN not in df.columns:
        return pd.Series("ste", index=df.index, dtype=object)
    return df[METHOD_COLUMN].fillna("ste").astype(str)


def add_method_column(df: pd.DataFrame) -> pd.DataFrame:
    """``df`` with a ``method`` label column, only when some trial uses a method other than STE
    (an STE-only sweep keeps the report it always had)."""
    if not has_other_methods(df):
        return df

    def col(c):
        return df[c].astype(object) if c in df.columns else pd.Series(None, index=df.index, dtype=object)

    labels = [method_label(m, s, o, r) for m, s, o, r in
              zip(col(METHOD_COLUMN), col("cfg.dg.steps"), col(OPTIMIZER), col("cfg.dg.cdg_refresh"))]
    return df.assign(**{METHOD: labels})


def method_collapsed_columns(df: pd.DataFrame) -> list[str]:
    """The cfg.method / cfg.dg.* / cfg.multi.* columns that vary but take a single value per method
    label: they vary only because the method does, so the label stands for them."""
    if METHOD not in df.columns:
        return []
    cands = [c for c in df.columns if c == METHOD_COLUMN or c.startswith(METHOD_SECTIONS)]
    by = df.groupby(df[METHOD], sort=False)
    return [c for c in cands if _n_values(df[c]) > 1
            and all(_n_values(g[c]) == 1 for _, g in by)]


def seed_column(df: pd.DataFrame) -> str | None:
    """The name of the seed column (provenance ``seed`` first, then ``cfg.seed``), or None."""
    return next((c for c in SEED_COLUMNS if c in df.columns), None)


def _hashable(series: pd.Series) -> pd.Series:
    """``series`` with list/array cells turned into text, so it can be counted and grouped."""
    if series.dtype == object and series.map(lambda v: isinstance(v, (list, tuple)) or hasattr(v, "shape")).any():
        return series.map(lambda v: str(list(v)) if v is not None and not isinstance(v, str) else v)
    return series


def _n_values(series: pd.Series) -> int:
    """Distinct values of ``series``, null counted as one value."""
    return _hashable(series).nunique(dropna=False)


def is_optuna(df: pd.DataFrame) -> bool:
    """Whether the rows come from an Optuna sweep (a non-empty ``study`` on some row)."""
    return "study" in df.columns and (df["study"].fillna("").astype(str) != "").any()


def searched_keys(df: pd.DataFrame) -> list[str]:
    """The cfg.* keys that vary inside at least one Optuna study (the searched hyperparameters)."""
    if not is_optuna(df):
        return []
    studies = df[df["study"].fillna("").astype(str) != ""]
    cfg = [c for c in df.columns if c.startswith("cfg.") and c != "cfg.seed"]
    return [c for c in cfg if any(_n_values(g[c]) > 1 for _, g in studies.groupby("study"))]


def group_keys(df: pd.DataFrame) -> list[str]:
    """The keys that define configuration groups: varying cfg.* columns, seed and searched keys
    excluded, cfg.estimator.* replaced by ``estimator``, method-only columns by ``method``; model
    kind first, then method, then estimator."""
    skip = {"cfg.seed", *searched_keys(df), *method_collapsed_columns(df)}
    varying = [c for c in df.columns if c.startswith("cfg.") and c not in skip and _n_values(df[c]) > 1]
    keys = [c for c in varying if c not in ESTIMATOR_COLUMNS]
    if ESTIMATOR in df.columns and _n_values(df[ESTIMATOR]) > 1:
        keys.insert(0, ESTIMATOR)
    if METHOD in df.columns and _n_values(df[METHOD]) > 1:
        keys.insert(0, METHOD)
    if KIND in keys:
        keys.remove(KIND)
        keys.insert(0, KIND)
    return keys


def short_names(keys: list[str]) -> dict[str, str]:
    """Legend names for ``keys``: the last dotted part, or the path without 'cfg.' where that clashes."""
    last = [k.split(".")[-1] for k in keys]
    return {k: (s if last.count(s) == 1 else k.removeprefix("cfg.")) for k, s in zip(keys, last)}


def group_label(keys: list[str], values) -> str:
    """'kind=fp optimizer=sgd noise=0.05' for one group (``values`` aligned with ``keys``)."""
    if not keys:
        return "all trials"
    names = short_names(keys)
    return " ".join(f"{names[k]}={fmt_value(v)}" for k, v in zip(keys, values))


def iter_groups(df: pd.DataFrame, keys: list[str]):
    """Yield ``(values tuple, sub-frame)`` for each group of ``keys`` (all rows when no keys), sorted."""
    if not keys:
        yield (), df
        return
    for values, sub in df.groupby([_hashable(df[k]).rename(k) for k in keys], dropna=False, sort=True):
        yield (values if isinstance(values, tuple) else (values,)), sub


def final_rows(df: pd.DataFrame) -> pd.DataFrame:
    """One row per trial: the row with the largest step for that trial_key."""
    idx = df.sort_values(["trial_key", "step"], kind="stable").groupby("trial_key", sort=True).tail(1).index
    return df.loc[idx].reset_index(drop=True)


def best_trials_per_study(df: pd.DataFrame, metric: str = "rel_improvement_best") -> pd.DataFrame:
    """All rows of each Optuna study's best trial (highest final ``metric``); grid rows unchanged."""
    if not is_optuna(df) or metric not in df.columns:
        return df
    final = final_rows(df)
    in_study = final["study"].fillna("").astype(str) != ""
    ranked = final[in_study].dropna(subset=[metric]).sort_values(metric, ascending=False, kind="stable")
    best = set(ranked.groupby("study", sort=False).head(1)["trial_key"])
    keep = set(final.loc[~in_study, "trial_key"]) | best
    return df[df["trial_key"].isin(keep)].reset_index(drop=True)
