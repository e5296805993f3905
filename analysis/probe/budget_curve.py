"""The budget curve: each method's gain against the box radius epsilon (sweeps whose
``cfg.budget.epsilon`` takes several values), on the probe batch and on the held-out batch.

Per (model kind, method, epsilon), over seeds (each seed's values averaged over the other keys'
settings first): ``rel_improvement_best`` (batch) and ``rel_improvement_heldout`` (held-out) over the
single-step STE, ``gain_from_start`` = (L_start - L_best) / L_start on the batch, and ``reach_frac``.

**Where the budget binds** is decided by records (question budget-binds,
:class:`analysis.common.verdicts.Recorder`): per (kind, method, epsilon) the gain
``rel_improvement_best`` against 0 (baseline single-step STE), and per (kind, method) the gain at each
epsilon against the gain at the largest epsilon, paired on seed (baseline "largest epsilon"). The
budget *binds* at an epsilon only where that record is "lower" (a larger box buys gain), and the
curve is *saturated* there only where it is "equivalent" (within the question's margin). The
held-out gain against 0 per epsilon is a record of the other comparisons. :func:`saturation` (90% of
the largest mean) is descriptive only; no finding uses it.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from lowbit_sweeps.analysis.common.format import fmt_mean_std, fmt_value
from lowbit_sweeps.analysis.common.groups import KIND, iter_groups, seed_column
from lowbit_sweeps.analysis.common.plotting import group_colors, new_figure
from lowbit_sweeps.analysis.common.stats import over_seeds
from lowbit_sweeps.analysis.probe.groups import METHOD
from lowbit_sweeps.analysis.probe.methods import SINGLE_STE, method_rank
from lowbit_sweeps.analysis.probe.records import BUDGET, OTHER, per_seed, recorder, seed_diff

EPSILON = "cfg.budget.epsilon"
SATURATED = 0.9
LARGEST = "vs_largest"
"""Column prefix of the gain at an epsilon minus the gain at the largest epsilon (paired on seed)."""
CURVES = (("rel_improvement_best", "probe batch"), ("rel_improvement_heldout", "held-out batch"))
CURVE_METRICS = ("rel_improvement_best", "rel_improvement_heldout", "gain_from_start", "reach_frac")


def applies(final: pd.DataFrame) -> bool:
    return EPSILON in final.columns and pd.to_numeric(final[EPSILON], errors="coerce").nunique() > 1


def with_gain(final: pd.DataFrame) -> pd.DataFrame:
    """``final`` with ``gain_from_start`` = (start_loss - best_loss) / start_loss."""
    if "start_loss" not in final.columns or "best_loss" not in final.columns:
        return final
    start = pd.to_numeric(final["start_loss"], errors="coerce")
    best = pd.to_numeric(final["best_loss"], errors="coerce")
    return final.assign(gain_from_start=(start - best) / start.where(start != 0))


def curve_table(final_ws: pd.DataFrame, rec=None) -> pd.DataFrame:
    """Per (kind, method, epsilon): ``<metric>.mean/.std/.n/.note`` of CURVE_METRICS over seeds; for
    methods other than single-step STE the records (module docstring) as ``rel_improvement_best.verdict``
    (gain against 0), ``rel_improvement_heldout.verdict`` (held-out gain against 0) and
    ``vs_largest.verdict`` (gain minus the gain at the largest epsilon; None at the largest)."""
    rec = recorder(rec)
    rows = with_gain(final_ws)
    by = [k for k in (KIND, METHOD) if k in rows.columns] + [EPSILON]
    seed = seed_column(rows)
    out = []
    for values, curve in iter_groups(rows, by[:-1]):
        group = dict(zip(by[:-1], values))
        who = ", ".join(fmt_value(v) for v in values) or "all trials"
        single = group.get(METHOD) == SINGLE_STE
        eps_all = pd.to_numeric(curve[EPSILON], errors="coerce")
        top_eps = eps_all.max()
        top = curve[eps_all == top_eps]
        for (eps,), sub in iter_groups(curve, [EPSILON]):
            row = {**group, EPSILON: eps}
            for m in CURVE_METRICS:
                if m in sub.columns:
                    row.update(over_seeds(sub, m, seed).columns(m))
            if not single:
                at = f"{who}, epsilon={fmt_value(eps)}"
                for m, q, base in (("rel_improvement_best", BUDGET, "single-step STE"),
                                   ("rel_improvement_heldout", OTHER, "single-step STE")):
                    if m in sub.columns:
                        row[f"{m}.verdict"] = rec.verdict(
                            per_seed(sub, m, seed).to_numpy(), question=q, comparison=f"gain at {at}", metric=m,
                            baseline=base, unit="fraction", rows=sub)
                if "rel_improvement_best" in sub.columns and float(eps) != float(top_eps):
                    diffs = seed_diff(per_seed(sub, "rel_improvement_best", seed),
                                      per_seed(top, "rel_improvement_best", seed))
                    row[f"{LARGEST}.verdict"] = rec.verdict(
                        diffs, question=BUDGET,
                        comparison=f"gain at {at} vs epsilon={fmt_value(top_eps)}",
                        metric="rel_improvement_best", baseline="largest epsilon", unit="fraction",
                        rows=pd.concat([sub, top]))
            out.append(row)
    table = pd.DataFrame(out)
    if table.empty:
        return table
    table[EPSILON] = pd.to_numeric(table[EPSILON], errors="coerce")
    rank = table[METHOD].map(method_rank) if METHOD in table.columns else 0
    return (table.assign(_rank=rank).sort_values([k for k in (KIND,) if k in table.columns] + ["_rank", EPSILON],
                                                 kind="stable").drop(columns="_rank").reset_index(drop=True))


def saturation(curve: pd.DataFrame, metric: str) -> tuple[float, float, float] | None:
    """Descriptive only (no finding uses it): (M, epsilon of M, the smallest epsilon whose mean is at
    least SATURATED (90%) of M) of one method's curve of means; None without values, NaN when M <= 0."""
    c = curve.dropna(subset=[f"{metric}.mean"]).sort_values(EPSILON)
    if c.empty:
        return None
    means = c[f"{metric}.mean"].to_numpy(dtype=float)
    eps = c[EPSILON].to_numpy(dtype=float)
    top = int(np.argmax(means))
    if means[top] <= 0:
        return float(means[top]), float(eps[top]), float("nan")
    first = int(np.argmax(means >= SATURATED * means[top]))
    return float(means[top]), float(eps[top]), float(eps[first])


def _stat(row: pd.Series, metric: str) -> str:
    return fmt_mean_std(row[f"{metric}.mean"], row[f"{metric}.std"], int(row[f"{metric}.n"]), signed=True,
                        note=row.get(f"{metric}.note", ""))


def sign_text(curve: pd.DataFrame, metric: str) -> str:
    """Where ``metric`` is above / below 0 per epsilon, from its records (decided with the other
    comparisons of their question); each epsilon with its interval and n."""
    col = f"{metric}.verdict"
    if col not in curve.columns:
        return ""
    names = {"higher": "above 0", "lower": "below 0", "equivalent": "equivalent to 0 (within the margin)",
             "undecided": "undecided", "identical": "identical to 0 in every seed", "no verdict": "no verdict (n < 2)"}
    groups: dict[str, list[str]] = {}
    for eps, v in zip(curve[EPSILON], curve[col]):
        if v is None or (isinstance(v, float) and np.isnan(v)):
            continue
        groups.setdefault(v.decision, []).append(
            f"{fmt_value(eps)}" + (f" ({v.numbers()})" if v.decision != "no verdict" else ""))
    words = [f"{names[d]} at epsilon {', '.join(groups[d])}" for d in names if d in groups]
    return " (" + "; ".join(words) + ")" if words else ""


def binds_text(curve: pd.DataFrame) -> str:
    """Where the budget binds, from the records of the gain at each epsilon against the gain at the
    largest: 'binds at epsilon = e' where the record is lower, 'saturated at e' where it is
    equivalent, the others undecided; each with its interval and n."""
    col = f"{LARGEST}.verdict"
    if col not in curve.columns:
        return ""
    top = fmt_value(curve[EPSILON].max())
    names = {"lower": "the budget binds at epsilon", "equivalent": "saturated at epsilon",
             "higher": "a larger gain than at the largest epsilon at epsilon",
             "identical": "the same gain as at the largest epsilon in every seed at epsilon",
             "undecided": "undecided at epsilon", "no verdict": "no verdict (n < 2) at epsilon"}
    groups: dict[str, list[str]] = {}
    for eps, v in zip(curve[EPSILON], curve[col]):
        if v is None or (isinstance(v, float) and np.isnan(v)):
            continue
        groups.setdefault(v.decision, []).append(
            f"{fmt_value(eps)}" + (f" ({v.numbers()})" if v.decision != "no verdict" else ""))
    words = [f"{names[d]} {', '.join(groups[d])}" for d in names if d in groups]
    return f"; gain at each epsilon against the gain at epsilon={top}, paired on seed: " + "; ".join(words) if words else ""


def findings(table: pd.DataFrame) -> list[str]:
    """Per (kind, method), for the batch and the held-out improvement: the ends of the curve and
    their records against 0; for the batch, where the budget binds (:func:`binds_text`); single-step
    STE by its gain from the start (no comparison)."""
    if table.empty:
        return []
    lines = []
    by = [k for k in (KIND, METHOD) if k in table.columns]
    for values, curve in iter_groups(table, by):
        who = ", ".join(fmt_value(v) for v in values) or "all trials"
        curve = curve.sort_values(EPSILON)
        single = METHOD in by and values[by.index(METHOD)] == SINGLE_STE
        metrics = [("gain_from_start", "batch")] if single else [
            (m, where) for m, where in CURVES if f"{m}.mean" in curve.columns]
        parts = []
        for metric, where in metrics:
            if curve[f"{metric}.mean"].notna().sum() == 0:
                continue
            lo, hi = curve.iloc[0], curve.iloc[-1]
            text = (f"{metric} ({where}) {_stat(lo, metric)} at epsilon={fmt_value(lo[EPSILON])} → "
                    f"{_stat(hi, metric)} at epsilon={fmt_value(hi[EPSILON])}")
            if not single:
                text += sign_text(curve, metric)
                if metric == "rel_improvement_best":
                    text += binds_text(curve)
            parts.append(text)
        if parts:
            lines.append(f"Budget curve ({who}): " + "; ".join(parts) + ".")
    return lines


def plot(table: pd.DataFrame, path: Path) -> Path | None:
    """Two panels (probe batch, held-out batch): mean relative improvement over single-step STE
    against epsilon (log x) ± 1 std over seeds, one line per (kind, method), FP in red and binary in
    blue tones; reach_frac on a second y axis (dashed; one line per binary kind, since its reach does
    not depend on the method)."""
    if table.empty or METHOD not in table.columns:
        return None
    table = table[table[METHOD] != SINGLE_STE]
    panels = [(m, where) for m, where in CURVES if f"{m}.mean" in table.columns and table[f"{m}.n"].sum() > 0]
    if not panels:
        return None
    by = [k for k in (KIND, METHOD) if k in table.columns]
    groups = sorted(iter_groups(table, by), key=lambda vg: (str(vg[0][0]), method_rank(vg[0][-1])))
    colors = group_colors([str(v[0]) if KIND in by else "" for v, _ in groups])
    fig, axes = new_figure(len(panels))
    fig.subplots_adjust(wspace=0.45)
    for ax, (metric, where) in zip(axes, panels):
        twin = ax.twinx()
        drawn_reach = set()
        for (values, g), color in zip(groups, colors):
            g = g.sort_values(EPSILON)
            label = " ".join(fmt_value(v) for v in values)
            ok = g[f"{metric}.n"] > 0
            ax.errorbar(g.loc[ok, EPSILON], g.loc[ok, f"{metric}.mean"], yerr=g.loc[ok, f"{metric}.std"].fillna(0.0),
                        color=color, marker="o", ms=4, capsize=3, label=label)
            kind = str(values[0]) if KIND in by else ""
            if "reach_frac.mean" in g.columns and (kind != "binary" or kind not in drawn_reach):
                drawn_reach.add(kind)
                twin.plot(g[EPSILON], g["reach_frac.mean"], color=color, ls="--", lw=1.0,
                          label=f"reach_frac {kind if kind == 'binary' else label}")
        ax.set_xscale("log")
        ax.axhline(0.0, color="black", lw=0.8)
        ax.set_xlabel("epsilon (L-inf box radius)")
        ax.set_ylabel("(L_single-step STE - L) / L_single-step STE")
        twin.set_ylabel("reach_frac (dashed)", fontsize="small")
        ax.set_title(f"relative improvement on the {where} (mean ± std over seeds)", fontsize="medium")
        for h, lab in zip(*twin.get_legend_handles_labels()):
            ax.plot([], [], color=h.get_color(), ls="--", lw=1.0, label=lab)
    # the legend clears the last panel's second y axis (save_figure would put it over its tick labels)
    axes[-1].legend(*axes[-1].get_legend_handles_labels(), title="kind, method", fontsize="small",
                    title_fontsize="small", loc="upper left", bbox_to_anchor=(1.2, 1.0))
    fig.savefig(path, dpi=110, bbox_inches="tight")
    return path
