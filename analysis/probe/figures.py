"""The probe report's figures: relative improvement vs step and vs noise, the estimator
comparison, the lr scan and the methods plot (helpers and colours: :mod:`analysis.common.plotting`).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from lowbit_sweeps.analysis.common.estimators import REFERENCE
from lowbit_sweeps.analysis.common.format import fmt_value, group_label
from lowbit_sweeps.analysis.common.groups import KIND, iter_groups, seed_column
from lowbit_sweeps.analysis.common.plotting import (MAX_PANELS, curve_over_seeds, group_colors, kind_of, legend_title, new_figure,
                                      panel_keys, save_figure, split_panels)
from lowbit_sweeps.analysis.probe.groups import BATCH, ESTIMATOR, METHOD, NOISE, method_family
from lowbit_sweeps.analysis.probe.methods import method_rank, ordered_methods

# What ``step`` counts for each method (cfg.method): the x-axis of a "vs step" panel.
METHOD_STEP_AXIS = {"ste": ("multi-step STE", "STE iteration"), "dg": ("DG / multi-step DG", "DG step"),
                    "cdg": ("CDG", "accepted coordinate moves"), "admm": ("ADMM", "ADMM iteration"),
                    "ga": ("genetic algorithm", "generation"), "es": ("sep-CMA-ES", "generation")}


# ---- 1. relative improvement vs step -----------------------------------------------------------

def step_panels(df: pd.DataFrame, keys: list[str]) -> tuple[list, list[str]]:
    """(title, sub-frame, x label) per panel and the line keys. With a method label, one panel per
    cfg.method present (step means STE iterations, DG steps or CDG moves: the axes differ)."""
    if METHOD in df.columns:
        fam = method_family(df)
        present = [f for f in (*METHOD_STEP_AXIS, *sorted(set(fam) - set(METHOD_STEP_AXIS))) if (fam == f).any()]
        panels = []
        for f in present[:MAX_PANELS]:
            title, xlabel = METHOD_STEP_AXIS.get(f, (f, "step"))
            panels.append((title if len(present) > 1 else "", df[fam == f], xlabel))
        return panels, keys
    split = panel_keys(df, keys)
    return [(title, sub, "step") for title, sub in split_panels(df, split)], [k for k in keys if k not in split]


def plot_improvement_vs_step(df: pd.DataFrame, keys: list[str], path: Path) -> Path | None:
    """The seed's figure: rel_improvement against step, mean over seeds (line) ± 1 std (band),
    one line per configuration group, a zero line (above it: multi-step better). With several
    methods, one panel per method family, since ``step`` counts different things."""
    if "rel_improvement" not in df.columns or df["rel_improvement"].notna().sum() == 0:
        return None
    panels, line_keys = step_panels(df, keys)
    fig, axes = new_figure(len(panels))
    for ax, (title, sub, xlabel) in zip(axes, panels):
        groups = list(iter_groups(sub, line_keys))
        if METHOD in line_keys:  # methods in their order (DG S=2 before S=16), so shades follow S
            groups.sort(key=lambda vg: tuple(method_rank(v) if k == METHOD else (str(v),)
                                             for k, v in zip(line_keys, vg[0])))
        colors = group_colors([kind_of(line_keys, v, g) for v, g in groups])
        for (values, g), color in zip(groups, colors):
            curve = curve_over_seeds(g, "step", "rel_improvement")
            if curve.empty:
                continue
            ax.plot(curve["step"], curve["mean"], color=color, label=group_label(line_keys, values))
            band = curve["std"].fillna(0.0)
            ax.fill_between(curve["step"], curve["mean"] - band, curve["mean"] + band, color=color, alpha=0.2, lw=0)
        ax.axhline(0.0, color="black", lw=0.8)
        ax.set_xlabel(xlabel)
        if METHOD in df.columns:
            ax.set_ylabel("(L_single-step STE - L) / L_single-step STE")
            ax.set_title(title or "relative improvement over single-step STE (mean ± std over seeds)",
                         fontsize="medium")
        else:
            ax.set_ylabel("(L_single - L_multi) / L_single")
            ax.set_title(title or "relative improvement of multi-step over single-step (mean ± std over seeds)",
                         fontsize="medium")
    return save_figure(fig, axes, path, legend_title(line_keys))


# ---- 2. relative improvement vs noise ----------------------------------------------------------

def plot_improvement_vs_noise(final: pd.DataFrame, keys: list[str], path: Path) -> Path | None:
    """Final rel_improvement_best against the random-start noise amplitude, mean ± std over seeds,
    one line per group of the other varying keys; drawn only when the noise takes several values."""
    if NOISE not in final.columns or final[NOISE].nunique() < 2 or "rel_improvement_best" not in final.columns:
        return None
    line_keys = [k for k in keys if k != NOISE]
    fig, axes = new_figure(1)
    ax = axes[0]
    groups = list(iter_groups(final, line_keys))
    colors = group_colors([kind_of(line_keys, v, g) for v, g in groups])
    for (values, g), color in zip(groups, colors):
        curve = curve_over_seeds(g, NOISE, "rel_improvement_best")
        if curve.empty:
            continue
        ax.errorbar(curve[NOISE], curve["mean"], yerr=curve["std"].fillna(0.0), color=color, marker="o",
                    capsize=3, label=group_label(line_keys, values))
    ax.axhline(0.0, color="black", lw=0.8)
    ax.set_xlabel("noise amplitude a of the random start")
    ax.set_ylabel("final rel_improvement_best")
    ax.set_title("relative improvement vs noise (mean ± std over seeds)", fontsize="medium")
    return save_figure(fig, axes, path, legend_title(line_keys))


# ---- 3. estimator comparison -------------------------------------------------------------------

def plot_estimator_comparison(table: pd.DataFrame, path: Path) -> Path | None:
    """Two panels over estimator settings, one series per batch size: the paired relative
    difference of single_best_loss against identity, and rel_improvement_best (mean ± std)."""
    if table.empty or table[ESTIMATOR].nunique() < 2:
        return None
    labels = list(dict.fromkeys(table[ESTIMATOR]))
    series = list(iter_groups(table, [BATCH] if BATCH in table.columns else []))
    colors = group_colors(["binary"] * len(series))
    fig, axes = new_figure(2)
    panels = (("rel_diff.single_best_loss", "(L_est - L_identity) / L_identity, single-step best loss", 100.0),
              ("rel_improvement_best", "final rel_improvement_best", 1.0))
    for ax, (stat, ylabel, scale) in zip(axes, panels):
        for i, ((values, sub), color) in enumerate(zip(series, colors)):
            x = np.array([labels.index(e) for e in sub[ESTIMATOR]], dtype=float)
            x += (i - (len(series) - 1) / 2) * 0.08
            label = f"batch_size={fmt_value(values[0])}" if values else "binary"
            mean = sub[f"{stat}.mean"].copy()
            if stat.startswith("rel_diff"):
                mean[sub[ESTIMATOR] == REFERENCE] = 0.0  # the reference, by definition
            ax.errorbar(x, mean * scale, yerr=sub[f"{stat}.std"].fillna(0.0) * scale,
                        fmt="o", color=color, capsize=3, label=label)
        ax.axhline(0.0, color="black", lw=0.8)
        ax.set_xticks(range(len(labels)), labels, rotation=20, ha="right")
        ax.set_ylabel(ylabel + (" [%]" if scale == 100.0 else ""), fontsize="small")
    axes[0].set_title("vSTE vs nSTE (paired on seed and other keys)", fontsize="medium")
    axes[1].set_title("multi-step gain per estimator", fontsize="medium")
    return save_figure(fig, axes, path, "")


# ---- 4. lr scan --------------------------------------------------------------------------------

def scan_trials(final: pd.DataFrame, keys: list[str]) -> list[tuple[str, str, pd.Series]]:
    """(kind, label, final row) for one seed (the smallest) per (model kind, estimator, batch size
    where it varies) group, among final rows that carry a scan curve."""
    if "scan_lr" not in final.columns or "scan_loss" not in final.columns:
        return []
    has_scan = final["scan_lr"].map(lambda v: v is not None and not isinstance(v, float) and len(v) > 0)
    rows = final[has_scan]
    by = [k for k in (KIND, ESTIMATOR, BATCH) if k in rows.columns and (k in keys or k == KIND)]
    seed = seed_column(rows)
    out = []
    for values, g in iter_groups(rows, by):
        row = g.sort_values(seed, kind="stable").iloc[0] if seed else g.iloc[0]
        label = group_label(by, values) + (f" seed={fmt_value(row[seed])}" if seed else "")
        out.append((kind_of(by, values, g), label, row))
    return out


def plot_lr_scan(final: pd.DataFrame, keys: list[str], path: Path) -> Path | None:
    """Single-step scan curves (loss against lr, log x) for one seed per group; the best lr marked."""
    trials = scan_trials(final, keys)
    if not trials:
        return None
    fig, axes = new_figure(1)
    ax = axes[0]
    colors = group_colors([k for k, _, _ in trials])
    for (_, label, row), color in zip(trials, colors):
        lr = np.asarray(row["scan_lr"], dtype=float)
        loss = np.asarray(row["scan_loss"], dtype=float)
        ax.plot(lr, loss, color=color, lw=1.0, label=label)
        if pd.notna(row.get("single_best_lr")) and pd.notna(row.get("single_best_loss")):
            ax.plot([row["single_best_lr"]], [row["single_best_loss"]], marker="x", color=color, ms=8)
    if all((np.asarray(r["scan_lr"], dtype=float) > 0).all() for _, _, r in trials):
        ax.set_xscale("log")
    ax.set_xlabel("lr (step along the normalized gradient)")
    ax.set_ylabel("loss")
    ax.set_title("single-step STE lr scan (x: best lr)", fontsize="medium")
    return save_figure(fig, axes, path, "")


# ---- 5. methods (STE, DG, CDG) -----------------------------------------------------------------

def plot_methods(table: pd.DataFrame, path: Path) -> Path | None:
    """One row of two panels per model kind: final best_loss and coords_moved per method (mean ± std
    over seeds), methods in their order on x, one series per group of the other keys (FP red, binary
    blue tones)."""
    if table.empty or METHOD not in table.columns or table[METHOD].nunique() < 2:
        return None
    methods = ordered_methods(table[METHOD])
    kinds = [v[0] for v, _ in iter_groups(table, [KIND])] if KIND in table.columns else [None]
    rest = [k for k in table.columns if k not in (KIND, METHOD) and not k.endswith((".mean", ".std", ".n"))]
    fig = Figure(figsize=(max(6.4, 0.75 * len(methods) + 2.5) * 2, 4.4 * len(kinds)))
    FigureCanvasAgg(fig)
    axes = []
    for r, kind in enumerate(kinds):
        sub = table if kind is None else table[table[KIND] == kind]
        series = list(iter_groups(sub, rest))
        colors = group_colors([str(kind or "")] * len(series))
        row_axes = [fig.add_subplot(len(kinds), 2, 2 * r + 1), fig.add_subplot(len(kinds), 2, 2 * r + 2)]
        for ax, metric, ylabel in zip(row_axes, ("best_loss", "coords_moved"),
                                      ("final best_loss (lower is better)", "coords_moved (first-layer weights changed)")):
            for i, ((values, g), color) in enumerate(zip(series, colors)):
                if f"{metric}.mean" not in g.columns:
                    continue
                g = g[g[f"{metric}.n"] > 0]
                x = np.array([methods.index(m) for m in g[METHOD]], dtype=float) + (i - (len(series) - 1) / 2) * 0.1
                label = " ".join(filter(None, [f"kind={kind}" if kind is not None else "",
                                               group_label(rest, values) if rest else ""]))
                ax.errorbar(x, g[f"{metric}.mean"], yerr=g[f"{metric}.std"].fillna(0.0), fmt="o", color=color,
                            capsize=3, label=label or "all trials")
            if metric == "coords_moved":
                vals = pd.to_numeric(sub.get("coords_moved.mean", pd.Series(dtype=float)), errors="coerce")
                pos = vals[vals > 0]
                if len(pos) and pos.max() > 100 * pos.min():
                    ax.set_yscale("log")
            ax.set_xticks(range(len(methods)), methods, rotation=25, ha="right", fontsize="small")
            ax.set_xlim(-0.5, len(methods) - 0.5)
            ax.set_ylabel(ylabel, fontsize="small")
            ax.set_title(f"{kind}: {metric}" if kind is not None else metric, fontsize="medium")
        axes += row_axes
    fig.subplots_adjust(hspace=0.6)
    return save_figure(fig, axes, path, "")
