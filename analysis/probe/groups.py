"""The probe family's labels and group keys: the estimator label, the method label, and which
columns they stand for.

The estimator columns (``cfg.estimator.name`` and one column per registry parameter, e.g.
``cfg.estimator.clip``) collapse into one label (``estimator``), because a parameter means
something only for its own estimator.

Method sweeps (``cfg.method`` other than ste on some trial) get a ``method`` label per trial
('multi-step STE (sgd)', 'DG S=4', 'CDG (refresh 20)', 'ADMM (from STE)', 'GA', 'ES (sep-CMA)');
the cfg.method column and the method sections' columns (cfg.dg.*, cfg.multi.*, cfg.admm.*, cfg.ga.*,
cfg.es.*) that take one value per label (they vary only because the method does: each method leaves
the other methods' sections at their defaults) collapse into it, like the estimator columns do.
"""
from __future__ import annotations

import pandas as pd

from lowbit_sweeps.analysis.common.estimators import PARAM_NAMES, label_from_params
from lowbit_sweeps.analysis.common.format import is_null
from lowbit_sweeps.analysis.common.groups import KIND, collapsed_columns, final_rows, is_optuna, n_values, varying_keys

ESTIMATOR = "estimator"
ESTIMATOR_NAME = "cfg.estimator.name"
ESTIMATOR_PARAMS = {p: f"cfg.estimator.{p}" for p in PARAM_NAMES}
ESTIMATOR_COLUMNS = (ESTIMATOR_NAME, *ESTIMATOR_PARAMS.values())
NOISE = "cfg.multi.noise"
OPTIMIZER = "cfg.multi.optimizer"
BATCH = "cfg.data.batch_size"
METHOD = "method"
METHOD_COLUMN = "cfg.method"
METHOD_SECTIONS = ("cfg.dg.", "cfg.multi.", "cfg.admm.", "cfg.ga.", "cfg.es.")
STEPS, REFRESH, ADMM_START = "cfg.dg.steps", "cfg.dg.cdg_refresh", "cfg.admm.start"
LABEL_COLUMNS = (STEPS, OPTIMIZER, REFRESH, ADMM_START)
"""The columns a method label is made of (besides cfg.method): DG's S, STE's optimizer, CDG's refresh,
ADMM's start."""
ADMM_STARTS = {"ste": "from STE", "w0": "from w0"}
STE = "ste"


def column_or_null(df: pd.DataFrame, col: str) -> pd.Series:
    """``df[col]`` as objects, or a column of nulls where ``df`` has no such column."""
    return df[col].astype(object) if col in df.columns else pd.Series(None, index=df.index, dtype=object)


def add_estimator_column(df: pd.DataFrame) -> pd.DataFrame:
    """``df`` with an ``estimator`` label column from the cfg.estimator.* columns (if any), labels
    from the registry ('identity', 'value_clip c=0.5', 'window t=0.1')."""
    if ESTIMATOR_NAME not in df.columns:
        return df
    names = list(ESTIMATOR_PARAMS)
    cols = [column_or_null(df, c) for c in ESTIMATOR_PARAMS.values()]
    labels = [label_from_params(name, dict(zip(names, values)))
              for name, *values in zip(df[ESTIMATOR_NAME].astype(object), *cols)]
    return df.assign(**{ESTIMATOR: labels})


def method_label(method, steps=None, optimizer=None, refresh=None, admm_start=None) -> str:
    """'multi-step STE (sgd)', 'DG S=1 (single-step)', 'DG S=4', 'CDG', 'CDG (refresh 20)',
    'ADMM (from STE)', 'ADMM (from w0)', 'GA' or 'ES (sep-CMA)'. A null method is STE (parts written
    before methods existed); null parameters take their defaults."""
    method = STE if is_null(method) else str(method)
    if method == STE:
        return f"multi-step STE ({'sgd' if is_null(optimizer) else optimizer})"
    if method == "dg":
        s = 1 if is_null(steps) else int(steps)
        return "DG S=1 (single-step)" if s == 1 else f"DG S={s}"
    if method == "cdg":
        r = 1 if is_null(refresh) else int(refresh)
        return "CDG" if r <= 1 else f"CDG (refresh {r})"
    if method == "admm":
        return f"ADMM ({ADMM_STARTS.get('ste' if is_null(admm_start) else str(admm_start), admm_start)})"
    if method == "ga":
        return "GA"
    if method == "es":
        return "ES (sep-CMA)"
    return method


def method_family(df: pd.DataFrame) -> pd.Series:
    """The cfg.method value per row ('ste' where the column is missing or null)."""
    if METHOD_COLUMN not in df.columns:
        return pd.Series(STE, index=df.index, dtype=object)
    return df[METHOD_COLUMN].fillna(STE).astype(str)


def has_other_methods(df: pd.DataFrame) -> bool:
    """Whether ``df`` holds trials of a method other than STE (then a ``method`` label is added)."""
    return METHOD_COLUMN in df.columns and bool((method_family(df) != STE).any())


def add_method_column(df: pd.DataFrame) -> pd.DataFrame:
    """``df`` with a ``method`` label column, only when some trial uses a method other than STE
    (an STE-only sweep keeps the report it always had)."""
    if not has_other_methods(df):
        return df
    labels = [method_label(*values) for values in zip(*(column_or_null(df, c) for c in (METHOD_COLUMN, *LABEL_COLUMNS)))]
    return df.assign(**{METHOD: labels})


def method_collapsed_columns(df: pd.DataFrame) -> list[str]:
    """The cfg.method and method-section columns that vary but take a single value per method
    label: they vary only because the method does, so the label stands for them."""
    return collapsed_columns(df, METHOD, [c for c in df.columns if c == METHOD_COLUMN or c.startswith(METHOD_SECTIONS)])


def group_keys(df: pd.DataFrame) -> list[str]:
    """The keys that define configuration groups: varying cfg.* columns, seed and searched keys
    excluded, cfg.estimator.* replaced by ``estimator``, method-only columns by ``method``; model
    kind first, then method, then estimator."""
    keys = varying_keys(df, skip=(*ESTIMATOR_COLUMNS, *method_collapsed_columns(df)))
    labels = [c for c in (METHOD, ESTIMATOR) if c in df.columns and n_values(df[c]) > 1]
    kind = keys[:1] if keys[:1] == [KIND] else []
    return kind + labels + keys[len(kind):]


def best_trials_per_study(df: pd.DataFrame, metric: str, mode: str) -> pd.DataFrame:
    """All rows of each Optuna study's best trial (final ``metric``, best by ``mode``); grid rows
    unchanged."""
    if not is_optuna(df) or metric not in df.columns:
        return df
    final = final_rows(df)
    in_study = final["study"].fillna("").astype(str) != ""
    ranked = final[in_study].dropna(subset=[metric]).sort_values(metric, ascending=mode == "min", kind="stable")
    best = set(ranked.groupby("study", sort=False).head(1)["trial_key"])
    keep = set(final.loc[~in_study, "trial_key"]) | best
    return df[df["trial_key"].isin(keep)].reset_index(drop=True)
