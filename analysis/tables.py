"""Summary tables: mean ± std (n) over seeds, the paired estimator comparison, Optuna bests.

Statistics are over trials (one final row per trial); std is the sample std (ddof=1), undefined
for n=1; n counts the non-null values that went into the mean.
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd

from analysis.groups import (BATCH, ESTIMATOR, KIND, fmt_value, iter_groups, searched_keys,
                             seed_column, short_names)

FINAL_METRICS = ("start_loss", "single_best_loss", "best_loss", "rel_improvement_best", "max_abs_delta")
SWEEP_METRIC = "rel_improvement_best"
REFERENCE_ESTIMATOR = "identity"


# ---- number formatting -------------------------------------------------------------------------

def fmt(x, signed: bool = False) -> str:
    """``x`` to 4 significant digits ('–' for null); with ``signed`` a '+' on positives."""
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "–"
    return f"{x:+.4g}" if signed else f"{x:.4g}"


def fmt_mean_std(mean, std, n: int, signed: bool = False, percent: bool = False) -> str:
    """'mean ± std (n=N)'; std left out for n=1, '–' for n=0; ``percent`` scales by 100 and adds '%'."""
    if n == 0 or mean is None or (isinstance(mean, float) and math.isnan(mean)):
        return "–"
    scale, unit = (100.0, "%") if percent else (1.0, "")
    text = fmt(mean * scale, signed) + unit
    if n > 1 and std is not None and not math.isnan(std):
        # Equal values give a std of float round-off (1e-17); show it as the 0 it is.
        std = 0.0 if std <= 1e-9 * abs(mean) else std
        text += f" ± {fmt(std * scale)}{unit}"
    return f"{text} (n={n})"


def mean_std_n(values) -> tuple[float, float, int]:
    """Mean, sample std (ddof=1; NaN for n<2) and count of the non-null ``values``."""
    v = pd.to_numeric(pd.Series(values, dtype=object), errors="coerce").dropna().to_numpy(dtype=float)
    n = int(v.size)
    if n == 0:
        return math.nan, math.nan, 0
    return float(v.mean()), float(v.std(ddof=1)) if n > 1 else math.nan, n


# ---- markdown ----------------------------------------------------------------------------------

def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    """A plain GitHub-markdown table ('|' in cells escaped); numbers right-aligned by the caller's text."""
    def cell(s) -> str:
        return str(s).replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(cell(h) for h in header) + " |",
             "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(cell(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def frame_to_markdown(df: pd.DataFrame) -> str:
    """A DataFrame of already formatted cells as a markdown table."""
    return markdown_table(list(df.columns), df.astype(str).values.tolist())


def _key_headers(keys: list[str]) -> list[str]:
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
    out = pd.DataFrame({h: table[k].map(fmt_value) for h, k in zip(_key_headers(keys), keys)})
    for m in metrics:
        signed = m.startswith("rel_")
        out[m] = [fmt_mean_std(a, s, int(n), signed) for a, s, n in
                  zip(table[f"{m}.mean"], table[f"{m}.std"], table[f"{m}.n"])]
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
                               reference: str = REFERENCE_ESTIMATOR) -> pd.DataFrame:
    """Pairs of (estimator setting, reference) trials on equal pair keys, with
    ``rel_diff = (metric_est - metric_ref) / metric_ref``.

    Columns: ``estimator``, the pair keys, ``value``, ``reference_value``, ``rel_diff``.
    Rows whose reference value is null or zero are left out (the ratio is undefined).
    """
    rows = estimator_rows(final)
    on = pair_keys(final, keys)
    cols = [ESTIMATOR, *on, metric]
    if metric not in rows.columns or rows.empty:
        return pd.DataFrame(columns=[ESTIMATOR, *on, "value", "reference_value", "rel_diff"])
    ref = rows.loc[rows[ESTIMATOR] == reference, on + [metric]].rename(columns={metric: "reference_value"})
    est = rows.loc[rows[ESTIMATOR] != reference, cols].rename(columns={metric: "value"})
    pairs = est.merge(ref, on=on, how="inner") if on else est.merge(ref, how="cross")
    pairs["value"] = pd.to_numeric(pairs["value"], errors="coerce")
    pairs["reference_value"] = pd.to_numeric(pairs["reference_value"], errors="coerce")
    pairs = pairs[pairs["reference_value"].notna() & (pairs["reference_value"] != 0) & pairs["value"].notna()]
    pairs["rel_diff"] = (pairs["value"] - pairs["reference_value"]) / pairs["reference_value"]
    return pairs.reset_index(drop=True)


def comparison_by(final: pd.DataFrame, keys: list[str]) -> list[str]:
    """How the estimator comparison is split: by estimator, and by batch size when it varies."""
    return [ESTIMATOR] + ([BATCH] if BATCH in keys else [])


def estimator_comparison(final: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """Per estimator setting (and batch size when it varies), over the binary final rows:
    paired relative difference of single_best_loss and best_loss against identity, the paired
    difference of rel_improvement_best, and the means of rel_improvement_best,
    grad_cos_identity and grad_clipped_frac. Each statistic as ``<name>.mean/.std/.n``.
    """
    rows_all = estimator_rows(final)
    by = comparison_by(final, keys)
    paired = {m: paired_relative_difference(final, m, keys) for m in ("single_best_loss", "best_loss")}
    diff = paired_relative_difference(final, SWEEP_METRIC, keys)
    diff["diff"] = diff["value"] - diff["reference_value"]
    out = []
    for values, sub in iter_groups(rows_all, by):
        row = dict(zip(by, values))
        sel = dict(zip(by, values))
        for m, pairs in paired.items():
            row.update(_stat(f"rel_diff.{m}", _select(pairs, sel)["rel_diff"] if len(pairs) else []))
        row.update(_stat("diff.rel_improvement_best", _select(diff, sel)["diff"] if len(diff) else []))
        for m in (SWEEP_METRIC, "grad_cos_identity", "grad_clipped_frac"):
            row.update(_stat(m, sub[m] if m in sub.columns else []))
        out.append(row)
    return pd.DataFrame(out)


def _select(df: pd.DataFrame, sel: dict) -> pd.DataFrame:
    """Rows of ``df`` whose columns equal ``sel``'s values (text comparison, so ints and floats match)."""
    mask = pd.Series(True, index=df.index)
    for k, v in sel.items():
        mask &= df[k].map(fmt_value) == fmt_value(v)
    return df[mask]


def _stat(name: str, values) -> dict:
    m, s, n = mean_std_n(values)
    return {f"{name}.mean": m, f"{name}.std": s, f"{name}.n": n}


def format_estimator_comparison(table: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """The estimator comparison as text cells; relative differences in percent."""
    by = [c for c in (ESTIMATOR, BATCH) if c in table.columns]
    out = pd.DataFrame({h: table[k].map(fmt_value) for h, k in zip(_key_headers(by), by)})

    def col(name, **kw):
        return [fmt_mean_std(a, s, int(n), **kw) for a, s, n in
                zip(table[f"{name}.mean"], table[f"{name}.std"], table[f"{name}.n"])]

    out["Δrel single_best_loss vs identity"] = col("rel_diff.single_best_loss", signed=True, percent=True)
    out["Δrel best_loss vs identity"] = col("rel_diff.best_loss", signed=True, percent=True)
    out["Δ rel_improvement_best vs identity"] = col("diff.rel_improvement_best", signed=True)
    out["rel_improvement_best"] = col(SWEEP_METRIC, signed=True)
    out["grad_cos_identity"] = col("grad_cos_identity")
    out["grad_clipped_frac"] = col("grad_clipped_frac")
    return out


# ---- Optuna studies ----------------------------------------------------------------------------

def study_best_table(final: pd.DataFrame, keys: list[str], metric: str = SWEEP_METRIC) -> pd.DataFrame:
    """Per Optuna study: its grid keys, seed, number of trials, the best trial's final ``metric``
    (highest) and that trial's searched hyperparameters (NaN where a key is fixed in that study)."""
    if "study" not in final.columns or metric not in final.columns:
        return pd.DataFrame()
    searched = searched_keys(final)
    seed = seed_column(final)
    studies = final[final["study"].fillna("").astype(str) != ""]
    rows = []
    for study, sub in studies.groupby("study", sort=True):
        ranked = sub.dropna(subset=[metric]).sort_values(metric, ascending=False, kind="stable")
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


def study_summary(best: pd.DataFrame, keys: list[str], metric: str = SWEEP_METRIC) -> pd.DataFrame:
    """Mean ± std (n studies, i.e. seeds) of the per-study best ``metric`` per group of grid ``keys``."""
    if best.empty:
        return pd.DataFrame()
    return mean_std_table(best, keys, metrics=(metric,))


def format_study_best(best: pd.DataFrame, keys: list[str], metric: str = SWEEP_METRIC) -> pd.DataFrame:
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
