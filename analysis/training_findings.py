"""The training report's comparisons and conclusions: paired differences on equal seeds and
their table, the one-std verdict, and the findings lines (excluded trials, best/worst group,
paired comparisons, best DSQ vs best STE baseline, pretrain path, DSQ alpha).

Rules (reference values, pairing, verdicts) are in ``analysis/training.py``'s docstring.
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd

from analysis.groups import KIND, fmt_value, iter_groups
from analysis.tables import fmt_mean_std, mean_std_n
from analysis.training_groups import (QUANTIZER, _label, _names, _nan, _text, fmt_acc, fmt_percent,
                                      ok_trials)

PRETRAIN = "cfg.train.pretrain_epochs"
CONTEXT_PREFIXES = ("cfg.data.", "cfg.model.arch", "cfg.model.width")
MAX_CELL_LINES = 8


def fmt_pp(mean, std, n: int) -> str:
    """A difference of accuracies in percentage points: '+2.34 ± 1.20 pp (n=2)'."""
    return fmt_percent(mean, std, n, unit=" pp", signed=True)


# ---- paired differences ------------------------------------------------------------------------

def comparison_axes(keys: list[str]) -> list[str]:
    """The group keys that are compared (the setting keys -- data, arch, width -- only split)."""
    return [k for k in keys if not k.startswith(CONTEXT_PREFIXES)]


def reference_value(trials: pd.DataFrame, axis: str):
    """The value of ``axis`` the others are compared against (rules in analysis/training.py's docstring)."""
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
    ranked = sorted(values, key=lambda v: (-(means[v] if not _nan(means[v]) else -math.inf), str(v)))
    return ranked[0]


def paired_differences(trials: pd.DataFrame, keys: list[str], axis: str, value, reference,
                       metric: str = "final_test_acc") -> pd.DataFrame:
    """Pairs of ok trials with ``axis == value`` and ``axis == reference``, equal in seed and the
    other keys: columns ``<other keys>``, ``seed``, ``value``, ``reference_value``, ``diff``."""
    others = [k for k in keys if k != axis]
    on = others + (["seed"] if "seed" in trials.columns else [])
    good = ok_trials(trials)
    cols = [f"_m:{k}" for k in on]

    def side(v, name):
        sub = good[_text(good[axis]) == fmt_value(v)]
        frame = pd.DataFrame({f"_m:{k}": _text(sub[k]) for k in on}, index=sub.index)
        frame[name] = pd.to_numeric(sub[metric], errors="coerce")
        for k in on:
            frame[k] = sub[k]
        return frame

    a, b = side(value, "value"), side(reference, "reference_value").drop(columns=on)
    pairs = a.merge(b, on=cols, how="inner") if cols else a.merge(b, how="cross")
    pairs = pairs.dropna(subset=["value", "reference_value"])
    pairs["diff"] = pairs["value"] - pairs["reference_value"]
    return pairs.drop(columns=cols).reset_index(drop=True)


def comparisons(trials: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """Every (axis, value vs reference) comparison, pooled over the other keys (``cell`` = 'pooled')
    and per cell of the other keys: paired difference of final and of best test_acc
    (``final.mean/.std/.n``, ``best.mean/...``) and ``n_positive`` (pairs with final diff > 0)."""
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
            final = paired_differences(trials, keys, axis, value, ref, "final_test_acc")
            best = paired_differences(trials, keys, axis, value, ref, "best_test_acc")
            cells = [("pooled", (), final, best)]
            if others and len(final):
                for cvals, sub in iter_groups(final, others):
                    sel = dict(zip(others, cvals))
                    bsub = best
                    for k, v in sel.items():
                        bsub = bsub[_text(bsub[k]) == fmt_value(v)]
                    cells.append((_label(others, cvals), cvals, sub, bsub))
            for cell, cvals, f, b in cells:
                rec = {"axis": axis, "value": value, "reference": ref, "cell": cell}
                rec.update(dict(zip(others, cvals)) if cvals else {})
                rec["final.mean"], rec["final.std"], rec["final.n"] = mean_std_n(f["diff"])
                rec["best.mean"], rec["best.std"], rec["best.n"] = mean_std_n(b["diff"])
                rec["n_positive"] = int((f["diff"] > 0).sum())
                rows.append(rec)
    return pd.DataFrame(rows)


def format_comparisons(table: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    names = _names(keys)
    return pd.DataFrame({
        "axis": table["axis"].map(lambda a: names.get(a, a)),
        "value − reference": [f"{fmt_value(v)} − {fmt_value(r)}" for v, r in zip(table["value"], table["reference"])],
        "paired on seed and": [f"pooled over {', '.join(_names(keys)[k] for k in keys if k != a)}"
                               if c == "pooled" and len(keys) > 1 else ("–" if c == "pooled" else c)
                               for a, c in zip(table["axis"], table["cell"])],
        "Δ final test_acc": [fmt_pp(m, s, int(n)) for m, s, n in zip(table["final.mean"], table["final.std"], table["final.n"])],
        "Δ best test_acc": [fmt_pp(m, s, int(n)) for m, s, n in zip(table["best.mean"], table["best.std"], table["best.n"])],
        "pairs with Δ final > 0": [f"{p}/{int(n)}" for p, n in zip(table["n_positive"], table["final.n"])],
    })


# ---- findings ----------------------------------------------------------------------------------

def verdict(mean: float, std: float, n: int, positive: str, negative: str) -> str:
    """The one-std rule, with at least two pairs: '<positive> by more than one std' when the mean
    difference is above one std, '<negative> ...' below minus one std; no verdict from one pair."""
    if n == 0:
        return "no pairs"
    if n == 1:
        return "a single pair: no spread estimate, no verdict"
    s = 0.0 if _nan(std) else std
    if mean - s > 0:
        return f"{positive} by more than one std"
    if mean + s < 0:
        return f"{negative} by more than one std"
    return "no clear difference (within one std)"


def _axis_text(axis: str, value, keys: list[str], trials: pd.DataFrame) -> str:
    name = _names(keys).get(axis, axis)
    if axis == PRETRAIN:
        if fmt_value(value) == "0":
            return "binary from scratch (pretrain_epochs=0)"
        total = trials["planned_epochs"].dropna().unique() if "planned_epochs" in trials.columns else []
        tot = f" + {fmt_value(int(total[0]) - int(value))} quantized" if len(total) == 1 else ""
        return f"FP pretrain (pretrain_epochs={fmt_value(value)}{tot})"
    return f"{name}={fmt_value(value)}"


def comparison_lines(table: pd.DataFrame, keys: list[str], trials: pd.DataFrame) -> list[str]:
    lines = []
    if table.empty:
        return lines
    for (axis, value), rows in table.groupby(["axis", table["value"].map(fmt_value)], sort=False):
        pooled = rows[rows["cell"] == "pooled"].iloc[0]
        v_text = _axis_text(axis, pooled["value"], keys, trials)
        r_text = _axis_text(axis, pooled["reference"], keys, trials)
        m, s, n = pooled["final.mean"], pooled["final.std"], int(pooled["final.n"])
        others = [_names(keys)[k] for k in keys if k != axis]
        on = ", ".join(["seed", *others]) + ("; pooled over all cells" if others else "")
        if n == 0:
            lines.append(f"{v_text} vs {r_text}: no pairs of finished trials with equal {on}.")
            continue
        lines.append(f"{v_text} − {r_text} (pairs equal in {on}): Δ final test_acc = {fmt_pp(m, s, n)}; "
                     f"Δ > 0 in {int(pooled['n_positive'])}/{n} pairs; "
                     f"{verdict(m, s, n, f'{v_text} higher', f'{r_text} higher')}.")
        cells = rows[rows["cell"] != "pooled"]
        if len(cells) > 1:
            for _, c in cells.head(MAX_CELL_LINES).iterrows():
                cm, cs, cn = c["final.mean"], c["final.std"], int(c["final.n"])
                lines.append(f"  {c['cell']}: {fmt_pp(cm, cs, cn)}; {verdict(cm, cs, cn, 'higher', 'lower')}.")
            if len(cells) > MAX_CELL_LINES:
                lines.append(f"  … {len(cells) - MAX_CELL_LINES} more cells in the paired-differences table.")
    return lines


def pretrain_lines(table: pd.DataFrame, keys: list[str]) -> list[str]:
    """For groups on the pretrain path: the FP model's accuracy before binarization, right after the
    first quantized epoch, and at the end."""
    if table.empty or not (table["fp_end_acc.n"] > 0).any():
        return []
    lines = []
    for _, r in table[table["fp_end_acc.n"] > 0].iterrows():
        label = _label(keys, [r[k] for k in keys])
        lines.append(f"Pretrain path ({label}): FP test_acc at the end of pretraining "
                     f"{fmt_acc(r['fp_end_acc.mean'], r['fp_end_acc.std'], int(r['fp_end_acc.n']))}, "
                     f"after the first quantized epoch "
                     f"{fmt_acc(r['first_quant_acc.mean'], r['first_quant_acc.std'], int(r['first_quant_acc.n']))}, "
                     f"final {fmt_acc(r['final_test_acc.mean'], r['final_test_acc.std'], int(r['final_test_acc.n']))}.")
    return lines


def dsq_alpha_lines(table: pd.DataFrame, keys: list[str]) -> list[str]:
    """For groups with a DSQ alpha: its final value next to the final train/test accuracy (DSQ trains
    with the soft quantizer and evaluates with the hard one; a large alpha leaves them apart)."""
    if table.empty or not (table["final_dsq_alpha.n"] > 0).any():
        return []
    lines = []
    for _, r in table[table["final_dsq_alpha.n"] > 0].iterrows():
        gap = r["final_train_acc.mean"] - r["final_test_acc.mean"]
        lines.append(f"DSQ ({_label(keys, [r[k] for k in keys])}): final alpha "
                     f"{fmt_mean_std(r['final_dsq_alpha.mean'], r['final_dsq_alpha.std'], int(r['final_dsq_alpha.n']))}; "
                     "mean final train_acc (training forward) − test_acc (hard quantizer at evaluation) = "
                     + ("–" if _nan(gap) else f"{100 * gap:+.2f} pp") + ".")
    return lines


def _bits_of(label: str, trials: pd.DataFrame) -> int | None:
    sub = trials[trials[QUANTIZER] == label]
    kind = str(sub[KIND].iloc[0]) if KIND in sub.columns and len(sub) else ""
    if kind == "binary":
        return 1
    if kind == "kbit" and "cfg.quant.bits" in sub.columns:
        return int(sub["cfg.quant.bits"].iloc[0])
    return None


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
    bits = {lab: _bits_of(lab, t) for lab in labels}
    is_dsq = {lab: bool(((t[QUANTIZER] == lab) & (t[KIND].astype(str) == "kbit")
                         & (t["cfg.quant.kbit"].astype(str) == "dsq")).any()) for lab in labels}
    for b in sorted({v for v in bits.values() if v is not None}):
        dsq = [lab for lab in labels if bits[lab] == b and is_dsq[lab]]
        base = [lab for lab in labels if bits[lab] == b and not is_dsq[lab]]
        if not dsq or not base:
            continue

        def best(cands):
            means = {c: mean_std_n(good.loc[good[QUANTIZER] == c, "final_test_acc"])[0] for c in cands}
            return max(cands, key=lambda c: -math.inf if _nan(means[c]) else means[c])

        d, s = best(dsq), best(base)
        pairs = paired_differences(trials, keys, QUANTIZER, d, s)
        m, sd, n = mean_std_n(pairs["diff"])
        lines.append(f"{b} bit: best DSQ ({d}) − best STE baseline ({s}), each chosen by mean final test_acc "
                     f"on these runs: Δ final test_acc = {fmt_pp(m, sd, n)}; {verdict(m, sd, n, 'DSQ higher', 'the baseline higher')}.")
    return lines


def train_findings(trials: pd.DataFrame, table: pd.DataFrame, comp: pd.DataFrame, keys: list[str],
                   rows: pd.DataFrame, failed_without_rows: pd.DataFrame) -> list[str]:
    lines = []
    n_all = len(trials) + len(failed_without_rows)
    excluded = trials[trials["outcome"] != "ok"] if len(trials) else trials
    if len(excluded) or len(failed_without_rows):
        counts = excluded["outcome"].value_counts() if len(excluded) else pd.Series(dtype=int)
        parts = [f"{k}: {int(counts.get(k, 0))}" for k in ("failed", "non-finite", "incomplete") if counts.get(k, 0)]
        if len(failed_without_rows):
            parts.append(f"failed before reporting an epoch: {len(failed_without_rows)}")
        lines.append(f"**Excluded from all statistics: {len(excluded) + len(failed_without_rows)} of {n_all} trials** "
                     f"({'; '.join(parts)}); the 'excluded' column of the table says where.")
        for _, r in excluded.head(5).iterrows():
            lines.append(f"  `{r['trial_key']}` ({_label(keys, [r[k] for k in keys])}, "
                         f"seed {fmt_value(r.get('seed'))}): {r['outcome']}, {r['reason']}")
    else:
        epochs = ", ".join(sorted({str(int(v)) for v in trials["last_epoch"]})) if len(trials) else "–"
        lines.append(f"All {n_all} trials finished every planned epoch ({epochs}) with finite metrics.")
    if table.empty:
        return lines
    max_n = int(table["final_test_acc.n"].max())
    if max_n <= 1:
        lines.append("One seed per group: no seed-to-seed spread. Per-cell differences below are single runs "
                     "(no verdict); pooled ones vary over the cells of the other keys, not over seeds.")
    ranked = table[table["final_test_acc.n"] > 0]
    if len(ranked) >= 2:
        top, low = ranked.iloc[0], ranked.iloc[-1]
        lines.append(f"Highest mean final test_acc: {_label(keys, [top[k] for k in keys])} → "
                     f"{fmt_acc(top['final_test_acc.mean'], top['final_test_acc.std'], int(top['final_test_acc.n']))}; "
                     f"lowest: {_label(keys, [low[k] for k in keys])} → "
                     f"{fmt_acc(low['final_test_acc.mean'], low['final_test_acc.std'], int(low['final_test_acc.n']))}.")
    elif len(ranked) == 1 and not keys:
        r = ranked.iloc[0]
        lines.append(f"One configuration group (no axis varies but the seed): final test_acc "
                     f"{fmt_acc(r['final_test_acc.mean'], r['final_test_acc.std'], int(r['final_test_acc.n']))}; "
                     f"nothing to compare.")
    lines += comparison_lines(comp, keys, trials)
    lines += dsq_lines(trials, rows, keys)
    lines += pretrain_lines(table, keys)
    lines += dsq_alpha_lines(table, keys)
    return lines
