"""Figure helpers drawn with matplotlib's Agg canvas (no display, no pyplot state).

Colour rule from the seed's figure: FP models in red tones, binary models in blue tones, one shade
per configuration group inside each family.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib import colormaps
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from lowbit_sweeps.analysis.common.format import group_label, short_names
from lowbit_sweeps.analysis.common.groups import KIND, iter_groups
from lowbit_sweeps.analysis.common.stats import mean_std_n

KIND_COLORMAPS = {"fp": "Reds", "binary": "Blues"}
OTHER_COLORMAPS = ("Greens", "Purples", "Oranges", "Greys")
MAX_PANELS = 6


def kind_of(keys: list[str], values, df: pd.DataFrame | None = None) -> str:
    """The model kind of a group: from its key values, else the kind its rows share, else ''."""
    if KIND in keys:
        return str(values[keys.index(KIND)])
    if df is not None and KIND in df.columns and df[KIND].nunique() == 1:
        return str(df[KIND].iloc[0])
    return ""


def group_colors(kinds: list[str]) -> list:
    """One RGBA colour per entry of ``kinds`` (group order): a shade of the kind's colour map,
    darker for later groups of the same kind (FP red, binary blue, other kinds other families)."""
    other = iter(OTHER_COLORMAPS)
    cmaps: dict[str, str] = {}
    for k in dict.fromkeys(kinds):
        cmaps[k] = KIND_COLORMAPS.get(k) or next(other, "Greys")
    counts = {k: kinds.count(k) for k in cmaps}
    seen = {k: 0 for k in cmaps}
    colors = []
    for k in kinds:
        shades = np.linspace(0.45, 0.95, counts[k]) if counts[k] > 1 else [0.75]
        colors.append(colormaps[cmaps[k]](shades[seen[k]]))
        seen[k] += 1
    return colors


def panel_keys(df: pd.DataFrame, keys: list[str], max_lines: int = 8) -> list[str]:
    """Keys to split a plot into panels (at most MAX_PANELS) so that a panel holds at most about
    ``max_lines`` lines: group keys other than the model kind, fewest values first."""
    def n_groups(ks):
        return sum(1 for _ in iter_groups(df, ks)) if ks else 1

    total = n_groups(keys)
    options = sorted((df[k].nunique(dropna=False), i, k) for i, k in enumerate(keys) if k != KIND)
    chosen: list[str] = []
    for n, _, k in options:
        if total / max(n_groups(chosen), 1) <= max_lines:
            break
        if n > 1 and n_groups(chosen + [k]) <= MAX_PANELS:
            chosen.append(k)
    return [k for k in keys if k in chosen]


def split_panels(df: pd.DataFrame, split: list[str]):
    """Yield (title, sub-frame) per panel; a single untitled panel when ``split`` is empty."""
    if not split:
        yield "", df
        return
    for values, sub in iter_groups(df, split):
        yield group_label(split, values), sub


def new_figure(n_panels: int, width: float = 6.4, height: float = 4.2) -> tuple[Figure, list]:
    """A figure with ``n_panels`` axes on a grid of up to 3 columns (2 for four panels)."""
    cols = 2 if n_panels == 4 else min(n_panels, 3)
    rows = (n_panels + cols - 1) // cols
    fig = Figure(figsize=(width * cols, height * rows))
    FigureCanvasAgg(fig)
    axes = [fig.add_subplot(rows, cols, i + 1) for i in range(n_panels)]
    if rows > 1:
        fig.subplots_adjust(hspace=0.35)
    return fig, axes


def save_figure(fig: Figure, axes: list, path: Path, legend_title: str) -> Path:
    """Legend outside the last panel, tight layout, PNG at ``path``."""
    handles, labels = axes[0].get_legend_handles_labels()
    for ax in axes[1:]:
        h, lab = ax.get_legend_handles_labels()
        for hh, ll in zip(h, lab):
            if ll not in labels:
                handles.append(hh)
                labels.append(ll)
    if handles:
        axes[-1].legend(handles, labels, title=legend_title or None, fontsize="small",
                        title_fontsize="small", loc="upper left", bbox_to_anchor=(1.02, 1.0))
    fig.savefig(path, dpi=110, bbox_inches="tight")
    return path


def legend_title(keys: list[str]) -> str:
    return ", ".join(short_names(keys).values())


def curve_over_seeds(df: pd.DataFrame, x: str, y: str) -> pd.DataFrame:
    """Per value of ``x``: mean, std (ddof=1) and n of ``y`` over trials (null ``y`` skipped)."""
    rows = [(xv, *mean_std_n(sub[y])) for xv, sub in df.groupby(x, sort=True)]
    out = pd.DataFrame(rows, columns=[x, "mean", "std", "n"])
    return out[out["n"] > 0]
