"""The training report's figures: accuracy / loss / DSQ-alpha curves per group over epochs, the
final-accuracy dot plot and the accuracy-vs-cost fronts, drawn with matplotlib's Agg canvas (no
display, no pyplot state).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib import colormaps
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from lowbit_sweeps.analysis.common.format import fmt_value, is_null
from lowbit_sweeps.analysis.common.fronts import plot_fronts
from lowbit_sweeps.analysis.common.groups import iter_groups, rows_matching
from lowbit_sweeps.analysis.common.plotting import curve_over_seeds, group_colors, kind_of, panel_keys
from lowbit_sweeps.analysis.train.cost import BITS, FRONT_AXES, series_key
from lowbit_sweeps.analysis.train.groups import ACC, LOSS, QUANTIZER, epoch_column, label_of, names_of, ok_trials


# ---- figures -----------------------------------------------------------------------------------

def kind_for(values, keys, group_trials: pd.DataFrame) -> str:
    """The model kind of a group (FP red, binary blue, k-bit green tones)."""
    kind = kind_of(keys, values)
    if kind == "" and "model_kind" in group_trials.columns and group_trials["model_kind"].nunique() == 1:
        kind = str(group_trials["model_kind"].iloc[0])
    if kind == "" and QUANTIZER in keys:
        lab = str(values[keys.index(QUANTIZER)])
        kind = "fp" if lab == "FP" else ("binary" if lab.startswith("binary") else "kbit")
    return kind


def line_colors(kinds: list[str]) -> list:
    """Colours for groups of the given model kinds: the kind's colour family (FP red, binary blue,
    k-bit green) where kinds differ; a qualitative palette where all share one kind (shades of one
    colour would be hard to tell apart, and the kind carries no information then)."""
    if len(set(kinds)) > 1:
        return group_colors(kinds)
    cmap = colormaps["tab10" if len(kinds) <= 10 else "tab20"]
    return [cmap(i % cmap.N) for i in range(len(kinds))]


def plot_curves(rows: pd.DataFrame, trials: pd.DataFrame, keys: list[str], path: Path) -> Path | None:
    """Per panel (split by the keys with fewest values when there are many lines) and metric (test_acc,
    train_loss, dsq_alpha where present): mean over the group's finished trials per epoch, ± std band;
    dashed on the FP pretraining epochs; triangles on epochs that began with a weight perturbation;
    excluded trials as thin dotted lines."""
    ep = epoch_column(rows)
    metrics = [m for m in (ACC, LOSS, "dsq_alpha") if m in rows.columns and rows[m].notna().any()]
    if not metrics or trials.empty:
        return None
    split = panel_keys(trials, keys)
    line_keys = [k for k in keys if k not in split]
    panels = list(iter_groups(trials, split)) if split else [((), trials)]
    n_rows, n_cols = len(panels), len(metrics)
    fig = Figure(figsize=(5.2 * n_cols, 3.8 * n_rows))
    FigureCanvasAgg(fig)
    axes = []
    for r, (pvals, ptrials) in enumerate(panels):
        groups = list(iter_groups(ptrials, line_keys))
        colors = line_colors([kind_for(v, line_keys, g) for v, g in groups])
        for c, metric in enumerate(metrics):
            ax = fig.add_subplot(n_rows, n_cols, r * n_cols + c + 1)
            axes.append(ax)
            for (values, g), color in zip(groups, colors):
                label = label_of(line_keys, values)
                good = rows[rows["trial_key"].isin(g.loc[g["outcome"] == "ok", "trial_key"])]
                curve = curve_over_seeds(good, ep, metric)
                if len(curve):
                    x, y = curve[ep].to_numpy(float), curve["mean"].to_numpy(float)
                    band = curve["std"].fillna(0.0).to_numpy(float)
                    pre = good.groupby(ep)["phase"].agg(lambda s: (s.astype(str) == "pretrain").all()) \
                        if "phase" in good.columns else pd.Series(False, index=curve[ep])
                    pre = pre.reindex(curve[ep]).fillna(False).to_numpy(bool)
                    if pre.any() and (~pre).any():
                        cut = int(np.argmax(~pre))  # first quantized epoch
                        ax.plot(x[:cut + 1], y[:cut + 1], color=color, ls="--")
                        ax.plot(x[cut:], y[cut:], color=color, label=label)
                    else:
                        ax.plot(x, y, color=color, ls="--" if pre.all() else "-", label=label)
                    ax.fill_between(x, y - band, y + band, color=color, alpha=0.18, lw=0)
                    if metric == ACC and "perturbed" in good.columns:
                        kicked = good.loc[pd.to_numeric(good["perturbed"], errors="coerce") > 0, ep].unique()
                        at = np.isin(x, kicked)
                        if at.any():
                            ax.plot(x[at], y[at], ls="", marker="v", ms=5, color=color)
                for key in g.loc[g["outcome"] != "ok", "trial_key"]:
                    t = rows[rows["trial_key"] == key].sort_values(ep)
                    ax.plot(t[ep], pd.to_numeric(t[metric], errors="coerce"), color=color, ls=":", lw=1.0)
                    fin = t[np.isfinite(pd.to_numeric(t[metric], errors="coerce"))]
                    if len(fin):
                        ax.plot(fin[ep].iloc[-1:], pd.to_numeric(fin[metric]).iloc[-1:], marker="x", color=color)
            ax.set_xlabel("epoch")
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            mixed = "cfg.train.mixup_alpha" in rows.columns and (
                pd.to_numeric(rows["cfg.train.mixup_alpha"], errors="coerce") > 0).any()
            ax.set_ylabel({ACC: "test accuracy", LOSS: "train loss" + (" (mixup: on mixed batches)" if mixed else ""),
                           "dsq_alpha": "DSQ alpha (mean over layers)"}.get(metric, metric), fontsize="small")
            if metric == ACC:
                ax.set_ylim(0, 1.0)
            title = label_of(split, pvals) if split else ""
            ax.set_title(" ".join(filter(None, [title, metric])), fontsize="medium")
    handles, labels = [], []
    for ax in axes:
        for h, lab in zip(*ax.get_legend_handles_labels()):
            if lab not in labels:
                handles.append(h)
                labels.append(lab)
    notes = ["lines: mean over finished seeds; band: ± 1 std"]
    if "phase" in rows.columns and (rows["phase"].astype(str) == "pretrain").any():
        notes.append("dashed: FP pretraining epochs")
    if "perturbed" in rows.columns and (pd.to_numeric(rows["perturbed"], errors="coerce") > 0).any():
        notes.append("▼: epoch began with a weight perturbation")
    if (trials["outcome"] != "ok").any():
        notes.append("dotted (x at the last finite point): excluded trials")
    fig.suptitle("; ".join(notes), fontsize="small", y=1.0)
    axes[n_cols - 1].legend(handles, labels, title=", ".join(names_of(line_keys).values()) or None,
                            fontsize="small", title_fontsize="small", loc="upper left", bbox_to_anchor=(1.02, 1.0))
    fig.tight_layout()
    fig.savefig(path, dpi=110, bbox_inches="tight")
    return path


def plot_final(trials: pd.DataFrame, table: pd.DataFrame, keys: list[str], path: Path) -> Path | None:
    """Horizontal dot plot: one row per group (sorted as the table), mean ± std of the final
    test_acc over the finished seeds, and each seed's value as a small dot."""
    if table.empty or not (table["final_test_acc.n"] > 0).any():
        return None
    t = table[table["final_test_acc.n"] > 0].iloc[::-1].reset_index(drop=True)
    fig = Figure(figsize=(7.5, 1.2 + 0.42 * len(t)))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    good = ok_trials(trials)
    kinds = []
    for _, r in t.iterrows():
        values = tuple(r[k] for k in keys)
        kinds.append(kind_for(values, keys, rows_matching(trials, dict(zip(keys, values)))))
    colors = line_colors(kinds)
    for i, (_, r) in enumerate(t.iterrows()):
        sel = rows_matching(good, {k: r[k] for k in keys})
        ax.plot(100 * sel["final_test_acc"], np.full(len(sel), i), ls="", marker="o", ms=3.5,
                color=colors[i], alpha=0.6)
        ax.errorbar([100 * r["final_test_acc.mean"]], [i], xerr=[100 * (0.0 if is_null(r["final_test_acc.std"])
                                                                        else r["final_test_acc.std"])],
                    fmt="D", color=colors[i], ms=6, capsize=4)
    ax.set_yticks(range(len(t)), [label_of(keys, [r[k] for k in keys]) for _, r in t.iterrows()],
                  fontsize="small")
    ax.set_xlabel("final test accuracy [%]")
    ax.set_ylim(-0.6, len(t) - 0.4)
    ax.grid(axis="x", alpha=0.3)
    ax.set_title("final test_acc (diamond: mean ± std over finished seeds; dots: seeds)", fontsize="medium")
    fig.tight_layout()
    fig.savefig(path, dpi=110, bbox_inches="tight")
    return path


def plot_cost_fronts(points: pd.DataFrame, trials: pd.DataFrame, keys: list[str], path: Path) -> Path | None:
    """Final test accuracy against OPs and against parameter bits: one point per group (mean ± std
    over seeds), a line per series (quantizer label, e.g. per bit-width, through its widths), colours
    by model kind (FP red, binary blue, k-bit green), the Pareto front dashed."""
    if points.empty:
        return None
    series = series_key(keys)
    points = points.sort_values([BITS, "series"], kind="stable")  # legend and colours in bit-width order
    names = list(dict.fromkeys(points["series"]))
    if series:
        kinds = [kind_for((name,), [series], trials[trials[series].map(fmt_value) == name]) for name in names]
        colors = dict(zip(names, line_colors(kinds)))
    else:
        colors = None
    pts = points.assign(mean=100 * points["mean"], std=100 * points["std"])
    return plot_fronts(pts, FRONT_AXES, "final test accuracy [%]", path, colors,
                       legend_title=names_of([series])[series] if series else "")
