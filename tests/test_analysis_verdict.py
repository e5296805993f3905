"""The one verdict rule (analysis.common.stats.paired_verdict, a paired Student-t 95% interval) against
hand-computed intervals and p-values, its false-direction rate under the null and its power (simulated),
Holm on a hand-made table, the power statement against published sample sizes, the n >= 2 requirement,
NaN handling, and pooled statistics: per-seed means first, the spread over seeds, and the label saying
so -- in the function and in the probe and training reports' findings."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from lowbit_sweeps.analysis.common.stats import (ALPHA, Verdict, holm, holm_note, over_seeds, paired_t, paired_verdict,
                                   power_paired_t, seeds_for_power)
from lowbit_sweeps.analysis.probe.report import ProbeAnalysis
from lowbit_sweeps.analysis.train.report import TrainAnalysis
from test_report import fake_probe_rows
from test_report_train import fake_train_rows


T_975_2 = math.sqrt(1.805 / 0.0975)
"""t(0.975, 2) in closed form: with 2 degrees of freedom F(t) = 1/2 + t / (2·sqrt(2 + t²)), so
F(t) = 0.975 gives t² = 0.9025·2 / 0.0975 = 18.5128..., t = 4.302652729911275."""


@pytest.mark.parametrize("diffs, mean, std, half, sign", [
    ([1.0, 2.0, 3.0], 2.0, 1.0, T_975_2 / math.sqrt(3), 0),          # [2 - 2.4842, 2 + 2.4842] contains 0
    ([2.0, 3.0, 4.0], 3.0, 1.0, T_975_2 / math.sqrt(3), 1),          # [0.5158, 5.4842]
    ([-5.0, -4.0, -6.0], -5.0, 1.0, T_975_2 / math.sqrt(3), -1),
    ([1.0, 3.0], 2.0, math.sqrt(2.0), 12.706204736174707 * 1.0, 0),  # t(0.975, 1) = tan(0.475·π); s/√2 = 1
    ([0.5, 0.5, 0.5], 0.5, 0.0, 0.0, 1),                             # no spread: the point [0.5, 0.5], t infinite
    ([0.0, 0.0], 0.0, 0.0, 0.0, 0),
])
def test_interval_matches_hand_computation(diffs, mean, std, half, sign):
    v = paired_verdict(diffs)
    assert v.n == len(diffs) and v.mean == pytest.approx(mean) and v.std == pytest.approx(std, abs=1e-12)
    assert (v.lo, v.hi) == (pytest.approx(mean - half, abs=1e-9), pytest.approx(mean + half, abs=1e-9))
    assert v.sign == sign
    assert math.tan(0.475 * math.pi) == pytest.approx(12.706204736174707)


def test_interval_excludes_zero_exactly_when_p_below_alpha():
    """p against a hand value: diffs [1, 2, 3] give t = 2 / (1/√3) = 2√3 on 2 df, and with 2 df
    P(|T| > t) = 1 - t/sqrt(2 + t²) = 1 - 2√3/√14 = 0.0741799..."""
    v = paired_verdict([1.0, 2.0, 3.0])
    assert v.p == pytest.approx(1 - 2 * math.sqrt(3) / math.sqrt(14)) and v.effect == pytest.approx(2.0)
    rng = np.random.default_rng(7)
    for _ in range(300):
        v = paired_verdict(rng.normal(0.5, 1.0, size=int(rng.integers(2, 8))))
        assert (v.sign != 0) == (v.p < ALPHA) == (v.lo > 0 or v.hi < 0)


def test_finding_text_carries_interval_n_and_effect():
    assert paired_verdict([2.0, 3.0, 4.0]).text("up", "down") == "+3 [+0.5159, +5.484], n = 3, d = 3: up"
    assert paired_verdict([-5.0, -4.0, -6.0]).text("up", "down", unit=" dB").endswith("n = 3, d = -5: down")
    undecided = paired_verdict([1.0, 2.0, 3.0]).text("up", "down")
    # d = 2 needs n = 5 for 80% power (power 0.909 at 5, 0.674 at 4: see the power test)
    assert undecided == ("+2 [-0.4841, +4.484], n = 3, d = 2: 95% interval contains 0; "
                         "80% power at d = 2 needs n = 5 seeds (α = 0.05)")
    assert "s = 0, t infinite" in paired_verdict([0.5, 0.5, 0.5]).text("up", "down")
    assert "one std" not in undecided and "95% interval contains 0" in undecided


@pytest.mark.parametrize("d, n", [(0.5, 34), (1.0, 10), (0.2, 199), (0.8, 15), (2.0, 5), (-0.5, 34)])
def test_seeds_for_power_matches_published_sample_sizes(d, n):
    """Paired (matched-pairs) t test, two-sided alpha 0.05, power 0.8: G*Power (Faul et al. 2007)
    gives N = 34 for d_z = 0.5 (actual power 0.8078), 199 for 0.2, 15 for 0.8; d_z = 1 -> 10, as the
    noncentral t gives by hand: power 0.803 at n = 10 and 0.748 at n = 9."""
    assert seeds_for_power(d) == n
    assert power_paired_t(abs(d), n) >= 0.8 > power_paired_t(abs(d), n - 1)
    assert power_paired_t(0.5, 34) == pytest.approx(0.8077775, abs=1e-6)
    assert seeds_for_power(0.0) is None and seeds_for_power(math.nan) is None


def test_power_at_one_std_against_a_simulation():
    """The noncentral-t power against a Monte-Carlo of the t test itself (20,000 draws, n = 5, d = 1)."""
    rng = np.random.default_rng(11)
    x = rng.normal(1.0, 1.0, size=(20_000, 5))
    _, _, _, sign = paired_t(x.mean(1), x.std(1, ddof=1), 5)
    assert np.mean(sign != 0) == pytest.approx(power_paired_t(1.0, 5), abs=0.012)


@pytest.mark.parametrize("n", [2, 3, 5, 10])
def test_false_direction_rate_under_the_null(n):
    """Paired normal differences with mean 0, 10,000 draws (fixed seed): a direction at most 6% of
    the time (exactly 5% in expectation; Monte-Carlo sd 0.22%). The old |m| > s rule: 39% at n = 2."""
    rng = np.random.default_rng(1000 + n)
    x = rng.normal(0.0, 1.0, size=(10_000, n))
    _, _, p, sign = paired_t(x.mean(1), x.std(1, ddof=1), n)
    assert np.mean(sign != 0) <= 0.06 and np.array_equal(sign != 0, p < ALPHA)
    if n == 2:
        assert np.mean(np.abs(x.mean(1)) > x.std(1, ddof=1)) > 0.37  # the rule it replaces


@pytest.mark.parametrize("n", [3, 5])
def test_paired_verdict_itself_holds_the_null_rate(n):
    """The Done-when check through the function outside checks call: 10,000 draws at n = 3 and 5."""
    rng = np.random.default_rng(2000 + n)
    x = rng.normal(0.0, 1.0, size=(10_000, n))
    signs = np.array([paired_verdict(row).sign for row in x])
    assert np.mean(signs != 0) <= 0.06


def test_power_at_one_std_rises_with_seeds():
    """True effect of one std: the share of directions (all +1) rises from n = 3 to 5 to 10, through
    paired_verdict on 2,000 draws each; the noncentral-t values are 0.22, 0.40, 0.80."""
    rng = np.random.default_rng(5)
    rates = []
    for n in (3, 5, 10):
        signs = np.array([paired_verdict(row).sign for row in rng.normal(1.0, 1.0, size=(2_000, n))])
        assert not (signs == -1).any() or np.mean(signs == -1) < 0.005
        rates.append(np.mean(signs == 1))
        assert rates[-1] == pytest.approx(power_paired_t(1.0, n), abs=0.03)
    assert rates[0] < rates[1] < rates[2] and rates[2] > 0.75


def test_holm_on_a_hand_made_table():
    """p = 0.01, 0.04, 0.03, 0.20 (K = 4): sorted 0.01, 0.03, 0.04, 0.20 -> 4·0.01 = 0.04,
    max(0.04, 3·0.03) = 0.09, max(0.09, 2·0.04) = 0.09, max(0.09, 0.20) = 0.20; only the first keeps
    its direction. A verdict without a p-value (n = 1) stays out of K."""
    made = [Verdict(5, m, 1.0, s, p=p) for m, s, p in ((+1.0, 1, 0.01), (-1.0, -1, 0.04), (0.5, 1, 0.03),
                                                          (0.1, 0, 0.20))]
    out = holm(made + [Verdict(1, 0.3, math.nan, None)])
    assert [v.p_holm for v in out[:4]] == pytest.approx([0.04, 0.09, 0.09, 0.20])
    assert [v.sign for v in out] == [1, 0, 0, 0, None] and {v.k for v in out[:4]} == {4}
    assert out[4].sign is None and out[4].k == 1
    assert "p_Holm = 0.09 (K = 4)" in out[1].numbers()
    assert holm_note(out) == ("Holm-adjusted over K = 4 comparisons, family-wise α = 0.05 (a direction only where "
                              "the adjusted p < 0.05); intervals are the unadjusted paired-t 95% intervals, n = seeds.")
    # with one comparison Holm changes nothing
    alone = paired_verdict([2.0, 3.0, 4.0])
    assert holm([alone])[0].sign == alone.sign and holm([alone])[0].p_holm == pytest.approx(alone.p)


def test_holm_removes_a_direction_whose_interval_excludes_zero():
    v = [paired_verdict([2.0, 3.0, 4.0])] + [paired_verdict([1.0, -1.0, 0.5])] * 5
    assert v[0].sign == 1 and 0.01 < v[0].p < 0.05
    out = holm(v)
    assert out[0].sign == 0 and out[0].lo > 0
    assert "no direction after Holm over K = 6" in out[0].text("up", "down")
    assert "α = 0.05/6" in out[0].text("up", "down")


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
            "2 settings), pooled over noise; +0.06333 [+0.02539, +0.1013], n = 3, d = 4.1: multi-step better") in fp
    binary = next(x for x in lines if x.startswith("Multi-step vs single-step for binary"))
    assert "(n=3; ± std over seeds of the per-seed mean over 6 settings)" in binary


def test_single_seed_probe_findings_give_no_verdict():
    lines = ProbeAnalysis(fake_probe_rows()[lambda d: d["seed"] == 0]).findings_lines()
    stats = [x for x in lines if "rel_improvement_best" in x or "vSTE" in x]
    assert stats and all("n=1" in x for x in stats)
    assert not any("one std" in x or "[" in x for x in lines if "rel_improvement_best" in x)
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
    assert "+1.00 [+1.00, +1.00] pp, n = 3, no spread (s = 0, t infinite)" in line and line.endswith(": mixup_alpha=1 higher.")


def test_power_where_scipys_noncentral_t_fails():
    """scipy's nct gives NaN at 1 degree of freedom and a large noncentrality (n = 2, d = 7.78, α =
    0.01); the integral over the chi distribution takes over and agrees with a Monte-Carlo of the test."""
    from scipy import stats
    c, nc = stats.t.ppf(0.995, 1), 7.78 * math.sqrt(2)
    assert math.isnan(stats.nct.sf(c, 1, nc) + stats.nct.cdf(-c, 1, nc))
    rng = np.random.default_rng(3)
    for n, alpha in ((2, 0.01), (2, 0.05), (3, 0.01)):
        x = rng.normal(7.78, 1.0, size=(40_000, n))
        _, _, _, sign = paired_t(x.mean(1), x.std(1, ddof=1), n, alpha)
        assert power_paired_t(7.78, n, alpha) == pytest.approx(np.mean(sign != 0), abs=0.01)
    assert seeds_for_power(7.78, 0.01) == 3 and seeds_for_power(7.78) == 3  # power at n = 2: 0.14 and 0.61
