"""The SR report's numbers: PSNR/SSIM per test set and scale with the bicubic and FP rows, each
quantized setting's paired cost against FP, and which part costs the most at each bit-width.

Rules:

- **Per setting** (ok trials at one scale): mean ± sample std (ddof=1) and n over seeds of the final
  ``psnr_y.<set>`` / ``ssim_y.<set>``.
- **Bicubic** row: the trials' own ``bicubic_*`` columns (the same images, so the spread is 0 up to
  float noise); n counts the trials it was measured in.
- **ΔPSNR vs FP**: each quantized trial minus the FP trial of the same seed (and scale and every other
  setting key); mean ± std and n over seeds, and the one verdict rule of
  :func:`analysis.common.stats.paired_verdict` (the paired-t 95% interval). The settings of one test
  set and scale are one family of K comparisons against FP, Holm-adjusted
  (:func:`analysis.common.stats.holm`); the table says so under it.
- **Costliest part** at a bit-width: among settings that quantize a single part, the one with the most
  negative mean ΔPSNR on a set (ties by order); reported with its n and std, and against the runner-up
  by the verdict rule on their per-seed difference (is it really the costliest, or tied?).
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from lowbit_sweeps.analysis.common.format import fmt_mean_std, markdown_table
from lowbit_sweeps.analysis.common.stats import holm, holm_note, mean_std_n, paired_verdict
from lowbit_sweeps.analysis.sr.groups import FP_BITS, PARTS, SETTING, at_scale, ok_trials, parts_label, setting_order

# Bicubic (MATLAB imresize), Y channel, scale px cropped: e.g. Kim et al. (VDSR, CVPR 2016) Table 3,
# Lim et al. (EDSR, CVPRW 2017) Table 3; also quoted in ../shared/data/README.md.
LITERATURE_BICUBIC = {("Set5", 2): (33.66, 0.9299), ("Set5", 3): (30.39, 0.8682), ("Set5", 4): (28.42, 0.8104),
                      ("Set14", 2): (30.24, 0.8688), ("Set14", 3): (27.55, 0.7742), ("Set14", 4): (26.00, 0.7027)}


def setting_stats(trials: pd.DataFrame, test_set: str, scale: int) -> pd.DataFrame:
    """Per setting at ``scale``: ``psnr.mean/std/n``, ``ssim.*`` over seeds, and the bits; FP first."""
    ok = at_scale(ok_trials(trials), scale)
    rows = []
    for setting in setting_order(ok):
        sub = ok[ok[SETTING] == setting]
        p, s = mean_std_n(sub[f"psnr_y.{test_set}"]), mean_std_n(sub[f"ssim_y.{test_set}"])
        rows.append({SETTING: setting, "bits": int(sub["bits"].iloc[0]), "parts": parts_label(sub[PARTS].iloc[0]),
                     "psnr.mean": p[0], "psnr.std": p[1], "psnr.n": p[2],
                     "ssim.mean": s[0], "ssim.std": s[1], "ssim.n": s[2]})
    return pd.DataFrame(rows)


def bicubic_stats(trials: pd.DataFrame, test_set: str, scale: int) -> tuple[tuple, tuple]:
    ok = at_scale(ok_trials(trials), scale)
    return mean_std_n(ok[f"bicubic_psnr_y.{test_set}"]), mean_std_n(ok[f"bicubic_ssim_y.{test_set}"])


def paired_vs_fp(trials: pd.DataFrame, test_set: str, scale: int) -> pd.DataFrame:
    """Per quantized setting: ΔPSNR (and ΔSSIM) against the FP trial of the same seed, with its
    verdict Holm-adjusted over the settings (module docstring)."""
    ok = at_scale(ok_trials(trials), scale)
    fp = ok[ok["bits"] == FP_BITS]
    fp_psnr = dict(zip(fp["seed_value"], pd.to_numeric(fp[f"psnr_y.{test_set}"], errors="coerce")))
    fp_ssim = dict(zip(fp["seed_value"], pd.to_numeric(fp[f"ssim_y.{test_set}"], errors="coerce")))
    rows = []
    for setting in setting_order(ok):
        sub = ok[ok[SETTING] == setting]
        if int(sub["bits"].iloc[0]) == FP_BITS:
            continue
        per_seed = {s: float(v) - fp_psnr[s] for s, v in zip(sub["seed_value"], sub[f"psnr_y.{test_set}"])
                    if s in fp_psnr}
        dp = list(per_seed.values())
        ds = [float(v) - fp_ssim[s] for s, v in zip(sub["seed_value"], sub[f"ssim_y.{test_set}"]) if s in fp_ssim]
        v = paired_verdict(dp)
        rows.append({SETTING: setting, "bits": int(sub["bits"].iloc[0]), "parts": parts_label(sub[PARTS].iloc[0]),
                     "dpsnr.mean": v.mean, "dpsnr.std": v.std, "dpsnr.n": v.n, "verdict": v, "per_seed": per_seed,
                     "dssim.mean": mean_std_n(ds)[0]})
    table = pd.DataFrame(rows)
    if not table.empty:
        table["verdict"] = holm(list(table["verdict"]))
    return table


def per_set_table(trials: pd.DataFrame, test_set: str, scale: int) -> str:
    """The markdown table of one test set and scale: bicubic, FP, then each quantized setting."""
    stats = setting_stats(trials, test_set, scale)
    deltas = paired_vs_fp(trials, test_set, scale)
    delta = {r[SETTING]: r for r in deltas.to_dict("records")}
    (bp, bs) = bicubic_stats(trials, test_set, scale)
    rows = [["bicubic", fmt_mean_std(*bp), fmt_mean_std(*bs), "–", "–"]]
    for r in stats.to_dict("records"):
        d = delta.get(r[SETTING])
        rows.append([r[SETTING], fmt_mean_std(r["psnr.mean"], r["psnr.std"], r["psnr.n"]),
                     fmt_mean_std(r["ssim.mean"], r["ssim.std"], r["ssim.n"]),
                     fmt_mean_std(d["dpsnr.mean"], d["dpsnr.std"], d["dpsnr.n"], signed=True) if d else "–",
                     d["verdict"].text("above FP", "below FP", unit=" dB") if d else "–"])
    table = markdown_table(["setting", "PSNR-Y (dB)", "SSIM-Y", "ΔPSNR vs FP (dB, paired on seed)",
                            "verdict (paired-t 95% interval)"], rows)
    return table + ("\n\n" + holm_note(list(deltas["verdict"])) if not deltas.empty else "")


def costliest_parts(trials: pd.DataFrame, test_set: str, scale: int) -> list[str]:
    """One line per bit-width below 32: the single part whose quantization costs the most PSNR."""
    d = paired_vs_fp(trials, test_set, scale)
    if d.empty:
        return []
    single = d[~d["parts"].str.contains("+", regex=False)]
    lines = []
    for bits in sorted(single["bits"].unique(), reverse=True):
        sub = single[single["bits"] == bits].sort_values("dpsnr.mean", kind="stable")
        sub = sub[np.isfinite(sub["dpsnr.mean"].astype(float))]
        if sub.empty:
            continue
        ranked = "; ".join(f"{r['parts']} {fmt_mean_std(r['dpsnr.mean'], r['dpsnr.std'], r['dpsnr.n'], signed=True)} "
                           f"({r['verdict'].numbers(unit=' dB')})" for r in sub.to_dict("records"))
        worst = sub.iloc[0]
        gap = ""
        if len(sub) > 1:
            nxt = sub.iloc[1]
            seeds = sorted(set(worst["per_seed"]) & set(nxt["per_seed"]))
            v = paired_verdict([worst["per_seed"][k] - nxt["per_seed"][k] for k in seeds])
            gap = (f"; against the next ({nxt['parts']}), paired on seed: "
                   f"{fmt_mean_std(v.mean, v.std, v.n, signed=True)} dB, "
                   f"{v.text('less costly', 'costlier', unit=' dB')}")
        lines.append(f"{test_set} x{scale}, {int(bits)} bit{'s' if bits > 1 else ''}: quantizing **{worst['parts']}** "
                     f"costs the most PSNR{gap}. ΔPSNR vs FP, worst first: {ranked}")
    return lines


def bicubic_check(trials: pd.DataFrame, test_set: str, scale: int) -> str | None:
    """A finding comparing the measured bicubic baseline with the literature's figure, where known."""
    if (test_set, scale) not in LITERATURE_BICUBIC:
        return None
    (bp, _, n), (bs, _, _) = bicubic_stats(trials, test_set, scale)
    if n == 0:
        return None
    lp, ls = LITERATURE_BICUBIC[test_set, scale]
    return (f"bicubic {test_set} x{scale}: {bp:.2f} dB / {bs:.4f} (literature {lp:.2f} / {ls:.4f}; "
            f"difference {bp - lp:+.3f} dB)")


def fp_vs_bicubic(trials: pd.DataFrame, test_set: str, scale: int) -> str | None:
    """A finding: FP minus bicubic PSNR, per seed (each trial against its own bicubic column)."""
    ok = at_scale(ok_trials(trials), scale)
    fp = ok[ok["bits"] == FP_BITS]
    if fp.empty:
        return None
    diffs = (pd.to_numeric(fp[f"psnr_y.{test_set}"], errors="coerce")
             - pd.to_numeric(fp[f"bicubic_psnr_y.{test_set}"], errors="coerce")).to_numpy(float)
    v = paired_verdict(diffs)
    return (f"FP minus bicubic PSNR-Y, {test_set} x{scale} (dB): {fmt_mean_std(v.mean, v.std, v.n, signed=True)}; "
            f"{v.text('FP above bicubic', 'FP below bicubic', unit=' dB')}")


__all__ = ["LITERATURE_BICUBIC", "setting_stats", "bicubic_stats", "paired_vs_fp", "per_set_table",
           "costliest_parts", "bicubic_check", "fp_vs_bicubic"]
