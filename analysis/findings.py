"""Plain-language findings computed from the final rows; every number comes from the data.

Decision rule used in the wording: a mean is called positive (or negative) only when it is more
than one std away from zero; otherwise "no clear difference (within one std)".
"""
from __future__ import annotations

import math

import pandas as pd

from analysis.groups import (BATCH, ESTIMATOR, KIND, NOISE, OPTIMIZER, fmt_value, group_label, iter_groups,
                             short_names)
from analysis.tables import SWEEP_METRIC, fmt, fmt_mean_std, mean_std_n, mean_std_table

FLOAT32_EPS = 1.1920929e-07


def verdict(mean: float, std: float) -> str:
    """'multi-step better' / 'single-step better' / 'no clear difference (within one std)'."""
    s = 0.0 if math.isnan(std) else std
    if mean - s > 0:
        return "multi-step better"
    if mean + s < 0:
        return "single-step better"
    return "no clear difference (within one std)"


def _ms(values, signed: bool = True, percent: bool = False) -> str:
    m, s, n = mean_std_n(values)
    return fmt_mean_std(m, s, n, signed=signed, percent=percent)


def multi_vs_single(final: pd.DataFrame, keys: list[str]) -> list[str]:
    """Per model kind: rel_improvement_best pooled over all its settings, its verdict, the share of
    trials with a positive value, and the best and worst group by mean."""
    if SWEEP_METRIC not in final.columns:
        return []
    lines = []
    kinds = [k for k in keys if k == KIND]
    for values, sub in iter_groups(final, kinds):
        v = pd.to_numeric(sub[SWEEP_METRIC], errors="coerce").dropna()
        if v.empty:
            continue
        rest = [k for k in keys if k != KIND and sub[k].nunique(dropna=False) > 1]
        m, s, n = mean_std_n(v)
        who = f"for {fmt_value(values[0])}" if values else "overall"
        pooled = f", pooled over {', '.join(short_names(rest).values())}" if rest else ""
        lines.append(f"Multi-step vs single-step {who}: mean {SWEEP_METRIC} = {fmt_mean_std(m, s, n, signed=True)}"
                     f"{pooled}; {verdict(m, s)}; positive in {int((v > 0).sum())}/{n} trials.")
        if rest:
            table = mean_std_table(sub, rest, metrics=(SWEEP_METRIC,)).dropna(subset=[f"{SWEEP_METRIC}.mean"])
            if len(table) > 1:
                best = table.loc[table[f"{SWEEP_METRIC}.mean"].idxmax()]
                worst = table.loc[table[f"{SWEEP_METRIC}.mean"].idxmin()]
                lines.append(f"  best setting {who}: {_row_text(best, rest)}; worst: {_row_text(worst, rest)}.")
    return lines


def _row_text(row: pd.Series, keys: list[str]) -> str:
    stat = fmt_mean_std(row[f"{SWEEP_METRIC}.mean"], row[f"{SWEEP_METRIC}.std"], int(row[f"{SWEEP_METRIC}.n"]), signed=True)
    return f"{group_label(keys, [row[k] for k in keys])} → {stat}"


def fp_vs_binary(final: pd.DataFrame) -> list[str]:
    """Whether FP and binary models agree in the sign of the mean rel_improvement_best."""
    if KIND not in final.columns or SWEEP_METRIC not in final.columns:
        return []
    means = {}
    for (kind,), sub in iter_groups(final, [KIND]):
        m, s, n = mean_std_n(sub[SWEEP_METRIC])
        if n:
            means[str(kind)] = (m, s, n)
    if "fp" not in means or "binary" not in means:
        return []
    same = math.copysign(1, means["fp"][0]) == math.copysign(1, means["binary"][0])
    text = ", ".join(f"{k} {fmt_mean_std(*means[k], signed=True)}" for k in ("fp", "binary"))
    meaning = ("FP and binary behave alike, so the effect is not specific to binarization with STE" if same
               else "FP and binary differ")
    return [f"FP vs binary: mean {SWEEP_METRIC} {text}; same sign: {'yes' if same else 'no'} ({meaning})."]


def by_single_key(final: pd.DataFrame, key: str, what: str) -> list[str]:
    """Per model kind, the mean rel_improvement_best at each value of ``key`` (pooled otherwise)."""
    if key not in final.columns or final[key].nunique() < 2 or SWEEP_METRIC not in final.columns:
        return []
    lines = []
    for values, sub in iter_groups(final, [KIND] if KIND in final.columns else []):
        parts = [f"{fmt_value(v)}: {_ms(g[SWEEP_METRIC])}" for (v,), g in iter_groups(sub, [key])]
        who = f" ({fmt_value(values[0])})" if values else ""
        lines.append(f"{what}{who}: mean {SWEEP_METRIC} by {key.split('.')[-1]} — " + "; ".join(parts) + ".")
    return lines


def noise_trend(final: pd.DataFrame) -> list[str]:
    """Per model kind, rel_improvement_best at the smallest and the largest noise amplitude."""
    if NOISE not in final.columns or final[NOISE].nunique() < 2 or SWEEP_METRIC not in final.columns:
        return []
    lines = []
    for values, sub in iter_groups(final, [KIND] if KIND in final.columns else []):
        table = mean_std_table(sub, [NOISE], metrics=(SWEEP_METRIC,)).sort_values(NOISE)
        table = table.dropna(subset=[f"{SWEEP_METRIC}.mean"])
        if len(table) < 2:
            continue
        lo, hi = table.iloc[0], table.iloc[-1]
        means = table[f"{SWEEP_METRIC}.mean"].to_numpy()
        rising = bool((means[1:] >= means[:-1]).all())
        who = f" for {fmt_value(values[0])}" if values else ""
        lines.append(
            f"Noise{who}: {SWEEP_METRIC} goes from {_stat(lo)} at noise={fmt_value(lo[NOISE])} to {_stat(hi)} "
            f"at noise={fmt_value(hi[NOISE])}; rises monotonically with noise: {'yes' if rising else 'no'}.")
    return lines


def _stat(row: pd.Series) -> str:
    return fmt_mean_std(row[f"{SWEEP_METRIC}.mean"], row[f"{SWEEP_METRIC}.std"], int(row[f"{SWEEP_METRIC}.n"]), signed=True)


def estimator_finding(comparison: pd.DataFrame) -> list[str]:
    """vSTE vs nSTE: the largest mean |relative difference| of single_best_loss against identity
    over settings, and in how many settings the mean is within one std of zero."""
    col = "rel_diff.single_best_loss"
    if comparison.empty or f"{col}.mean" not in comparison.columns:
        return []
    t = comparison[comparison[f"{col}.n"] > 0]
    if t.empty:
        return ["vSTE vs nSTE: no trial pairs with an identity reference on the same seed and keys."]
    absmean = t[f"{col}.mean"].abs()
    top = t.loc[absmean.idxmax()]
    within = (t[f"{col}.mean"].abs() <= t[f"{col}.std"].fillna(0.0)) & (t[f"{col}.n"] > 1)
    where = top[ESTIMATOR] + (f", batch_size={fmt_value(top[BATCH])}" if BATCH in t.columns else "")
    top_within = bool(within.loc[top.name])
    lines = [f"vSTE vs nSTE: largest mean |relative difference| of single_best_loss = {fmt(100 * absmean.max())}% "
             f"({where}: {fmt_mean_std(top[f'{col}.mean'], top[f'{col}.std'], int(top[f'{col}.n']), True, True)}); "
             f"within one std: {'yes' if top_within else 'no'}; settings within one std: {int(within.sum())}/{len(t)}."]
    if "grad_clipped_frac.mean" in t.columns:
        clipped = t[t[ESTIMATOR] != "identity"]["grad_clipped_frac.mean"].dropna()
        if not clipped.empty:
            span = (f"{fmt(100 * clipped.min())}%" if clipped.min() == clipped.max()
                    else f"between {fmt(100 * clipped.min())}% and {fmt(100 * clipped.max())}%")
            cos = t["grad_cos_identity.mean"].dropna() if "grad_cos_identity.mean" in t.columns else pd.Series(dtype=float)
            lines.append(f"  the estimators changed {span} of gradient coordinates (mean per setting)"
                         + (f"; lowest mean grad_cos_identity = {fmt(cos.min())}." if len(cos) else "."))
    return lines


def budget_line(excess: float, epsilon: float = 1.0) -> str:
    """The budget check: max(max_abs_delta - epsilon) must be <= 0; flagged loudly otherwise."""
    if math.isnan(excess):
        return "Budget check: not available (max_abs_delta or cfg.budget.epsilon missing)."
    if excess <= 0:
        return f"Budget check: max(max_abs_delta - epsilon) = {fmt(excess)} ≤ 0 — OK, every row stays in the box."
    # A float32 clip to epsilon reads back slightly above the float64 epsilon; say so, still flag it.
    rounding = " (within float32 rounding of epsilon)" if excess <= FLOAT32_EPS * epsilon else ""
    return f"**⚠ BUDGET VIOLATED: max(max_abs_delta - epsilon) = {fmt(excess)} > 0{rounding}.**"


def findings(final: pd.DataFrame, keys: list[str], comparison: pd.DataFrame, excess: float,
             epsilon: float = 1.0, extra: list[str] = ()) -> list[str]:
    """All findings lines, in report order; ``extra`` lines (the method comparison) go before the
    budget check. In method sweeps ``final`` and ``keys`` are the multi-step STE trials'."""
    lines = multi_vs_single(final, keys) + fp_vs_binary(final)
    lines += noise_trend(final)
    if OPTIMIZER in keys:
        lines += by_single_key(final, OPTIMIZER, "Optimizers")
    if BATCH in keys:
        lines += by_single_key(final, BATCH, "Batch size")
    if ESTIMATOR in keys:
        lines += estimator_finding(comparison)
    lines += list(extra)
    lines.append(budget_line(excess, epsilon))
    return lines
