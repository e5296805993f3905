"""Looking again after adding seeds, with the error rates kept: alpha spending over looks.

``--settle`` looks at a sweep after each round of seeds: look r at n_r seeds per cell, n_0 < n_1 <
... <= N (N = ``--max-seeds``; :func:`schedule`). Look r spends

    alpha_r = alpha · ((n_r / N)^rho - (n_{r-1} / N)^rho),   n_{-1} = 0,

the power-family spending function (Lan & DeMets 1983, Biometrika 70:659; Kim & DeMets 1987,
Biometrics 43:857; rho = 1 spends in proportion to the seeds, close to Pocock's boundary). Each
look's Holm table (directions and equivalences, :func:`analysis.common.stats.holm`) is tested at
alpha_r, and a comparison decided at a look keeps that decision (its cells get no more seeds).
Since sum_r alpha_r <= alpha, the union bound over looks gives P(any wrong direction or wrong
equivalence in the table, at any look) <= alpha for every configuration of true effects and any
spread: it needs no model of the correlation between looks (the exact group-sequential boundary
would be a little less strict; the union bound is what keeps the paired t and the two one-sided
tests, whose nulls have an unknown std, valid). ``benchmarks/settle_simulation.py`` measures both
error rates and the seeds spent against a fixed-n design of the same power.

The state of a settle run is ``<results>/<sweep>/_settle.json``: the design (alpha, rho, N, the
schedule) and each look's n, alpha_r and the comparisons decided there (their records).
"""
from __future__ import annotations

import json
import math
import os
from pathlib import Path

from lowbit_sweeps.analysis.common.stats import ALPHA

SETTLE_FILE = "_settle.json"
RHO = 1.0
GROWTH = 1.5


def schedule(n0: int, n_max: int, growth: float = GROWTH) -> list[int]:
    """The seeds per cell at each look: n0, then x``growth`` (at least +1) up to ``n_max``."""
    if n0 < 2 or n_max < n0:
        raise ValueError(f"a settle schedule needs 2 <= n0 <= n_max, got n0 = {n0}, n_max = {n_max}")
    out = [n0]
    while out[-1] < n_max:
        out.append(min(n_max, max(out[-1] + 1, math.ceil(out[-1] * growth))))
    return out


def spent(n: int, n_max: int, alpha: float = ALPHA, rho: float = RHO) -> float:
    """alpha·(n / N)^rho: the level spent by the looks up to n seeds (capped at alpha)."""
    return alpha * min(1.0, n / n_max) ** rho


def look_alpha(n: int, n_prev: int, n_max: int, alpha: float = ALPHA, rho: float = RHO) -> float:
    """alpha_r of a look at ``n`` seeds after one at ``n_prev`` (0 for the first; module docstring)."""
    return spent(n, n_max, alpha, rho) - spent(n_prev, n_max, alpha, rho)


def read_state(folder: str | Path) -> dict | None:
    """The settle state of a results folder (None when it was never settled)."""
    path = Path(folder) / SETTLE_FILE
    if not path.is_file():
        return None
    return json.loads(path.read_text(encoding="utf-8"))


def write_state(folder: str | Path, state: dict) -> Path:
    """Write the settle state atomically (temp file + rename)."""
    path = Path(folder) / SETTLE_FILE
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(state, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    os.replace(tmp, path)
    return path


def current_look(state: dict | None) -> tuple[float, dict]:
    """(alpha of the latest look, the records decided at earlier looks by comparison id) of a settle
    state; (ALPHA, {}) without one (a single look spends all of alpha)."""
    if not state or not state.get("looks"):
        return ALPHA, {}
    looks = state["looks"]
    frozen: dict = {}
    for look in looks[:-1]:
        for cid, rec in (look.get("decided") or {}).items():
            frozen.setdefault(cid, rec)
    return float(looks[-1]["alpha"]), frozen
