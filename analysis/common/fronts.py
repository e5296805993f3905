"""Score-vs-cost fronts shared by the reports (accuracy or PSNR against OPs, parameter bits, energy).

A *point* is one configuration group: its cost (constant over seeds: it is the model's) and its score
as mean ± std over seeds. :func:`pareto_front` marks the points no other point beats on both axes;
:func:`plot_fronts` draws one panel per cost axis (log scale), one line per series (e.g. per
bit-width, through its widths in cost order) and the Pareto front as a dashed step line.

Points frame (one row per group): ``series`` (the line it belongs to), ``label`` (the point's text),
one column per cost axis, ``mean``, ``std`` and ``n`` of the score.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib import colormaps
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import NullFormatter

FRONT_STYLE = {"color": "black", "ls": "--", "lw": 1.2}


def pareto_front(cost, score, higher_is_better: bool = True) -> np.ndarray:
    """Boolean mask of the points on the Pareto front: finite, and no other point has a cost <= and
    a score at least as good with one of them strictly better (lower cost is always better)."""
    c = np.asarray(cost, dtype=float)
    s = np.asarray(score, dtype=float) * (1.0 if higher_is_better else -1.0)
    ok = np.isfinite(c) & np.isfinite(s)
    front = np.zeros(len(c), dtype=bool)
    for i in np.flatnonzero(ok):
        others = ok & (c <= c[i]) & (s >= s[i]) & ((c < c[i]) | (s > s[i]))
        front[i] = not others.any()
    return front


def front_line(cost, score, higher_is_better: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """The front's points in cost order, as (x, y) of a step line (each front point holds until the next)."""
    mask = pareto_front(cost, score, higher_is_better)
    order = np.argsort(np.asarray(cost, dtype=float)[mask], kind="stable")
    return np.asarray(cost, dtype=float)[mask][order], np.asarray(score, dtype=float)[mask][order]


def series_colors(series: list[str]) -> dict[str, tuple]:
    """A qualitative colour per series name (tab10, tab20 beyond ten)."""
    cmap = colormaps["tab10" if len(series) <= 10 else "tab20"]
    return {s: cmap(i % cmap.N) for i, s in enumerate(series)}


def plot_fronts(points: pd.DataFrame, axes: dict[str, str], score_label: str, path: Path,
                colors: dict[str, tuple] | None = None, higher_is_better: bool = True, title: str = "",
                legend_title: str = "") -> Path | None:
    """One panel per cost column of ``axes`` (column -> axis label): each series' points with ± std
    error bars joined in cost order, the Pareto front (dashed black, front points ringed). Returns
    ``path``, or None where no point has a finite score and cost."""
    pts = points[np.isfinite(pd.to_numeric(points["mean"], errors="coerce").astype(float))]
    cols = [c for c in axes if c in pts.columns and (pd.to_numeric(pts[c], errors="coerce") > 0).any()]
    if pts.empty or not cols:
        return None
    names = list(dict.fromkeys(pts["series"]))
    colors = colors or series_colors(names)
    fig = Figure(figsize=(5.6 * len(cols) + 1.8, 4.4))
    FigureCanvasAgg(fig)
    for i, col in enumerate(cols):
        ax = fig.add_subplot(1, len(cols), i + 1)
        x_all = pd.to_numeric(pts[col], errors="coerce").to_numpy(float)
        y_all = pts["mean"].to_numpy(float)
        for name in names:
            sub = pts[pts["series"] == name].assign(_x=pd.to_numeric(pts[col], errors="coerce")).sort_values("_x")
            ax.errorbar(sub["_x"], sub["mean"], yerr=sub["std"].fillna(0.0), marker="o", ms=5, capsize=3,
                        color=colors.get(name), label=name)
            for _, r in sub.iterrows():
                ax.annotate(str(r["label"]), (r["_x"], r["mean"]), textcoords="offset points", xytext=(4, 4),
                            fontsize="x-small", color=colors.get(name))
        fx, fy = front_line(x_all, y_all, higher_is_better)
        if len(fx):  # each front point holds until the next; the last one to the costliest point
            ax.step([*fx, np.nanmax(x_all)], [*fy, fy[-1]], where="post", label="Pareto front", **FRONT_STYLE)
            ax.plot(fx, fy, ls="", marker="o", ms=11, mfc="none", mec="black", mew=1.0)
        ax.set_xscale("log")
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_xlabel(axes[col])
        ax.set_ylabel(score_label)
        ax.grid(alpha=0.3, which="both")
    handles, labels = fig.axes[0].get_legend_handles_labels()
    fig.axes[-1].legend(handles, labels, title=legend_title or None, fontsize="small", title_fontsize="small",
                        loc="upper left", bbox_to_anchor=(1.02, 1.0))
    fig.suptitle(title or f"{score_label} vs cost (mean ± std over seeds; dashed: Pareto front)", fontsize="medium")
    fig.tight_layout()
    fig.savefig(path, dpi=110, bbox_inches="tight")
    return path


__all__ = ["pareto_front", "front_line", "series_colors", "plot_fronts"]
