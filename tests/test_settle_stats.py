"""The statistics ``--settle`` rests on: the TOST p-value, Holm with equivalence, the alpha-spending
schedule, and a small simulation of the settle loop through ``benchmarks/settle_simulation.py``'s own
code (its vectorized loop, checked against paired_verdict + holm) under the null and at the margin."""
from __future__ import annotations

import importlib.util
import math
import sys
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from lowbit_sweeps.analysis.common.sequential import look_alpha, schedule, spent
from lowbit_sweeps.analysis.common.stats import ALPHA, Verdict, holm, paired_verdict, tost_p

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def sim():
    """benchmarks/settle_simulation.py as a module (benchmarks/ is not a package)."""
    path = ROOT / "benchmarks" / "settle_simulation.py"
    spec = importlib.util.spec_from_file_location("settle_simulation", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        sys.modules.pop(spec.name, None)


def _msn(d):
    d = np.asarray(d, dtype=float)
    return d.mean(), d.std(ddof=1), d.size


# --- tost_p -------------------------------------------------------------------------------------

def test_tost_p_equals_statsmodels_ttost_paired():
    weightstats = pytest.importorskip("statsmodels.stats.weightstats")
    rng = np.random.default_rng(3)
    for _ in range(30):
        n = int(rng.integers(2, 20))
        x1, x2 = rng.normal(0.2, 1, n), rng.normal(0, 1, n)
        margin = float(rng.uniform(0.1, 2))
        expected = weightstats.ttost_paired(x1, x2, -margin, margin)[0]
        assert tost_p(*_msn(x1 - x2), margin) == pytest.approx(float(expected), rel=1e-9, abs=1e-15)


def test_tost_p_by_hand_on_tiny_cases():
    # n = 3 (t with 2 df: F(t) = 1/2 + t / (2 sqrt(2 + t^2))): mean 0.3, s = 0.2, se = 0.2/sqrt(3);
    # lower test t = (0.3 - 0.5)/se = -sqrt(3), P = 1/2 - sqrt(3)/(2 sqrt(5)); the upper one, t = 4 sqrt(3), is smaller
    assert tost_p(*_msn([0.1, 0.3, 0.5]), 0.5) == pytest.approx(0.5 - math.sqrt(3) / (2 * math.sqrt(5)), rel=1e-12)
    # n = 2 (Cauchy: F(t) = 1/2 + atan(t)/pi): mean 0.2, se = 0.1; t = -3 and t = 7
    assert tost_p(*_msn([0.1, 0.3]), 0.5) == pytest.approx(0.5 - math.atan(3) / math.pi, rel=1e-12)
    # symmetric: a mean of -0.3 gives the same p; no margin or one seed: NaN
    assert tost_p(-0.3, 0.2, 3, 0.5) == pytest.approx(tost_p(0.3, 0.2, 3, 0.5), rel=1e-12)
    assert math.isnan(tost_p(0.3, 0.2, 3, math.nan)) and math.isnan(tost_p(0.3, 0.2, 1, 0.5))


def test_equivalent_exactly_when_the_1_minus_2alpha_interval_lies_inside_the_margin():
    rng = np.random.default_rng(7)
    checked = 0
    for _ in range(2000):
        mean, std = float(rng.normal(0, 1)), float(rng.uniform(0.05, 2))
        n, margin = int(rng.integers(2, 40)), float(rng.uniform(0.05, 2))
        alpha = float(rng.choice([0.05, 0.0125, 0.01, 0.1]))
        half = stats.t.ppf(1 - alpha, n - 1) * std / math.sqrt(n)
        lo, hi = mean - half, mean + half
        if min(abs(lo + margin), abs(hi - margin)) < 1e-9:  # on the boundary: either answer
            continue
        assert (tost_p(mean, std, n, margin) < alpha) == (-margin < lo and hi < margin), (mean, std, n, margin, alpha)
        checked += 1
    assert checked > 1900


# --- holm with equivalence ---------------------------------------------------------------------

def _v(mean, p, p_eq, n=5):
    return Verdict(n, mean, 1.0, 0, p=p, effect=mean, margin=0.5, p_equiv=p_eq)


def test_holm_decides_directions_and_equivalences_together():
    table = [
        # closed test over the 2K nulls (q: the smaller p, r: the larger): p_Holm(i) = max over s of
        # s * min(q_i, R_{s-1}), R the others' r in descending order (R_0 = inf)
        _v(+1.0, 0.001, 0.9),    # q 0.001, others' r 0.8, 0.7, 0.3: 4 x 0.001 = 0.004 -> higher
        _v(0.05, 0.8, 0.01),     # q 0.01 (equivalence), others' r 0.9, 0.7, 0.3: 4 x 0.01 = 0.04 -> equivalent
        _v(-0.4, 0.012, 0.7),    # q 0.012, others' r 0.9, 0.8, 0.3: 4 x 0.012 = 0.048 -> lower
        _v(0.3, 0.3, 0.2),       # q 0.2, others' r 0.9, 0.8, 0.7: 4 x min(0.2, 0.7) = 0.8 -> undecided
        Verdict(5, 0.0, 0.0, 0, p=1.0, margin=0.5, p_equiv=0.0, identical=True),  # not counted in K
        Verdict(1, 0.2, math.nan, None, margin=0.5),                                 # no verdict, not in K
    ]
    out = holm(table)
    assert [v.decision for v in out] == ["higher", "equivalent", "lower", "undecided", "identical", "no verdict"]
    assert [v.p_holm for v in out[:4]] == pytest.approx([0.004, 0.04, 0.048, 0.8])
    assert [v.k for v in out[:4]] == [4, 4, 4, 4]
    assert all(v.alpha == ALPHA for v in out)
    # at a look's smaller alpha only the first is decided
    look = holm(table, 0.025)
    assert [v.decision for v in look] == ["higher", "undecided", "undecided", "undecided", "identical", "no verdict"]
    assert [v.p_holm for v in look[:4]] == pytest.approx([0.004, 0.04, 0.048, 0.8])
    assert all(v.alpha == 0.025 for v in look)


def test_without_margins_it_is_holms_step_down():
    """One null per comparison: the closed test is Holm's procedure (hand values: p = 0.01, 0.04,
    0.03, 0.005 -> sorted 0.005, 0.01, 0.03, 0.04 -> 4 x 0.005, 3 x 0.01, 2 x 0.03, 0.04 with the
    running max: 0.02, 0.03, 0.06, 0.06), and statsmodels' Holm where it is installed."""
    ps = [0.01, 0.04, 0.03, 0.005]
    out = holm([Verdict(5, 1.0, 1.0, 1, p=p) for p in ps])
    assert [v.p_holm for v in out] == pytest.approx([0.03, 0.06, 0.06, 0.02])
    multitest = pytest.importorskip("statsmodels.stats.multitest")
    assert [v.p_holm for v in out] == pytest.approx(list(multitest.multipletests(ps, method="holm")[1]))


def test_identical_comparisons_are_not_counted_in_k():
    same = paired_verdict([0.0, 0.0, 0.0], 0.5)
    real = paired_verdict([1.0, 1.2, 0.9, 1.1], 0.5)
    out = holm([same, real, same])
    assert out[0].decision == out[2].decision == "identical"
    assert out[1].k == 1 and out[1].p_holm == pytest.approx(real.p) and out[1].decision == "higher"


# --- the alpha-spending schedule ---------------------------------------------------------------

def test_schedule():
    assert schedule(3, 16) == [3, 5, 8, 12, 16]
    assert schedule(2, 2) == [2]
    for n0 in range(2, 12):
        for n_max in range(n0, 40):
            s = schedule(n0, n_max)
            assert s[0] == n0 and s[-1] == n_max and all(b > a for a, b in zip(s, s[1:]))
    with pytest.raises(ValueError):
        schedule(1, 16)
    with pytest.raises(ValueError):
        schedule(8, 4)


@pytest.mark.parametrize("alpha", [0.05, 0.1])
def test_look_alphas_sum_to_alpha_and_the_first_spends_n0_over_n(alpha):
    for n0, n_max in [(3, 16), (2, 2), (2, 40), (5, 9)]:
        s = schedule(n0, n_max)
        looks = [look_alpha(n, prev, n_max, alpha) for prev, n in zip([0, *s[:-1]], s)]
        assert sum(looks) == pytest.approx(alpha, rel=1e-12)
        assert looks[0] == pytest.approx(alpha * n0 / n_max, rel=1e-12)
        assert all(a > 0 for a in looks)
        assert spent(n_max, n_max, alpha) == pytest.approx(alpha)


# --- the settle loop, simulated with the benchmark's own code -----------------------------------

def _upper_ok(hits: int, total: int, alpha: float = ALPHA) -> bool:
    """The 99% binomial interval of the rate reaches down to (below) alpha."""
    return stats.binomtest(hits, total).proportion_ci(confidence_level=0.99).low < alpha


def test_benchmark_loop_equals_paired_verdict_and_holm(sim):
    rng = np.random.default_rng(11)
    for mu in (0.0, 0.5, 1.0):
        diffs = sim.draw(rng, 12, 3, 16, mu)
        for spend in (True, False):
            looks, alphas = sim.settle_looks(3, 16, spend=spend)
            sim.check_against_project(diffs, looks, alphas, 0.5, 12)


def test_settle_loop_keeps_false_direction_under_the_null(sim):
    reps, k, margin = 400, 3, 0.5
    diffs = sim.draw(np.random.default_rng(2025), reps, k, 16, 0.0)
    res = sim.settle_loop(diffs, margin, n0=3)
    hits = int(np.isin(res.decision, (sim.HIGHER, sim.LOWER)).any(axis=1).sum())
    assert _upper_ok(hits, reps), hits
    assert set(np.unique(res.seeds)) <= set(schedule(3, 16))
    # the same looks without spending do inflate it (the design's reason)
    naive = sim.settle_loop(diffs, margin, n0=3, spend=False)
    assert int(np.isin(naive.decision, (sim.HIGHER, sim.LOWER)).any(axis=1).sum()) > hits


def test_settle_loop_keeps_false_equivalence_at_the_margin(sim):
    reps, k, margin = 400, 3, 0.5
    diffs = sim.draw(np.random.default_rng(2026), reps, k, 16, margin)
    res = sim.settle_loop(diffs, margin, n0=3)
    hits = int((res.decision == sim.EQUIVALENT).any(axis=1).sum())
    assert _upper_ok(hits, reps), hits


def test_holm_with_equivalence_keeps_the_family_wise_rate_at_one_look(sim):
    reps, k, margin, n = 4000, 4, 1.0, 12
    diffs = sim.draw(np.random.default_rng(5), reps, k, n, margin)
    sim.check_against_project(diffs, [n], [ALPHA], margin, 20)
    res = sim.run_looks(diffs, [n], [ALPHA], margin)
    hits = int((res.decision == sim.EQUIVALENT).any(axis=1).sum())
    assert _upper_ok(hits, reps), f"{hits}/{reps} false 'equivalent' (family-wise) at alpha {ALPHA}"
