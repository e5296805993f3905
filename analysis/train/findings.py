"""The training report's comparisons and conclusions: paired differences on equal seeds and
their table, and the findings lines (excluded trials, best/worst group, paired comparisons, best
DSQ vs best STE baseline, pretrain path, DSQ alpha).

Pooled comparisons (over the cells of the other keys) average each seed's pairs over the cells
first; mean ± std and n are over seeds. Verdicts follow the one rule,
:func:`analysis.common.stats.paired_verdict`. Rules (reference values, pairing) are in
:mod:`analysis.train.report`'s docstring.
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd

from lowbit_sweeps.analysis.common.format import fmt_acc, fmt_mean_std, fmt_pp, fmt_value, is_null, stat_cells
from lowbit_sweeps.analysis.common.groups import KIND, iter_groups, paired_rows, rows_matching
from lowbit_sweeps.analysis.common.stats import holm_column, mean_std_n, over_seeds, signed_pp
from lowbit_sweeps.analysis.train.cost import weight_bits
from lowbit_sweeps.analysis.train.groups import QUANTIZER, SELECTED, label_of, names_of, ok_trials

PRETRAIN = "cfg.train.pretrain_epochs"
CONTEXT_PREFIXES = ("cfg.data.", "cfg.model.arch", "cfg.model.width")
MAX_CELL_LINES = 8
SEED = "seed"
METRICS = {"final": "final_test_acc", "selected": SELECTED}


# ---- paired differences ------------------------------------------------------------------------

def comparison_axes(keys: list[str]) -> list[str]:
    """The group keys that are compared (the setting keys -- data, arch, width -- only split)."""
    return [k for k in keys if not k.startswith(CONTEXT_PREFIXES)]


def reference_value(trials: pd.DataFrame, axis: str):
    """The value of ``axis`` the others are compared against (rules in analysis.train.report)."""
    values = [v for v in trials[axis].dropna().unique()]
    if not values:
        return None
    if all(isinstance(v, (bool, np.bool_)) for v in values):
        return False if False in values else values[0]
    num = pd.to_numeric(pd.Series(values, dtype=object), errors="coerce")
    if num.notna().all():
        return values[int(np.argmin(np.abs(num.to_numpy()) if (num == 0).any() else num.to_numpy()))]
    if "default" in map(str, values):
        return next(v for v in values if str(v) == "default")
    good = ok_trials(trials)
    means = {v: mean_std_n(good.loc[good[axis] == v, "final_test_acc"])[0] for v in values}
    ranked = sorted(values, key=lambda v: (-(means[v] if not is_null(means[v]) else -math.inf), str(v)))
    return ranked[0]


def paired_differences(trials: pd.DataFrame, keys: list[str], axis: str, value, reference,
                       metric: str = "final_test_acc") -> pd.DataFrame:
    """Pairs of ok trials with ``axis == value`` and ``axis == reference``, equal in seed and the
    other keys: columns ``<other keys>``, ``seed``, ``value``, ``reference_value``, ``diff``."""
    on = [k for k in keys if k != axis] + ([SEED] if SEED in trials.columns else [])
    pairs = paired_rows(ok_trials(trials), axis, value, reference, on, metric)
    return pairs.assign(diff=pairs["value"] - pairs["reference_value"])


def diff_stats(name: str, pairs: pd.DataFrame) -> dict:
    """``<name>.mean/.std/.n/.note/.verdict``: the pairs' differences over seeds (per-seed means first)."""
    return over_seeds(pairs, "diff", SEED if SEED in pairs.columns else None).columns(name)


def comparison_cells(trials, keys, axis, value, ref) -> list[tuple[str, tuple, dict]]:
    """(cell, cell values, {metric name: pairs}) pooled ('pooled') and per cell of the other keys."""
    others = [k for k in keys if k != axis]
    pairs = {name: paired_differences(trials, keys, axis, value, ref, col) for name, col in METRICS.items()}
    cells = [("pooled", (), pairs)]
    if others and len(pairs["final"]):
        for cvals, _ in iter_groups(pairs["final"], others):
            sel = dict(zip(others, cvals))
            cells.append((label_of(others, cvals), cvals, {n: rows_matching(p, sel) for n, p in pairs.items()}))
    return cells


def comparisons(trials: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """Every (axis, value vs reference) comparison, pooled over the other keys (``cell`` = 'pooled')
    and per cell of the other keys: paired difference of final and of selected test_acc over seeds
    (``final.mean/.std/.n/.note/.verdict``, ``selected...``), ``n_pairs`` and ``n_positive`` (pairs
    with final diff > 0). The ``final.verdict`` column is Holm-adjusted over the whole table (every row
    is one of the K comparisons the paired-differences table makes at once); the findings use it."""
    rows = []
    if trials.empty or "outcome" not in trials.columns:
        return pd.DataFrame()
    for axis in comparison_axes(keys):
        if trials[axis].nunique() < 2:
            continue
        ref = reference_value(trials, axis)
        others = [k for k in keys if k != axis]
        for value in sorted(trials[axis].dropna().unique(), key=lambda v: (str(type(v)), v)):
            if fmt_value(value) == fmt_value(ref):
                continue
            for cell, cvals, pairs in comparison_cells(trials, keys, axis, value, ref):
                rec = {"axis": axis, "value": value, "reference": ref, "cell": cell, **dict(zip(others, cvals))}
                for name, p in pairs.items():
                    rec.update(diff_stats(name, p))
                rec["n_pairs"], rec["n_positive"] = len(pairs["final"]), int((pairs["final"]["diff"] > 0).sum())
                rows.append(rec)
    return holm_column(pd.DataFrame(rows), "final.verdict")


def format_comparisons(table: pd.DataFrame, keys: list[str], optimistic: bool) -> pd.DataFrame:
    """The comparisons as text cells; the selected column says where the selection peeked at test."""
    names = names_of(keys)
    selected = "Δ selected test_acc" + (" (selected on test: optimistic)" if optimistic else "")
    return pd.DataFrame({
        "axis": table["axis"].map(lambda a: names.get(a, a)),
        "value − reference": [f"{fmt_value(v)} − {fmt_value(r)}" for v, r in zip(table["value"], table["reference"])],
        "paired on seed and": [f"pooled over {', '.join(names[k] for k in keys if k != a)}"
                               if c == "pooled" and len(keys) > 1 else ("–" if c == "pooled" else c)
                               for a, c in zip(table["axis"], table["cell"])],
        "Δ final test_acc": stat_cells(table, "final", fmt_pp),
        "verdict on Δ final (paired-t 95% interval, Holm)": [
            v.text("higher", "lower", signed_pp, " pp") for v in table["final.verdict"]],
        selected: stat_cells(table, "selected", fmt_pp),
        "pairs with Δ final > 0": [f"{p}/{n}" for p, n in zip(table["n_positive"], table["n_pairs"])],
    })


# ---- findings ----------------------------------------------------------------------------------

def axis_text(axis: str, value, keys: list[str], trials: pd.DataFrame) -> str:
    name = names_of(keys).get(axis, axis)
    if axis == PRETRAIN:
        if fmt_value(value) == "0":
            return "binary from scratch (pretrain_epochs=0)"
        total = trials["planned_epochs"].dropna().unique() if "planned_epochs" in trials.columns else []
        tot = f" + {fmt_value(int(total[0]) - int(value))} quantized" if len(total) == 1 else ""
        return f"FP pretrain (pretrain_epochs={fmt_value(value)}{tot})"
    return f"{name}={fmt_value(value)}"


def diff_text(row: pd.Series, name: str = "final") -> str:
    """A row's paired difference '+2.34 ± 1.20 pp (n=3; what the ± is)'."""
    return fmt_pp(row[f"{name}.mean"], row[f"{name}.std"], int(row[f"{name}.n"]), note=row[f"{name}.note"])


def comparison_lines(table: pd.DataFrame, keys: list[str], trials: pd.DataFrame) -> list[str]:
    lines = []
    if table.empty:
        return lines
    for (axis, value), rows in table.groupby(["axis", table["value"].map(fmt_value)], sort=False):
        pooled = rows[rows["cell"] == "pooled"].iloc[0]
        v_text = axis_text(axis, pooled["value"], keys, trials)
        r_text = axis_text(axis, pooled["reference"], keys, trials)
        others = [names_of(keys)[k] for k in keys if k != axis]
        on = ", ".join(["seed", *others]) + ("; pooled over all cells" if others else "")
        if pooled["final.n"] == 0:
            lines.append(f"{v_text} vs {r_text}: no pairs of finished trials with equal {on}.")
            continue
        verdict = pooled["final.verdict"].text(f"{v_text} higher", f"{r_text} higher", signed_pp, " pp")
        lines.append(f"{v_text} − {r_text} (pairs equal in {on}): Δ final test_acc = {diff_text(pooled)}; "
                     f"Δ > 0 in {int(pooled['n_positive'])}/{int(pooled['n_pairs'])} pairs; {verdict}.")
        cells = rows[rows["cell"] != "pooled"]
        if len(cells) > 1:
            for _, c in cells.head(MAX_CELL_LINES).iterrows():
                lines.append(f"  {c['cell']}: {diff_text(c)}; {c['final.verdict'].text('higher', 'lower', signed_pp, ' pp')}.")
            if len(cells) > MAX_CELL_LINES:
                lines.append(f"  … {len(cells) - MAX_CELL_LINES} more cells in the paired-differences table.")
    return lines


def group_acc(r: pd.Series, col: str) -> str:
    return fmt_acc(r[f"{col}.mean"], r[f"{col}.std"], int(r[f"{col}.n"]))


def pretrain_lines(table: pd.DataFrame, keys: list[str]) -> list[str]:
    """For groups on the pretrain path: the FP model's accuracy before binarization, right after the
    first quantized epoch, and at the end."""
    if table.empty or not (table["fp_end_acc.n"] > 0).any():
        return []
    return [f"Pretrain path ({label_of(keys, [r[k] for k in keys])}): FP test_acc at the end of pretraining "
            f"{group_acc(r, 'fp_end_acc')}, after the first quantized epoch {group_acc(r, 'first_quant_acc')}, "
            f"final {group_acc(r, 'final_test_acc')}."
            for _, r in table[table["fp_end_acc.n"] > 0].iterrows()]


def dsq_alpha_lines(table: pd.DataFrame, keys: list[str]) -> list[str]:
    """For groups with a DSQ alpha: its final value next to the final train/test accuracy (DSQ trains
    with the soft quantizer and evaluates with the hard one; a large alpha leaves them apart)."""
    if table.empty or not (table["final_dsq_alpha.n"] > 0).any():
        return []
    lines = []
    for _, r in table[table["final_dsq_alpha.n"] > 0].iterrows():
        gap = r["final_train_acc.mean"] - r["final_test_acc.mean"]
        lines.append(f"DSQ ({label_of(keys, [r[k] for k in keys])}): final alpha "
                     f"{fmt_mean_std(r['final_dsq_alpha.mean'], r['final_dsq_alpha.std'], int(r['final_dsq_alpha.n']))}; "
                     "mean final train_acc (training forward) − test_acc (hard quantizer at evaluation) = "
                     + ("–" if is_null(gap) else f"{100 * gap:+.2f} pp") + ".")
    return lines


def bits_of(label: str, trials: pd.DataFrame) -> int | None:
    """The weight bit-width of the trials with quantizer ``label`` (:func:`analysis.train.cost.weight_bits`)."""
    sub = trials[trials[QUANTIZER] == label]
    if KIND not in sub.columns or not len(sub):
        return None
    return weight_bits(sub[KIND].iloc[0], sub["cfg.quant.bits"].iloc[0] if "cfg.quant.bits" in sub.columns else None)


def dsq_lines(trials: pd.DataFrame, rows: pd.DataFrame, keys: list[str]) -> list[str]:
    """Per bit width holding DSQ and a non-DSQ quantizer: the best DSQ label against the best
    STE baseline (highest mean final test_acc each, chosen on these runs), paired."""
    if QUANTIZER not in keys or "cfg.quant.kbit" not in rows.columns:
        return []
    info = rows.drop_duplicates("trial_key").set_index("trial_key")
    t = trials.join(info[[c for c in (KIND, "cfg.quant.kbit", "cfg.quant.bits")
                          if c in info.columns and c not in trials.columns]], on="trial_key")
    good = ok_trials(t)
    lines = []
    labels = list(dict.fromkeys(t[QUANTIZER]))
    bits = {lab: bits_of(lab, t) for lab in labels}
    is_dsq = {lab: bool(((t[QUANTIZER] == lab) & (t[KIND].astype(str) == "kbit")
                         & (t["cfg.quant.kbit"].astype(str) == "dsq")).any()) for lab in labels}

    def best(cands):
        means = {c: mean_std_n(good.loc[good[QUANTIZER] == c, "final_test_acc"])[0] for c in cands}
        return max(cands, key=lambda c: -math.inf if is_null(means[c]) else means[c])

    for b in sorted({v for v in bits.values() if v is not None}):
        dsq = [lab for lab in labels if bits[lab] == b and is_dsq[lab]]
        base = [lab for lab in labels if bits[lab] == b and not is_dsq[lab]]
        if not dsq or not base:
            continue
        d, s = best(dsq), best(base)
        stat = pd.Series(diff_stats("final", paired_differences(trials, keys, QUANTIZER, d, s)))
        lines.append(f"{b} bit: best DSQ ({d}) − best STE baseline ({s}), each chosen by mean final test_acc "
                     f"on these runs: Δ final test_acc = {diff_text(stat)}; "
                     f"{stat['final.verdict'].text('DSQ higher', 'the baseline higher', signed_pp, ' pp')}.")
    return lines


def exclusion_lines(trials: pd.DataFrame, keys: list[str], failed_without_rows: pd.DataFrame) -> list[str]:
    """How many trials were excluded from the statistics and why (or that all finished)."""
    n_all = len(trials) + len(failed_without_rows)
    excluded = trials[trials["outcome"] != "ok"] if len(trials) else trials
    if not len(excluded) and not len(failed_without_rows):
        epochs = ", ".join(sorted({str(int(v)) for v in trials["last_epoch"]})) if len(trials) else "–"
        return [f"All {n_all} trials finished every planned epoch ({epochs}) with finite metrics."]
    counts = excluded["outcome"].value_counts() if len(excluded) else pd.Series(dtype=int)
    parts = [f"{k}: {int(counts.get(k, 0))}" for k in ("failed", "stopped early", "non-finite", "incomplete")
             if counts.get(k, 0)]
    if len(failed_without_rows):
        parts.append(f"failed before reporting an epoch: {len(failed_without_rows)}")
    lines = [f"**Excluded from all statistics: {len(excluded) + len(failed_without_rows)} of {n_all} trials** "
             f"({'; '.join(parts)}); the 'excluded' column of the table says where."]
    for _, r in excluded.head(5).iterrows():
        lines.append(f"  `{r['trial_key']}` ({label_of(keys, [r[k] for k in keys])}, "
                     f"seed {fmt_value(r.get('seed'))}): {r['outcome']}, {r['reason']}")
    return lines


def selection_lines(trials: pd.DataFrame) -> list[str]:
    """Finished trials whose recorded selected epoch lies outside their last phase (the FP
    pretraining epochs): that number is another model's, so the selected column leaves it out."""
    good = ok_trials(trials)
    n = int(good["selected_outside"].sum()) if len(good) else 0
    if not n:
        return []
    return [f"Model selection: in {n} of {len(good)} finished trials the recorded selected epoch lies in an "
            "earlier phase (FP pretraining), not in the model's own epochs; their selected test_acc is left out."]


def train_findings(trials: pd.DataFrame, table: pd.DataFrame, comp: pd.DataFrame, keys: list[str],
                   rows: pd.DataFrame, failed_without_rows: pd.DataFrame) -> list[str]:
    lines = exclusion_lines(trials, keys, failed_without_rows)
    if table.empty:
        return lines
    if int(table["final_test_acc.n"].max()) <= 1:
        lines.append("One seed per group: no seed-to-seed spread, so no verdicts (each needs >= 2 seeds).")
    ranked = table[table["final_test_acc.n"] > 0]
    if len(ranked) >= 2:
        top, low = ranked.iloc[0], ranked.iloc[-1]
        lines.append(f"Highest mean final test_acc: {label_of(keys, [top[k] for k in keys])} → "
                     f"{group_acc(top, 'final_test_acc')}; "
                     f"lowest: {label_of(keys, [low[k] for k in keys])} → {group_acc(low, 'final_test_acc')}.")
    elif len(ranked) == 1 and not keys:
        lines.append(f"One configuration group (no axis varies but the seed): final test_acc "
                     f"{group_acc(ranked.iloc[0], 'final_test_acc')}; nothing to compare.")
    lines += selection_lines(trials)
    lines += comparison_lines(comp, keys, trials)
    lines += dsq_lines(trials, rows, keys)
    lines += pretrain_lines(table, keys)
    lines += dsq_alpha_lines(table, keys)
    return lines
