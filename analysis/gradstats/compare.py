"""vSTE against nSTE, paired on seeds, and whether the difference depends on pretraining.

Rules (all from the trial table of :mod:`analysis.gradstats.trials`, counted trials only):

- **Pairs**: a trial of estimator setting L and state s is paired with the nSTE trial (the
  registry's reference estimator) of the same state, seed, thresholds and activation estimator; the
  difference is metric(L) - metric(nSTE). Pooled over the threshold cells, each seed's differences
  are averaged first (:func:`analysis.common.stats.over_seeds`): mean ± std and n are over seeds.
- **Depends on pretraining**: for setting L, per seed and cell, (metric(L) - metric(nSTE)) in the
  pretrained state minus the same in the initialized state; pooled per seed as above.
- **Verdicts**: the one rule, :func:`analysis.common.stats.paired_verdict` (n >= 2 seeds and
  |mean| > std of the per-seed differences).
- Metrics: final ``test_acc`` (after the fine-tuning budget; percentage points), and at the start
  state the layer summaries of the weights' SNR (mean log10: a difference of 1 is a factor 10) and
  cosine to the smooth surrogate (cosine to nSTE is 1 for nSTE by definition, so it is not paired).
"""
from __future__ import annotations

import math

import pandas as pd

from analysis.common.format import fmt, fmt_acc, fmt_mean_std, fmt_pp, fmt_value
from analysis.common.groups import paired_rows
from analysis.common.stats import SeedStat, mean_std_n, over_seeds
from analysis.gradstats.trials import ACT_LABEL, BATCHES, LABEL, SEED, STATE, TAU_A, TAU_W, WIDTH
from lowbit_core.quant import estimator_registry

NSTE = estimator_registry.label(estimator_registry.REFERENCE)
CELL = [TAU_W, TAU_A, ACT_LABEL]
METRICS = {"final_test_acc": "final test_acc", "start.w_snr": "start log10 SNR (w)",
           "start.w_cos_sur": "start cos to surrogate (w)"}


def ok(trials: pd.DataFrame) -> pd.DataFrame:
    return trials[trials["ok"]] if len(trials) else trials


def settings(trials: pd.DataFrame) -> list[tuple[str, str, float]]:
    """(label, estimator name, width) of every estimator setting but nSTE, by name then width."""
    t = ok(trials)
    rows = t[t[LABEL] != NSTE][[LABEL, "estimator_name", WIDTH]].drop_duplicates(LABEL)
    return sorted(rows.itertuples(index=False, name=None), key=lambda r: (r[1], r[2]))


def _pairs(trials: pd.DataFrame, state: str, label: str, metric: str) -> pd.DataFrame:
    t = ok(trials)
    t = t[t[STATE].astype(str) == state]
    pairs = paired_rows(t, LABEL, label, NSTE, [SEED, *CELL], metric)
    return pairs.assign(diff=pairs["value"] - pairs["reference_value"])


def versus_nste(trials: pd.DataFrame, state: str, label: str, metric: str) -> SeedStat:
    """metric(label) - metric(nSTE) in ``state``, paired on seed and cell, pooled per seed."""
    return over_seeds(_pairs(trials, state, label, metric), "diff", SEED)


def pretraining_dependence(trials: pd.DataFrame, label: str, metric: str, states: tuple[str, str]) -> SeedStat:
    """(label - nSTE) in ``states[1]`` minus the same in ``states[0]``, paired on seed and cell."""
    a, b = (_pairs(trials, s, label, metric) for s in states)
    keys = [SEED, *CELL]
    both = b.merge(a, on=keys, suffixes=("", "_0")) if len(a) and len(b) else pd.DataFrame(columns=[*keys, "dd"])
    return over_seeds(both.assign(dd=both["diff"] - both["diff_0"]) if len(both) else both, "dd", SEED)


def states_of(trials: pd.DataFrame) -> list[str]:
    """The states present, initialized first."""
    found = sorted(ok(trials)[STATE].astype(str).unique()) if len(trials) else []
    return sorted(found, key=lambda s: (s != "init", s))


def _fmt(stat: SeedStat, metric: str) -> str:
    if metric == "final_test_acc":
        return fmt_pp(stat.mean, stat.std, stat.n, note=stat.note)
    return fmt_mean_std(stat.mean, stat.std, stat.n, signed=True, note=stat.note)


def comparison_table(trials: pd.DataFrame) -> pd.DataFrame:
    """One row per (state, setting): each metric's paired difference to nSTE with its verdict, and
    (a row per setting, state 'pretrained − init') the dependence on pretraining."""
    states = states_of(trials)
    rows = []
    for label, _, _ in settings(trials):
        for state in states:
            row = {"state": state, "vs nSTE": label}
            for metric, name in METRICS.items():
                s = versus_nste(trials, state, label, metric)
                row[f"Δ {name}"] = f"{_fmt(s, metric)}: {s.verdict().text('higher', 'lower')}" if s.n else "–"
            rows.append(row)
        if len(states) == 2:
            row = {"state": f"{states[1]} − {states[0]}", "vs nSTE": label}
            for metric, name in METRICS.items():
                s = pretraining_dependence(trials, label, metric, tuple(states))
                row[f"Δ {name}"] = f"{_fmt(s, metric)}: {s.verdict().text('larger', 'smaller')}" if s.n else "–"
            rows.append(row)
    return pd.DataFrame(rows)


def _count(trials: pd.DataFrame, state: str, metric: str) -> tuple[list[str], list[str], int]:
    """(settings higher than nSTE, settings lower, settings with a verdict) in ``state``."""
    higher, lower, judged = [], [], 0
    for label, _, _ in settings(trials):
        v = versus_nste(trials, state, label, metric).verdict()
        if v.sign is None:
            continue
        judged += 1
        if v.sign > 0:
            higher.append(label)
        elif v.sign < 0:
            lower.append(label)
    return higher, lower, judged


def answer_lines(trials: pd.DataFrame) -> list[str]:
    """The findings' answer to "do vSTE and nSTE differ on ResNet, and does it depend on pretraining?"."""
    states, found = states_of(trials), settings(trials)
    if not found or not (ok(trials)[LABEL] == NSTE).any():
        return ["No vSTE-vs-nSTE comparison: the sweep needs nSTE trials and other estimators of the same states."]
    lines = ["**Do vSTE and nSTE differ on ResNet?** (paired on seeds; one std rule; n = seeds)"]
    for metric, name in METRICS.items():
        parts = []
        for state in states:
            higher, lower, judged = _count(trials, state, metric)
            if not judged:
                parts.append(f"{state}: no verdict (needs >= 2 seeds)")
                continue
            text = f"{state}: {len(higher) + len(lower)} of {judged} settings differ"
            if higher or lower:
                text += f" (higher: {', '.join(higher) or '–'}; lower: {', '.join(lower) or '–'})"
            parts.append(text)
        lines.append(f"  {name} vs nSTE — " + "; ".join(parts))
    if len(states) == 2:
        lines.append(f"**Does it depend on pretraining?** ({states[1]} − {states[0]} of the difference to nSTE)")
        for metric, name in METRICS.items():
            judged = [(label, pretraining_dependence(trials, label, metric, tuple(states)).verdict())
                      for label, _, _ in found]
            judged = [(label, v) for label, v in judged if v.sign is not None]
            if not judged:
                lines.append(f"  {name}: no verdict (needs >= 2 seeds in both states)")
                continue
            differ = [f"{label} ({fmt(v.mean, signed=True)})" for label, v in judged if v.sign]
            lines.append(f"  {name}: {len(differ)} of {len(judged)} settings depend on it"
                         + (f": {', '.join(differ)}" if differ else ""))
    return lines


def coincide_lines(trials: pd.DataFrame) -> list[str]:
    """Window settings (a parameter on the input axis, per the registry) that cover every latent weight
    at the start (fraction inside = 1 in every layer): there they are nSTE, whatever their width says.
    (A value clip passes a gradient everywhere and still changes it: it never coincides this way.)"""
    t = ok(trials)
    windows = [n for n, e in estimator_registry.REGISTRY.items() if e.param_axis == "input"]
    out = []
    for state in states_of(trials):
        sub = t[(t[STATE].astype(str) == state) & t["estimator_name"].isin(windows)]
        full = sorted({r[LABEL] for _, r in sub.iterrows()
                       if len(r["start.layers.w_inside"]) and (r["start.layers.w_inside"] == 1).all()})
        if full:
            out.append(f"{state}: {', '.join(full)} pass(es) every latent weight at the start (inside = 1 in every "
                       "layer), so there they coincide with nSTE")
    return out


def noise_floor_lines(trials: pd.DataFrame) -> list[str]:
    """Where the weights' SNR sits at the noise floor 1/M: the mean over M batches resolved no signal."""
    t = ok(trials)
    if not len(t) or t[BATCHES].nunique() != 1:
        return []
    floor = -math.log10(float(t[BATCHES].iloc[0]))
    out = []
    for state in states_of(trials):
        sub = t[t[STATE].astype(str) == state]
        for stage in ("start", "final"):
            m, s, n = mean_std_n(sub[f"{stage}.w_snr"])
            if n:
                out.append(f"{state}, {stage}: log10 SNR (w), mean ± std over all trials {fmt_mean_std(m, s, n)}, "
                           f"against the noise floor {floor:.3g} (log10 1/M, M = {int(t[BATCHES].iloc[0])})"
                           + (": no mean gradient resolved beyond the noise" if m - floor < 0.1 else ""))
    return out


def threshold_lines(trials: pd.DataFrame) -> list[str]:
    """Final accuracy per weight / activation threshold, pooled over the other keys per seed."""
    out = []
    t = ok(trials)
    for col, name in ((TAU_W, "weight threshold"), (TAU_A, "activation threshold")):
        values = sorted(t[col].unique()) if len(t) else []
        if len(values) < 2:
            continue
        parts = [f"{fmt_value(v)}: {fmt_acc(*_pooled(t[t[col] == v]))}" for v in values]
        out.append(f"final test_acc by {name} (mean over the other settings per seed): " + "; ".join(parts))
    return out


def _pooled(frame: pd.DataFrame):
    s = over_seeds(frame, "final_test_acc", SEED)
    return s.mean, s.std, s.n


__all__ = ["NSTE", "METRICS", "settings", "versus_nste", "pretraining_dependence", "states_of", "comparison_table",
           "answer_lines", "coincide_lines", "noise_floor_lines", "threshold_lines"]
