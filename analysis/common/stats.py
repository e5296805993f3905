"""Statistics over seeds and the one verdict rule of every report.

- :func:`mean_std_n`: mean, sample std (ddof=1; NaN for n < 2) and n of the non-null values.
- :func:`over_seeds`: a pooled statistic. Values from several settings (e.g. every noise amplitude)
  are first averaged per seed, then mean, std and n are taken over those per-seed means, so the
  spread is the spread over seeds, never the spread across settings. Its ``note`` says so in the
  text ('± std over seeds of the per-seed mean over 4 settings').
- :func:`paired_verdict`: the verdict rule, a paired Student-t test, and with a margin m the two
  one-sided tests of equivalence (Schuirmann 1987) (stated in its docstring).
- :func:`holm`: Holm's step-down adjustment of a table of K verdicts made at once (directions and
  equivalences together); :func:`holm_note` is the line that goes under such a table.
- :func:`seeds_for_power`: the seeds a paired t test needs for 80% power at an effect size d.
"""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd
from scipy import integrate, stats

from lowbit_sweeps.analysis.common.format import fmt

ALPHA = 0.05
"""Two-sided level of every verdict (and the family-wise level of a Holm-adjusted table)."""
POWER = 0.8
"""The power the one-line power statement asks for."""
MIN_SEEDS = 2
MAX_SEEDS = 100_000
"""Above this many seeds the power statement says 'more than' instead of a number."""


def finite_values(values) -> np.ndarray:
    """The finite numbers among ``values`` (null, NaN and ±inf dropped, never read as 0)."""
    if isinstance(values, np.ndarray) and values.dtype.kind == "f":
        v = values.astype(float, copy=False).ravel()
    else:
        v = pd.to_numeric(pd.Series(values, dtype=object), errors="coerce").to_numpy(dtype=float)
    return v[np.isfinite(v)]


def mean_std_n(values) -> tuple[float, float, int]:
    """Mean, sample std (ddof=1; NaN for n<2) and count of the non-null ``values``."""
    v = pd.to_numeric(pd.Series(values, dtype=object), errors="coerce").dropna().to_numpy(dtype=float)
    n = int(v.size)
    if n == 0:
        return math.nan, math.nan, 0
    return float(v.mean()), float(v.std(ddof=1)) if n > 1 else math.nan, n


def paired_t(mean, std, n, alpha: float = ALPHA):
    """The paired Student-t test from mean m, sample std s (ddof=1) and count n of the differences,
    elementwise over arrays (n >= 2): returns (lo, hi, p, sign).

    lo, hi = m ∓ t(1 - alpha/2, n - 1)·s/√n, the two-sided (1 - alpha) interval of the mean
    difference; p = 2·P(T_{n-1} >= |m|/(s/√n)), the two-sided p-value of the one-sample t test of
    mean 0; sign = +1 when lo > 0, -1 when hi < 0, else 0 (the interval excludes 0 exactly when
    p < alpha). Degenerate spread s = 0: with m != 0 the t statistic is infinite, p = 0 and the
    interval is the point [m, m] (every seed gave the same nonzero difference); with m = 0 as well,
    t = 0/0 is read as no difference (p = 1, sign 0).
    """
    m, s, n = (np.asarray(x, dtype=float) for x in (mean, std, n))
    se = s / np.sqrt(n)
    half = stats.t.ppf(1 - alpha / 2, n - 1) * se
    lo, hi = m - half, m + half
    with np.errstate(divide="ignore", invalid="ignore"):
        tstat = np.where(se > 0, np.abs(m) / np.where(se > 0, se, 1.0), np.where(m != 0, np.inf, 0.0))
    p = np.minimum(1.0, 2 * stats.t.sf(tstat, n - 1))
    sign = np.where(lo > 0, 1, np.where(hi < 0, -1, 0))
    return lo, hi, p, sign


def tost_p(mean, std, n, margin: float) -> float:
    """The p-value of the paired two one-sided tests of equivalence (Schuirmann 1987, J. Pharmacokin.
    Biopharm. 15:657) of H0: |mu| >= m against H1: |mu| < m, from mean, sample std and n of the
    differences: p = max(P(T_{n-1} >= (mean + m)/se), P(T_{n-1} <= (mean - m)/se)), se = std/sqrt(n);
    equivalence at level alpha exactly when the (1 - 2 alpha) t interval lies inside (-m, m). NaN
    when m is not a positive number or n < 2; with std = 0 the point |mean| < m gives 0, else 1."""
    m, s, n = float(mean), float(std), int(n)
    if not (math.isfinite(margin) and margin > 0) or n < MIN_SEEDS or not math.isfinite(m):
        return math.nan
    if s == 0:
        return 0.0 if abs(m) < margin else 1.0
    se = s / math.sqrt(n)
    return float(max(stats.t.sf((m + margin) / se, n - 1), stats.t.cdf((m - margin) / se, n - 1)))


def power_paired_t(d: float, n: int, alpha: float = ALPHA) -> float:
    """Power of the two-sided paired t test at level ``alpha`` with n pairs when the true
    standardized effect is d = mean/std of the differences: P(|T'| > t(1 - alpha/2, n - 1)) with T'
    noncentral t, n - 1 degrees of freedom and noncentrality d·√n (Cohen 1988, ch. 2; as G*Power,
    Faul et al. 2007, computes it for 'matched pairs')."""
    df, nc = n - 1, d * math.sqrt(n)
    crit = stats.t.ppf(1 - alpha / 2, df)
    power = float(stats.nct.sf(crit, df, nc) + stats.nct.cdf(-crit, df, nc))
    if math.isfinite(power) and 0 <= power <= 1:
        return power
    # scipy's noncentral t fails (NaN) for few degrees of freedom and a large noncentrality; integrate
    # the same probability over S = sqrt(V/df), V ~ chi²(df): T' = (Z + nc)/S, so
    # P(|T'| > c) = E[Φ(nc - c·S) + Φ(-nc - c·S)], S with density chi(df) at s·√df times √df.
    root = math.sqrt(df)

    def integrand(s):
        return (stats.norm.cdf(nc - crit * s) + stats.norm.cdf(-nc - crit * s)) * stats.chi.pdf(s * root, df) * root

    return float(min(1.0, integrate.quad(integrand, 0, np.inf, limit=200)[0]))


def seeds_for_power(d: float, alpha: float = ALPHA, power: float = POWER) -> int | None:
    """The fewest pairs n >= 2 at which :func:`power_paired_t` reaches ``power`` for effect |d|;
    None when d is 0 or not finite, or when more than :data:`MAX_SEEDS` would be needed.

    Search from the normal approximation n0 = ((z(1 - alpha/2) + z(power)) / d)² (the t test needs
    a little more), stepping down while the smaller n still has the power and up until it has.
    Known values at alpha 0.05, power 0.8: d = 0.5 -> 34, d = 1.0 -> 10, d = 0.2 -> 199, d = 0.8 -> 15
    (G*Power's 'matched pairs' sample sizes; Cohen 1988, Table 2.4.1 for the normal approximation).
    """
    d = abs(float(d))
    if not math.isfinite(d) or d == 0:
        return None
    z = stats.norm.ppf(1 - alpha / 2) + stats.norm.ppf(power)
    n0 = (z / d) ** 2
    if n0 > MAX_SEEDS:
        return None
    n = max(MIN_SEEDS, math.floor(n0))
    while n > MIN_SEEDS and power_paired_t(d, n - 1, alpha) >= power:
        n -= 1
    while power_paired_t(d, n, alpha) < power:
        n += 1
    return n if n <= MAX_SEEDS else None


def _signed(x: float) -> str:
    return fmt(x, signed=True)


def signed_pp(x: float) -> str:
    """A difference of fractions in percentage points, '+2.34', for :meth:`Verdict.numbers` with unit ' pp'."""
    return f"{100 * x:+.2f}"


def signed_percent(x: float) -> str:
    """A fraction as signed percent to 4 significant digits, for :meth:`Verdict.numbers` with unit '%'."""
    return fmt(100 * x, signed=True)


@dataclass(frozen=True)
class Verdict:
    """The outcome of :func:`paired_verdict` on paired differences, one per seed.

    n, mean, std (ddof=1) of the differences; lo, hi: the paired-t 95% interval of the mean; p: the
    two-sided p-value of the one-sample t test; effect: d_z = mean/std (Cohen's effect size of
    paired differences; ±inf when std = 0 and mean != 0); ``sign``: +1 higher, -1 lower, 0 no
    direction (the interval contains 0), None no verdict (n < 2). ``margin``: the smallest effect
    that matters (NaN: none declared), ``p_equiv`` the p-value of equivalence within it
    (:func:`tost_p`); ``identical``: every difference is exactly 0 (no comparison is made; it is not
    counted in K). After :func:`holm`, ``k`` is the number of comparisons in the family, ``p_holm``
    the Holm-adjusted p-value of the decision, ``alpha`` the family-wise level, and ``sign`` /
    ``equivalent`` follow p_holm < alpha (lo and hi stay the unadjusted 95% interval).
    """

    n: int
    mean: float
    std: float
    sign: int | None
    lo: float = math.nan
    hi: float = math.nan
    p: float = math.nan
    effect: float = math.nan
    k: int = 1
    p_holm: float = math.nan
    margin: float = math.nan
    p_equiv: float = math.nan
    equivalent: bool = False
    identical: bool = False
    alpha: float = ALPHA

    @property
    def decision(self) -> str:
        """'higher', 'lower', 'equivalent', 'identical', 'undecided' or 'no verdict' (n < 2)."""
        if self.identical:
            return "identical"
        if self.sign is None:
            return "no verdict"
        if self.sign:
            return "higher" if self.sign > 0 else "lower"
        return "equivalent" if self.equivalent else "undecided"

    def numbers(self, num: Callable[[float], str] = _signed, unit: str = "") -> str:
        """'+0.031 [+0.012, +0.050], n = 5, d = 1.4' (``num`` formats mean and bounds, ``unit``
        follows the interval); Holm-adjusted verdicts add 'p_Holm = 0.03 (K = 6)'."""
        if self.sign is None:
            return f"n = {self.n}"
        if self.std == 0:
            d = "no spread (s = 0, t infinite)" if self.mean != 0 else "s = 0, every difference 0"
        else:
            d = f"d = {self.effect:.2g}" if abs(self.effect) < 10 else f"d = {self.effect:.0f}"
        text = f"{num(self.mean)} [{num(self.lo)}, {num(self.hi)}]{unit}, n = {self.n}, {d}"
        if (self.k > 1 or self.alpha != ALPHA) and math.isfinite(self.p_holm):
            text += f", p_Holm = {self.p_holm:.2g} (K = {self.k}" + (f", α = {self.alpha:.2g}" if self.alpha != ALPHA else "") + ")"
        return text

    def outcome(self, higher: str, lower: str) -> str:
        """``higher`` / ``lower`` when there is a direction; otherwise the no-verdict text (n < 2)
        or the power statement (:meth:`power_text`)."""
        if self.identical:
            return f"identical in all {self.n} seeds (every difference exactly 0; not counted in K)"
        if self.sign is None:
            return f"no verdict (needs >= {MIN_SEEDS} seeds)"
        if self.sign:
            return higher if self.sign > 0 else lower
        if self.equivalent:
            return f"equivalent within ±{self.margin:.3g} (TOST p_Holm = {self.p_holm:.2g})"
        return self.power_text()

    def power_text(self) -> str:
        """The one-line power statement of an undecided verdict: the seeds a paired t test needs for
        80% power at an effect of the observed size |d| (at alpha 0.05, or 0.05/K after Holm,
        the strictest step of Holm's procedure, so an upper bound there)."""
        where = "95% interval contains 0" if self.k == 1 or (self.lo <= 0 <= self.hi) else \
            f"no direction after Holm over K = {self.k}"
        if math.isfinite(self.margin):
            where += f", not inside ±{self.margin:.3g} either: undecided"
        if self.std == 0 and self.mean == 0:
            return f"{where}; no difference in any seed"
        alpha = self.alpha / self.k
        need = seeds_for_power(self.effect, alpha)
        level = f"{self.alpha:.2g}" if self.k == 1 else f"{self.alpha:.2g}/{self.k}"
        if need is None:
            return (f"{where}; an effect of d = {self.effect:.2g} needs more than {MAX_SEEDS} seeds for "
                    f"{POWER:.0%} power (α = {level})")
        more = "" if need > self.n else ", no more than here"
        return f"{where}; {POWER:.0%} power at d = {abs(self.effect):.2g} needs n = {need} seeds{more} (α = {level})"

    def text(self, higher: str, lower: str, num: Callable[[float], str] = _signed, unit: str = "") -> str:
        """'<numbers>: <outcome>', e.g. '+0.031 [+0.012, +0.050], n = 5, d = 1.4: higher', or
        'n = 1: no verdict (needs >= 2 seeds)'."""
        return f"{self.numbers(num, unit)}: {self.outcome(higher, lower)}"


def paired_verdict(diffs, margin: float = math.nan) -> Verdict:
    """The verdict on paired differences, one per seed (the caller pairs on the seed column; a
    pooled comparison passes each seed's mean over the settings, see :func:`over_seeds`).

    Rule: non-finite differences are dropped (a NaN never counts as 0); n = the number left. With
    n < 2 there is no verdict (sign None). Otherwise, with m the mean and s the sample std (ddof=1)
    of the differences, the paired Student-t 95% interval m ± t(0.975, n - 1)·s/√n gives the
    direction: +1 (higher) when it lies above 0, -1 (lower) below 0, 0 (no direction) when it
    contains 0; equivalently p < 0.05 in the two-sided one-sample t test of mean 0 (Student 1908;
    any statistics text, e.g. Wasserman, All of Statistics, 2004, §10.4). Under the null (normal
    differences with mean 0) a direction is printed 5% of the time at every n; the old rule
    |m| > s printed one 39% of the time at n = 2. Effect size d = m/s. s = 0 is handled as in
    :func:`paired_t` (infinite t: a direction when m != 0). With a ``margin`` m > 0 the verdict
    also carries the equivalence p-value (:func:`tost_p`), and 'equivalent' when it is below 0.05
    (where no direction is found). Every difference exactly 0 (n >= 2) is ``identical``.
    """
    d = finite_values(diffs)
    n = int(d.size)
    margin = float(margin) if margin is not None else math.nan
    if n < MIN_SEEDS:
        return Verdict(n, float(d.mean()) if n else math.nan, math.nan, None, margin=margin)
    m, s = float(d.mean()), float(d.std(ddof=1))
    if s <= 1e-12 * abs(m):  # equal values give a std of float round-off; it is the 0 it should be
        s = 0.0
    lo, hi, p, sign = (x.item() for x in paired_t(m, s, n))
    effect = m / s if s > 0 else (math.copysign(math.inf, m) if m else math.nan)
    p_eq = tost_p(m, s, n, margin)
    return Verdict(n, m, s, int(sign), float(lo), float(hi), float(p), effect, margin=margin, p_equiv=p_eq,
                   equivalent=bool(sign == 0 and p_eq < ALPHA), identical=bool(not d.any()))


def closed_adjusted(q: np.ndarray, r: np.ndarray) -> np.ndarray:
    """Adjusted p-values of the closed Bonferroni test over 2K nulls, two per comparison, of which at
    most one per comparison is true (mu = 0 and |mu| >= m exclude each other): comparison i, tested by
    its smaller p-value ``q[i]``, gets max over s = 1..K of s·min(q_i, R_{s-1}), capped at 1, where
    R_0 = inf and R_t is the t-th largest ``r[j]`` (the larger of comparison j's two p-values) among
    the other comparisons: the largest Bonferroni statistic of an intersection of consistent nulls
    that contains i's null (the closure principle, Marcus, Peritz & Gabriel 1976, Biometrika 63:655,
    with Shaffer's 1986 logical restriction, JASA 81:826). With one null per comparison (r = q) it is
    Holm's adjusted p-value (Holm 1979). Works on the last axis of arrays (replications first)."""
    q, r = np.asarray(q, dtype=float), np.asarray(r, dtype=float)
    k = q.shape[-1]
    if k == 0:
        return q.copy()
    eye = np.eye(k, dtype=bool)
    others = np.where(eye, -np.inf, r[..., None, :])              # [..., i, j]: r_j for j != i
    ranked = -np.sort(-others, axis=-1)[..., : k - 1]               # descending, K-1 others
    bound = np.concatenate([np.full(q.shape + (1,), np.inf), ranked], axis=-1)   # R_0 .. R_{K-1}
    s = np.arange(1, k + 1)
    return np.minimum(1.0, (s * np.minimum(q[..., None], bound)).max(axis=-1))


def holm(verdicts, alpha: float = ALPHA) -> list[Verdict]:
    """Holm's family-wise control of K comparisons decided at once, directions and equivalences
    together (:func:`closed_adjusted`).

    K = the verdicts with a p-value (n >= 2) that are not ``identical``; the others stay as they are.
    Each comparison i tests two nulls, "mu = 0" (p_i, two-sided t) and "|mu| >= m" (p_equiv_i,
    :func:`tost_p`; none without a margin), of which at most one is true; its smaller p-value q_i
    is adjusted by the closed test over the 2K nulls, and when p_Holm < ``alpha`` it decides the
    null whose p-value is q_i (a direction, or equivalence). This holds the family-wise error rate
    (any false direction or false equivalence in the table) at ``alpha`` (simulated in
    ``benchmarks/settle_simulation.py``); without margins it is Holm's step-down procedure. Plain
    Holm on q_i does not: a comparison decided on one null while its other null is true lowered the
    multiplier of the rest (11% false equivalences at K = 4, n = 12, all means at the margin). The
    interval each verdict shows stays its unadjusted 95% interval, so a verdict can show an
    interval that excludes 0 and still no direction ('no direction after Holm over K = ...').
    """
    verdicts = list(verdicts)
    idx = [i for i, v in enumerate(verdicts) if v.sign is not None and math.isfinite(v.p) and not v.identical]
    out = [replace(v, alpha=alpha) for v in verdicts]
    if not idx:
        return out
    p = np.array([verdicts[i].p for i in idx])
    # without a margin a comparison has one null: both of its p-values are p (plain Holm)
    p_eq = np.array([verdicts[i].p_equiv if math.isfinite(verdicts[i].p_equiv) else verdicts[i].p for i in idx])
    adjusted = closed_adjusted(np.minimum(p, p_eq), np.maximum(p, p_eq))
    for i, adj in zip(idx, adjusted):
        v = verdicts[i]
        decided = adj < alpha
        by_direction = v.p <= v.p_equiv or not math.isfinite(v.p_equiv)
        sign = (1 if v.mean > 0 else -1) if decided and by_direction and v.mean != 0 else 0
        out[i] = replace(v, k=len(idx), p_holm=float(adj), sign=sign, equivalent=bool(decided and not by_direction),
                         alpha=alpha)
    return out


def holm_column(table: pd.DataFrame, column: str) -> pd.DataFrame:
    """``table`` with the :class:`Verdict` objects of ``column`` Holm-adjusted as one family."""
    if table.empty or column not in table.columns:
        return table
    table = table.copy()
    table[column] = holm(list(table[column]))
    return table


def holm_note(verdicts) -> str:
    """The line under a table of K verdicts: 'Holm-adjusted over K = 6 comparisons, family-wise α =
    0.05; intervals are the unadjusted paired-t 95% intervals.'"""
    verdicts = list(verdicts)
    k = sum(1 for v in verdicts if v.sign is not None and math.isfinite(v.p) and not v.identical)
    alpha = next((v.alpha for v in verdicts if v.sign is not None), ALPHA)
    margin = next((v.margin for v in verdicts if math.isfinite(v.margin)), math.nan)
    equiv = f" or equivalence within ±{margin:.3g} (TOST)" if math.isfinite(margin) else ""
    return (f"Holm-adjusted over K = {k} comparison{'s' if k != 1 else ''}, family-wise α = {alpha:.2g} "
            f"(a direction{equiv} only where the adjusted p < {alpha:.2g}); intervals are the unadjusted "
            "paired-t 95% intervals, n = seeds.")


@dataclass(frozen=True)
class SeedStat:
    """Mean, std and n over seeds of per-seed values; ``settings``: the (fewest, most) values a
    seed's mean was taken over; ``values``: the per-seed values (for :func:`paired_verdict`)."""

    mean: float
    std: float
    n: int
    settings: tuple[int, int]
    values: np.ndarray

    @property
    def note(self) -> str:
        """What the ± shows, for a statistic pooled over several settings ('' when each seed had one)."""
        lo, hi = self.settings
        if hi <= 1:
            return ""
        over = f"{lo}" if lo == hi else f"{lo}–{hi}"
        if self.n < MIN_SEEDS:
            return f"one seed, its mean over {over} settings"
        return f"± std over seeds of the per-seed mean over {over} settings"

    def verdict(self, margin: float = math.nan) -> Verdict:
        return paired_verdict(self.values, margin)

    def columns(self, name: str) -> dict:
        """Table columns ``<name>.mean/.std/.n``, ``<name>.note`` (what the ± shows) and
        ``<name>.verdict`` (the verdict on the per-seed values)."""
        return {f"{name}.mean": self.mean, f"{name}.std": self.std, f"{name}.n": self.n, f"{name}.note": self.note,
                f"{name}.verdict": self.verdict()}


def over_seeds(frame: pd.DataFrame, value: str, seed: str | None) -> SeedStat:
    """``value`` averaged per seed over that seed's rows (the settings; nulls dropped), then mean,
    sample std and n over the per-seed means. Without a seed column all rows are one seed."""
    v = pd.to_numeric(frame[value], errors="coerce") if value in frame.columns else pd.Series(dtype=float)
    ok = v.notna() & np.isfinite(v.astype(float))
    if not ok.any():
        return SeedStat(math.nan, math.nan, 0, (0, 0), np.array([], dtype=float))
    by = frame.loc[ok, seed] if seed else pd.Series(0, index=v[ok].index)
    per_seed = v[ok].groupby(by.astype(str).to_numpy(), sort=True).agg(["mean", "size"])
    m, s, n = mean_std_n(per_seed["mean"])
    return SeedStat(m, s, n, (int(per_seed["size"].min()), int(per_seed["size"].max())),
                    per_seed["mean"].to_numpy(dtype=float))
