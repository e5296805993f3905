"""vSTE against nSTE, paired on seeds, and whether the difference depends on pretraining.

Rules (all from the trial table of :mod:`analysis.gradstats.trials`, counted trials only):

- **Pairs**: a trial of estimator setting L and state s is paired with the nSTE trial (the
  registry's reference estimator) of the same state, seed, thresholds, activation estimator and
  number of batches M (SNRs of different M carry different noise bias 1/M); the difference is
  metric(L) - metric(nSTE). Pooled over the threshold cells, each seed's differences
  are averaged first (:func:`analysis.common.stats.over_seeds`): mean ± std and n are over seeds.
- **Depends on pretraining**: for setting L, per seed and cell, (metric(L) - metric(nSTE)) in the
  pretrained state minus the same in the initialized state; pooled per seed as above.
- **Verdicts**: the one rule, :func:`analysis.common.stats.paired_verdict` (n >= 2 seeds; a
  direction only when the paired-t 95% interval of the per-seed differences excludes 0). Every
  estimator setting against nSTE in one state and metric is one family of K comparisons, as is every
  setting's pretraining dependence in one metric: Holm-adjusted (:func:`analysis.common.stats.holm`),
  in the table and in the answer alike.
- Metrics: final ``test_acc`` (after the fine-tuning budget; percentage points), and at the start
  state the layer summaries of the weights' SNR (mean log10: a difference of 1 is a factor 10), the
  bias-corrected SNR max(SNR − 1/M, 0) (mean over layers; :mod:`analysis.gradstats.trials`) and
  cosine to the smooth surrogate (cosine to nSTE is 1 for nSTE by definition, so it is not paired).
"""
from __future__ import annotations

import math

import pandas as pd

from lowbit_sweeps.analysis.common.format import fmt, fmt_acc, fmt_mean_std, fmt_pp, fmt_value
from lowbit_sweeps.analysis.common.groups import paired_rows
from lowbit_sweeps.analysis.common.stats import ALPHA, SeedStat, Verdict, holm, mean_std_n, over_seeds, signed_pp
from lowbit_sweeps.analysis.gradstats.trials import ACT_LABEL, BATCHES, LABEL, SEED, STATE, TAU_A, TAU_W, WIDTH
from lowbit_core.quant import estimator_registry

NSTE = estimator_registry.label(estimator_registry.REFERENCE)
CELL = [TAU_W, TAU_A, ACT_LABEL, BATCHES]
METRICS = {"final_test_acc": "final test_acc", "start.w_snr": "start log10 SNR (w)",
           "start.w_snr_c": "start SNR − 1/M (w)", "start.w_cos_sur": "start cos to surrogate (w)"}


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


def _verdict_text(v: Verdict, metric: str, higher: str, lower: str) -> str:
    return v.text(higher, lower, signed_pp, " pp") if metric == "final_test_acc" else v.text(higher, lower)


def holm_verdicts(trials: pd.DataFrame, metric: str, state: str | None = None) -> dict[str, tuple[SeedStat, Verdict]]:
    """Per estimator setting: its statistic against nSTE in ``state`` (None: the pretraining
    dependence, pretrained − init) and its verdict, Holm-adjusted over the settings (one family)."""
    states = states_of(trials)
    stats = {label: (versus_nste(trials, state, label, metric) if state is not None
                     else pretraining_dependence(trials, label, metric, tuple(states)))
             for label, _, _ in settings(trials)}
    adjusted = holm([s.verdict() for s in stats.values()])
    return {label: (s, v) for (label, s), v in zip(stats.items(), adjusted)}


def comparison_verdicts(trials: pd.DataFrame) -> list[list[Verdict]]:
    """The families of the comparison table (each a list of Holm-adjusted verdicts)."""
    states = states_of(trials)
    scopes = list(states) + ([None] if len(states) == 2 else [])
    return [[v for _, v in holm_verdicts(trials, metric, scope).values()] for scope in scopes for metric in METRICS]


def family_note(trials: pd.DataFrame) -> str:
    """The line under the comparison table: the Holm families and their sizes."""
    ks = sorted({sum(v.sign is not None for v in fam) for fam in comparison_verdicts(trials)} - {0})
    k = "–" if not ks else (f"{ks[0]}" if len(ks) == 1 else f"{ks[0]}–{ks[-1]}")
    return (f"Holm-adjusted within each family of K = {k} comparisons (every estimator setting against nSTE, "
            f"per column and state; and per column of the pretrained − init rows), family-wise α = {ALPHA:g}; "
            "intervals are the unadjusted paired-t 95% intervals, n = seeds.")


def comparison_table(trials: pd.DataFrame) -> pd.DataFrame:
    """One row per (state, setting): each metric's paired difference to nSTE with its verdict, and
    (a row per setting, state 'pretrained − init') the dependence on pretraining; verdicts
    Holm-adjusted per family (:func:`holm_verdicts`)."""
    states = states_of(trials)
    scopes = list(states) + ([None] if len(states) == 2 else [])
    judged = {(scope, metric): holm_verdicts(trials, metric, scope) for scope in scopes for metric in METRICS}
    rows = []
    for label, _, _ in settings(trials):
        for scope in scopes:
            name_of_state = scope if scope is not None else f"{states[1]} − {states[0]}"
            words = ("higher", "lower") if scope is not None else ("larger", "smaller")
            row = {"state": name_of_state, "vs nSTE": label}
            for metric, name in METRICS.items():
                s, v = judged[scope, metric][label]
                row[f"Δ {name}"] = f"{_fmt(s, metric)}: {_verdict_text(v, metric, *words)}" if s.n else "–"
            rows.append(row)
    return pd.DataFrame(rows)


def _count(trials: pd.DataFrame, state: str, metric: str) -> tuple[list[str], list[str], int]:
    """(settings higher than nSTE, settings lower, settings with a verdict) in ``state``."""
    higher, lower, judged = [], [], 0
    for label, (_, v) in holm_verdicts(trials, metric, state).items():
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
    lines = ["**Do vSTE and nSTE differ on ResNet?** (paired on seeds; a direction where the paired-t 95% interval "
             "excludes 0, Holm-adjusted over the settings; n = seeds)"]
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
            text += f" [Holm over K = {judged}; intervals and n in the paired-differences table]"
            parts.append(text)
        lines.append(f"  {name} vs nSTE — " + "; ".join(parts))
    if len(states) == 2:
        lines.append(f"**Does it depend on pretraining?** ({states[1]} − {states[0]} of the difference to nSTE)")
        for metric, name in METRICS.items():
            judged = [(label, v) for label, (_, v) in holm_verdicts(trials, metric, None).items()]
            judged = [(label, v) for label, v in judged if v.sign is not None]
            if not judged:
                lines.append(f"  {name}: no verdict (needs >= 2 seeds in both states)")
                continue
            differ = [f"{label} ({_verdict_text(v, metric, 'larger', 'smaller')})" for label, v in judged if v.sign]
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
           "holm_verdicts", "comparison_verdicts", "family_note",
           "answer_lines", "coincide_lines", "noise_floor_lines", "threshold_lines"]
