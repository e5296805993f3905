"""The budget curve: each method's gain against the box radius epsilon (sweeps whose
``cfg.budget.epsilon`` takes several values), on the probe batch and on the held-out batch.

Per (model kind, method, epsilon), over seeds (each seed's values averaged over the other keys'
settings first): ``rel_improvement_best`` (batch) and ``rel_improvement_heldout`` (held-out) over the
single-step STE, ``gain_from_start`` = (L_start - L_best) / L_start on the batch, and ``reach_frac``.

**Where the budget stops binding** (the rule the findings apply to each method's curve of mean
relative improvement): with M the largest mean over epsilon, the curve is *saturated* from the
smallest epsilon whose mean is at least ``SATURATED`` (90%) of M; below it the budget binds (a larger
box still buys gain). With M at the grid's smallest epsilon a larger box buys nothing; with M <= 0
the method gains nothing at any epsilon.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from lowbit_sweeps.analysis.common.format import fmt, fmt_mean_std, fmt_value
from lowbit_sweeps.analysis.common.groups import KIND, iter_groups, seed_column
from lowbit_sweeps.analysis.common.plotting import group_colors, new_figure
from lowbit_sweeps.analysis.common.stats import holm, over_seeds
from lowbit_sweeps.analysis.probe.groups import METHOD
from lowbit_sweeps.analysis.probe.methods import SINGLE_STE, method_rank

EPSILON = "cfg.budget.epsilon"
SATURATED = 0.9
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


def curve_table(final_ws: pd.DataFrame) -> pd.DataFrame:
    """Per (kind, method, epsilon): ``<metric>.mean/.std/.n/.note/.verdict`` of CURVE_METRICS over seeds."""
    rows = with_gain(final_ws)
    by = [k for k in (KIND, METHOD) if k in rows.columns] + [EPSILON]
    seed = seed_column(rows)
    out = []
    for values, sub in iter_groups(rows, by):
        row = dict(zip(by, values))
        for m in CURVE_METRICS:
            if m in sub.columns:
                row.update(over_seeds(sub, m, seed).columns(m))
        out.append(row)
    table = pd.DataFrame(out)
    if table.empty:
        return table
    table[EPSILON] = pd.to_numeric(table[EPSILON], errors="coerce")
    rank = table[METHOD].map(method_rank) if METHOD in table.columns else 0
    return (table.assign(_rank=rank).sort_values([k for k in (KIND,) if k in table.columns] + ["_rank", EPSILON],
                                                 kind="stable").drop(columns="_rank").reset_index(drop=True))


def saturation(curve: pd.DataFrame, metric: str) -> tuple[float, float, float] | None:
    """(M, epsilon of M, epsilon from which the curve is saturated) of one method's curve (module
    docstring); None without values, NaN saturation when M <= 0."""
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
    """Where ``metric`` is above / below 0 by the verdict rule (per epsilon, over seeds): the K
    epsilons of one curve are one family, Holm-adjusted (:func:`analysis.common.stats.holm`); each
    epsilon with its interval and n."""
    verdicts = holm(list(curve[f"{metric}.verdict"]))
    signs = {1: [], -1: [], 0: [], None: []}
    for eps, v in zip(curve[EPSILON], verdicts):
        signs[v.sign].append(f"{fmt_value(eps)}" + (f" ({v.numbers()})" if v.sign is not None else ""))
    words = [f"{what} at epsilon {', '.join(signs[k])}" for k, what in
             ((1, "above 0"), (-1, "below 0"), (0, "95% interval contains 0 or no direction after Holm"),
              (None, "no verdict (n < 2)")) if signs[k]]
    k = sum(v.sign is not None for v in verdicts)
    return " (" + "; ".join(words) + (f"; Holm over K = {k} epsilons, family-wise α = 0.05" if k > 1 else "") + ")"


def findings(table: pd.DataFrame) -> list[str]:
    """Per (kind, method), for the batch and the held-out improvement: the ends of the curve, where it
    saturates and the reach fraction there; single-step STE by its gain from the start."""
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
            sat = saturation(curve, metric)
            if sat is None:
                continue
            lo, hi = curve.iloc[0], curve.iloc[-1]
            text = (f"{metric} ({where}) {_stat(lo, metric)} at epsilon={fmt_value(lo[EPSILON])} → "
                    f"{_stat(hi, metric)} at epsilon={fmt_value(hi[EPSILON])}")
            top, at, eps_sat = sat
            if np.isnan(eps_sat):
                text += f"; no gain at any epsilon (largest mean {fmt(top, True)})"
            elif at <= curve[EPSILON].min():
                text += (f"; largest at the smallest epsilon ({fmt(top, True)}): a larger box buys no gain on "
                         "this grid")
            else:
                reach = curve.loc[curve[EPSILON] == eps_sat, "reach_frac.mean"] if "reach_frac.mean" in curve else []
                reach_text = f", reach_frac {fmt(float(reach.iloc[0]))}" if len(reach) else ""
                binds = ("still rising at the largest epsilon: the budget binds over the whole grid"
                         if eps_sat >= curve[EPSILON].max() else f"the budget binds below epsilon={fmt_value(eps_sat)}")
                text += (f"; largest mean {fmt(top, True)} at epsilon={fmt_value(at)}, within {100 * SATURATED:.0f}% "
                         f"of it from epsilon={fmt_value(eps_sat)}{reach_text}: {binds}")
            if metric == "rel_improvement_heldout" and f"{metric}.verdict" in curve.columns:
                text += sign_text(curve, metric)
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
