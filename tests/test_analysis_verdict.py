"""The one verdict rule (analysis.common.stats.paired_verdict) against hand-computed values, the
n >= 2 requirement, NaN handling, and pooled statistics: per-seed means first, the spread over seeds,
and the label saying so -- in the function and in the probe and training reports' findings."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from analysis.common.stats import NO_CLEAR, over_seeds, paired_verdict
from analysis.probe.report import ProbeAnalysis
from analysis.train.report import TrainAnalysis
from test_report import fake_probe_rows
from test_report_train import fake_train_rows


@pytest.mark.parametrize("diffs, mean, std, sign", [
    ([0.02, 0.03, 0.05], 0.1 / 3, math.sqrt((0.0133333 ** 2 + 0.0033333 ** 2 + 0.0166667 ** 2) / 2), 1),
    ([-0.05, -0.04, -0.06], -0.05, 0.01, -1),
    ([0.01, -0.02, 0.04], 0.01, 0.03, 0),          # |mean| 0.01 <= std 0.03
    ([1.0, 3.0], 2.0, math.sqrt(2.0), 1),          # 2 > 1.414
    ([0.0, 2.0], 1.0, math.sqrt(2.0), 0),          # 1 <= 1.414
    ([0.5, 0.5, 0.5], 0.5, 0.0, 1),                # no spread: any nonzero mean is a direction
    ([0.0, 0.0], 0.0, 0.0, 0),
])
def test_verdict_matches_hand_computation(diffs, mean, std, sign):
    v = paired_verdict(diffs)
    assert v.n == len(diffs) and v.mean == pytest.approx(mean, abs=1e-6) and v.std == pytest.approx(std, abs=1e-6)
    assert v.sign == sign
    assert v.text("up", "down") == {1: "up by more than one std", -1: "down by more than one std", 0: NO_CLEAR}[sign]


@pytest.mark.parametrize("diffs", [[0.3], [], [math.nan, 0.3], [None, 0.3, math.inf]])
def test_fewer_than_two_seeds_give_no_verdict(diffs):
    v = paired_verdict(diffs)
    assert v.sign is None and v.n == (0 if not diffs else 1)
    assert v.text("up", "down") == f"n = {v.n}: no verdict (needs >= 2 seeds)"


def test_a_nan_never_becomes_zero():
    # Read as 0, the NaN would make n = 3, mean 0.0167 and std 0.0153: a verdict from a missing value.
    v = paired_verdict([0.02, math.nan, 0.03])
    assert v.n == 2 and v.mean == pytest.approx(0.025) and v.std == pytest.approx(math.sqrt(0.00005))
    stat = over_seeds(pd.DataFrame({"seed": [0, 0, 1, 1], "d": [0.02, math.nan, 0.03, math.nan]}), "d", "seed")
    assert stat.n == 2 and stat.mean == pytest.approx(0.025) and stat.settings == (1, 1)


def spread_frame() -> pd.DataFrame:
    """4 settings that differ a lot (0, 10, 20, 30) and 3 seeds that agree (offsets 0, 0.01, 0.02)."""
    return pd.DataFrame([{"seed": s, "setting": k, "d": 10.0 * k + 0.01 * s} for s in range(3) for k in range(4)])


def test_pooled_spread_is_over_seeds_of_per_seed_means():
    df = spread_frame()
    stat = over_seeds(df, "d", "seed")
    assert stat.n == 3 and stat.settings == (4, 4)
    assert stat.mean == pytest.approx(15.01) and stat.std == pytest.approx(0.01)  # not the 11.2 across settings
    assert np.std(df["d"], ddof=1) > 11
    assert stat.note == "± std over seeds of the per-seed mean over 4 settings"
    assert stat.verdict().sign == 1
    one = over_seeds(df[df["setting"] == 2], "d", "seed")
    assert one.note == "" and one.n == 3  # one setting per seed: a plain std over seeds
    assert over_seeds(df[df["seed"] == 0], "d", "seed").note == "one seed, its mean over 4 settings"


def test_probe_pooled_finding_labels_its_spread():
    """Settings far apart (noise 0: -0.5, noise 0.05: +0.6) but seeds in agreement: pooled over
    trials the std (0.57) would swallow the mean; over seeds of per-seed means it is 0.015."""
    df = fake_probe_rows()
    seed_part = df["seed"].map({0: 0.0, 1: 0.01, 2: 0.03})
    df["rel_improvement_best"] = np.where(df["cfg.multi.noise"] == 0.0, -0.5, 0.6) + seed_part
    lines = ProbeAnalysis(df).findings_lines()
    fp = next(x for x in lines if x.startswith("Multi-step vs single-step for fp"))
    assert ("mean rel_improvement_best = +0.06333 ± 0.01528 (n=3; ± std over seeds of the per-seed mean over "
            "2 settings), pooled over noise; multi-step better by more than one std") in fp
    binary = next(x for x in lines if x.startswith("Multi-step vs single-step for binary"))
    assert "(n=3; ± std over seeds of the per-seed mean over 6 settings)" in binary


def test_single_seed_probe_findings_give_no_verdict():
    lines = ProbeAnalysis(fake_probe_rows()[lambda d: d["seed"] == 0]).findings_lines()
    stats = [x for x in lines if "rel_improvement_best" in x or "vSTE" in x]
    assert stats and all("n=1" in x for x in stats)
    assert not any("by more than one std" in x or "within one std, " in x for x in lines)
    assert sum("n = 1: no verdict (needs >= 2 seeds)" in x for x in lines) >= 4


def test_train_pooled_comparison_labels_its_spread():
    """Mixup's effect differs a lot between the data sets (-12 vs +14 points) but not between seeds."""
    df = fake_train_rows(pretrains=(0,))
    last = df["epoch"] == df["epoch"].max()
    shift = np.where(df["cfg.data.name"] == "cifar10", -0.10, 0.16) * df["cfg.train.mixup_alpha"]
    df.loc[last, "test_acc"] += shift[last]
    a = TrainAnalysis(df)
    pooled = a.comparisons[(a.comparisons["axis"] == "cfg.train.mixup_alpha") & (a.comparisons["cell"] == "pooled")].iloc[0]
    # per seed: mean over the two data sets of (-0.02 - 0.10, -0.02 + 0.16) = +0.01 for every seed
    assert pooled["final.mean"] == pytest.approx(0.01) and pooled["final.std"] == pytest.approx(0.0, abs=1e-12)
    assert pooled["final.n"] == 3 and pooled["n_pairs"] == 6
    line = next(x for x in a.findings if x.startswith("mixup_alpha=1 − mixup_alpha=0"))
    assert "+1.00 ± 0.00 pp (n=3; ± std over seeds of the per-seed mean over 2 settings)" in line
    assert "mixup_alpha=1 higher by more than one std" in line
