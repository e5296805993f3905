"""The training report's comparisons and conclusions: paired differences on equal seeds and
their table, and the findings lines (excluded trials, highest/lowest group mean (descriptive), paired
comparisons against the declared reference, each DSQ setting against the declared STE reference,
pretrain path, DSQ alpha).

Pooled comparisons (over the cells of the other keys) average each seed's pairs over the cells
first; mean ± std and n are over seeds. Verdicts follow the one rule,
:func:`analysis.common.stats.paired_verdict`, each a record of :class:`analysis.common.verdicts.Recorder`
(question: :func:`question_for`). Rules (reference values, pairing) are in
:mod:`analysis.train.report`'s docstring.
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd

from lowbit_sweeps.analysis.common.format import fmt_acc, fmt_mean_std, fmt_pp, fmt_value, is_null, stat_cells
from lowbit_sweeps.analysis.common.groups import KIND, iter_groups, paired_rows, rows_matching
from lowbit_sweeps.analysis.common.plan import SweepPlan
from lowbit_sweeps.analysis.common.stats import Verdict, holm_note, over_seeds, signed_pp
from lowbit_sweeps.analysis.common.verdicts import Recorder
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


# ---- questions and the declared reference ------------------------------------------------------

QUESTION_WORDS = (
    ("pretrain-vs-scratch-mixup", ("pretrain", "mixup")),
    ("escape-local-optima", ("init", "perturb")),
    ("vste-resnet", ("dsq", "estimator", "kbit", "threshold")),  # axis words (estimator names live in the registry)
    ("bits-vs-width", ("bit", "width")),
)
"""Which question a comparison answers when the plan names several (or none recorded): the first
whose words occur in what is compared (the axis, or the quantizer labels)."""
METRIC = "final test_acc (paired on seed)"
UNIT = "fraction (Δ of test_acc)"


def plan_questions(plan) -> list[str] | None:
    """The question ids the plan records (None: the plan records no ``questions`` at all)."""
    raw = getattr(plan, "raw", None) or {}
    if "questions" not in raw:
        return None
    return [q.get("id") if isinstance(q, dict) else str(q) for q in raw.get("questions") or []]


def question_for(plan, what: str) -> str | None:
    """The question of the sweep that a comparison of ``what`` answers: the plan's one question; else
    by what is compared (:data:`QUESTION_WORDS`), kept only where the plan names it; else None
    ("other comparisons")."""
    ids = plan_questions(plan)
    if ids is not None and len(ids) == 1:
        return ids[0]
    low = str(what).lower()
    q = next((qid for qid, words in QUESTION_WORDS if any(w in low for w in words)), None)
    return q if ids is None or q in ids else None


def _axis_order(plan, key: str) -> list:
    values = (getattr(plan, "axes", None) or {}).get(key.removeprefix("cfg."))
    return list(values) if isinstance(values, list) else []


def _declared(plan, key: str, present: list, what_of=fmt_value):
    """(value, rule) of ``key`` declared by the plan among ``present`` (compared as text), else None."""
    text = {fmt_value(v): v for v in present}
    dotted = key.removeprefix("cfg.")
    if dotted in (getattr(plan, "baseline", None) or {}) and fmt_value(plan.baseline[dotted]) in text:
        return text[fmt_value(plan.baseline[dotted])], "the plan's baseline"
    found, default = plan.default_of(key) if hasattr(plan, "default_of") else (False, None)
    if found and fmt_value(default) in text:
        return text[fmt_value(default)], "the family's canonical default"
    for v in _axis_order(plan, key):
        if fmt_value(v) in text:
            return text[fmt_value(v)], "the first value of the plan's axis"
    return None


def _label_values(rows: pd.DataFrame | None, label: str) -> dict:
    """The cfg.* values of the trials of quantizer ``label`` (first row)."""
    if rows is None or QUANTIZER not in rows.columns:
        return {}
    sub = rows[rows[QUANTIZER] == label]
    return sub.iloc[0].to_dict() if len(sub) else {}


def quantizer_reference(labels: list, rows: pd.DataFrame | None, plan) -> tuple[object, str]:
    """The declared reference among quantizer ``labels`` (never chosen by the metric): the label whose
    kind/quant columns hold the plan's baseline, else the family's canonical defaults, else the first
    label in the plan's axis order, else the first label in the rows' (the sweep's) order."""
    from lowbit_sweeps.analysis.train.groups import quantizer_collapsed_columns

    cols = quantizer_collapsed_columns(rows) if rows is not None and QUANTIZER in rows.columns else []
    values = {lab: _label_values(rows, lab) for lab in labels}

    def matches(lab, wanted: dict) -> bool:
        return bool(wanted) and all(fmt_value(values[lab].get(c)) == fmt_value(v) for c, v in wanted.items())

    base = {c: plan.baseline[c.removeprefix("cfg.")] for c in cols if c.removeprefix("cfg.") in (plan.baseline or {})}
    hit = [lab for lab in labels if matches(lab, base)]
    if hit:
        return hit[0], "the plan's baseline"
    defaults = {c: plan.canonical_defaults[c.removeprefix("cfg.")] for c in cols
                if plan.canonical_defaults and c.removeprefix("cfg.") in plan.canonical_defaults}
    hit = [lab for lab in labels if matches(lab, defaults)]
    if hit:
        return hit[0], "the family's canonical defaults"
    ordered = [c for c in cols if _axis_order(plan, c)]
    if ordered:
        def rank(lab):
            return tuple(next((i for i, v in enumerate(_axis_order(plan, c)) if fmt_value(v) == fmt_value(values[lab].get(c))),
                              len(_axis_order(plan, c))) for c in ordered)
        return min(labels, key=rank), "the first label in the plan's axis order"
    order = list(dict.fromkeys(rows[QUANTIZER])) if rows is not None and QUANTIZER in rows.columns else list(labels)
    return min(labels, key=lambda lab: order.index(lab) if lab in order else len(order)), \
        "the first label in the rows' order (the plan declares none)"


def reference_value(trials: pd.DataFrame, axis: str, plan=SweepPlan(), rows: pd.DataFrame | None = None):
    """(value, rule): the value of ``axis`` the others are compared against, declared and never
    picked from the metric: the plan's ``baseline`` where it names the key, else the family's canonical
    default, else the first value of the plan's axis; without a plan 0 (off) for a numeric axis that
    holds it, else the smallest number, ``False`` for booleans, ``default`` where present, else the
    first value in the sweep's order (rules in analysis.train.report)."""
    values = list(dict.fromkeys(v for v in trials[axis].dropna()))
    if not values:
        return None, ""
    if axis == QUANTIZER:
        return quantizer_reference(values, rows, plan)
    declared = _declared(plan, axis, values)
    if declared is not None:
        return declared
    if all(isinstance(v, (bool, np.bool_)) for v in values):
        return (False, "False = off, by design (the plan declares none)") if False in values else \
            (values[0], "the first value of the trial table (the plan declares none)")
    num = pd.to_numeric(pd.Series(values, dtype=object), errors="coerce")
    if num.notna().all():
        if (num == 0).any():
            return values[int(np.argmin(np.abs(num.to_numpy())))], "0 = off, by design (the plan declares none)"
        return values[int(np.argmin(num.to_numpy()))], "the smallest value, by design (the plan declares none)"
    if "default" in map(str, values):
        return next(v for v in values if str(v) == "default"), "`default`, by design (the plan declares none)"
    return values[0], "the first value of the trial table (the plan declares none)"


def paired_differences(trials: pd.DataFrame, keys: list[str], axis: str, value, reference,
                       metric: str = "final_test_acc") -> pd.DataFrame:
    """Pairs of ok trials with ``axis == value`` and ``axis == reference``, equal in seed and the
    other keys: columns ``<other keys>``, ``seed``, ``value``, ``reference_value``, ``diff``."""
    on = [k for k in keys if k != axis] + ([SEED] if SEED in trials.columns else [])
    pairs = paired_rows(ok_trials(trials), axis, value, reference, on, metric)
    return pairs.assign(diff=pairs["value"] - pairs["reference_value"])


def diff_stats(name: str, pairs: pd.DataFrame) -> dict:
    """``<name>.mean/.std/.n/.note``: the pairs' differences over seeds (per-seed means first)."""
    stat = over_seeds(pairs, "diff", SEED if SEED in pairs.columns else None)
    return {k: v for k, v in stat.columns(name).items() if not k.endswith(".verdict")}


def comparison_name(axis: str, value, ref, cell: str = "pooled") -> str:
    """The record's ``comparison``: '<axis>=<value> vs <ref>' and the cell ('pooled': over the cells)."""
    return f"{axis.removeprefix('cfg.')}={fmt_value(value)} vs {fmt_value(ref)} ({cell})"


def arm_rows(trials: pd.DataFrame, cfg: pd.DataFrame | None, axis: str, values, sel: dict | None = None) -> pd.DataFrame:
    """The finished trials of both arms (``axis`` in ``values``, other keys as ``sel``) with their cfg.*
    columns: the record's cells."""
    good = rows_matching(ok_trials(trials), sel) if sel else ok_trials(trials)
    text = {fmt_value(v) for v in values}
    good = good[good[axis].map(fmt_value).isin(text)]
    if cfg is None or not len(good):
        return good
    return cfg.loc[cfg.index.intersection(good["trial_key"])]


def trial_cfg(rows: pd.DataFrame | None) -> pd.DataFrame | None:
    """trial_key -> the trial's cfg.* columns (its first row)."""
    if rows is None or "trial_key" not in rows.columns:
        return None
    cols = [c for c in rows.columns if c.startswith("cfg.")]
    return rows.drop_duplicates("trial_key").set_index("trial_key")[cols]


def record_pairs(rec: Recorder, plan, what: str, comparison: str, baseline: str, pairs: pd.DataFrame,
                 arms: pd.DataFrame | None) -> Verdict:
    """The recorder's verdict on the per-seed means of ``pairs['diff']`` (question by ``what``)."""
    stat = over_seeds(pairs, "diff", SEED if SEED in pairs.columns else None)
    return rec.verdict(stat.values, question=question_for(plan, what), comparison=comparison, metric=METRIC,
                       baseline=baseline, unit=UNIT, rows=arms)


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


def axis_what(trials: pd.DataFrame, axis: str) -> str:
    """What an axis compares, for :func:`question_for` (the quantizer axis: its labels)."""
    if axis == QUANTIZER:
        return "quantizer " + " ".join(map(str, trials[axis].dropna().unique()))
    return axis


def comparisons(trials: pd.DataFrame, keys: list[str], rec: Recorder | None = None, plan=SweepPlan(),
                rows: pd.DataFrame | None = None) -> pd.DataFrame:
    """Every (axis, value vs reference) comparison, pooled over the other keys (``cell`` = 'pooled')
    and per cell of the other keys: paired difference of final and of selected test_acc over seeds
    (``final.mean/.std/.n/.note``, ``selected...``), ``final.verdict`` (the record of ``rec``, decided
    with its question's comparisons), ``reference_rule`` (which declared rule chose the reference),
    ``n_pairs`` and ``n_positive`` (pairs with final diff > 0). ``rows``: the epoch rows (the
    records' cells and the quantizer reference)."""
    rec = rec if rec is not None else Recorder(plan)
    out = []
    if trials.empty or "outcome" not in trials.columns:
        return pd.DataFrame()
    cfg = trial_cfg(rows)
    for axis in comparison_axes(keys):
        if trials[axis].nunique() < 2:
            continue
        ref, rule = reference_value(trials, axis, plan, rows)
        others = [k for k in keys if k != axis]
        what = axis_what(trials, axis)
        for value in sorted(trials[axis].dropna().unique(), key=lambda v: (str(type(v)), v)):
            if fmt_value(value) == fmt_value(ref):
                continue
            for cell, cvals, pairs in comparison_cells(trials, keys, axis, value, ref):
                r = {"axis": axis, "value": value, "reference": ref, "reference_rule": rule, "cell": cell,
                     **dict(zip(others, cvals))}
                for name, p in pairs.items():
                    r.update(diff_stats(name, p))
                arms = arm_rows(trials, cfg, axis, (value, ref), dict(zip(others, cvals)) if cvals else None)
                r["final.verdict"] = record_pairs(rec, plan, what, comparison_name(axis, value, ref, cell),
                                                  f"{axis.removeprefix('cfg.')}={fmt_value(ref)} ({rule})",
                                                  pairs["final"], arms)
                r["n_pairs"], r["n_positive"] = len(pairs["final"]), int((pairs["final"]["diff"] > 0).sum())
                out.append(r)
    return pd.DataFrame(out)


def verdicts_note(verdicts) -> str:
    """The line under a table of recorded verdicts: :func:`holm_note` where the table is its
    question's whole family, else which families they were adjusted in."""
    verdicts = [v for v in verdicts if isinstance(v, Verdict)]
    counted = [v for v in verdicts if v.sign is not None and not v.identical and math.isfinite(v.p)]
    ks = sorted({v.k for v in counted})
    if not counted or ks == [len(counted)]:
        return holm_note(verdicts)
    k = f"{ks[0]}" if len(ks) == 1 else f"{ks[0]}–{ks[-1]}"
    return (f"Holm-adjusted within each question's family of this report's comparisons (K = {k}, each verdict "
            f"says its K), family-wise α = {counted[0].alpha:.2g}; intervals are the unadjusted paired-t 95% intervals, n = seeds.")


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
        lines.append(f"{v_text} − {r_text} (reference declared: {pooled['reference_rule']}; pairs equal in {on}): "
                     f"Δ final test_acc = {diff_text(pooled)}; "
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


def dsq_lines(trials: pd.DataFrame, rows: pd.DataFrame, keys: list[str], rec: Recorder | None = None,
              plan=SweepPlan()) -> list[str]:
    """Per bit width holding DSQ and a non-DSQ quantizer: every DSQ label against the declared STE
    reference of that bit width (:func:`quantizer_reference` among the non-DSQ labels: never the one
    with the best accuracy), paired; each a record of the question DSQ bears on."""
    if QUANTIZER not in keys or "cfg.quant.kbit" not in rows.columns:
        return []
    rec = rec if rec is not None else Recorder(plan)
    info = rows.drop_duplicates("trial_key").set_index("trial_key")
    t = trials.join(info[[c for c in (KIND, "cfg.quant.kbit", "cfg.quant.bits")
                          if c in info.columns and c not in trials.columns]], on="trial_key")
    lines = []
    labels = list(dict.fromkeys(t[QUANTIZER]))
    bits = {lab: bits_of(lab, t) for lab in labels}
    is_dsq = {lab: bool(((t[QUANTIZER] == lab) & (t[KIND].astype(str) == "kbit")
                         & (t["cfg.quant.kbit"].astype(str) == "dsq")).any()) for lab in labels}
    cfg = trial_cfg(rows)
    for b in sorted({v for v in bits.values() if v is not None}):
        dsq = [lab for lab in labels if bits[lab] == b and is_dsq[lab]]
        base = [lab for lab in labels if bits[lab] == b and not is_dsq[lab]]
        if not dsq or not base:
            continue
        s, rule = quantizer_reference(base, rows, plan)
        for d in dsq:
            pairs = paired_differences(trials, keys, QUANTIZER, d, s)
            stat = pd.Series(diff_stats("final", pairs))
            v = record_pairs(rec, plan, "dsq", comparison_name(QUANTIZER, d, s), f"{QUANTIZER}={s} ({rule})",
                             pairs, arm_rows(trials, cfg, QUANTIZER, (d, s)))
            lines.append(f"{b} bit: {d} − the STE reference {s} (declared: {rule}): "
                         f"Δ final test_acc = {diff_text(stat)}; "
                         f"{v.text('DSQ higher', 'the STE reference higher', signed_pp, ' pp')}.")
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
                   rows: pd.DataFrame, failed_without_rows: pd.DataFrame, rec: Recorder | None = None,
                   plan=SweepPlan()) -> list[str]:
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
                     f"lowest: {label_of(keys, [low[k] for k in keys])} → {group_acc(low, 'final_test_acc')} "
                     "(means only, no test; the verdicts are the paired comparisons).")
    elif len(ranked) == 1 and not keys:
        lines.append(f"One configuration group (no axis varies but the seed): final test_acc "
                     f"{group_acc(ranked.iloc[0], 'final_test_acc')}; nothing to compare.")
    lines += selection_lines(trials)
    lines += comparison_lines(comp, keys, trials)
    lines += dsq_lines(trials, rows, keys, rec, plan)
    lines += pretrain_lines(table, keys)
    lines += dsq_alpha_lines(table, keys)
    return lines
