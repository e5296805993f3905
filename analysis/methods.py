"""Method comparison for sweeps with ``cfg.method`` (multi-step STE, DG, multi-step DG, CDG).

Every trial carries ``single_best_loss``, the single-step STE lr scan on the same batch and start, so
single-step STE becomes a method row of its own: one value per (model kind, seed, other keys), taken
from the final rows of whatever methods ran (they agree; the first is kept). Its
``rel_improvement_best`` is 0 by definition; it has no coords_moved or max_abs_delta.

Findings answer the meeting record's question "is DG a usable upper bound (reference) for STE?":
per model kind, the best DG variant (lowest mean final best_loss over S) and the best CDG variant
are compared with multi-step STE (best optimizer) and single-step STE, paired on seed and the other
keys where both ran, as ``(L_method - L_STE) / L_STE``; lower loss is better. A difference counts only
when its mean is more than one std away from zero (the report's rule).
"""
from __future__ import annotations

import math
import re

import numpy as np
import pandas as pd

from analysis.groups import (KIND, METHOD, METHOD_COLUMN, fmt_value, iter_groups,
                             method_collapsed_columns, seed_column, short_names)
from analysis.tables import fmt, fmt_mean_std, format_mean_std_table, mean_std_n, mean_std_table

SINGLE_STE = "single-step STE"
METHOD_METRICS = ("best_loss", "rel_improvement_best", "coords_moved", "max_abs_delta")
OPTIMIZER_ORDER = ("sgd", "sgdm", "adam")
# The settings a method reads (the others are left at their defaults by the family's canonicalize).
METHOD_SETTINGS = {
    "ste": ("cfg.multi.",),
    "dg": ("cfg.dg.steps", "cfg.dg.select", "cfg.dg.max_coords", "cfg.dg.prefix_points", "cfg.dg.fp_moves"),
    "cdg": ("cfg.dg.cdg_", "cfg.dg.fp_moves"),
}
HIDDEN_SETTINGS = ("cfg.multi.report_every", "cfg.dg.report_every", "cfg.dg.steps", "cfg.multi.optimizer",
                   "cfg.dg.cdg_refresh")


# ---- labels and order --------------------------------------------------------------------------

def method_rank(label: str) -> tuple:
    """Sort key: single-step STE, multi-step STE (sgd, sgdm, adam, others), DG by S, CDG by refresh."""
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
    return (4, 0, label)


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


# ---- the single-step STE rows ------------------------------------------------------------------

def with_single_step(final: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """The final rows plus one single-step STE row per (model kind, other keys, seed), built from
    ``single_best_loss``: best_loss = single_best_loss, rel_improvement_best = 0, no coords_moved or
    max_abs_delta."""
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
    single["trial_key"] = [f"single-step|{i}" for i in range(len(single))]
    return pd.concat([final, single], ignore_index=True, sort=False)


# ---- the table ---------------------------------------------------------------------------------

def methods_table(final_ws: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """Mean ± std (n) of METHOD_METRICS per (kind, method, other keys), methods in their order."""
    by = [k for k in (KIND, METHOD, *rest_keys(keys)) if k in final_ws.columns]
    table = mean_std_table(final_ws, by, METHOD_METRICS)
    if table.empty:
        return table
    order = [k for k in by if k != METHOD]
    table["_rank"] = table[METHOD].map(method_rank)
    table = table.sort_values(order + ["_rank"], kind="stable").drop(columns="_rank")
    return table[by + [c for c in table.columns if c not in by]].reset_index(drop=True)


def method_settings(rows: pd.DataFrame) -> dict[str, str]:
    """Per method label: the collapsed settings that method reads, as 'lr=0.002 steps=100' text."""
    if METHOD not in rows.columns:
        return {}
    collapsed = [c for c in method_collapsed_columns(rows) if c not in HIDDEN_SETTINGS and c != METHOD_COLUMN]
    fams = rows[METHOD_COLUMN].fillna("ste").astype(str) if METHOD_COLUMN in rows.columns else None
    out = {}
    for label, g in rows.groupby(METHOD, sort=False):
        fam = str(fams.loc[g.index[0]]) if fams is not None else "ste"
        wanted = METHOD_SETTINGS.get(fam, ())
        cols = [c for c in collapsed if c.startswith(wanted)]
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

def _best_label(sub: pd.DataFrame, pick) -> str | None:
    """Among the labels of ``sub`` accepted by ``pick``, the one with the lowest mean best_loss."""
    means = {}
    for label, g in sub.groupby(METHOD, sort=False):
        if pick(str(label)):
            m, _, n = mean_std_n(g["best_loss"])
            if n:
                means[str(label)] = m
    return min(means, key=lambda k: (means[k], method_rank(k))) if means else None


def paired_rel_diff(sub: pd.DataFrame, a: str, b: str, keys: list[str]) -> tuple[np.ndarray, bool]:
    """``(L_a - L_b) / L_b`` of final best_loss for trials of labels ``a`` and ``b`` paired on seed and
    the other keys; (values, True). Without any pair: the relative difference of the means and its
    std from both groups' stds, as a one-value array, and False."""
    seed = seed_column(sub)
    on = ([seed] if seed else []) + [k for k in rest_keys(keys) if k in sub.columns]
    va = sub.loc[sub[METHOD] == a, on + ["best_loss"]].rename(columns={"best_loss": "a"})
    vb = sub.loc[sub[METHOD] == b, on + ["best_loss"]].rename(columns={"best_loss": "b"})
    if on:
        va, vb = va.drop_duplicates(subset=on), vb.drop_duplicates(subset=on)
        pairs = va.merge(vb, on=on, how="inner")
    else:
        pairs = pd.DataFrame(columns=["a", "b"])
    a_v = pd.to_numeric(pairs["a"], errors="coerce")
    b_v = pd.to_numeric(pairs["b"], errors="coerce")
    ok = a_v.notna() & b_v.notna() & (b_v != 0)
    if ok.any():
        return ((a_v[ok] - b_v[ok]) / b_v[ok]).to_numpy(dtype=float), True
    return np.array([], dtype=float), False


def compare(sub: pd.DataFrame, a: str, b: str, keys: list[str], names: tuple[str, str] = ("a", "b")) -> dict:
    """The comparison of labels ``a`` (tested) and ``b`` (reference) on final best_loss:
    relation 'lower' / 'higher' / 'no clear difference (within one std)', and its text (``names``
    stand for a and b in it)."""
    na_, nb_ = names
    diffs, paired = paired_rel_diff(sub, a, b, keys)
    if paired:
        m, s, n = mean_std_n(diffs)
        wins = int((diffs < 0).sum())
        how = (f"paired over {n} seed(s): (L_{na_} - L_{nb_})/L_{nb_} = "
               f"{fmt_mean_std(m, s, n, signed=True, percent=True)}, {na_} lower in {wins}/{n}")
    else:
        ma, sa, na = mean_std_n(sub.loc[sub[METHOD] == a, "best_loss"])
        mb, sb, nb = mean_std_n(sub.loc[sub[METHOD] == b, "best_loss"])
        if not na or not nb or mb == 0:
            return {"relation": None, "text": "no data to compare"}
        m = (ma - mb) / mb
        s = math.sqrt(np.nansum([sa ** 2, sb ** 2])) / abs(mb) if na > 1 and nb > 1 else math.nan
        n = min(na, nb)
        how = f"unpaired (no common seeds): (mean L_{na_} - mean L_{nb_})/mean L_{nb_} = {fmt(100 * m, True)}%" + (
            f" ± {fmt(100 * s)}%" if not math.isnan(s) else "")
    sd = 0.0 if math.isnan(s) else s
    if m + sd < 0:
        rel = "lower"
    elif m - sd > 0:
        rel = "higher"
    else:
        rel = "no clear difference (within one std)"
    return {"relation": rel, "mean": m, "std": s, "n": n, "text": how}


def _loss_stat(sub: pd.DataFrame, label: str) -> str:
    return fmt_mean_std(*mean_std_n(sub.loc[sub[METHOD] == label, "best_loss"]))


def _versus(sub: pd.DataFrame, a: str, refs: list[str], keys: list[str], what: str) -> tuple[list[str], dict]:
    """One line per reference: a's loss against it, which is lower."""
    lines, rels = [], {}
    for b in refs:
        c = compare(sub, a, b, keys, (what, "STE"))
        rels[b] = c["relation"]
        if c["relation"] is None:
            continue
        verdict = {"lower": f"{what} reaches a LOWER loss than {b}",
                   "higher": f"{what} does NOT reach a lower loss than {b} (STE is lower)"}.get(
            c["relation"], f"{what} vs {b}: no clear difference (within one std)")
        lines.append(f"  {a} {_loss_stat(sub, a)} vs {b} {_loss_stat(sub, b)} (final best_loss); "
                     f"{c['text']}; {verdict}.")
    return lines, rels


def _answer(what: str, label: str, rels: dict) -> str:
    label = label if label.startswith(what) else f"{what} ({label})"
    refs = [b for b, r in rels.items() if r is not None]
    if not refs:
        return f"no STE trials to compare {what} with"
    not_lower = [b for b in refs if rels[b] != "lower"]
    if not not_lower:
        return (f"YES — {label} reaches a lower final best_loss than every STE method here "
                f"({', '.join(refs)}), so it is a usable reference (upper bound) for STE")
    lower = [b for b in refs if rels[b] == "lower"]
    part = f"; it does beat {', '.join(lower)}" if lower else ""
    why = ", ".join(f"{b}: {'STE lower' if rels[b] == 'higher' else 'within one std'}" for b in not_lower)
    return (f"NO — {label} does not reach a lower final best_loss than {', '.join(not_lower)} "
            f"({why}){part}, so it is not a usable upper bound for STE")


def dg_findings(final_ws: pd.DataFrame, keys: list[str]) -> list[str]:
    """Per model kind: best DG variant and best CDG against multi-step and single-step STE, the plain
    answer, and whether multi-step DG improves with S."""
    if METHOD not in final_ws.columns or "best_loss" not in final_ws.columns:
        return []
    lines = []
    for values, sub in iter_groups(final_ws, [KIND] if KIND in final_ws.columns else []):
        who = fmt_value(values[0]) if values else "all trials"
        multi = _best_label(sub, is_ste)
        refs = [r for r in (multi, SINGLE_STE if (sub[METHOD] == SINGLE_STE).any() else None) if r]
        pooled = rest_keys(keys)
        pooled = [k for k in pooled if k in sub.columns and sub[k].nunique(dropna=False) > 1]
        note = f" (pooled over {', '.join(short_names(pooled).values())}, paired within)" if pooled else ""
        answers = []
        for pick, what in ((is_dg, "DG"), (is_cdg, "CDG")):
            label = _best_label(sub, pick)
            if label is None:
                continue
            n_variants = sum(map(pick, sub[METHOD].astype(str).unique()))
            best_note = f" (best {what} variant by mean)" if n_variants > 1 else ""
            more, rels = _versus(sub, label, refs, keys, what)
            lines.append(f"DG vs STE ({who}){note}: {label}{best_note} against "
                         f"{', '.join(refs) or 'no STE method'}:")
            lines += more
            answers.append(f"{what}: {_answer(what, label, rels)}")
        if answers:
            lines.append(f"Is DG a usable upper bound (reference) for STE? ({who}) " + "; ".join(answers) + ".")
        lines += _s_trend(sub, keys, who)
    return lines


def _s_trend(sub: pd.DataFrame, keys: list[str], who: str) -> list[str]:
    labels = sorted({str(m) for m in sub[METHOD] if is_dg(str(m))}, key=dg_steps)
    if len(labels) < 2:
        return []
    means = [mean_std_n(sub.loc[sub[METHOD] == lab, "best_loss"]) for lab in labels]
    parts = [f"S={dg_steps(lab)}: {fmt_mean_std(*ms)}" for lab, ms in zip(labels, means)]
    lo, hi = labels[0], labels[-1]
    c = compare(sub, hi, lo, keys, (f"S={dg_steps(hi)}", f"S={dg_steps(lo)}"))
    mvals = np.array([m for m, _, _ in means])
    monotone = bool((np.diff(mvals) <= 0).all())
    if c["relation"] == "lower":
        verdict = "yes, monotonically" if monotone else "yes overall, but not monotonically"
    elif c["relation"] == "higher":
        verdict = "no (the largest S ends higher)"
    else:
        verdict = "no clear change (within one std)"
    return [f"Multi-step DG ({who}): final best_loss by S — " + "; ".join(parts)
            + f"; S={dg_steps(hi)} vs S={dg_steps(lo)}: {c.get('text', '')}; improves with S: {verdict}."]
