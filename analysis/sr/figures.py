"""The SR report's figures (matplotlib Agg, no display).

- ``psnr_vs_bits.png``: per test set and scale, PSNR-Y against the bit-width (log2 axis: 1, 2, 4, 8,
  32 = FP), one line per quantized part set (mean ± std over seeds), each line ending at the shared FP
  point; bicubic as a dashed grey line.
- ``crops.png``: the crop every trial stores of the first test set's first image (``crop_hr``,
  ``crop_bicubic``, ``crop_sr``; flattened HWC; where bicubic loses most): the top row HR, bicubic and
  FP, then one row per bit-width with one crop per part set (lowest seed of each setting, smallest
  scale), titled with the setting's PSNR-Y on that set.
- ``psnr_vs_cost_x<s>.png``: PSNR-Y (mean over the trial's test sets) against OPs and parameter bits,
  one line per bit-width, the Pareto front dashed (:func:`analysis.common.fronts.plot_fronts`).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib import colormaps
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from lowbit_sweeps.analysis.common.fronts import plot_fronts
from lowbit_sweeps.analysis.common.plotting import new_figure, save_figure
from lowbit_sweeps.analysis.common.stats import mean_std_n
from lowbit_sweeps.analysis.sr.groups import FP_BITS, PARTS, SETTING, at_scale, bits_label, ok_trials, parts_label, scales
from lowbit_sweeps.analysis.sr.tables import bicubic_stats, setting_stats

FRONT_AXES = {"ops": "OPs per 192x192 output (BOPs/64 + FP MACs)", "param_bits": "parameter bits"}
FP_COLOR = colormaps["Reds"](0.8)
MAX_PANELS = 6


def plot_psnr_vs_bits(trials: pd.DataFrame, sets: list[str], path: Path) -> Path | None:
    panels = [(s, sc) for sc in scales(trials) for s in sets][:MAX_PANELS]
    if not panels or ok_trials(trials).empty:
        return None
    fig, axes = new_figure(len(panels))
    for ax, (test_set, scale) in zip(axes, panels):
        stats = setting_stats(trials, test_set, scale)
        if stats.empty:
            continue
        fp = stats[stats["bits"] == FP_BITS]
        quant = stats[stats["bits"] != FP_BITS]
        part_sets = list(dict.fromkeys(quant["parts"]))
        cmap = colormaps["tab10"]
        for i, parts in enumerate(part_sets):
            sub = quant[quant["parts"] == parts].sort_values("bits")
            x, y, e = list(sub["bits"]), list(sub["psnr.mean"]), list(sub["psnr.std"].fillna(0.0))
            if len(fp):
                x, y, e = x + [FP_BITS], y + [fp["psnr.mean"].iloc[0]], e + [np.nan_to_num(fp["psnr.std"].iloc[0])]
            ax.errorbar(x, y, yerr=e, marker="o", capsize=3, color=cmap(i % 10), label=parts)
        if len(fp):
            ax.errorbar([FP_BITS], fp["psnr.mean"], yerr=fp["psnr.std"].fillna(0.0), marker="s", ms=8, ls="",
                        color=FP_COLOR, label="FP", zorder=5)
        (bp, _, n), _ = bicubic_stats(trials, test_set, scale)
        if n:
            ax.axhline(bp, color="grey", ls="--", lw=1, label="bicubic")
        ax.set_xscale("log", base=2)
        ticks = sorted(set(stats["bits"]))
        ax.set_xticks(ticks, [("FP (32)" if t == FP_BITS else str(t)) for t in ticks])
        ax.set_xlabel("bits (weights and activations of the quantized part)")
        ax.set_ylabel("PSNR-Y (dB)")
        ax.set_title(f"{test_set} x{scale}")
        ax.grid(alpha=0.3)
    return save_figure(fig, axes, path, "quantized part")


def _crop(row: dict, name: str, size: int) -> np.ndarray | None:
    v = row.get(name)
    if v is None or (isinstance(v, float) and np.isnan(v)) or len(v) != size * size * 3:
        return None
    return np.clip(np.asarray(v, dtype=float).reshape(size, size, 3) / 255.0, 0, 1)


def plot_crops(trials: pd.DataFrame, path: Path) -> Path | None:
    ok = ok_trials(trials)
    if "crop_sr" not in ok.columns or ok.empty:
        return None
    ok = at_scale(ok, scales(ok)[0]).sort_values("seed_value", kind="stable")
    ok = ok[ok["crop_sr"].map(lambda v: v is not None and not (isinstance(v, float) and np.isnan(v)))]
    if ok.empty:
        return None
    size = int(round((len(ok["crop_sr"].iloc[0]) / 3) ** 0.5))
    first = ok.drop_duplicates(SETTING)
    fp = first[first["bits"] == FP_BITS]
    quant = first[first["bits"] != FP_BITS]
    bits_rows = sorted(quant["bits"].unique(), reverse=True)
    part_sets = sorted(dict.fromkeys(parts_label(p) for p in quant[PARTS]))  # the same column in every row
    cols = max(3, len(part_sets))
    rows = 1 + len(bits_rows)  # HR, bicubic, FP; then a row per bit-width, a column per part set
    fig = Figure(figsize=(2.4 * cols, 2.6 * rows))
    FigureCanvasAgg(fig)
    grid = np.array([[fig.add_subplot(rows, cols, i * cols + j + 1) for j in range(cols)] for i in range(rows)],
                    dtype=object)
    ref = ok.iloc[0].to_dict()
    image = ref.get("crop_image") or "?"
    test_set = str(image).split("/")[0]
    top = [("HR", _crop(ref, "crop_hr", size), ""), ("bicubic", _crop(ref, "crop_bicubic", size),
                                                      ref.get(f"bicubic_psnr_y.{test_set}"))]
    if len(fp):
        r = fp.iloc[0].to_dict()
        top.append(("FP", _crop(r, "crop_sr", size), r.get(f"psnr_y.{test_set}")))
    cells = {(0, j): t for j, t in enumerate(top)}
    for i, bits in enumerate(bits_rows, start=1):
        for r in quant[quant["bits"] == bits].to_dict("records"):
            j = part_sets.index(parts_label(r[PARTS]))
            cells[(i, j)] = (r[SETTING], _crop(r, "crop_sr", size),
                             r.get(f"psnr_y.{test_set}"))
    for (i, j), ax in np.ndenumerate(grid):
        ax.set_axis_off()
        if (i, j) in cells and cells[(i, j)][1] is not None:
            title, img, psnr = cells[(i, j)]
            ax.imshow(img, interpolation="nearest")
            ax.set_title(title + (f"\n{psnr:.2f} dB ({test_set})" if isinstance(psnr, (int, float)) and psnr == psnr
                                  else ""), fontsize="small")
    fig.suptitle(f"{image}: {size}x{size} px crop (lowest seed; titles: set-mean PSNR-Y)",
                 fontsize="medium")
    fig.savefig(path, dpi=110, bbox_inches="tight")
    return path


def front_points(trials: pd.DataFrame, scale: int) -> pd.DataFrame:
    """One point per setting at ``scale``: cost columns, PSNR-Y (mean over sets) mean/std/n over seeds."""
    ok = at_scale(ok_trials(trials), scale)
    rows = []
    for setting, sub in ok.groupby(SETTING, sort=False):
        m, s, n = mean_std_n(sub["psnr_y"])
        bits = int(sub["bits"].iloc[0])
        rows.append({"series": bits_label(bits), "label": "" if bits == FP_BITS else parts_label(sub[PARTS].iloc[0]),
                     **{c: pd.to_numeric(sub[c], errors="coerce").iloc[0] for c in FRONT_AXES if c in sub.columns},
                     "mean": m, "std": s, "n": n})
    return pd.DataFrame(rows)


def plot_cost_fronts(trials: pd.DataFrame, out_dir: Path) -> list[Path]:
    if not {"ops", "param_bits"} <= set(trials.columns):
        return []
    drawn = []
    for scale in scales(trials):
        pts = front_points(trials, scale)
        if pts.empty:
            continue
        p = plot_fronts(pts, FRONT_AXES, "PSNR-Y (dB, mean over test sets)", out_dir / f"psnr_vs_cost_x{scale}.png",
                        title=f"x{scale}", legend_title="bit-width")
        if p is not None:
            drawn.append(p)
    return drawn


__all__ = ["FRONT_AXES", "plot_psnr_vs_bits", "plot_crops", "front_points", "plot_cost_fronts"]
