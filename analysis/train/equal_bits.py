"""Equal-bits comparisons (meeting record: "more total bits -- more bits per unit, or wider layers --
makes optimization easier"): at equal parameter bits, do more bits per weight or more weights win?

Rule. The curves are the series of the fronts (one per quantizer label, e.g. binary, DoReFa 2-bit,
FP; each with one weight bit-width, :func:`analysis.train.cost.weight_bits`) within a setting cell
(the group keys other than the series and ``cfg.model.width``). For two series with b_hi > b_lo
bits and each seed s, the b_lo curve of seed s is its finished trials' (log2 param_bits, final
test_acc), which needs at least two distinct widths; each finished b_hi trial of seed s whose
param_bits lie within that curve's range is compared with the curve linearly interpolated (in
log2 bits) at its param_bits, never extrapolated: Δ = acc(more bits per weight) − acc(more weights,
same bits). Per series pair and pooled over all pairs, each seed's Δs are averaged first; mean ±
std and n are over seeds, and the verdict is :func:`analysis.common.stats.paired_verdict`'s.

Beside it, the comparison between **measured points only**: the same b_hi trials, each against the
b_lo trial of the same seed at the equal or nearest parameter bits (nearest in log2 bits; of two
equally near, the one with fewer bits), Δ_meas = acc(b_hi) − acc(that b_lo trial), no interpolation.
The lines give the largest log2 distance of those pairs and say when the interpolated and the
measured comparison disagree in the sign of their means (and when their verdicts point opposite ways).
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from lowbit_sweeps.analysis.common.format import fmt_pp, fmt_value
from lowbit_sweeps.analysis.common.groups import iter_groups
from lowbit_sweeps.analysis.common.plan import SweepPlan
from lowbit_sweeps.analysis.common.stats import over_seeds, signed_pp
from lowbit_sweeps.analysis.common.verdicts import Recorder
from lowbit_sweeps.analysis.train.cost import BITS, series_key
from lowbit_sweeps.analysis.train.groups import label_of, ok_trials

WIDTH = "cfg.model.width"
SEED = "seed"


def _usable(trials: pd.DataFrame) -> pd.DataFrame:
    t = ok_trials(trials)
    if not len(t) or BITS not in t.columns or "param_bits" not in t.columns:
        return t.iloc[0:0]
    x = pd.to_numeric(t["param_bits"], errors="coerce")
    acc = pd.to_numeric(t["final_test_acc"], errors="coerce")
    return t[t[BITS].notna() & (x > 0) & np.isfinite(acc)].assign(_logbits=np.log2(x), _acc=acc)


def equal_bits_diffs(trials: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """Every comparison of the rule (module docstring): columns ``cell``, ``hi``, ``lo`` (series), ``hi_bits``,
    ``lo_bits``, ``point`` (the b_hi group's label), ``seed``, ``param_bits``, ``acc``, ``acc_lo`` and ``diff``
    (interpolated), and the measured-points comparison: ``near_bits`` (param_bits of the nearest b_lo point),
    ``acc_near`` and ``diff_near``."""
    series = series_key(keys)
    t = _usable(trials)
    if series is None or t.empty or SEED not in t.columns:
        return pd.DataFrame()
    cell_keys = [k for k in keys if k not in (series, WIDTH)]
    point_keys = [k for k in keys if k != series and k not in cell_keys]
    rows = []
    for cvals, cell in iter_groups(t, cell_keys):
        bits = {s: set(g[BITS]) for s, g in cell.groupby(series)}
        names = sorted((s for s, b in bits.items() if len(b) == 1), key=lambda s: next(iter(bits[s])))
        for lo in names:
            for hi in (s for s in names if next(iter(bits[s])) > next(iter(bits[lo]))):
                for seed, g_lo in cell[cell[series] == lo].groupby(SEED):
                    curve = g_lo.groupby("_logbits")["_acc"].mean().sort_index()
                    if len(curve) < 2:
                        continue
                    h = cell[(cell[series] == hi) & (cell[SEED] == seed)]
                    h = h[h["_logbits"].between(curve.index[0], curve.index[-1])]
                    for _, r in h.iterrows():
                        acc_lo = float(np.interp(r["_logbits"], curve.index.to_numpy(), curve.to_numpy()))
                        near = int(np.argmin(np.abs(curve.index.to_numpy() - r["_logbits"])))  # ties: fewer bits
                        rows.append({"near_bits": float(2 ** curve.index[near]), "acc_near": float(curve.iloc[near]),
                                     "diff_near": r["_acc"] - float(curve.iloc[near]),
                                     "cell": label_of(cell_keys, cvals) if cell_keys else "", "hi": hi, "lo": lo,
                                     "hi_bits": next(iter(bits[hi])), "lo_bits": next(iter(bits[lo])),
                                     "point": label_of(point_keys, [r[k] for k in point_keys]) if point_keys else "",
                                     SEED: seed, "param_bits": float(r["param_bits"]), "acc": r["_acc"],
                                     "acc_lo": acc_lo, "diff": r["_acc"] - acc_lo})
    return pd.DataFrame(rows)


METRIC = {"diff": "final test_acc, against the lower-bit curve interpolated at equal parameter bits",
          "diff_near": "final test_acc, against the nearest measured lower-bit point"}


class _Judge:
    """Each comparison's verdict is ``rec``'s record (question: the sweep's, by 'bits width'); its
    cells are the finished trials of the two series compared."""

    def __init__(self, rec: Recorder | None, plan, cfg: pd.DataFrame | None, trials: pd.DataFrame, keys: list[str]):
        from lowbit_sweeps.analysis.train.findings import question_for

        self.rec = rec if rec is not None else Recorder(plan)
        self.question = question_for(plan, "bits width")
        self.cfg, self.trials, self.series = cfg, ok_trials(trials), series_key(keys)

    def verdict(self, frame: pd.DataFrame, column: str, name: str):
        stat = over_seeds(frame, column, SEED)
        arms = self.trials[self.trials[self.series].isin(set(frame["hi"]) | set(frame["lo"]))]
        if self.cfg is not None:
            arms = self.cfg.loc[self.cfg.index.intersection(arms["trial_key"])]
        v = self.rec.verdict(stat.values, question=self.question, comparison=f"more bits per weight − more weights: {name}",
                             metric=METRIC[column], baseline="the lower-bit series (more weights at equal bits)",
                             unit="fraction (Δ of test_acc)", rows=arms)
        return stat, v


def _stat_text(judge: _Judge, frame: pd.DataFrame, name: str, column: str = "diff") -> tuple[str, str, object]:
    stat, v = judge.verdict(frame, column, name)
    verdict = v.text("more bits per weight higher", "more weights higher", signed_pp, " pp")
    return fmt_pp(stat.mean, stat.std, stat.n, note=stat.note), verdict, v


def _measured_text(judge: _Judge, frame: pd.DataFrame, name: str, v_i) -> str:
    """The measured-points comparison of ``frame`` and whether it disagrees with the interpolated one."""
    text, verdict, v_m = _stat_text(judge, frame, name, "diff_near")
    octaves = float(np.max(np.abs(np.log2(frame["param_bits"].to_numpy(float) / frame["near_bits"].to_numpy(float)))))
    gap = "equal parameter bits" if octaves == 0 else f"parameter bits up to a factor {2 ** octaves:.3g} apart"
    signs = (np.sign(v_i.mean), np.sign(v_m.mean))
    clash = ""
    if signs[0] * signs[1] < 0:
        clash = " **Interpolated and measured points disagree in the sign of the mean difference**"
        if v_i.sign and v_m.sign and v_i.sign != v_m.sign:
            clash += " and their verdicts point opposite ways"
        clash += "."
    return f"between measured points only (the nearest lower-bit trial of the seed, {gap}): {text}; {verdict}.{clash}"


def equal_bits_lines(trials: pd.DataFrame, keys: list[str], rec: Recorder | None = None, plan=SweepPlan(),
                     cfg: pd.DataFrame | None = None) -> list[str]:
    """The findings: the pooled answer, then one line per series pair; a line saying why there is no
    comparison where several bit-widths and widths were run but no ranges overlap. Every verdict is
    ``rec``'s record (``cfg``: trial_key -> cfg.* columns, the records' cells)."""
    diffs = equal_bits_diffs(trials, keys)
    judge = _Judge(rec, plan, cfg, trials, keys)
    if diffs.empty:
        t = _usable(trials)
        if len(t) and t[BITS].nunique() > 1 and WIDTH in keys:
            return ["Equal-bits comparison: none possible (no group's parameter bits lie within the range of another "
                    "bit-width's widths; each curve needs >= 2 widths of a seed)."]
        return []
    text, verdict, v = _stat_text(judge, diffs, "pooled")
    lines = [f"**At equal parameter bits, more bits per weight − more weights** (each higher-bit group against the "
             f"lower-bit curve interpolated in log2 bits at its parameter bits, paired on seed; "
             f"{len(diffs)} comparisons): Δ final test_acc = {text}; {verdict}; {_measured_text(judge, diffs, 'pooled', v)}"]
    for (cell, hi, lo), g in diffs.groupby(["cell", "hi", "lo"], sort=False):
        points = ", ".join(dict.fromkeys(p for p in g["point"] if p)) or "all"
        where = f"{cell}: " if cell else ""
        name = f"{where}{hi} − {lo}"
        text, verdict, v = _stat_text(judge, g, name)
        hi_bits, lo_bits = fmt_value(g["hi_bits"].iloc[0]), fmt_value(g["lo_bits"].iloc[0])
        lines.append(f"  {where}{hi} ({hi_bits} bit) − {lo} ({lo_bits} bit) at {hi}'s bits ({points}): {text}; {verdict}; "
                     + _measured_text(judge, g, name, v))
    return lines


__all__ = ["equal_bits_diffs", "equal_bits_lines"]
