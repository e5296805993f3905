"""The probe report's tables: mean ± std (n) over seeds, the paired estimator comparison, Optuna bests.

Statistics are over trials (one final row per trial); std is the sample std (ddof=1), undefined
for n=1; n counts the non-null values that went into the mean. The estimator comparison pools the
settings of the other keys: each seed's values are averaged over them first, and mean ± std (n) are
over seeds (:func:`analysis.common.stats.over_seeds`).
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd

from lowbit_sweeps.analysis.common.estimators import REFERENCE
from lowbit_sweeps.analysis.common.format import fmt, fmt_mean_std, fmt_value, short_names, stat_cells
from lowbit_sweeps.analysis.common.groups import KIND, iter_groups, paired_rows, rows_matching, searched_keys, seed_column
from lowbit_sweeps.analysis.common.stats import mean_std_n, over_seeds, signed_percent
from lowbit_sweeps.analysis.probe.groups import BATCH, ESTIMATOR
from lowbit_sweeps.analysis.probe.records import VSTE, recorder

IMPROVEMENT = "rel_improvement_best"
"""The probe's answer to "multi-step vs single-step": (L_single - L_multi) / L_single, best so far."""
HELDOUT_IMPROVEMENT = "rel_improvement_heldout"
"""The same for the answers' losses on the held-out batch: (H_single - H_multi) / H_single."""
FINAL_METRICS = ("start_loss", "single_best_loss", "best_loss", IMPROVEMENT, "heldout_loss", HELDOUT_IMPROVEMENT,
                 "max_abs_delta")
DEFAULT_METRIC = (IMPROVEMENT, "max")
"""The sweep metric of folders without a plan (what the report used before plans were recorded)."""


def key_headers(keys: list[str]) -> list[str]:
    names = short_names(keys)
    return [names[k] for k in keys]


# ---- mean ± std tables -------------------------------------------------------------------------

def mean_std_table(final: pd.DataFrame, keys: list[str], metrics=FINAL_METRICS) -> pd.DataFrame:
    """Per group of ``keys``: ``<metric>.mean``, ``<metric>.std``, ``<metric>.n`` over the final rows.

    Metrics missing from ``final`` are skipped. One row per group; the key columns keep their values.
    """
    metrics = [m for m in metrics if m in final.columns]
    rows = []
    for values, sub in iter_groups(final, keys):
        row = dict(zip(keys, values))
        for m in metrics:
            row[f"{m}.mean"], row[f"{m}.std"], row[f"{m}.n"] = mean_std_n(sub[m])
        rows.append(row)
    return pd.DataFrame(rows)


def format_mean_std_table(table: pd.DataFrame, keys: list[str], metrics=FINAL_METRICS) -> pd.DataFrame:
    """``mean_std_table``'s output as text cells 'mean ± std (n=N)', keys by their short names."""
    metrics = [m for m in metrics if f"{m}.mean" in table.columns]
    out = pd.DataFrame({h: table[k].map(fmt_value) for h, k in zip(key_headers(keys), keys)})
    for m in metrics:
        out[m] = stat_cells(table, m, fmt_mean_std, signed=m.startswith("rel_"))
    return out


def budget_excess(df: pd.DataFrame) -> float:
    """max over rows of ``max_abs_delta - cfg.budget.epsilon`` (NaN when neither is present)."""
    if "max_abs_delta" not in df.columns or "cfg.budget.epsilon" not in df.columns:
        return math.nan
    diff = pd.to_numeric(df["max_abs_delta"], errors="coerce") - pd.to_numeric(df["cfg.budget.epsilon"], errors="coerce")
    return float(diff.max()) if diff.notna().any() else math.nan


# ---- estimator comparison (vSTE vs nSTE) -------------------------------------------------------

def estimator_rows(final: pd.DataFrame) -> pd.DataFrame:
    """The final rows where the estimator matters: binary models (all rows when kind is absent)."""
    if ESTIMATOR not in final.columns:
        return final.iloc[0:0]
    if KIND in final.columns:
        return final[final[KIND].astype(str) != "fp"]
    return final


def pair_keys(final: pd.DataFrame, keys: list[str]) -> list[str]:
    """Keys that must match for two trials to be a pair: seed plus the group keys but the estimator."""
    seed = seed_column(final)
    return ([seed] if seed else []) + [k for k in keys if k not in (ESTIMATOR, KIND)]


def paired_relative_difference(final: pd.DataFrame, metric: str, keys: list[str],
                               reference: str = REFERENCE) -> pd.DataFrame:
    """Pairs of (estimator setting, reference) trials on equal pair keys, with
    ``rel_diff = (metric_est - metric_ref) / metric_ref``.

    Columns: ``estimator``, the pair keys, ``value``, ``reference_value``, ``rel_diff``.
    Pairs with a null value or a null or zero reference are left out (the ratio is undefined).
    """
    rows = estimator_rows(final)
    on = pair_keys(final, keys)
    columns = [ESTIMATOR, *on, "value", "reference_value", "rel_diff"]
    if metric not in rows.columns or rows.empty:
        return pd.DataFrame(columns=columns)
    others = [e for e in dict.fromkeys(rows[ESTIMATOR]) if e != reference]
    frames = [paired_rows(rows, ESTIMATOR, e, reference, on, metric).assign(**{ESTIMATOR: e}) for e in others]
    pairs = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=columns)
    pairs = pairs[pairs["reference_value"] != 0].copy()
    pairs["rel_diff"] = (pairs["value"] - pairs["reference_value"]) / pairs["reference_value"]
    return pairs[columns].reset_index(drop=True)


def comparison_by(keys: list[str]) -> list[str]:
    """How the estimator comparison is split: by estimator, and by batch size when it varies."""
    return [ESTIMATOR] + ([BATCH] if BATCH in keys else [])


def pooled_keys(final: pd.DataFrame, keys: list[str]) -> list[str]:
    """The keys the estimator comparison averages over per seed (pair keys but seed and the split)."""
    seed = seed_column(final)
    return [k for k in pair_keys(final, keys) if k != seed and k not in comparison_by(keys)]


def estimator_comparison(final: pd.DataFrame, keys: list[str], rec=None) -> pd.DataFrame:
    """Per estimator setting (and batch size when it varies), over the binary final rows:
    paired relative difference of single_best_loss and best_loss against the reference estimator,
    the paired difference of rel_improvement_best, and the means of rel_improvement_best,
    grad_cos_identity and grad_clipped_frac. Each statistic as ``<name>.mean/.std/.n/.note`` over
    seeds, each seed's values averaged over the other keys' settings first. The verdict on
    ``rel_diff.single_best_loss`` of each setting other than the reference is a record of question
    vste-vs-nste (``rec``; baseline the reference), decided with the question's other comparisons; a
    setting whose every paired difference is 0 is ``identical`` (not counted in K). The reference's own
    row carries no verdict (``None``: it is the baseline). The other columns' ``.verdict`` are not shown.
    """
    rec = recorder(rec)
    rows_all = estimator_rows(final)
    by = comparison_by(keys)
    seed = seed_column(final)
    paired = {m: paired_relative_difference(final, m, keys) for m in ("single_best_loss", "best_loss")}
    diff = paired_relative_difference(final, IMPROVEMENT, keys)
    diff["diff"] = diff["value"] - diff["reference_value"]
    out = []
    for values, sub in iter_groups(rows_all, by):
        sel = dict(zip(by, values))
        row = dict(sel)
        for m, pairs in paired.items():
            row.update(over_seeds(rows_matching(pairs, sel), "rel_diff", seed).columns(f"rel_diff.{m}"))
        row.update(over_seeds(rows_matching(diff, sel), "diff", seed).columns(f"diff.{IMPROVEMENT}"))
        for m in (IMPROVEMENT, "grad_cos_identity", "grad_clipped_frac"):
            row.update(over_seeds(sub, m, seed).columns(m))
        col = "rel_diff.single_best_loss"
        if str(sel[ESTIMATOR]) == REFERENCE:
            row[f"{col}.verdict"] = None
        else:
            pairs = rows_matching(paired["single_best_loss"], sel)
            where = ", ".join(f"{short_names([k])[k]}={fmt_value(v)}" for k, v in sel.items() if k != ESTIMATOR)
            arms = rows_matching(rows_all, {k: v for k, v in sel.items() if k != ESTIMATOR})
            arms = arms[arms[ESTIMATOR].astype(str).isin({str(sel[ESTIMATOR]), REFERENCE})]
            if seed:
                arms = arms[arms[seed].map(fmt_value).isin(set(pairs[seed].map(fmt_value)))]
            stat = over_seeds(pairs, "rel_diff", seed)
            row[f"{col}.verdict"] = rec.verdict(
                stat.values, question=VSTE, comparison=f"{sel[ESTIMATOR]} vs {REFERENCE}" + (f" ({where})" if where else ""),
                metric=col, baseline=REFERENCE, unit="fraction", rows=arms)
        out.append(row)
    return pd.DataFrame(out)


def format_estimator_comparison(table: pd.DataFrame) -> pd.DataFrame:
    """The estimator comparison as text cells; relative differences in percent."""
    by = [c for c in (ESTIMATOR, BATCH) if c in table.columns]
    out = pd.DataFrame({h: table[k].map(fmt_value) for h, k in zip(key_headers(by), by)})
    out[f"Δrel single_best_loss vs {REFERENCE}"] = stat_cells(table, "rel_diff.single_best_loss", fmt_mean_std,
                                                              signed=True, percent=True)
    if "rel_diff.single_best_loss.verdict" in table.columns:
        out["verdict on Δrel single_best_loss (Holm)"] = [
            "baseline" if v is None else v.text("higher", "lower", signed_percent, "%")
            for v in table["rel_diff.single_best_loss.verdict"]]
    out[f"Δrel best_loss vs {REFERENCE}"] = stat_cells(table, "rel_diff.best_loss", fmt_mean_std,
                                                       signed=True, percent=True)
    out[f"Δ {IMPROVEMENT} vs {REFERENCE}"] = stat_cells(table, f"diff.{IMPROVEMENT}", fmt_mean_std, signed=True)
    out[IMPROVEMENT] = stat_cells(table, IMPROVEMENT, fmt_mean_std, signed=True)
    out["grad_cos_identity"] = stat_cells(table, "grad_cos_identity", fmt_mean_std)
    out["grad_clipped_frac"] = stat_cells(table, "grad_clipped_frac", fmt_mean_std)
    return out


# ---- Optuna studies ----------------------------------------------------------------------------

def study_best_table(final: pd.DataFrame, keys: list[str], metric: str, mode: str) -> pd.DataFrame:
    """Per Optuna study: its grid keys, seed, number of trials, the best trial's final ``metric``
    (best by ``mode``) and that trial's searched hyperparameters (NaN where a key is fixed in that
    study)."""
    if "study" not in final.columns or metric not in final.columns:
        return pd.DataFrame()
    searched = searched_keys(final)
    seed = seed_column(final)
    studies = final[final["study"].fillna("").astype(str) != ""]
    rows = []
    for study, sub in studies.groupby("study", sort=True):
        ranked = sub.dropna(subset=[metric]).sort_values(metric, ascending=mode == "min", kind="stable")
        best = ranked.iloc[0] if len(ranked) else sub.iloc[0]
        row = {"study": study, **{k: best.get(k) for k in keys}}
        if seed:
            row[seed] = best.get(seed)
        row["n_trials"] = len(sub)
        row[metric] = best[metric] if len(ranked) else math.nan
        for k in searched:
            row[k] = best.get(k) if sub[k].astype(str).nunique() > 1 else math.nan
        rows.append(row)
    return pd.DataFrame(rows)


def format_study_best(best: pd.DataFrame, keys: list[str], metric: str) -> pd.DataFrame:
    """``study_best_table`` as text cells."""
    out = pd.DataFrame()
    for c in best.columns:
        if c == metric:
            out[f"best {metric}"] = best[c].map(lambda x: fmt(x, signed=True))
        elif c.startswith("cfg.") and c not in keys:
            out[c.removeprefix("cfg.")] = best[c].map(lambda x: fmt(x) if isinstance(x, (float, np.floating)) else fmt_value(x))
        else:
            out[short_names([c])[c] if c.startswith("cfg.") else c] = best[c].map(fmt_value)
    return out

