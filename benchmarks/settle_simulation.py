"""Do the repeated looks of ``--settle`` keep the error rates, and how many seeds do they spend?

Simulates the settle loop of issue 25 exactly as :mod:`analysis.common.sequential` designs it:
K comparisons with paired differences ~ Normal(mu, 1) (sd units), looks at the seeds of
``schedule(n0, N)``; look r tests at alpha_r = ``look_alpha(n_r, n_{r-1}, N)`` (power-family alpha
spending, Lan & DeMets 1983); at each look :func:`holm` decides the K comparisons together (all of
them, each with its current data: a comparison decided earlier enters with the seeds it had then),
directions and equivalence within +-margin; a comparison decided at a look keeps its decision and
gets no more seeds; the undecided ones get seeds up to the next look's n. Every verdict is made as
:func:`paired_verdict` makes it (paired t, two one-sided tests); for speed :func:`run_looks` computes
the same p-values on arrays, and ``main`` first asserts, on the first ``--check`` replications of
each scenario, that :func:`run_looks_reference` (the project's :func:`paired_verdict` and
:func:`holm`, one comparison at a time) gives the same decisions, looks and Holm p-values.

Reported (binomial 95% Clopper-Pearson intervals, ``scipy.stats.binomtest``):

(a) all true means 0: the family-wise false-direction rate (any comparison decided higher/lower at
    any look), which must be <= alpha;
(b) all true means at +margin: the family-wise false-"equivalent" rate, which must be <= alpha;
(c) power and seeds: at true mean 0 (equivalent is right) and at ``--effect`` (higher is right), the
    fraction of comparisons decided correctly and the mean seeds spent per comparison, against the
    smallest fixed n (one look at alpha, Holm over K) whose simulated power reaches the settle
    design's, and the ratio settle seeds / fixed-n seeds;
(d) the same looks without spending (every look at the full alpha) under the null: the inflation
    the design avoids;
(e) for reference, one look at N seeds at the full alpha: the error rates of Holm over K alone, so
    that an excess in (a) or (b) can be told apart from the looks.

Exit status 1 when (a) or (b) exceed alpha by more than the Monte-Carlo interval (its lower bound
above alpha). Usage: ``python benchmarks/settle_simulation.py [--k 4] [--n0 3] [--max-seeds 16]
[--margin 0.5] [--alpha 0.05] [--reps 4000] [--effect 1.0] [--seed 0] [--check 25]``; ends with one
JSON line (:func:`gpu_table.result_line`). The defaults take a few seconds on one core.
"""
from __future__ import annotations

import argparse
import datetime
import math
import os
import platform
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import scipy
from scipy import stats

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from lowbit_sweeps.analysis.common.sequential import look_alpha, schedule  # noqa: E402
from lowbit_sweeps.analysis.common.stats import ALPHA, closed_adjusted, holm, paired_verdict  # noqa: E402

UNDECIDED, HIGHER, LOWER, EQUIVALENT = 0, 1, -1, 2
CODE = {"higher": HIGHER, "lower": LOWER, "equivalent": EQUIVALENT}


@dataclass
class Looks:
    """The outcome of a run of looks over R replications of K comparisons: per (rep, comparison) the
    decision code (0 undecided, 1 higher, -1 lower, 2 equivalent), the look that decided it (-1:
    none), the seeds it got (the n of that look, or the last look's n); per (rep, look, comparison)
    the Holm-adjusted p-value of that look."""

    decision: np.ndarray
    look: np.ndarray
    seeds: np.ndarray
    p_holm: np.ndarray


def settle_looks(n0: int, n_max: int, alpha: float = ALPHA, spend: bool = True) -> tuple[list[int], list[float]]:
    """The settle design's looks (seeds per comparison) and the level of each: ``look_alpha`` with
    ``spend``, else the full ``alpha`` at every look (the naive repeated look)."""
    ns = schedule(n0, n_max)
    if not spend:
        return ns, [alpha] * len(ns)
    return ns, [look_alpha(n, prev, n_max, alpha) for prev, n in zip([0, *ns[:-1]], ns)]


def t_tests(mean, std, n, margin: float) -> tuple[np.ndarray, np.ndarray]:
    """(p, p_equiv) on arrays: the two-sided one-sample t p-value of mean 0 and the TOST p-value of
    |mu| >= margin, as :func:`paired_t` and :func:`tost_p` compute them (std > 0)."""
    mean, std, n = (np.asarray(x, dtype=float) for x in (mean, std, n))
    if not np.all(std > 0):
        raise ValueError("t_tests needs std > 0 (continuous draws never give 0)")
    se = std / np.sqrt(n)
    p = np.minimum(1.0, 2 * stats.t.sf(np.abs(mean) / se, n - 1))
    p_eq = np.maximum(stats.t.sf((mean + margin) / se, n - 1), stats.t.cdf((mean - margin) / se, n - 1))
    return p, p_eq


def holm_table(p, p_eq, mean, alpha: float) -> tuple[np.ndarray, np.ndarray]:
    """:func:`holm` over the last axis (K comparisons, none identical): (decision codes, p_Holm)."""
    adj = closed_adjusted(np.minimum(p, p_eq), np.maximum(p, p_eq))
    decided = adj < alpha
    by_direction = (p <= p_eq) & (mean != 0)
    code = np.where(decided, np.where(by_direction, np.where(mean > 0, HIGHER, LOWER), EQUIVALENT), UNDECIDED)
    return code.astype(int), adj


def run_looks(diffs: np.ndarray, looks: list[int], alphas: list[float], margin: float) -> Looks:
    """The settle loop on ``diffs`` (R, K, >= looks[-1]): the first looks[r] differences of each
    comparison are its data at look r unless it was decided earlier (then it keeps the data, and the
    decision, it had); Holm over all K at alphas[r]. One look at alpha is the fixed-n design."""
    r_, k, n_have = diffs.shape
    if n_have < looks[-1] or len(looks) != len(alphas):
        raise ValueError("diffs must hold looks[-1] differences per comparison, and one alpha per look")
    decision = np.zeros((r_, k), dtype=int)
    look = np.full((r_, k), -1)
    seeds = np.full((r_, k), looks[-1])
    mean = np.zeros((r_, k))
    std = np.ones((r_, k))
    n = np.zeros((r_, k))
    p_holm = np.empty((r_, len(looks), k))
    for r, (n_r, a_r) in enumerate(zip(looks, alphas)):
        x = diffs[..., :n_r]
        open_ = decision == UNDECIDED
        mean = np.where(open_, x.mean(axis=-1), mean)
        std = np.where(open_, x.std(axis=-1, ddof=1), std)
        n = np.where(open_, n_r, n)
        p, p_eq = t_tests(mean, std, n, margin)
        code, p_holm[:, r] = holm_table(p, p_eq, mean, a_r)
        new = open_ & (code != UNDECIDED)
        decision[new], look[new], seeds[new] = code[new], r, n_r
    return Looks(decision, look, seeds, p_holm)


def run_looks_reference(diffs: np.ndarray, looks: list[int], alphas: list[float], margin: float) -> Looks:
    """:func:`run_looks` for one replication (``diffs`` (K, N)) with the project's own functions:
    :func:`paired_verdict` per comparison, :func:`holm` over the K at each look."""
    k = diffs.shape[0]
    decision, look, seeds = [UNDECIDED] * k, [-1] * k, [looks[-1]] * k
    n = [0] * k
    p_holm = np.empty((len(looks), k))
    for r, (n_r, a_r) in enumerate(zip(looks, alphas)):
        n = [n_r if decision[i] == UNDECIDED else n[i] for i in range(k)]
        table = holm([paired_verdict(diffs[i, :n[i]], margin) for i in range(k)], a_r)
        for i, v in enumerate(table):
            p_holm[r, i] = v.p_holm
            if decision[i] == UNDECIDED and v.decision in CODE:
                decision[i], look[i], seeds[i] = CODE[v.decision], r, n_r
    return Looks(np.array([decision]), np.array([look]), np.array([seeds]), p_holm[None])


def check_against_project(diffs: np.ndarray, looks: list[int], alphas: list[float], margin: float, reps: int) -> None:
    """Assert that :func:`run_looks` and :func:`run_looks_reference` agree on the first ``reps``
    replications (decisions, deciding looks, seeds and every look's p_Holm)."""
    fast = run_looks(diffs[:reps], looks, alphas, margin)
    for i in range(min(reps, diffs.shape[0])):
        ref = run_looks_reference(diffs[i], looks, alphas, margin)
        assert np.array_equal(fast.decision[i], ref.decision[0]), (i, fast.decision[i], ref.decision[0])
        assert np.array_equal(fast.look[i], ref.look[0]), (i, fast.look[i], ref.look[0])
        assert np.array_equal(fast.seeds[i], ref.seeds[0]), (i, fast.seeds[i], ref.seeds[0])
        assert np.allclose(fast.p_holm[i], ref.p_holm[0], rtol=1e-9, atol=1e-12), (i, fast.p_holm[i], ref.p_holm[0])


def settle_loop(diffs: np.ndarray, margin: float, n0: int, alpha: float = ALPHA, spend: bool = True) -> Looks:
    """The settle design on ``diffs`` (R, K, N): looks at ``schedule(n0, N)``, each at its
    ``look_alpha`` (``spend``) or at the full ``alpha``."""
    looks, alphas = settle_looks(n0, diffs.shape[-1], alpha, spend)
    return run_looks(diffs, looks, alphas, margin)


def draw(rng: np.random.Generator, reps: int, k: int, n: int, mu: float) -> np.ndarray:
    return mu + rng.standard_normal((reps, k, n))


def rate(hits: int, total: int) -> tuple[float, float, float]:
    """(rate, low, high): the binomial 95% (Clopper-Pearson) interval."""
    ci = stats.binomtest(int(hits), int(total)).proportion_ci(confidence_level=0.95)
    return hits / total, float(ci.low), float(ci.high)


def fmt_rate(hits: int, total: int) -> str:
    r, lo, hi = rate(hits, total)
    return f"{100 * r:5.2f}% [{100 * lo:.2f}, {100 * hi:.2f}] ({hits}/{total})"


def by_look(res: Looks, wrong: np.ndarray, n_looks: int) -> str:
    """How many wrong decisions each look made (over all reps and comparisons)."""
    counts = [int(np.sum(wrong & (res.look == r))) for r in range(n_looks)]
    return ", ".join(f"look {r}: {c}" for r, c in enumerate(counts))


def machine_line() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    load = f", load {os.getloadavg()[0]:.1f}" if hasattr(os, "getloadavg") else ""
    now = datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    return (f"date {now}; machine {platform.node()} ({cpu}, {os.cpu_count()} cores{load}), {platform.system()} "
            f"{platform.release()}; Python {platform.python_version()}, numpy {np.__version__}, scipy {scipy.__version__}")


def fixed_n_power(rng, reps: int, k: int, mu: float, margin: float, alpha: float, correct: int,
                  n_cap: int) -> list[tuple[int, float]]:
    """[(n, power)] of the fixed-n design (one look at ``alpha``, Holm over K) for n = 2..n_cap, on
    one draw of n_cap differences per comparison (the first n of them at each n)."""
    diffs = draw(rng, reps, k, n_cap, mu)
    out = []
    for n in range(2, n_cap + 1):
        res = run_looks(diffs[..., :n], [n], [alpha], margin)
        out.append((n, float(np.mean(res.decision == correct))))
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--k", type=int, default=4, help="comparisons decided together (Holm family)")
    ap.add_argument("--n0", type=int, default=3, help="seeds at the first look")
    ap.add_argument("--max-seeds", type=int, default=16, help="N, the seeds at the last look")
    ap.add_argument("--margin", type=float, default=0.5, help="equivalence margin, in sd units")
    ap.add_argument("--alpha", type=float, default=ALPHA)
    ap.add_argument("--reps", type=int, default=4000)
    ap.add_argument("--effect", type=float, default=1.0, help="true mean (sd units) of the power scenario with a direction")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--check", type=int, default=25, help="replications per scenario checked against the project's functions")
    ap.add_argument("--fixed-cap", type=int, default=0, help="largest fixed n tried (default 4 N)")
    args = ap.parse_args(argv)

    k, n0, n_max, m, alpha, reps = args.k, args.n0, args.max_seeds, args.margin, args.alpha, args.reps
    rng = np.random.default_rng(args.seed)
    looks, alphas = settle_looks(n0, n_max, alpha)
    _, plain = settle_looks(n0, n_max, alpha, spend=False)
    print("settle_simulation: " + machine_line())
    print(f"parameters: K = {k} comparisons, differences ~ Normal(mu, 1), n0 = {n0}, N = {n_max}, margin = {m:g} sd, "
          f"alpha = {alpha:g}, {reps} replications, effect = {args.effect:g} sd, seed = {args.seed}")
    print(f"looks (seeds per comparison): {looks}; alpha_r: {', '.join(f'{a:.5f}' for a in alphas)} "
          f"(sum {sum(alphas):.5f})")

    scenarios = {"null": 0.0, "margin": m, "effect": args.effect}
    draws = {name: draw(rng, reps, k, n_max, mu) for name, mu in scenarios.items()}
    checked = 0
    for d in draws.values():
        for a in (alphas, plain):
            check_against_project(d, looks, a, m, args.check)
        checked += min(args.check, reps)
    print(f"check: the vectorized loop equals paired_verdict + holm (decisions, looks, seeds, p_Holm) on "
          f"{checked} replications x 2 designs")

    rows, failed = [], False
    print()
    print("(a) all true means 0: family-wise false direction (any comparison higher/lower at any look)")
    null = run_looks(draws["null"], looks, alphas, m)
    wrong = np.isin(null.decision, (HIGHER, LOWER))
    hits = int(np.sum(wrong.any(axis=1)))
    r, lo, hi = rate(hits, reps)
    failed |= lo > alpha
    print(f"    settle design: {fmt_rate(hits, reps)}  (must be <= {alpha:g}); wrong decisions by {by_look(null, wrong, len(looks))}")
    rows.append({"setting": "(a) null: FWER false direction", "figure": f"{100 * r:.2f}% [{100 * lo:.2f}, {100 * hi:.2f}]",
                 "baseline": f"alpha {alpha:g}", "ratio": f"{r / alpha:.2f}", "note": f"K={k} n0={n0} N={n_max} m={m:g} reps={reps}"})

    print(f"(b) all true means +margin ({m:g}): family-wise false 'equivalent'")
    at_m = run_looks(draws["margin"], looks, alphas, m)
    wrong_eq = at_m.decision == EQUIVALENT
    hits = int(np.sum(wrong_eq.any(axis=1)))
    r, lo, hi = rate(hits, reps)
    failed |= lo > alpha
    lower = int(np.sum((at_m.decision == LOWER).any(axis=1)))
    print(f"    settle design: {fmt_rate(hits, reps)}  (must be <= {alpha:g}); wrong decisions by {by_look(at_m, wrong_eq, len(looks))}; "
          f"any 'lower' too: {lower}")
    rows.append({"setting": "(b) mu = margin: FWER false equivalent", "figure": f"{100 * r:.2f}% [{100 * lo:.2f}, {100 * hi:.2f}]",
                 "baseline": f"alpha {alpha:g}", "ratio": f"{r / alpha:.2f}", "note": f"K={k} n0={n0} N={n_max} m={m:g} reps={reps}"})

    print()
    print("(c) power and seeds per comparison, settle vs the smallest fixed n (one look at alpha, Holm over K) of the same power")
    cap = args.fixed_cap or 4 * n_max
    head = f"    {'true mean':>9}  {'right answer':>12}  {'settle power':>28}  {'settle seeds':>12}  {'fixed n':>7}  {'fixed power':>11}  {'ratio':>5}"
    print(head)
    notes: list[str] = []
    for name, mu, correct, label in (("null", 0.0, EQUIVALENT, "equivalent"), ("effect", args.effect, HIGHER, "higher")):
        res = null if name == "null" else run_looks(draws[name], looks, alphas, m)
        hits = int(np.sum(res.decision == correct))
        total = reps * k
        power = hits / total
        seeds = float(res.seeds.mean())
        curve = fixed_n_power(rng, reps, k, mu, m, alpha, correct, cap)
        fixed = next(((n, pw) for n, pw in curve if pw >= power), None)
        if fixed is None:
            n_txt, pw_txt, ratio = f">{cap}", f"{curve[-1][1]:.3f}", f"<{seeds / cap:.2f}"
        else:
            n_txt, pw_txt, ratio = str(fixed[0]), f"{fixed[1]:.3f}", f"{seeds / fixed[0]:.2f}"
        p, plo, phi = rate(hits, total)
        print(f"    {mu:>9g}  {label:>12}  {p:.3f} [{plo:.3f}, {phi:.3f}]        {seeds:>12.2f}  {n_txt:>7}  {pw_txt:>11}  {ratio:>5}")
        if power < 0.5:
            n80 = next((n for n, pw in curve if pw >= 0.8), None)
            notes.append(f"    note (mu = {mu:g}): the settle design decides '{label}' for only {100 * power:.1f}% of the "
                         f"comparisons by N = {n_max}; one look needs n = {n80 or f'>{cap}'} for 80% power here, so "
                         "this row's fixed n and ratio compare two designs that almost never decide (not a saving)")
        rows.append({"setting": f"(c) mu = {mu:g}: {label}", "figure": f"power {p:.3f}, {seeds:.2f} seeds/comparison",
                     "baseline": f"fixed n = {n_txt} (power {pw_txt})", "ratio": ratio,
                     "note": "ratio = settle seeds / fixed-n seeds at the same power"})
    print("    (power: fraction of the K x reps comparisons decided right by the last look; fixed n: the first n whose "
          "simulated power reaches the settle power, on common draws for n = 2.."
          f"{cap}; both are Monte-Carlo estimates)")
    for line in notes:
        print(line)

    print()
    print("(d) the same looks WITHOUT spending (every look at the full alpha), all true means 0: false direction")
    naive = run_looks(draws["null"], looks, plain, m)
    wrong_n = np.isin(naive.decision, (HIGHER, LOWER))
    hits = int(np.sum(wrong_n.any(axis=1)))
    r, lo, hi = rate(hits, reps)
    print(f"    no spending:   {fmt_rate(hits, reps)}  (vs alpha {alpha:g}); wrong decisions by {by_look(naive, wrong_n, len(looks))}")
    naive_m = run_looks(draws["margin"], looks, plain, m)
    hits_m = int(np.sum((naive_m.decision == EQUIVALENT).any(axis=1)))
    print(f"    and at mu = +margin, false 'equivalent': {fmt_rate(hits_m, reps)}")
    rows.append({"setting": "(d) null, no spending: FWER false direction", "figure": f"{100 * r:.2f}% [{100 * lo:.2f}, {100 * hi:.2f}]",
                 "baseline": f"alpha {alpha:g}", "ratio": f"{r / alpha:.2f}", "note": "every look at the full alpha"})

    print()
    print(f"(e) one look at n = N = {n_max} at the full alpha (no repeated looks; Holm over K alone), for reference")
    one_null = run_looks(draws["null"], [n_max], [alpha], m)
    one_m = run_looks(draws["margin"], [n_max], [alpha], m)
    print(f"    all true means 0, false direction:        "
          f"{fmt_rate(int(np.sum(np.isin(one_null.decision, (HIGHER, LOWER)).any(axis=1))), reps)}")
    print(f"    all true means +margin, false equivalent: {fmt_rate(int(np.sum((one_m.decision == EQUIVALENT).any(axis=1))), reps)}")

    print()
    print("verdict: " + ("FAIL: (a) or (b) exceeds alpha beyond the Monte-Carlo interval" if failed
                         else f"(a) and (b) within alpha = {alpha:g}"))
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from gpu_table import result_line

    print(result_line("settle_simulation", "cpu", rows))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
