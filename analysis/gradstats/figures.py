"""The gradstats report's figures (matplotlib Agg). Every point is a mean over seeds (error bars: std,
ddof=1) of counted trials in the base cell -- the smallest weight and activation thresholds and the
most common activation estimator -- except in the threshold figure, which varies the thresholds.

SNR panels draw the noise floor -log10(M) (a mean of M noise batches has SNR about 1/M).

- ``snr_cos_vs_width``: start-state SNR (mean log10 over the layers of a depth third) and cosine to
  nSTE against the estimator's width, initialized and pretrained side by side, one line per
  estimator and depth third (early / middle / late layers); nSTE's layer mean as a grey line.
- ``stats_vs_depth``: the same statistics and the fraction inside the window per layer index.
- ``accuracy_vs_width``: final test accuracy against width per state; nSTE as a grey band.
- ``threshold``: final test accuracy and start SNR against the weight and activation thresholds.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib import colormaps

from lowbit_sweeps.analysis.common.format import fmt_value
from lowbit_sweeps.analysis.common.plotting import new_figure, save_figure
from lowbit_sweeps.analysis.common.stats import mean_std_n
from lowbit_sweeps.analysis.gradstats.compare import NSTE, ok, states_of
from lowbit_sweeps.analysis.gradstats.trials import ACT_LABEL, BATCHES, LABEL, STATE, TAU_A, TAU_W, WIDTH, summary

CMAPS = ("Blues", "Oranges", "Greens", "Purples", "Reds")
THIRDS = ("early", "middle", "late")
PANELS = {"snr": "start log10 SNR (weights)", "cos_ste": "start cos to nSTE (weights)",
          "inside": "start fraction inside the window (weights)"}


def base_cell(trials: pd.DataFrame) -> pd.DataFrame:
    """Counted trials at the smallest thresholds and the most common activation estimator."""
    t = ok(trials)
    if not len(t):
        return t
    t = t[(t[TAU_W] == t[TAU_W].min()) & (t[TAU_A] == t[TAU_A].min())]
    return t[t[ACT_LABEL] == t[ACT_LABEL].mode().iloc[0]]


def thirds(n: int) -> list[slice]:
    edges = np.linspace(0, n, 4).round().astype(int)
    return [slice(a, b) for a, b in zip(edges[:-1], edges[1:])]


def names_with_width(cell: pd.DataFrame) -> list[str]:
    return sorted(cell.loc[cell[WIDTH].notna(), "estimator_name"].unique())


def _colors(name_index: int, n: int) -> list:
    cmap = colormaps[CMAPS[name_index % len(CMAPS)]]
    return [cmap(s) for s in (np.linspace(0.45, 0.95, n) if n > 1 else [0.75])]


def _curve(sub: pd.DataFrame, value) -> pd.DataFrame:
    """Per width: mean, std, n over the trials of ``value(trial row)``."""
    rows = [(w, *mean_std_n([value(r) for _, r in g.iterrows()])) for w, g in sub.groupby(WIDTH, sort=True)]
    return pd.DataFrame(rows, columns=[WIDTH, "mean", "std", "n"])


def noise_floor(ax, cell: pd.DataFrame) -> None:
    """The log10 SNR of a mean of M batches of pure noise, -log10(M), as a dotted line."""
    m = cell[BATCHES].dropna().unique() if BATCHES in cell.columns else []
    if len(m) == 1:
        ax.axhline(-np.log10(m[0]), color="0.2", ls=":", lw=1, label=f"noise floor 1/M (M = {int(m[0])})")


def width_axis(ax, cell: pd.DataFrame) -> None:
    """Log x axis ticked at the widths present, labelled with their unit."""
    widths = sorted(cell[WIDTH].dropna().unique())
    if not widths:
        return
    ax.set_xscale("log")
    ax.set_xticks(widths, [fmt_value(w) for w in widths])
    ax.minorticks_off()
    units = sorted(set(cell.loc[cell[WIDTH].notna(), "unit"]))
    unit = units[0] if len(units) == 1 else "/".join(units)
    ax.set_xlabel("width (estimator parameter)" if unit == "abs" else f"width (multiples of the layer's {unit})")


def _nste_line(ax, cell: pd.DataFrame, value, label: str = NSTE) -> None:
    ref = cell[cell[LABEL] == NSTE]
    m, s, n = mean_std_n([value(r) for _, r in ref.iterrows()])
    if n:
        ax.axhline(m, color="0.35", lw=1.2, label=label)
        if n > 1:
            ax.axhspan(m - s, m + s, color="0.8", alpha=0.4)


def plot_vs_width(trials: pd.DataFrame, path: Path) -> Path | None:
    cell = base_cell(trials)
    names, states = names_with_width(cell), states_of(trials)
    if not names:
        return None
    stats = ("snr", "cos_ste")
    fig, axes = new_figure(len(stats) * len(states))
    for i, stat in enumerate(stats):
        for j, state in enumerate(states):
            ax = axes[i * len(states) + j]
            sub = cell[cell[STATE].astype(str) == state]
            for k, name in enumerate(names):
                est = sub[sub["estimator_name"] == name]
                n_layers = max((len(r[f"start.layers.w_{stat}"]) for _, r in est.iterrows()), default=0)
                for part, third, color in zip(thirds(n_layers), THIRDS, _colors(k, 3)):
                    c = _curve(est, lambda r, p=part: summary(r[f"start.layers.w_{stat}"], stat, p))
                    ax.errorbar(c[WIDTH], c["mean"], yerr=c["std"].fillna(0), marker="o", ms=3, color=color,
                                capsize=2, label=f"{name}, {third} layers")
            _nste_line(ax, sub, lambda r: summary(r[f"start.layers.w_{stat}"], stat))
            if stat == "snr":
                noise_floor(ax, sub)
            width_axis(ax, cell)
            ax.set_title(f"{state}: {PANELS[stat]}", fontsize="small")
    return save_figure(fig, axes, path, "estimator, depth")


def plot_vs_depth(trials: pd.DataFrame, path: Path) -> Path | None:
    cell = base_cell(trials)
    states = states_of(trials)
    if not len(cell):
        return None
    labels = sorted(cell[LABEL].unique(), key=lambda l: (l != NSTE, l))
    names = sorted(cell["estimator_name"].unique())
    fig, axes = new_figure(len(PANELS) * len(states))
    for i, stat in enumerate(PANELS):
        for j, state in enumerate(states):
            ax = axes[j * len(PANELS) + i]  # a row per state, a column per statistic
            sub = cell[cell[STATE].astype(str) == state]
            for k, name in enumerate(names):
                mine = [l for l in labels if (cell.loc[cell[LABEL] == l, "estimator_name"] == name).all()]
                for label, color in zip(mine, _colors(k, len(mine))):
                    arrays = [r[f"start.layers.w_{stat}"] for _, r in sub[sub[LABEL] == label].iterrows()]
                    arrays = [a for a in arrays if len(a)]
                    if not arrays:
                        continue
                    stack = np.vstack([np.log10(np.where(a > 0, a, np.nan)) if stat == "snr" else a for a in arrays])
                    ax.plot(np.arange(stack.shape[1]), np.nanmean(stack, 0), marker=".", color=color,
                            ls="-" if label != NSTE else "--", label=label)
            if stat == "snr":
                noise_floor(ax, sub)
            ax.set_title(f"{state}: {PANELS[stat]}", fontsize="small")
            ax.set_xlabel("quantized layer (forward order)")
    return save_figure(fig, axes, path, "estimator")


def plot_accuracy(trials: pd.DataFrame, path: Path) -> Path | None:
    cell = base_cell(trials)
    names, states = names_with_width(cell), states_of(trials)
    if not len(cell):
        return None
    fig, axes = new_figure(len(states))
    for ax, state in zip(axes, states):
        sub = cell[cell[STATE].astype(str) == state]
        for k, name in enumerate(names):
            c = _curve(sub[sub["estimator_name"] == name], lambda r: r["final_test_acc"])
            ax.errorbar(c[WIDTH], c["mean"], yerr=c["std"].fillna(0), marker="o", color=_colors(k, 1)[0], capsize=2,
                        label=name)
        _nste_line(ax, sub, lambda r: r["final_test_acc"])
        width_axis(ax, cell)
        ax.set_title(f"{state}: final test accuracy after fine-tuning", fontsize="small")
    return save_figure(fig, axes, path, "estimator")


def plot_thresholds(trials: pd.DataFrame, path: Path) -> Path | None:
    t = ok(trials)
    axes_cols = [c for c in (TAU_W, TAU_A) if len(t) and t[c].nunique() > 1]
    if not axes_cols:
        return None
    metrics = (("final_test_acc", "final test accuracy"), ("start.w_snr", "start log10 SNR (weights)"))
    states = states_of(trials)
    labels = sorted(t[LABEL].unique(), key=lambda l: (l != NSTE, l))
    fig, axes = new_figure(len(metrics) * len(axes_cols))
    for i, (metric, name) in enumerate(metrics):
        for j, col in enumerate(axes_cols):
            ax = axes[i * len(axes_cols) + j]
            other = TAU_A if col == TAU_W else TAU_W
            sub = t[t[other] == t[other].min()]
            for k, label in enumerate(labels):
                for state, ls in zip(states, ("--", "-")):
                    g = sub[(sub[LABEL] == label) & (sub[STATE].astype(str) == state)]
                    rows = [(v, *mean_std_n(gg[metric])) for v, gg in g.groupby(col, sort=True)]
                    if rows:
                        x, m, s, _ = zip(*rows)
                        ax.errorbar(x, m, yerr=np.nan_to_num(s), ls=ls, marker="o", ms=3, capsize=2,
                                    color=colormaps["tab10"](k % 10), label=f"{label}, {state}")
            ax.set_title(name, fontsize="small")
            ax.set_xlabel(f"{col.removeprefix('cfg.')} (other threshold at {fmt_value(t[other].min())})")
    return save_figure(fig, axes, path, "estimator, state (dashed: first)")


FIGURES = {
    "snr_cos_vs_width": "Start-state SNR and cosine to nSTE vs width, per depth third (mean ± std over seeds)",
    "stats_vs_depth": "Start-state statistics per layer (mean over seeds)",
    "accuracy_vs_width": "Final test accuracy vs width (mean ± std over seeds; grey: nSTE)",
    "threshold": "Final test accuracy and start SNR vs the thresholds (mean ± std over seeds)",
}


def make_figures(trials: pd.DataFrame, out_dir: Path) -> list[Path]:
    drawn = [plot_vs_width(trials, out_dir / "snr_cos_vs_width.png"),
             plot_vs_depth(trials, out_dir / "stats_vs_depth.png"),
             plot_accuracy(trials, out_dir / "accuracy_vs_width.png"),
             plot_thresholds(trials, out_dir / "threshold.png")]
    return [p for p in drawn if p is not None]


__all__ = ["FIGURES", "make_figures", "base_cell", "layer_value", "thirds"]
