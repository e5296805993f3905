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
  in the table and in the answer alike. In the report every verdict is a record
  (:class:`analysis.common.verdicts.Recorder`, ``verdicts.json``) of the question "vste-resnet", and
  Holm runs over all of that question's comparisons in the report (every state, metric and setting);
  the functions below, called without a Recorder, decide their own comparisons alone.
- **Noise floor**: per state and stage, each seed's mean over its trials of (mean log10 SNR over the
  layers) − log10(1/M), against 0: a record of "other comparisons" (a property of the measurement, not
  an answer); the text says a mean gradient is resolved above the noise only where it is a direction.
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
from lowbit_sweeps.analysis.common.stats import SeedStat, Verdict, holm_note, mean_std_n, over_seeds, signed_pp
from lowbit_sweeps.analysis.common.verdicts import Recorder
from lowbit_sweeps.analysis.gradstats.trials import ACT_LABEL, BATCHES, LABEL, SEED, STATE, TAU_A, TAU_W, WIDTH
from lowbit_core.quant import estimator_registry

NSTE = estimator_registry.label(estimator_registry.REFERENCE)
CELL = [TAU_W, TAU_A, ACT_LABEL, BATCHES]
QUESTION = "vste-resnet"
"""The question the vSTE-against-nSTE comparisons answer (:mod:`lowbit_core.questions`)."""
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


def decided(fn, plan=None):
    """``fn(rec)`` with decided verdicts: a fresh Recorder collects ``fn``'s comparisons,
    :meth:`Recorder.adjust` decides them (Holm per question), ``fn`` runs again to render them."""
    rec = Recorder(plan)
    fn(rec)
    rec.adjust()
    return fn(rec)


def _arms(trials: pd.DataFrame, labels: set, states) -> pd.DataFrame:
    """The counted trials of the compared settings in ``states`` (the record's cells)."""
    t = ok(trials)
    return t[t[LABEL].isin(labels) & t[STATE].astype(str).isin(set(states))] if len(t) else t


def holm_verdicts(trials: pd.DataFrame, metric: str, state: str | None = None,
                  rec: Recorder | None = None, plan=None) -> dict[str, tuple[SeedStat, Verdict]]:
    """Per estimator setting: its statistic against nSTE in ``state`` (None: the pretraining
    dependence, pretrained − init) and its verdict: ``rec``'s record of the question "vste-resnet"
    (decided with all of the question's comparisons); None: Holm over these settings alone."""
    if rec is None:
        return decided(lambda r: holm_verdicts(trials, metric, state, r, plan), plan)
    states = states_of(trials)
    out = {}
    for label, _, _ in settings(trials):
        if state is not None:
            s, scope, where = versus_nste(trials, state, label, metric), state, (state,)
        else:
            s = pretraining_dependence(trials, label, metric, tuple(states))
            scope, where = f"{states[1]} − {states[0]}", tuple(states)
        v = rec.verdict(s.values, question=QUESTION, comparison=f"{label} vs {NSTE} ({scope})", metric=METRICS[metric],
                        baseline=f"{NSTE} (the registry's reference estimator)",
                        unit="fraction (Δ of test_acc)" if metric == "final_test_acc" else METRICS[metric],
                        rows=_arms(trials, {label, NSTE}, where))
        out[label] = (s, v)
    return out


def _scopes(trials: pd.DataFrame) -> list[str | None]:
    states = states_of(trials)
    return list(states) + ([None] if len(states) == 2 else [])


def comparison_verdicts(trials: pd.DataFrame, rec: Recorder | None = None, plan=None) -> list[list[Verdict]]:
    """The verdicts of the comparison table, per (state, metric) (records of ``rec``)."""
    if rec is None:
        return decided(lambda r: comparison_verdicts(trials, r, plan), plan)
    return [[v for _, v in holm_verdicts(trials, metric, scope, rec, plan).values()]
            for scope in _scopes(trials) for metric in METRICS]


def family_note(trials: pd.DataFrame, rec: Recorder | None = None, plan=None) -> str:
    """The line under the comparison table: the Holm family and its size."""
    verdicts = [v for fam in comparison_verdicts(trials, rec, plan) for v in fam]
    counted = [v for v in verdicts if v.sign is not None and not v.identical and math.isfinite(v.p)]
    ks = sorted({v.k for v in counted})
    if not counted:
        return holm_note(verdicts)
    k = f"{ks[0]}" if len(ks) == 1 else f"{ks[0]}–{ks[-1]}"
    return (f"Holm-adjusted over the K = {k} comparisons of the question vste-resnet in this report (every estimator "
            f"setting against nSTE, per column and state, and the pretrained − init rows), family-wise "
            f"α = {counted[0].alpha:.2g}; intervals are the unadjusted paired-t 95% intervals, n = seeds.")


def comparison_table(trials: pd.DataFrame, rec: Recorder | None = None, plan=None) -> pd.DataFrame:
    """One row per (state, setting): each metric's paired difference to nSTE with its verdict, and
    (a row per setting, state 'pretrained − init') the dependence on pretraining; verdicts are
    ``rec``'s records (:func:`holm_verdicts`; None: decided over the table's comparisons)."""
    if rec is None:
        return decided(lambda r: comparison_table(trials, r, plan), plan)
    states = states_of(trials)
    scopes = _scopes(trials)
    judged = {(scope, metric): holm_verdicts(trials, metric, scope, rec, plan) for scope in scopes for metric in METRICS}
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


def _listed(items: list[tuple[str, Verdict]], metric: str, higher: str, lower: str) -> str:
    return ", ".join(f"{label} ({_verdict_text(v, metric, higher, lower)})" for label, v in items) or "–"


def _seeds(verdicts) -> str:
    ns = sorted({v.n for v in verdicts})
    return f"n = {ns[0]}" if len(ns) == 1 else f"n = {ns[0]}–{ns[-1]}"


def answer_lines(trials: pd.DataFrame, rec: Recorder | None = None, plan=None) -> list[str]:
    """The findings' answer to "do vSTE and nSTE differ on ResNet, and does it depend on pretraining?":
    each setting that differs with its record's interval; the counts of the others (their records in
    the paired-differences table and verdicts.json)."""
    if rec is None:
        return decided(lambda r: answer_lines(trials, r, plan), plan)
    states, found = states_of(trials), settings(trials)
    if not found or not (ok(trials)[LABEL] == NSTE).any():
        return ["No vSTE-vs-nSTE comparison: the sweep needs nSTE trials and other estimators of the same states."]
    lines = ["**Do vSTE and nSTE differ on ResNet?** (paired on seeds; a direction where the paired-t 95% interval "
             "excludes 0, Holm-adjusted over the question's comparisons; n = seeds)"]
    for metric, name in METRICS.items():
        parts = []
        for state in states:
            judged = [(label, v) for label, (_, v) in holm_verdicts(trials, metric, state, rec, plan).items()
                      if v.sign is not None]
            if not judged:
                parts.append(f"{state}: no verdict (needs >= 2 seeds)")
                continue
            higher = [(lab, v) for lab, v in judged if v.decision == "higher"]
            lower = [(lab, v) for lab, v in judged if v.decision == "lower"]
            k = max(v.k for _, v in judged)  # identical comparisons are not counted (their k is 1)
            text = f"{state}: {len(higher) + len(lower)} of {len(judged)} settings differ ({_seeds(v for _, v in judged)}, " \
                   f"Holm over K = {k})"
            if higher or lower:
                text += (f": higher: {_listed(higher, metric, 'higher', 'lower')}; "
                         f"lower: {_listed(lower, metric, 'higher', 'lower')}")
            parts.append(text)
        lines.append(f"  {name} vs nSTE — " + "; ".join(parts))
    if len(states) == 2:
        lines.append(f"**Does it depend on pretraining?** ({states[1]} − {states[0]} of the difference to nSTE)")
        for metric, name in METRICS.items():
            judged = [(label, v) for label, (_, v) in holm_verdicts(trials, metric, None, rec, plan).items()
                      if v.sign is not None]
            if not judged:
                lines.append(f"  {name}: no verdict (needs >= 2 seeds in both states)")
                continue
            differ = [(label, v) for label, v in judged if v.sign]
            lines.append(f"  {name}: {len(differ)} of {len(judged)} settings depend on it ({_seeds(v for _, v in judged)})"
                         + (f": {_listed(differ, metric, 'larger', 'smaller')}" if differ else ""))
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


def noise_floor_lines(trials: pd.DataFrame, rec: Recorder | None = None, plan=None) -> list[str]:
    """Where the weights' SNR sits against the noise floor 1/M (module docstring): a record per state
    and stage; "resolved" only where it is a direction."""
    t = ok(trials)
    if not len(t) or t[BATCHES].nunique() != 1:
        return []
    rec = rec if rec is not None else Recorder(plan)
    m_batches = int(t[BATCHES].iloc[0])
    floor = -math.log10(float(m_batches))
    out = []
    for state in states_of(trials):
        sub = t[t[STATE].astype(str) == state]
        for stage in ("start", "final"):
            m, s, n = mean_std_n(sub[f"{stage}.w_snr"])
            if not n:
                continue
            above = over_seeds(sub.assign(_above=pd.to_numeric(sub[f"{stage}.w_snr"], errors="coerce") - floor),
                               "_above", SEED)
            v = rec.verdict(above.values, question=None, comparison=f"log10 SNR (w) above the noise floor ({state}, {stage})",
                            metric=f"mean log10 SNR (w) over layers − log10(1/M), M = {m_batches}",
                            baseline="the noise floor log10(1/M)", unit="log10", rows=sub)
            out.append(f"{state}, {stage}: log10 SNR (w), mean ± std over all trials {fmt_mean_std(m, s, n)}, "
                       f"against the noise floor {floor:.3g} (log10 1/M, M = {m_batches}); above it, per seed over "
                       f"the settings: {v.text('mean gradient resolved above the noise floor', 'below the noise floor')}")
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
