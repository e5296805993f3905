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
  (:func:`analysis.common.stats.holm`); the table says so under it. In the report every verdict is a
  record (:class:`analysis.common.verdicts.Recorder`, ``verdicts.json``) of the question "sr-parts",
  decided with all of that question's comparisons in the report (every set, scale and bit-width: Holm
  over K of them, equivalence within the question's margin, 0.1 dB); FP minus bicubic is a record of
  "other comparisons".
- **Costliest part** at a bit-width: among settings that quantize a single part, the one with the most
  negative mean ΔPSNR on a set (ties by order) against the runner-up, by the verdict rule on their
  per-seed difference (a record). The text says that part "costs the most PSNR" (in bold) only where
  that record is decided (a direction); otherwise it says no part was shown to cost the most.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from lowbit_sweeps.analysis.common.format import fmt_mean_std, markdown_table
from lowbit_sweeps.analysis.common.stats import holm_note, mean_std_n
from lowbit_sweeps.analysis.common.verdicts import Recorder
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


QUESTION = "sr-parts"
"""The question every comparison of quantized parts answers (:mod:`lowbit_core.questions`)."""
PSNR_METRIC = "PSNR-Y (dB), final epoch, paired on seed"


def decided(fn, plan=None):
    """``fn(rec)`` with decided verdicts: a fresh Recorder collects ``fn``'s comparisons,
    :meth:`Recorder.adjust` decides them (Holm per question), ``fn`` runs again to render them."""
    rec = Recorder(plan)
    fn(rec)
    rec.adjust()
    return fn(rec)


def paired_vs_fp(trials: pd.DataFrame, test_set: str, scale: int, rec: Recorder | None = None,
                 plan=None) -> pd.DataFrame:
    """Per quantized setting: ΔPSNR (and ΔSSIM) against the FP trial of the same seed, with its
    verdict: ``rec``'s record (decided with the question's comparisons); None: decided over these
    settings alone (Holm over them, module docstring)."""
    if rec is None:
        return decided(lambda r: paired_vs_fp(trials, test_set, scale, r, plan), plan)
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
        v = rec.verdict(dp, question=QUESTION, comparison=f"{setting} vs FP, {test_set} x{scale}", metric=PSNR_METRIC,
                        baseline="FP (32 bit)", unit="dB", rows=pd.concat([sub, fp]))
        rows.append({SETTING: setting, "bits": int(sub["bits"].iloc[0]), "parts": parts_label(sub[PARTS].iloc[0]),
                     "dpsnr.mean": v.mean, "dpsnr.std": v.std, "dpsnr.n": v.n, "verdict": v, "per_seed": per_seed,
                     "dssim.mean": mean_std_n(ds)[0], "arm": sub})
    return pd.DataFrame(rows)


def verdicts_note(verdicts) -> str:
    """The line under a table of recorded verdicts: :func:`holm_note` where the table is its
    question's whole family, else which family they were adjusted in."""
    verdicts = list(verdicts)
    counted = [v for v in verdicts if v.sign is not None and not v.identical and np.isfinite(v.p)]
    ks = sorted({v.k for v in counted})
    if not counted or ks == [len(counted)]:
        return holm_note(verdicts)
    k = f"{ks[0]}–{ks[-1]}" if len(ks) > 1 else str(ks[0])
    return (f"Holm-adjusted over the question's K = {k} comparisons in this report (every set, scale and "
            f"bit-width), family-wise α = {counted[0].alpha:.2g} (a direction, or equivalence within "
            f"±{counted[0].margin:.3g} dB, only where the adjusted p < {counted[0].alpha:.2g}); intervals are the "
            "unadjusted paired-t 95% intervals, n = seeds.")


def per_set_table(trials: pd.DataFrame, test_set: str, scale: int, rec: Recorder | None = None, plan=None) -> str:
    """The markdown table of one test set and scale: bicubic, FP, then each quantized setting."""
    stats = setting_stats(trials, test_set, scale)
    deltas = paired_vs_fp(trials, test_set, scale, rec, plan)
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
    return table + ("\n\n" + verdicts_note(deltas["verdict"]) if not deltas.empty else "")


def costliest_parts(trials: pd.DataFrame, test_set: str, scale: int, rec: Recorder | None = None,
                    plan=None) -> list[str]:
    """One line per bit-width below 32: the single part with the lowest mean ΔPSNR against the
    runner-up (a record); "costs the most PSNR" only where that record is a direction."""
    if rec is None:
        return decided(lambda r: costliest_parts(trials, test_set, scale, r, plan), plan)
    d = paired_vs_fp(trials, test_set, scale, rec, plan)
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
        where = f"{test_set} x{scale}, {int(bits)} bit{'s' if bits > 1 else ''}"
        if len(sub) == 1:
            lines.append(f"{where}: one single part quantized ({worst['parts']}), nothing to rank it against. "
                         f"ΔPSNR vs FP: {ranked}")
            continue
        nxt = sub.iloc[1]
        seeds = sorted(set(worst["per_seed"]) & set(nxt["per_seed"]))
        v = rec.verdict([worst["per_seed"][k] - nxt["per_seed"][k] for k in seeds], question=QUESTION,
                        comparison=f"{worst[SETTING]} vs {nxt[SETTING]} (lowest mean ΔPSNR vs FP against the next), "
                                   f"{test_set} x{scale}",
                        metric=PSNR_METRIC, baseline=f"{nxt[SETTING]} (the runner-up)", unit="dB",
                        rows=pd.concat([worst["arm"], nxt["arm"]]))
        gap = (f"against the next ({nxt['parts']}), paired on seed: {fmt_mean_std(v.mean, v.std, v.n, signed=True)} dB, "
               f"{v.text('less costly', 'costlier', unit=' dB')}")
        if v.decision == "lower":
            lines.append(f"{where}: quantizing **{worst['parts']}** costs the most PSNR; {gap}. "
                         f"ΔPSNR vs FP, worst first: {ranked}")
        else:
            lines.append(f"{where}: no single part shown to cost the most PSNR (the lowest mean, {worst['parts']}, "
                         f"{gap}). ΔPSNR vs FP, lowest mean first: {ranked}")
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


def fp_vs_bicubic(trials: pd.DataFrame, test_set: str, scale: int, rec: Recorder | None = None,
                  plan=None) -> str | None:
    """A finding: FP minus bicubic PSNR, per seed (each trial against its own bicubic column); a
    record of "other comparisons" (a check of the baseline, not an answer about parts)."""
    rec = rec if rec is not None else Recorder(plan)
    ok = at_scale(ok_trials(trials), scale)
    fp = ok[ok["bits"] == FP_BITS]
    if fp.empty:
        return None
    diffs = (pd.to_numeric(fp[f"psnr_y.{test_set}"], errors="coerce")
             - pd.to_numeric(fp[f"bicubic_psnr_y.{test_set}"], errors="coerce")).to_numpy(float)
    v = rec.verdict(diffs, question=None, comparison=f"FP vs bicubic, {test_set} x{scale}", metric=PSNR_METRIC,
                    baseline="bicubic (the same images)", unit="dB", rows=fp)
    return (f"FP minus bicubic PSNR-Y, {test_set} x{scale} (dB): {fmt_mean_std(v.mean, v.std, v.n, signed=True)}; "
            f"{v.text('FP above bicubic', 'FP below bicubic', unit=' dB')}")


__all__ = ["QUESTION", "decided", "verdicts_note", "LITERATURE_BICUBIC", "setting_stats", "bicubic_stats", "paired_vs_fp", "per_set_table",
           "costliest_parts", "bicubic_check", "fp_vs_bicubic"]
