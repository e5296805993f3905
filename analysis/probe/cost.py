"""Methods at equal cost: best loss against forward-pass equivalents, and each method against
multi-step STE as the probed layer grows (sweeps with ``cfg.method`` whose rows carry ``fwd_equiv``).

``fwd_equiv = loss_evals + 2 * grad_evals`` counts a method's work on the probe batch so far in
forward-pass equivalents (a backward pass costs two forward passes; lowbit_core/probes/evals.py).
A trial's *best loss at budget E* is the best_loss of its last row with fwd_equiv <= E (best_loss
never increases); single-step STE is one point, its scan's cost (``single_fwd_equiv``) and best loss.
Under a cap (``cfg.budget.fwd_equiv_per_weight``) every method had
the same allowance, so final rows compare at equal cost; a method that stopped earlier (DG after its
S steps) keeps its final best, and the table shows the evaluations each used.

The layer's size is ``layer_weights`` (the probed layer's number of weights, a metric of every row).
Per model kind and layer size, each method's final best_loss is compared with each multi-step STE
present (every optimizer; none is picked), ``(L_m - L_STE) / L_STE`` paired on seed (each seed's mean
over other keys): records of question discrete-methods, baseline the multi-step STE label
(:class:`analysis.common.verdicts.Recorder`). "As the layer grows" compares that ratio at the largest
and the smallest layer, paired on seed (a record of the other comparisons).
"""
from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib import colormaps

from lowbit_sweeps.analysis.common.format import fmt_mean_std, fmt_value, group_label, markdown_table
from lowbit_sweeps.analysis.common.groups import KIND, iter_groups, paired_rows, seed_column
from lowbit_sweeps.analysis.common.plotting import new_figure, save_figure
from lowbit_sweeps.analysis.common.stats import holm_note, mean_std_n, over_seeds, signed_percent
from lowbit_sweeps.analysis.probe.groups import METHOD
from lowbit_sweeps.analysis.probe.methods import SINGLE_STE, arm_rows, is_ste, ordered_methods
from lowbit_sweeps.analysis.probe.records import DISCRETE, OTHER, REL_LOSS, recorder

EVALS = "fwd_equiv"
SINGLE_EVALS = "single_fwd_equiv"
LAYER = "layer_weights"
GRID_POINTS = 60


def applies(rows: pd.DataFrame) -> bool:
    return METHOD in rows.columns and EVALS in rows.columns and pd.to_numeric(rows[EVALS], errors="coerce").notna().any()


def best_at(trial: pd.DataFrame, grid: np.ndarray) -> np.ndarray:
    """The trial's best loss at each budget of ``grid`` (NaN below its first row's fwd_equiv)."""
    t = trial.dropna(subset=[EVALS, "best_loss"]).sort_values(EVALS, kind="stable")
    evals = t[EVALS].to_numpy(dtype=float)
    best = np.minimum.accumulate(t["best_loss"].to_numpy(dtype=float))
    idx = np.searchsorted(evals, grid, side="right") - 1
    return np.where(idx >= 0, best[np.clip(idx, 0, None)], np.nan) if len(best) else np.full(len(grid), np.nan)


def panel_groups(rows: pd.DataFrame, keys: list[str]) -> list[tuple[str, pd.DataFrame]]:
    """(title, rows) per panel: one per group of the keys other than the method; by model kind, then
    by the layer's size where the rows carry it."""
    by = [k for k in keys if k != METHOD]
    groups = [(values, group_label(by, values), sub) for values, sub in iter_groups(rows, by)]
    if LAYER in rows.columns:
        kind = by.index(KIND) if KIND in by else None
        groups.sort(key=lambda g: (str(g[0][kind]) if kind is not None else "",
                                   float(pd.to_numeric(g[2][LAYER], errors="coerce").mean())))
    return [(title, sub) for _, title, sub in groups]


def plot_loss_vs_evals(rows: pd.DataFrame, final: pd.DataFrame, keys: list[str], path: Path) -> Path | None:
    """Best loss against forward-pass equivalents (log x), every method on one figure: one panel per group of
    the other keys, one line per method (mean over seeds of the best loss at each budget, ± 1 std),
    single-step STE as a marker at its scan's cost."""
    if not applies(rows):
        return None
    panels = panel_groups(rows, keys)
    methods = ordered_methods(rows[METHOD])
    palette = colormaps["tab10"]
    color = {m: palette(i % 10) for i, m in enumerate([SINGLE_STE] + methods)}
    fig, axes = new_figure(len(panels))
    for ax, (title, sub) in zip(axes, panels):
        top = float(pd.to_numeric(sub[EVALS], errors="coerce").max())
        grid = np.unique(np.round(np.geomspace(1, max(top, 1.0), GRID_POINTS)))
        for m in methods:
            trials = [best_at(g, grid) for _, g in sub[sub[METHOD] == m].groupby("trial_key")]
            if not trials:
                continue
            values = np.vstack(trials)
            ok = np.isfinite(values).sum(0) > 0
            with np.errstate(invalid="ignore", divide="ignore"), warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)  # budgets below some seeds' first row
                mean = np.nanmean(values[:, ok], axis=0)
                std = np.nanstd(values[:, ok], axis=0, ddof=1) if len(trials) > 1 else np.zeros(int(ok.sum()))
            ax.plot(grid[ok], mean, color=color[m], label=m)
            ax.fill_between(grid[ok], mean - np.nan_to_num(std), mean + np.nan_to_num(std), color=color[m],
                            alpha=0.15, lw=0)
        fin = final[final["trial_key"].isin(set(sub["trial_key"]))]
        if {SINGLE_EVALS, "single_best_loss"} <= set(fin.columns):
            x, y = mean_std_n(fin[SINGLE_EVALS])[0], mean_std_n(fin["single_best_loss"])[0]
            if np.isfinite(x) and np.isfinite(y):
                ax.plot([x], [y], marker="*", ms=12, ls="none", color=color[SINGLE_STE], label=SINGLE_STE)
        ax.set_xscale("log")
        ax.set_xlabel("forward-pass equivalents on the probe batch (backward = 2)")
        ax.set_ylabel("best loss so far (mean ± std over seeds)")
        ax.set_title(title, fontsize="medium")
    return save_figure(fig, axes, path, "method")


# ---- scaling with the layer --------------------------------------------------------------------

def size_key(final_ws: pd.DataFrame) -> str | None:
    """``layer_weights`` where it varies (filled in for the single-step rows from their trials)."""
    return LAYER if LAYER in final_ws.columns and final_ws[LAYER].nunique() > 1 else None


def per_seed_ratio(sub: pd.DataFrame, a: str, b: str, seed: str | None) -> pd.Series:
    """(L_a - L_b) / L_b of final best_loss, paired on seed (and trial-level keys), mean per seed."""
    on = [seed] if seed else []
    pairs = paired_rows(sub, METHOD, a, b, on, "best_loss")
    pairs = pairs[pairs["reference_value"] != 0]
    ratio = (pairs["value"] - pairs["reference_value"]) / pairs["reference_value"]
    if not len(ratio):
        return pd.Series(dtype=float)
    return ratio.groupby(pairs[seed].astype(str) if seed else pd.Series(0, index=ratio.index)).mean()


def compared(m: str) -> bool:
    """Whether method ``m`` is compared with multi-step STE (every method but STE's own)."""
    return not is_ste(m) and m != SINGLE_STE


def scaling_table(final_ws: pd.DataFrame, rec=None) -> pd.DataFrame:
    """Per (kind, layer_weights, method): best_loss, fwd_equiv and rel_improvement_heldout over seeds,
    and ``vs_ste.verdicts``: {multi-step STE label: the record of (L_m - L_STE) / L_STE paired on seed}
    for every multi-step STE present (question discrete-methods); ``vs_ste.mean/.std/.n/.verdict/.ref``
    repeat the first reference's (n = 0 for the STE rows)."""
    size = size_key(final_ws)
    if size is None or METHOD not in final_ws.columns:
        return pd.DataFrame()
    rec = recorder(rec)
    seed = seed_column(final_ws)
    by = [k for k in (KIND,) if k in final_ws.columns] + [size]
    out = []
    for values, sub in iter_groups(final_ws, by):
        who = ", ".join(f"{size}={fmt_value(v)}" if k == size else fmt_value(v) for k, v in zip(by, values))
        refs = [r for r in ordered_methods(sub[METHOD]) if is_ste(r)]
        for m in ordered_methods(sub[METHOD]):
            g = sub[sub[METHOD] == m]
            row = {**dict(zip(by, values)), METHOD: m}
            for metric in ("best_loss", EVALS, "rel_improvement_heldout"):
                if metric in g.columns:
                    row.update(over_seeds(g, metric, seed).columns(metric))
            verdicts = {}
            if compared(m):
                for ref in refs:
                    ratio = per_seed_ratio(sub, m, ref, seed)
                    verdicts[ref] = rec.verdict(ratio.to_numpy(), question=DISCRETE, comparison=f"{m} vs {ref} ({who})",
                                                metric=REL_LOSS, baseline=ref, unit="fraction",
                                                rows=arm_rows(sub, (m, ref)))
            first = next(iter(verdicts.values()), None)
            row.update({"vs_ste.mean": first.mean if first else np.nan, "vs_ste.std": first.std if first else np.nan,
                        "vs_ste.n": first.n if first else 0, "vs_ste.verdict": first,
                        "vs_ste.ref": next(iter(verdicts), ""), "vs_ste.verdicts": verdicts})
            out.append(row)
    return pd.DataFrame(out)


def _verdict_word(v) -> str:
    return {"no verdict": "n < 2", "undecided": "≈ (undecided)", "equivalent": "equivalent",
            "identical": "identical"}.get(v.decision, v.decision)


def format_scaling(table: pd.DataFrame) -> list[str]:
    """One markdown table per model kind: rows = layer size, columns = methods, cells best_loss
    (and, below, the paired ratio to each multi-step STE with its record's decision)."""
    if table.empty:
        return []
    out = []
    kinds = list(iter_groups(table, [KIND])) if KIND in table.columns else [((None,), table)]
    for (kind,), sub in kinds:
        methods = ordered_methods(sub[METHOD])
        rows = []
        for size, g in sub.groupby(LAYER, sort=True):
            cells = [fmt_value(size)]
            for m in methods:
                r = g[g[METHOD] == m]
                if r.empty:
                    cells.append("–")
                    continue
                r = r.iloc[0]
                text = fmt_mean_std(r["best_loss.mean"], r["best_loss.std"], int(r["best_loss.n"]))
                several = len(r["vs_ste.verdicts"]) > 1
                for ref, v in r["vs_ste.verdicts"].items():
                    if v.n > 0:
                        text += (f"; vs {ref if several else 'STE'} {v.numbers(signed_percent, '%')}: "
                                 f"{_verdict_word(v)}")
                if f"{EVALS}.mean" in r and pd.notna(r[f"{EVALS}.mean"]):
                    text += f"; {fmt_value(round(float(r[f'{EVALS}.mean'])))} fwd-equiv"
                cells.append(text)
            rows.append(cells)
        header = ["layer weights", *methods]
        verdicts = [v for d in sub["vs_ste.verdicts"] for v in d.values()]
        out += [f"**{fmt_value(kind)}**" if kind is not None else "", "", markdown_table(header, rows), "",
                holm_note(verdicts), ""]
    return out


def scaling_findings(table: pd.DataFrame, final_ws: pd.DataFrame, rec=None) -> list[str]:
    """Per kind, method other than STE and multi-step STE reference: the method's record against it
    at each layer size, and the record of how the ratio changes from the smallest to the largest layer
    (paired on seed)."""
    if table.empty:
        return []
    rec = recorder(rec)
    seed = seed_column(final_ws)
    lines = []
    kinds = list(iter_groups(table, [KIND])) if KIND in table.columns else [((None,), table)]
    for (kind,), sub in kinds:
        who = fmt_value(kind) if kind is not None else "all trials"
        sizes = sorted(sub[LAYER].unique())
        refs = [r for r in ordered_methods(sub[METHOD]) if is_ste(r)]
        for m in ordered_methods(sub[METHOD]):
            if not compared(m):
                continue
            g = sub[sub[METHOD] == m].sort_values(LAYER)
            for ref in refs:
                at = [(r[LAYER], r["vs_ste.verdicts"][ref]) for _, r in g.iterrows() if ref in r["vs_ste.verdicts"]]
                at = [(size, v) for size, v in at if v.n > 0]
                if not at:
                    continue
                parts = [f"{fmt_value(size)}: {v.text('higher', 'lower', signed_percent, '%')}" for size, v in at]
                trend = ""
                if len(sizes) > 1:
                    rows_k = final_ws if kind is None else final_ws[final_ws[KIND] == kind]
                    lo, hi = (rows_k[rows_k[LAYER] == s] for s in (sizes[0], sizes[-1]))
                    r_lo, r_hi = per_seed_ratio(lo, m, ref, seed), per_seed_ratio(hi, m, ref, seed)
                    both = r_hi.index.intersection(r_lo.index)
                    arms = pd.concat([arm_rows(lo, (m, ref)), arm_rows(hi, (m, ref))])
                    v = rec.verdict((r_hi[both] - r_lo[both]).to_numpy(), question=OTHER,
                                    comparison=f"{m} vs {ref}: {LAYER}={fmt_value(sizes[-1])} vs {fmt_value(sizes[0])} ({who})",
                                    metric=f"change of {REL_LOSS}", baseline=f"{LAYER}={fmt_value(sizes[0])}",
                                    unit="fraction", rows=arms)
                    trend = (f"; from {fmt_value(sizes[0])} to {fmt_value(sizes[-1])} weights the ratio changes by "
                             + v.text(f"{m} falls behind as the layer grows", f"{m} gains on STE as the layer grows",
                                      signed_percent, " pp"))
                lines.append(f"Equal compute in forward-pass equivalents ({who}): (L_{m} - L_STE)/L_STE against {ref}, "
                             f"final best_loss, paired on seed, by layer weights — " + "; ".join(parts) + trend + ".")
    return lines
