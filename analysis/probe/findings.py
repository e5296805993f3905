"""Plain-language findings computed from the final rows; every number comes from the data.

Every line states its n. A statistic pooled over the settings of other keys averages each seed's
values over those settings first; its ± is the std over seeds of those per-seed means, and the text
says so ('n=3; ± std over seeds of the per-seed mean over 6 settings'). Verdicts follow the one rule,
:func:`analysis.common.stats.paired_verdict` (a paired-t 95% interval; never from fewer than 2 seeds),
and every verdict prints its interval, n and effect size d.
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd

from lowbit_sweeps.analysis.common.estimators import REFERENCE
from lowbit_sweeps.analysis.common.format import fmt, fmt_mean_std, fmt_value, group_label, short_names
from lowbit_sweeps.analysis.common.groups import KIND, iter_groups, paired_rows, seed_column
from lowbit_sweeps.analysis.common.stats import SeedStat, over_seeds, signed_percent
from lowbit_sweeps.analysis.probe.groups import BATCH, ESTIMATOR, NOISE, OPTIMIZER
from lowbit_sweeps.analysis.probe.tables import HELDOUT_IMPROVEMENT, IMPROVEMENT, mean_std_table

FLOAT32_EPS = 1.1920929e-07
MULTI, SINGLE = "multi-step better", "single-step better"


def pooled_text(stat: SeedStat, signed: bool = True, percent: bool = False) -> str:
    """A :class:`SeedStat` as 'mean ± std (n=N; what the ± is)'."""
    return fmt_mean_std(stat.mean, stat.std, stat.n, signed=signed, percent=percent, note=stat.note)


def kind_groups(final: pd.DataFrame):
    """(kind text, rows) per model kind ('' and all rows when there is no kind column)."""
    for values, sub in iter_groups(final, [KIND] if KIND in final.columns else []):
        yield (fmt_value(values[0]) if values else ""), sub


def stat_text(row: pd.Series, metric: str = IMPROVEMENT) -> str:
    """A table row's '<metric>.mean/.std/.n' as text (signed for relative metrics)."""
    return fmt_mean_std(row[f"{metric}.mean"], row[f"{metric}.std"], int(row[f"{metric}.n"]),
                        signed=metric.startswith("rel_"))


def row_text(row: pd.Series, keys: list[str], metric: str = IMPROVEMENT) -> str:
    return f"{group_label(keys, [row[k] for k in keys])} → {stat_text(row, metric)}"


def metric_line(final: pd.DataFrame, keys: list[str], metric: str, mode: str) -> list[str]:
    """The sweep's own metric (from its plan): the groups with the best and the worst mean final
    value (``mode`` says which end is best)."""
    head = f"Sweep metric {metric} ({'lower' if mode == 'min' else 'higher'} is better; from _sweep.json)"
    if metric not in final.columns:
        return [f"{head}: not in the rows."]
    table = mean_std_table(final, keys, (metric,)).dropna(subset=[f"{metric}.mean"])
    if table.empty:
        return [f"{head}: no final values."]
    table = table.sort_values(f"{metric}.mean", ascending=mode == "min", kind="stable")
    text = f"{head}, final rows: best mean {row_text(table.iloc[0], keys, metric)}"
    if len(table) > 1:
        text += f"; worst mean {row_text(table.iloc[-1], keys, metric)}"
    return [text + "."]


def multi_vs_single(final: pd.DataFrame, keys: list[str]) -> list[str]:
    """Per model kind: rel_improvement_best pooled over all its settings (per-seed means first), its
    verdict, the share of trials with a positive value, and the best and worst group by mean."""
    if IMPROVEMENT not in final.columns:
        return []
    lines = []
    seed = seed_column(final)
    kinds = [k for k in keys if k == KIND]
    for values, sub in iter_groups(final, kinds):
        v = pd.to_numeric(sub[IMPROVEMENT], errors="coerce").dropna()
        if v.empty:
            continue
        rest = [k for k in keys if k != KIND and sub[k].nunique(dropna=False) > 1]
        stat = over_seeds(sub, IMPROVEMENT, seed)
        who = f"for {fmt_value(values[0])}" if values else "overall"
        pooled = f", pooled over {', '.join(short_names(rest).values())}" if rest else ""
        lines.append(f"Multi-step vs single-step {who}: mean {IMPROVEMENT} = {pooled_text(stat)}{pooled}; "
                     f"{stat.verdict().text(MULTI, SINGLE)}; positive in {int((v > 0).sum())}/{len(v)} trials.")
        if rest:
            table = mean_std_table(sub, rest, metrics=(IMPROVEMENT,)).dropna(subset=[f"{IMPROVEMENT}.mean"])
            if len(table) > 1:
                best = table.loc[table[f"{IMPROVEMENT}.mean"].idxmax()]
                worst = table.loc[table[f"{IMPROVEMENT}.mean"].idxmin()]
                lines.append(f"  best setting {who}: {row_text(best, rest)}; worst: {row_text(worst, rest)}.")
    return lines


def heldout_lines(final: pd.DataFrame, keys: list[str]) -> list[str]:
    """Per model kind: the relative improvement on the probe batch and on the held-out batch side by
    side (pooled per seed), and whether the held-out one is positive by the verdict rule: a gain that
    carries over is a property of the landscape, one that does not is memorization of the batch."""
    if HELDOUT_IMPROVEMENT not in final.columns or IMPROVEMENT not in final.columns:
        return []
    seed = seed_column(final)
    lines = []
    for values, sub in iter_groups(final, [k for k in keys if k == KIND]):
        held = over_seeds(sub, HELDOUT_IMPROVEMENT, seed)
        if not held.n:
            continue
        who = f" ({fmt_value(values[0])})" if values else ""
        batch = over_seeds(sub, IMPROVEMENT, seed)
        lines.append(f"Held-out batch{who}: mean {HELDOUT_IMPROVEMENT} = {pooled_text(held)} against "
                     f"{IMPROVEMENT} = {pooled_text(batch)} on the probe batch; held-out: "
                     f"{held.verdict().text('the gain carries over to unseen data', 'worse than single-step STE on unseen data')}.")
    return lines


def alike(signs: list) -> str:
    """Whether two verdict signs agree, in words."""
    if None in signs:
        return "undecided (a verdict needs >= 2 seeds for both)"
    if signs[0] == signs[1] != 0:
        return "yes (FP and binary behave alike, so the effect is not specific to binarization with STE)"
    if signs[0] == signs[1] == 0:
        return "neither has a direction (both 95% intervals contain 0)"
    return "no (FP and binary differ)"


def fp_vs_binary(final: pd.DataFrame) -> list[str]:
    """Whether FP and binary models get the same verdict on rel_improvement_best (pooled per seed)."""
    if KIND not in final.columns or IMPROVEMENT not in final.columns:
        return []
    seed = seed_column(final)
    stats = {str(kind): over_seeds(sub, IMPROVEMENT, seed) for (kind,), sub in iter_groups(final, [KIND])}
    if not all(k in stats and stats[k].n for k in ("fp", "binary")):
        return []
    verdicts = {k: stats[k].verdict() for k in ("fp", "binary")}
    text = ", ".join(f"{k} {pooled_text(stats[k])}: {verdicts[k].text(MULTI, SINGLE)}" for k in verdicts)
    return [f"FP vs binary: mean {IMPROVEMENT} {text}; same verdict: {alike([v.sign for v in verdicts.values()])}."]


def by_single_key(final: pd.DataFrame, key: str, what: str) -> list[str]:
    """Per model kind, the mean rel_improvement_best at each value of ``key`` (pooled per seed otherwise)."""
    if key not in final.columns or final[key].nunique() < 2 or IMPROVEMENT not in final.columns:
        return []
    seed = seed_column(final)
    lines = []
    for kind, sub in kind_groups(final):
        parts = [f"{fmt_value(v)}: {pooled_text(over_seeds(g, IMPROVEMENT, seed))}" for (v,), g in iter_groups(sub, [key])]
        who = f" ({kind})" if kind else ""
        lines.append(f"{what}{who}: mean {IMPROVEMENT} by {key.split('.')[-1]} — " + "; ".join(parts) + ".")
    return lines


def noise_trend(final: pd.DataFrame, keys: list[str]) -> list[str]:
    """Per model kind, rel_improvement_best at the smallest and the largest noise amplitude (pooled
    per seed), whether the means rise with noise, and the verdict on largest − smallest, paired on
    seed and the other keys."""
    if NOISE not in final.columns or final[NOISE].nunique() < 2 or IMPROVEMENT not in final.columns:
        return []
    seed = seed_column(final)
    on = ([seed] if seed else []) + [k for k in keys if k not in (NOISE, KIND)]
    lines = []
    for kind, sub in kind_groups(final):
        who = f" for {kind}" if kind else ""
        stats = [(v, over_seeds(g, IMPROVEMENT, seed)) for (v,), g in iter_groups(sub, [NOISE])]
        stats = [(v, s) for v, s in stats if s.n]
        if len(stats) < 2:
            continue
        (lo, s_lo), (hi, s_hi) = stats[0], stats[-1]
        means = np.array([s.mean for _, s in stats])
        pairs = paired_rows(sub, NOISE, hi, lo, on, IMPROVEMENT)
        diff = over_seeds(pairs.assign(diff=pairs["value"] - pairs["reference_value"]), "diff", seed)
        lines.append(
            f"Noise{who}: {IMPROVEMENT} goes from {pooled_text(s_lo)} at noise={fmt_value(lo)} to {pooled_text(s_hi)} "
            f"at noise={fmt_value(hi)}; means rise monotonically with noise: {'yes' if (np.diff(means) >= 0).all() else 'no'}; "
            f"noise={fmt_value(hi)} − noise={fmt_value(lo)} paired on seed: {pooled_text(diff)}, "
            f"{diff.verdict().text('higher at the larger noise', 'lower at the larger noise')}.")
    return lines


def estimator_finding(comparison: pd.DataFrame) -> list[str]:
    """vSTE vs nSTE: the largest mean |relative difference| of single_best_loss against the reference
    over settings with its verdict (Holm-adjusted over the comparison table's settings, as the table
    shows it), and in how many settings with a verdict the estimator shows no direction."""
    col = "rel_diff.single_best_loss"
    if comparison.empty or f"{col}.mean" not in comparison.columns:
        return []
    t = comparison[comparison[f"{col}.n"] > 0]
    if t.empty:
        return [f"vSTE vs nSTE: no trial pairs with an {REFERENCE} reference on the same seed and keys."]
    absmean = t[f"{col}.mean"].abs()
    top = t.loc[absmean.idxmax()]
    signs = [v.sign for v in t[f"{col}.verdict"]]
    decided = [s for s in signs if s is not None]
    where = top[ESTIMATOR] + (f", batch_size={fmt_value(top[BATCH])}" if BATCH in t.columns else "")
    stat = fmt_mean_std(top[f"{col}.mean"], top[f"{col}.std"], int(top[f"{col}.n"]), True, True, note=top[f"{col}.note"])
    verdict = top[f"{col}.verdict"].text(f"higher than {REFERENCE}", f"lower than {REFERENCE}", signed_percent, "%")
    undecided = f" ({len(signs) - len(decided)} without a verdict: n < 2)" if len(decided) < len(signs) else ""
    lines = [f"vSTE vs nSTE: largest mean |relative difference| of single_best_loss = {fmt(100 * absmean.max())}% "
             f"({where}: {stat}); {verdict}; settings without a direction (Holm over the table): "
             f"{decided.count(0)}/{len(decided)} with a verdict{undecided}."]
    if "grad_clipped_frac.mean" in t.columns:
        clipped = t[t[ESTIMATOR] != REFERENCE]["grad_clipped_frac.mean"].dropna()
        if not clipped.empty:
            span = (f"{fmt(100 * clipped.min())}%" if clipped.min() == clipped.max()
                    else f"between {fmt(100 * clipped.min())}% and {fmt(100 * clipped.max())}%")
            cos = t["grad_cos_identity.mean"].dropna() if "grad_cos_identity.mean" in t.columns else pd.Series(dtype=float)
            lines.append(f"  the estimators changed {span} of gradient coordinates (mean per setting, "
                         f"{len(clipped)} settings)" + (f"; lowest mean grad_cos_identity = {fmt(cos.min())}." if len(cos) else "."))
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
    lines = multi_vs_single(final, keys) + fp_vs_binary(final) + heldout_lines(final, keys)
    lines += noise_trend(final, keys)
    if OPTIMIZER in keys:
        lines += by_single_key(final, OPTIMIZER, "Optimizers")
    if BATCH in keys:
        lines += by_single_key(final, BATCH, "Batch size")
    if ESTIMATOR in keys:
        lines += estimator_finding(comparison)
    lines += list(extra)
    lines.append(budget_line(excess, epsilon))
    return lines
