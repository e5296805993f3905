"""Method comparison for sweeps with ``cfg.method`` (multi-step STE, DG, multi-step DG, CDG, ADMM,
GA, ES).

Every trial carries ``single_best_loss``, the single-step STE lr scan on the same batch and start, so
single-step STE becomes a method row of its own: one value per (model kind, seed, other keys), taken
from the final rows of whatever methods ran (they agree; the first is kept). Its
``rel_improvement_best`` and ``rel_improvement_heldout`` are 0 by definition, its loss_evals the
scan's cost; it has no coords_moved or max_abs_delta.

Findings answer the meeting record's question "is DG a usable upper bound (reference) for STE?":
per model kind, EVERY DG variant (each S) and every CDG variant is compared with every STE reference
present (single-step STE and each multi-step STE optimizer), paired on seed and the other keys, as
``(L_method - L_ref) / L_ref`` of final best_loss. Each seed's differences are averaged over the
other keys' settings first; each comparison is a record of question dg-upper-bound
(:class:`analysis.common.verdicts.Recorder`), decided with all the question's comparisons (Holm,
directions and equivalence within the question's margin), and every line gives the interval and n.
A variant's answer comes from its records only: YES when it is lower than every reference; NO when
some reference is lower than it or equivalent (or identical) to it; otherwise UNDECIDED (some
comparison undecided or without a verdict, fewer than 2 paired seeds).

A method's settings (the table's ``settings`` column) are the columns that vary only with the
method label, other than the plan's axes, the columns the label is made of and reporting cadences
(``*.report_every``), shown for a label where its value differs from the family's canonical
default (the plan's ``canonical_defaults``: what the family resets a setting to where the method
does not read it). Folders without canonical defaults in a plan use :data:`METHOD_SETTINGS`.
"""
from __future__ import annotations

import json
import re

import numpy as np
import pandas as pd

from lowbit_sweeps.analysis.common.format import fmt_value, short_names
from lowbit_sweeps.analysis.common.groups import KIND, iter_groups, paired_rows, seed_column
from lowbit_sweeps.analysis.common.plan import SweepPlan
from lowbit_sweeps.analysis.common.stats import mean_std_n, over_seeds, signed_percent
from lowbit_sweeps.analysis.probe.findings import pooled_text
from lowbit_sweeps.analysis.probe.groups import (LABEL_COLUMNS, METHOD, METHOD_COLUMN, STE, method_collapsed_columns,
                                   method_family)
from lowbit_sweeps.analysis.probe.records import DG_BOUND, OTHER, REL_LOSS, recorder
from lowbit_sweeps.analysis.probe.tables import format_mean_std_table, mean_std_table

SINGLE_STE = "single-step STE"
METHOD_METRICS = ("best_loss", "rel_improvement_best", "rel_improvement_heldout", "loss_evals", "coords_moved",
                  "max_abs_delta")
OPTIMIZER_ORDER = ("sgd", "sgdm", "adam")
CADENCE = ".report_every"
# Folders without canonical defaults: the settings each method reads (the family's canonicalize
# leaves the others at their defaults).
METHOD_SETTINGS = {
    STE: ("cfg.multi.",),
    "dg": ("cfg.dg.steps", "cfg.dg.select", "cfg.dg.max_coords", "cfg.dg.prefix_points", "cfg.dg.fp_moves"),
    "cdg": ("cfg.dg.cdg_", "cfg.dg.fp_moves"),
    "admm": ("cfg.admm.",),
    "ga": ("cfg.ga.",),
    "es": ("cfg.es.",),
}
SINGLE_COLUMNS = {"heldout_loss": "single_heldout_loss", "loss_evals": "single_loss_evals",
                  "grad_evals": "single_grad_evals", "fwd_equiv": "single_fwd_equiv",
                  "start_loss": "start_loss", "heldout_start_loss": "heldout_start_loss",
                  "layer_weights": "layer_weights"}
"""Columns of a single-step STE row and the column of the trial rows each is taken from."""
FAMILY_RANK = {"STE": 1, "DG": 2, "CDG": 3, "ADMM": 4, "GA": 5, "ES": 6}
"""Order of the method families after single-step STE (rank 0); other labels come last."""


# ---- labels and order --------------------------------------------------------------------------

def method_rank(label: str) -> tuple:
    """Sort key: single-step STE, multi-step STE (sgd, sgdm, adam, others), DG by S, CDG by refresh,
    ADMM, GA, ES, then other labels."""
    label = str(label)
    if label == SINGLE_STE:
        return (0, 0, label)
    m = re.fullmatch(r"multi-step STE \((.*)\)", label)
    if m:
        opt = m.group(1)
        return (1, OPTIMIZER_ORDER.index(opt) if opt in OPTIMIZER_ORDER else len(OPTIMIZER_ORDER), label)
    m = re.match(r"DG S=(\d+)", label)
    if m:
        return (2, int(m.group(1)), label)
    if label.startswith("CDG"):
        m = re.search(r"refresh (\d+)", label)
        return (3, int(m.group(1)) if m else 1, label)
    family = label.split(" ")[0]
    return (FAMILY_RANK.get(family, len(FAMILY_RANK) + 1), 0, label)


def ordered_methods(labels) -> list[str]:
    return sorted(dict.fromkeys(map(str, labels)), key=method_rank)


def is_ste(label: str) -> bool:
    return method_rank(label)[0] == 1


def is_dg(label: str) -> bool:
    return method_rank(label)[0] == 2


def is_cdg(label: str) -> bool:
    return method_rank(label)[0] == 3


def dg_steps(label: str) -> int:
    return method_rank(label)[1]


def rest_keys(keys: list[str]) -> list[str]:
    """Group keys other than the model kind and the method."""
    return [k for k in keys if k not in (KIND, METHOD)]


def sort_by_method(table: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """``table`` sorted by ``keys`` but the method, then by method order (not alphabetical)."""
    order = [k for k in keys if k != METHOD]
    return (table.assign(rank=table[METHOD].map(method_rank)).sort_values(order + ["rank"], kind="stable")
            .drop(columns="rank").reset_index(drop=True))


# ---- the single-step STE rows ------------------------------------------------------------------

def with_single_step(final: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """The final rows plus one single-step STE row per (model kind, other keys, seed), built from
    ``single_best_loss``: best_loss = single_best_loss, rel_improvement_best = 0, and where the rows
    carry them heldout_loss = single_heldout_loss, rel_improvement_heldout = 0, loss_evals =
    single_loss_evals and the start losses; no coords_moved or max_abs_delta."""
    if METHOD not in final.columns or "single_best_loss" not in final.columns:
        return final
    seed = seed_column(final)
    by = [k for k in (KIND, *rest_keys(keys)) if k in final.columns] + ([seed] if seed else [])
    src = final.dropna(subset=["single_best_loss"])
    base = src.drop_duplicates(subset=by, keep="first") if by else src.iloc[:1]
    single = base[by].copy()
    single[METHOD] = SINGLE_STE
    single[METHOD_COLUMN] = "single"
    single["best_loss"] = pd.to_numeric(base["single_best_loss"], errors="coerce").to_numpy()
    single["rel_improvement_best"] = 0.0
    for target, source in SINGLE_COLUMNS.items():
        if source in base.columns:
            single[target] = pd.to_numeric(base[source], errors="coerce").to_numpy()
    if "single_heldout_loss" in base.columns:
        single["rel_improvement_heldout"] = 0.0
    single["trial_key"] = [f"single-step|{i}" for i in range(len(single))]
    return pd.concat([final, single], ignore_index=True, sort=False)


# ---- the table ---------------------------------------------------------------------------------

def methods_table(final_ws: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """Mean ± std (n) of METHOD_METRICS per (kind, method, other keys), methods in their order."""
    by = [k for k in (KIND, METHOD, *rest_keys(keys)) if k in final_ws.columns]
    table = mean_std_table(final_ws, by, METHOD_METRICS)
    if table.empty:
        return table
    table = sort_by_method(table, by)
    return table[by + [c for c in table.columns if c not in by]]


def differs_from_default(value, plan: SweepPlan, column: str) -> bool:
    """Whether ``value`` differs from the plan's canonical default of ``column`` (True where the
    plan has none); list defaults compare with the JSON text the results store tuples as."""
    known, default = plan.default_of(column)
    if not known:
        return True
    if isinstance(default, (list, tuple)):
        return str(value) != json.dumps(list(default))
    return fmt_value(value) != fmt_value(default)


def setting_columns(rows: pd.DataFrame, plan: SweepPlan) -> list[str]:
    """The columns that may be a method's settings: those that vary only with the method label,
    but the plan's axes, the label's own columns and reporting cadences."""
    hidden = {METHOD_COLUMN, *LABEL_COLUMNS, *plan.axis_columns()}
    return [c for c in method_collapsed_columns(rows) if c not in hidden and not c.endswith(CADENCE)]


def method_settings(rows: pd.DataFrame, plan: SweepPlan) -> dict[str, str]:
    """Per method label: its settings (module docstring) as 'lr=0.002 steps=100' text."""
    if METHOD not in rows.columns:
        return {}
    candidates = setting_columns(rows, plan)
    fams = method_family(rows)
    out = {}
    for label, g in rows.groupby(METHOD, sort=False):
        if plan.canonical_defaults is not None:
            cols = [c for c in candidates if differs_from_default(g[c].iloc[0], plan, c)]
        else:
            cols = [c for c in candidates if c.startswith(METHOD_SETTINGS.get(fams.loc[g.index[0]], ()))]
        names = short_names(cols)
        out[str(label)] = " ".join(f"{names[c]}={fmt_value(g[c].iloc[0])}" for c in cols)
    return out


def format_methods_table(table: pd.DataFrame, settings: dict[str, str] | None = None) -> pd.DataFrame:
    keys = [c for c in table.columns if not re.search(r"\.(mean|std|n)$", c)]
    out = format_mean_std_table(table, keys, METHOD_METRICS)
    if settings and any(settings.values()):
        out.insert(len(keys), "settings", [settings.get(str(m), "") or "–" for m in table[METHOD]])
    return out


# ---- findings ----------------------------------------------------------------------------------

def best_label(sub: pd.DataFrame, pick) -> str | None:
    """Among the labels of ``sub`` accepted by ``pick``, the one with the lowest mean best_loss."""
    means = {}
    for label, g in sub.groupby(METHOD, sort=False):
        if pick(str(label)):
            m, _, n = mean_std_n(g["best_loss"])
            if n:
                means[str(label)] = m
    return min(means, key=lambda k: (means[k], method_rank(k))) if means else None


def loss_stat(sub: pd.DataFrame, label: str):
    """Final best_loss of ``label`` over seeds (each seed's mean over the other keys' settings)."""
    return over_seeds(sub[sub[METHOD] == label], "best_loss", seed_column(sub))


def arm_rows(sub: pd.DataFrame, labels) -> pd.DataFrame:
    """The final rows of the arms ``labels`` (single-step STE's values come from every trial's own
    scan, so its arm is the other arm's trials)."""
    return sub[sub[METHOD].astype(str).isin({str(x) for x in labels if x != SINGLE_STE})]


def compare(sub: pd.DataFrame, a: str, b: str, keys: list[str], names: tuple[str, str] = ("a", "b"), rec=None,
            question: str | None = DG_BOUND, who: str = "") -> dict:
    """Labels ``a`` (tested) and ``b`` (reference) on final best_loss: ``(L_a - L_b) / L_b`` paired on
    seed and the other keys, averaged per seed; ``verdict`` (the record of comparison 'a vs b (who)'
    of ``question``, baseline b; lower: a lower) and its ``text`` (``names`` stand for a and b in it)."""
    na_, nb_ = names
    rec = recorder(rec)
    seed = seed_column(sub)
    on = ([seed] if seed else []) + [k for k in rest_keys(keys) if k in sub.columns]
    pairs = paired_rows(sub, METHOD, a, b, on, "best_loss")
    pairs = pairs[pairs["reference_value"] != 0]
    stat = over_seeds(pairs.assign(rel=(pairs["value"] - pairs["reference_value"]) / pairs["reference_value"]),
                      "rel", seed)
    v = rec.verdict(stat.values, question=question, comparison=f"{a} vs {b}" + (f" ({who})" if who else ""),
                    metric=REL_LOSS, baseline=b, unit="fraction", rows=arm_rows(sub, (a, b)))
    if stat.n == 0:
        return {"verdict": v, "text": f"no paired seeds of {na_} and {nb_}"}
    wins = int((stat.values < 0).sum())
    return {"verdict": v,
            "text": f"paired over {stat.n} seed(s): (L_{na_} - L_{nb_})/L_{nb_} = "
                    f"{pooled_text(stat, percent=True)}, {na_} lower in {wins}/{stat.n}"}


def versus(sub: pd.DataFrame, a: str, refs: list[str], keys: list[str], what: str, rec=None,
           who: str = "") -> tuple[list[str], dict]:
    """One line per reference: a's loss against it, with its record's verdict; and the verdict per reference."""
    lines, verdicts = [], {}
    for b in refs:
        c = compare(sub, a, b, keys, (what, "STE"), rec, DG_BOUND, who)
        v = verdicts[b] = c["verdict"]
        verdict = v.text(f"{what} does NOT reach a lower loss than {b} ({b} is lower)",
                         f"{what} reaches a LOWER loss than {b}", signed_percent, "%")
        lines.append(f"  {a} {pooled_text(loss_stat(sub, a), signed=False)} vs {b} "
                     f"{pooled_text(loss_stat(sub, b), signed=False)} (final best_loss); {c['text']}; {verdict}.")
    return lines, verdicts


def answer(what: str, label: str, verdicts: dict) -> str:
    """The answer of variant ``label`` from its records against the STE references: YES when it is
    lower than every reference; NO when some reference is lower, equivalent or identical to it;
    UNDECIDED otherwise (no direction word). Each reference is named with its record's numbers."""
    label = label if label.startswith(what) else f"{what} ({label})"
    if not verdicts:
        return f"no STE trials to compare {what} with"

    def named(refs):
        return ", ".join(f"{b} ({verdicts[b].numbers(signed_percent, '%')})" for b in refs)

    by = {d: [b for b, v in verdicts.items() if v.decision == d] for d in
          ("lower", "higher", "equivalent", "identical", "undecided", "no verdict")}
    if by["higher"] or by["equivalent"] or by["identical"]:
        parts = ([f"{named(by['higher'])} {'is' if len(by['higher']) == 1 else 'are'} lower"] if by["higher"] else []) + \
                ([f"equivalent within ±{verdicts[by['equivalent'][0]].margin:.3g} to {named(by['equivalent'])}"]
                 if by["equivalent"] else []) + \
                ([f"identical to {named(by['identical'])}"] if by["identical"] else [])
        also = (f"; it is lower than {named(by['lower'])}" if by["lower"] else "") + \
               (f"; undecided against {named(by['undecided'] + by['no verdict'])}"
                if by["undecided"] or by["no verdict"] else "")
        return (f"NO — {label} does not reach a lower final best_loss than every STE method here: "
                f"{'; '.join(parts)}{also}, so it is not a usable upper bound for STE")
    if by["undecided"] or by["no verdict"]:
        open_ = [f"{b} ({verdicts[b].numbers(signed_percent, '%')}: "
                 + ("no verdict, fewer than 2 paired seeds" if verdicts[b].decision == "no verdict" else "undecided")
                 + ")" for b in by["undecided"] + by["no verdict"]]
        return f"UNDECIDED — {label}: against {', '.join(open_)}"
    return (f"YES — {label} reaches a lower final best_loss than every STE method here "
            f"({named(by['lower'])}), so it is a usable reference (upper bound) for STE")


def dg_findings(final_ws: pd.DataFrame, keys: list[str], rec=None) -> list[str]:
    """Per model kind: every DG and every CDG variant against every STE reference (records of
    question dg-upper-bound), each variant's plain answer from its records, and whether multi-step DG
    improves with S."""
    if METHOD not in final_ws.columns or "best_loss" not in final_ws.columns:
        return []
    rec = recorder(rec)
    lines = []
    for values, sub in iter_groups(final_ws, [KIND] if KIND in final_ws.columns else []):
        who = fmt_value(values[0]) if values else "all trials"
        labels = ordered_methods(sub[METHOD])
        refs = [x for x in labels if x == SINGLE_STE or is_ste(x)]
        pooled = [k for k in rest_keys(keys) if k in sub.columns and sub[k].nunique(dropna=False) > 1]
        note = f" (pooled over {', '.join(short_names(pooled).values())}, paired within)" if pooled else ""
        answers = []
        for pick, what in ((is_dg, "DG"), (is_cdg, "CDG")):
            for label in (x for x in labels if pick(x)):
                more, verdicts = versus(sub, label, refs, keys, what, rec, who)
                lines.append(f"DG vs STE ({who}){note}: {label} against {', '.join(refs) or 'no STE method'}:")
                lines += more
                answers.append(f"{what}: {answer(what, label, verdicts)}")
        if answers:
            lines.append(f"Is DG a usable upper bound (reference) for STE? ({who}) " + "; ".join(answers) + ".")
        lines += s_trend(sub, keys, who, rec)
    return lines


def s_trend(sub: pd.DataFrame, keys: list[str], who: str, rec=None) -> list[str]:
    """Multi-step DG: final best_loss per S, and the verdict on the largest S against the smallest
    (a record of the other comparisons)."""
    labels = sorted({str(m) for m in sub[METHOD] if is_dg(str(m))}, key=dg_steps)
    if len(labels) < 2:
        return []
    stats = [loss_stat(sub, lab) for lab in labels]
    parts = [f"S={dg_steps(lab)}: {pooled_text(s, signed=False)}" for lab, s in zip(labels, stats)]
    lo, hi = labels[0], labels[-1]
    c = compare(sub, hi, lo, keys, (f"S={dg_steps(hi)}", f"S={dg_steps(lo)}"), rec, OTHER, who)
    monotone = bool((np.diff([s.mean for s in stats]) <= 0).all())
    v = c["verdict"]
    verdict = {"lower": "yes, monotonically" if monotone else "yes overall, but not monotonically",
               "higher": "no (the largest S ends higher)"}.get(v.decision) or v.outcome("", "")
    verdict = f"{verdict} ({v.numbers(signed_percent, '%')})"
    return [f"Multi-step DG ({who}): final best_loss by S — " + "; ".join(parts)
            + f"; S={dg_steps(hi)} vs S={dg_steps(lo)}: {c['text']}; improves with S: {verdict}."]
