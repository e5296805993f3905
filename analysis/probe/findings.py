"""Plain-language findings computed from the final rows; every number comes from the data.

Every line states its n. A statistic pooled over the settings of other keys averages each seed's
values over those settings first; its ± is the std over seeds of those per-seed means, and the text
says so ('n=3; ± std over seeds of the per-seed mean over 6 settings'). Verdicts follow the one rule,
:func:`analysis.common.stats.paired_verdict` (a paired-t 95% interval; never from fewer than 2 seeds),
and every verdict prints its interval, n and effect size d. Each verdict is a record of the report's
:class:`analysis.common.verdicts.Recorder` (``rec``; question ids in :mod:`analysis.probe.records`),
decided with the other comparisons of its question, and its words come from the record's decision.
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
from lowbit_sweeps.analysis.probe.records import MULTISTEP, OTHER, per_seed, recorder, seed_diff
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


def multi_vs_single(final: pd.DataFrame, keys: list[str], rec=None) -> list[str]:
    """Per model kind: rel_improvement_best pooled over all its settings (per-seed means first), its
    verdict (a record of question multistep-vs-single against single-step STE), the share of trials
    with a positive value, and the groups with the largest and the smallest mean."""
    if IMPROVEMENT not in final.columns:
        return []
    rec = recorder(rec)
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
        verdict = rec.verdict(stat.values, question=MULTISTEP,
                              comparison=f"multi-step STE vs single-step STE ({kind_name(values)})",
                              metric=IMPROVEMENT, baseline="single-step STE", unit="fraction", rows=sub)
        lines.append(f"Multi-step vs single-step {who}: mean {IMPROVEMENT} = {pooled_text(stat)}{pooled}; "
                     f"{verdict.text(MULTI, SINGLE)}; positive in {int((v > 0).sum())}/{len(v)} trials.")
        if rest:
            table = mean_std_table(sub, rest, metrics=(IMPROVEMENT,)).dropna(subset=[f"{IMPROVEMENT}.mean"])
            if len(table) > 1:
                top = table.loc[table[f"{IMPROVEMENT}.mean"].idxmax()]
                bottom = table.loc[table[f"{IMPROVEMENT}.mean"].idxmin()]
                lines.append(f"  largest mean {who}: {row_text(top, rest)}; smallest mean: {row_text(bottom, rest)} "
                             "(means only, no comparison).")
    return lines


def kind_name(values) -> str:
    """The model kind of a group for a comparison's name ('all trials' without a kind column)."""
    return fmt_value(values[0]) if values else "all trials"


def heldout_lines(final: pd.DataFrame, keys: list[str], rec=None) -> list[str]:
    """Per model kind: the relative improvement on the probe batch and on the held-out batch side by
    side (pooled per seed), and whether the held-out one is positive by the verdict rule: a gain that
    carries over is a property of the landscape, one that does not is memorization of the batch."""
    if HELDOUT_IMPROVEMENT not in final.columns or IMPROVEMENT not in final.columns:
        return []
    rec = recorder(rec)
    seed = seed_column(final)
    lines = []
    for values, sub in iter_groups(final, [k for k in keys if k == KIND]):
        held = over_seeds(sub, HELDOUT_IMPROVEMENT, seed)
        if not held.n:
            continue
        who = f" ({fmt_value(values[0])})" if values else ""
        batch = over_seeds(sub, IMPROVEMENT, seed)
        verdict = rec.verdict(held.values, question=OTHER, comparison=f"held-out gain over single-step STE ({kind_name(values)})",
                              metric=HELDOUT_IMPROVEMENT, baseline="single-step STE", unit="fraction", rows=sub)
        lines.append(f"Held-out batch{who}: mean {HELDOUT_IMPROVEMENT} = {pooled_text(held)} against "
                     f"{IMPROVEMENT} = {pooled_text(batch)} on the probe batch; held-out: "
                     f"{verdict.text('the gain carries over to unseen data', 'worse than single-step STE on unseen data')}.")
    return lines


def fp_vs_binary(final: pd.DataFrame, rec=None) -> list[str]:
    """Whether binary gains more over single-step STE than FP: one record (question
    multistep-vs-single, baseline the FP MLP) on the per-seed difference binary − FP of the pooled
    rel_improvement_best, paired on seed; its words come from its decision only."""
    if KIND not in final.columns or IMPROVEMENT not in final.columns:
        return []
    rec = recorder(rec)
    seed = seed_column(final)
    groups = {str(kind): sub for (kind,), sub in iter_groups(final, [KIND])}
    if not all(k in groups for k in ("fp", "binary")):
        return []
    stats = {k: over_seeds(groups[k], IMPROVEMENT, seed) for k in ("fp", "binary")}
    if not all(stats[k].n for k in stats):
        return []
    diffs = seed_diff(per_seed(groups["binary"], IMPROVEMENT, seed), per_seed(groups["fp"], IMPROVEMENT, seed))
    rows = pd.concat([groups["fp"], groups["binary"]])
    v = rec.verdict(diffs, question=MULTISTEP, comparison=f"binary vs FP MLP ({IMPROVEMENT}, paired on seed)",
                    metric=f"{IMPROVEMENT} (binary − FP)", baseline="FP MLP", unit="fraction", rows=rows)
    if v.decision == "equivalent":
        words = (f"{v.numbers()}: FP and binary gain alike (within ±{v.margin:.3g}, TOST p_Holm = {v.p_holm:.2g}; "
                 "the effect is not specific to binarization with STE)")
    else:
        words = v.text("binary gains more than FP", "binary gains less than FP")
    means = ", ".join(f"{k} {pooled_text(stats[k])}" for k in ("fp", "binary"))
    return [f"FP vs binary: mean {IMPROVEMENT} {means}; binary − FP paired on seed: {words}."]


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


def noise_trend(final: pd.DataFrame, keys: list[str], rec=None) -> list[str]:
    """Per model kind, rel_improvement_best at the smallest and the largest noise amplitude (pooled
    per seed), whether the means rise with noise, and the verdict on largest − smallest, paired on
    seed and the other keys."""
    if NOISE not in final.columns or final[NOISE].nunique() < 2 or IMPROVEMENT not in final.columns:
        return []
    rec = recorder(rec)
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
        arms = sub[sub[NOISE].map(fmt_value).isin({fmt_value(lo), fmt_value(hi)})]
        verdict = rec.verdict(diff.values, question=OTHER,
                              comparison=f"noise={fmt_value(hi)} vs noise={fmt_value(lo)} ({kind or 'all trials'})",
                              metric=IMPROVEMENT, baseline=f"noise={fmt_value(lo)}", unit="fraction", rows=arms)
        lines.append(
            f"Noise{who}: {IMPROVEMENT} goes from {pooled_text(s_lo)} at noise={fmt_value(lo)} to {pooled_text(s_hi)} "
            f"at noise={fmt_value(hi)}; means rise monotonically with noise: {'yes' if (np.diff(means) >= 0).all() else 'no'}; "
            f"noise={fmt_value(hi)} − noise={fmt_value(lo)} paired on seed: {pooled_text(diff)}, "
            f"{verdict.text('higher at the larger noise', 'lower at the larger noise')}.")
    return lines


DECISIONS = ("higher", "lower", "equivalent", "undecided", "identical", "no verdict")


def decision_counts(verdicts) -> str:
    """'1 higher, 1 identical (not in K)': how many verdicts took each decision (nonzero counts only)."""
    names = {"identical": "identical (not in K)", "no verdict": "without a verdict (n < 2)"}
    counts = [(d, sum(v.decision == d for v in verdicts)) for d in DECISIONS]
    return ", ".join(f"{c} {names.get(d, d)}" for d, c in counts if c) or "none"


def estimator_finding(comparison: pd.DataFrame) -> list[str]:
    """vSTE vs nSTE: the largest mean |relative difference| of single_best_loss against the reference
    over settings with its verdict (a record of question vste-vs-nste, decided with the other
    settings), and the decisions of all settings against the reference."""
    col = "rel_diff.single_best_loss"
    if comparison.empty or f"{col}.mean" not in comparison.columns:
        return []
    t = comparison[(comparison[f"{col}.n"] > 0) & (comparison[ESTIMATOR] != REFERENCE)]
    if t.empty:
        return [f"vSTE vs nSTE: no trial pairs with an {REFERENCE} reference on the same seed and keys."]
    absmean = t[f"{col}.mean"].abs()
    top = t.loc[absmean.idxmax()]
    where = top[ESTIMATOR] + (f", batch_size={fmt_value(top[BATCH])}" if BATCH in t.columns else "")
    stat = fmt_mean_std(top[f"{col}.mean"], top[f"{col}.std"], int(top[f"{col}.n"]), True, True, note=top[f"{col}.note"])
    verdict = top[f"{col}.verdict"].text(f"higher than {REFERENCE}", f"lower than {REFERENCE}", signed_percent, "%")
    lines = [f"vSTE vs nSTE: largest mean |relative difference| of single_best_loss = {fmt(100 * absmean.max())}% "
             f"({where}: {stat}); {verdict}; decisions of the {len(t)} settings against {REFERENCE} "
             f"(Holm over the question's comparisons, as in the table): {decision_counts(t[f'{col}.verdict'])}."]
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
             epsilon: float = 1.0, extra: list[str] = (), rec=None) -> list[str]:
    """All findings lines, in report order; ``extra`` lines (the method comparison) go before the
    budget check. In method sweeps ``final`` and ``keys`` are the multi-step STE trials'. ``comparison``
    is :func:`analysis.probe.tables.estimator_comparison`'s table (its verdicts recorded there)."""
    rec = recorder(rec)
    lines = multi_vs_single(final, keys, rec) + fp_vs_binary(final, rec) + heldout_lines(final, keys, rec)
    lines += noise_trend(final, keys, rec)
    if OPTIMIZER in keys:
        lines += by_single_key(final, OPTIMIZER, "Optimizers")
    if BATCH in keys:
        lines += by_single_key(final, BATCH, "Batch size")
    if ESTIMATOR in keys:
        lines += estimator_finding(comparison)
    lines += list(extra)
    lines.append(budget_line(excess, epsilon))
    return lines
