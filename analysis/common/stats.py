"""Statistics over seeds and the one verdict rule of every report.

- :func:`mean_std_n`: mean, sample std (ddof=1; NaN for n < 2) and n of the non-null values.
- :func:`over_seeds`: a pooled statistic. Values from several settings (e.g. every noise amplitude)
  are first averaged per seed, then mean, std and n are taken over those per-seed means, so the
  spread is the spread over seeds, never the spread across settings. Its ``note`` says so in the
  text ('± std over seeds of the per-seed mean over 4 settings').
- :func:`paired_verdict`: the verdict rule (stated in its docstring).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

NO_CLEAR = "no clear difference (within one std)"
MIN_SEEDS = 2


def finite_values(values) -> np.ndarray:
    """The finite numbers among ``values`` (null, NaN and ±inf dropped, never read as 0)."""
    v = pd.to_numeric(pd.Series(values, dtype=object), errors="coerce").to_numpy(dtype=float)
    return v[np.isfinite(v)]


def mean_std_n(values) -> tuple[float, float, int]:
    """Mean, sample std (ddof=1; NaN for n<2) and count of the non-null ``values``."""
    v = pd.to_numeric(pd.Series(values, dtype=object), errors="coerce").dropna().to_numpy(dtype=float)
    n = int(v.size)
    if n == 0:
        return math.nan, math.nan, 0
    return float(v.mean()), float(v.std(ddof=1)) if n > 1 else math.nan, n


@dataclass(frozen=True)
class Verdict:
    """The outcome of :func:`paired_verdict`: n, mean and std of the differences and ``sign``
    (+1 higher, -1 lower, 0 no clear difference, None no verdict because n < 2)."""

    n: int
    mean: float
    std: float
    sign: int | None

    def text(self, higher: str, lower: str) -> str:
        """'<higher> by more than one std', '<lower> by more than one std', the no-clear-difference
        text, or 'n = 1: no verdict (needs >= 2 seeds)'."""
        if self.sign is None:
            return f"n = {self.n}: no verdict (needs >= {MIN_SEEDS} seeds)"
        if self.sign == 0:
            return NO_CLEAR
        return f"{higher if self.sign > 0 else lower} by more than one std"


def paired_verdict(diffs) -> Verdict:
    """The verdict on paired differences, one per seed (the caller pairs on the seed column; a
    pooled comparison passes each seed's mean over the settings, see :func:`over_seeds`).

    Rule: non-finite differences are dropped (a NaN never counts as 0); n = the number left. With
    n < 2 there is no verdict. Otherwise, with m the mean and s the sample std (ddof=1) of the
    differences: m > s -> higher (+1); m < -s -> lower (-1); |m| <= s -> no clear difference (0).
    """
    d = finite_values(diffs)
    n = int(d.size)
    if n < MIN_SEEDS:
        return Verdict(n, float(d.mean()) if n else math.nan, math.nan, None)
    m, s = float(d.mean()), float(d.std(ddof=1))
    return Verdict(n, m, s, 1 if m > s else (-1 if m < -s else 0))


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

    def verdict(self) -> Verdict:
        return paired_verdict(self.values)

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
