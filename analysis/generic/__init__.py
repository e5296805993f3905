"""The generic report: what any family gets without a report of its own (a plug-in family on day one).

From the rows and the recorded plan only (never the family's code):

- **Trials**: the final row of each trial (largest step). Trials whose latest status is ERROR or
  STOPPED_EARLY are counted and listed, never averaged with finished ones.
- **Metrics**: every numeric metric column (not provenance, not ``cfg.*``); the sweep's metric first.
- **Per setting** (the ``cfg.*`` keys that vary, seed excluded): for each metric, mean over seeds
  with its Student-t 95% interval of the mean (m ± t(0.975, n-1)·s/√n) and n.
- **Against the baseline** (the plan's ``baseline``: the family's and the sweep's, e.g.
  ``{"estimator.name": "identity"}``): for each baseline key that varies, every other value of it
  minus the baseline value of the sweep's metric, paired on seed and on every other varying key,
  pooled per seed over those keys first; the verdict is :func:`analysis.common.stats.paired_verdict`'s,
  a record (:class:`analysis.common.verdicts.Recorder`, ``verdicts.json``) of the plan's first question
  (None, "other comparisons", where the plan names none), Holm-adjusted over that question's
  comparisons. A value of a registered plug-in (an estimator, a quantizer) is shown with its
  registered label.
- **Curves**: the sweep's metric against step (or epoch) per setting, mean ± std over seeds.
- **The plan and provenance**: profile, axes, seeds, command, git SHA, versions, devices.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

from lowbit_sweeps.analysis.common.format import frame_to_markdown
from lowbit_sweeps.analysis.common.format import fmt_value
from lowbit_sweeps.analysis.common.groups import final_rows, hashable, seed_column, varying_keys
from lowbit_sweeps.analysis.common.load import error_line, failed_trials, stopped_trials
from lowbit_sweeps.analysis.common.plan import SweepPlan
from lowbit_sweeps.analysis.common.plotting import new_figure, save_figure
from lowbit_sweeps.analysis.common.stats import holm_note, mean_std_n, paired_t
from lowbit_sweeps.analysis.common.verdicts import Recorder, write_decided
from lowbit_sweeps.analysis.common.writing import (FamilyReport, fact_lines, figures_section, findings_section,
                                     provenance_facts, seeds_fact, time_facts, title)

NAME = "generic"
PROVENANCE = {"sweep", "run_id", "trial_id", "trial_key", "study", "step", "seed", "git_sha", "host", "node_ip",
              "node_id", "device", "time", "family"}
MAX_METRICS = 8


def metric_columns(df: pd.DataFrame, first: str | None) -> list[str]:
    """Numeric metric columns (not provenance, versions or config), the sweep's metric first."""
    cols = [c for c in df.columns if c not in PROVENANCE and not c.startswith(("cfg.", "ver.", "_"))
            and pd.api.types.is_numeric_dtype(df[c]) and df[c].notna().any()]
    if first in cols:
        cols.remove(first)
        cols.insert(0, first)
    return cols


def interval_cell(values) -> str:
    """'m [lo, hi] (n)' of the mean over seeds (n < 2: 'm (n = 1)'; none: '–')."""
    m, s, n = mean_std_n(values)
    if n == 0:
        return "–"
    if n < 2:
        return f"{m:.4g} (n = 1)"
    lo, hi, _, _ = (float(x) for x in paired_t(m, s, n))
    return f"{m:.4g} [{lo:.4g}, {hi:.4g}] (n = {n})"


def setting_table(final: pd.DataFrame, keys: list[str], metrics: list[str]) -> pd.DataFrame:
    """One row per setting (values of ``keys``), one column per metric: mean [95% interval] (n)."""
    rows = []
    groups = final.groupby([hashable(final[k]).rename(k) for k in keys], sort=True, dropna=False) if keys \
        else [((), final)]
    for values, sub in groups:
        values = values if isinstance(values, tuple) else (values,)
        row = {k.removeprefix("cfg."): fmt_value(v) for k, v in zip(keys, values)}
        row.update({m: interval_cell(sub[m]) for m in metrics})
        rows.append(row)
    return pd.DataFrame(rows)


def plan_question(plan) -> str | None:
    """The plan's first recorded question (None: "other comparisons")."""
    for q in (getattr(plan, "raw", None) or {}).get("questions") or []:
        qid = q.get("id") if isinstance(q, dict) else q
        if qid:
            return str(qid)
    return None


def registered_label(key: str, value) -> str:
    """``value`` of config ``key`` with the registered label of its plug-in where it names one (an
    estimator, a quantizer): 'tanh_ste (tanh STE)'; else the value as text."""
    text = fmt_value(value)
    leaf = key.rsplit(".", 1)[-1]
    try:
        if "estimator" in key and leaf in ("name", "weight_estimator", "act_estimator", "estimator"):
            from lowbit_core.quant import estimator_registry as reg

            found = reg.REGISTRY.get(str(value), None)
            lab = found.describe() if found is not None else None
        elif leaf in ("kbit", "quantizer"):
            from lowbit_core.quant import registry as reg

            found = reg.QUANTIZERS.get(str(value), None)
            lab = reg.label(value) if found is not None else None
        else:
            lab = None
    except Exception:  # a label is a courtesy: never fail the report over it
        lab = None
    return f"{text} ({lab})" if lab and lab != text else text


def baseline_comparisons(final: pd.DataFrame, plan: SweepPlan, keys: list[str], metric: str,
                         rec: Recorder | None = None):
    """[(key, value, baseline value, Verdict)] of every other value of each varying baseline key
    against the baseline value, on ``metric``, paired on seed and the other keys (pooled per seed);
    each verdict ``rec``'s record (None: decided over these comparisons alone)."""
    if rec is None:
        rec = Recorder(plan)
        baseline_comparisons(final, plan, keys, metric, rec)
        rec.adjust()
    seed = seed_column(final)
    question = plan_question(plan)
    out = []
    for key, base in plan.baseline.items():
        col = f"cfg.{key}"
        if col not in keys or seed is None or metric not in final.columns:
            continue
        others = [k for k in keys if k != col]
        text = final[col].map(fmt_value)
        ref = final[text == fmt_value(base)]
        if ref.empty:
            continue
        ref_vals = ref.set_index([seed, *others])[metric] if others else ref.set_index(seed)[metric]
        for value in sorted(set(text) - {fmt_value(base)}):
            cur = final[text == value]
            cur_vals = cur.set_index([seed, *others])[metric] if others else cur.set_index(seed)[metric]
            both = cur_vals.index.intersection(ref_vals.index)
            if not len(both):
                continue
            diff = (pd.to_numeric(cur_vals.loc[both]) - pd.to_numeric(ref_vals.loc[both])).groupby(level=0).mean()
            v = rec.verdict(diff.to_numpy(dtype=float), question=question,
                            comparison=f"{key}={registered_label(key, value)} vs {registered_label(key, base)}",
                            metric=f"{metric} (final row, paired on seed)",
                            baseline=f"{key}={registered_label(key, base)} (the plan's baseline)", unit=metric,
                            rows=pd.concat([cur, ref]))
            out.append((key, value, fmt_value(base), v))
    return out


def curves_figure(df: pd.DataFrame, keys: list[str], metric: str, out_dir: Path) -> Path | None:
    """``metric`` against step per setting, mean ± std over seeds."""
    if metric not in df.columns or df["step"].nunique() < 2:
        return None
    fig, axes = new_figure(1)
    ax = axes[0]
    groups = df.groupby([hashable(df[k]).rename(k) for k in keys], sort=True, dropna=False) if keys else [((), df)]
    for values, sub in list(groups)[:12]:
        values = values if isinstance(values, tuple) else (values,)
        curve = sub.groupby("step")[metric].agg(["mean", "std"]).reset_index()
        label = ", ".join(fmt_value(v) for v in values) or "all"
        ax.plot(curve["step"], curve["mean"], label=label)
        ax.fill_between(curve["step"], curve["mean"] - curve["std"].fillna(0), curve["mean"] + curve["std"].fillna(0),
                        alpha=0.15)
    ax.set_xlabel("epoch" if "epoch" in df.columns else "step")
    ax.set_ylabel(metric)
    return save_figure(fig, axes, out_dir / "curves.png", ", ".join(k.removeprefix("cfg.") for k in keys))


def axis_figure(final: pd.DataFrame, key: str, metric: str, out_dir: Path) -> Path | None:
    """The sweep's metric against one grid axis (mean ± 95% interval over the other settings' trials)."""
    rows = []
    for value, sub in final.groupby(hashable(final[key]), sort=True):
        m, s, n = mean_std_n(sub[metric])
        half = (float(paired_t(m, s, n)[1]) - m) if n >= 2 else 0.0
        rows.append((fmt_value(value), m, half))
    if len(rows) < 2:
        return None
    fig, axes = new_figure(1)
    x = np.arange(len(rows))
    axes[0].errorbar(x, [r[1] for r in rows], yerr=[0 if math.isnan(r[2]) else r[2] for r in rows], fmt="o-",
                     capsize=3)
    axes[0].set_xticks(x, [r[0] for r in rows], rotation=30, ha="right")
    axes[0].set_xlabel(key.removeprefix("cfg."))
    axes[0].set_ylabel(metric)
    return save_figure(fig, axes, out_dir / f"by_{key.removeprefix('cfg.').replace('.', '_')}.png", "")


class GenericAnalysis:
    """What the generic report shows, from the rows, statuses and plan; ``rec``: the report's
    Recorder (None: the analysis decides its own verdicts)."""

    def __init__(self, df: pd.DataFrame, status: pd.DataFrame | None, plan: SweepPlan, rec: Recorder | None = None):
        if rec is None:
            rec = Recorder(plan)
            GenericAnalysis(df, status, plan, rec).markdown([])
            rec.adjust()
        self.df, self.plan, self.rec = df, plan, rec
        self.metric, self.mode = plan.metric_mode((None, "min"))
        self.failed = failed_trials(status)
        self.stopped = stopped_trials(status)
        self.bad = set(self.failed["trial_key"]) | set(self.stopped)
        self.final_all = final_rows(df)
        self.final = self.final_all[~self.final_all["trial_key"].isin(self.bad)]
        self.keys = varying_keys(self.final_all)
        self.metrics = metric_columns(self.final, self.metric)[:MAX_METRICS]
        self.metric = self.metric or (self.metrics[0] if self.metrics else None)
        self.comparisons = baseline_comparisons(self.final, plan, self.keys, self.metric, rec) if self.metric else []

    def make_figures(self, out_dir: Path) -> list[Path]:
        df, keys, metric = self.df, self.keys, self.metric
        if not metric:
            return []
        return [p for p in [curves_figure(df[~df["trial_key"].isin(self.bad)], keys, metric, out_dir),
                            *(axis_figure(self.final, k, metric, out_dir) for k in keys)] if p is not None]

    def findings(self) -> list[str]:
        plan, metric = self.plan, self.metric
        findings = []
        for key, value, base, v in self.comparisons:
            findings.append(f"{key} = {registered_label(key, value)} − {registered_label(key, base)} on {metric} "
                            f"({self.mode}): " + v.text("higher", "lower"))
        if not self.comparisons:
            findings.append("no baseline comparison: the plan names no baseline value among the varying keys"
                            + (f" ({', '.join(f'{k} = {v}' for k, v in plan.baseline.items())})" if plan.baseline else ""))
        for _, row in self.failed.iterrows():
            findings.append(f"failed: trial {row['trial_key']}: {error_line(row.get('error'))}")
        for key, reason in self.stopped.items():
            findings.append(f"stopped early: trial {key}: {reason}")
        return findings

    def markdown(self, paths: list[Path]) -> str:
        df, plan = self.df, self.plan
        lines = title(df)
        lines += fact_lines([("family", plan.family or "–"), ("report", "generic (the family has no report of its own)"),
                             *plan.facts(), seeds_fact(df), ("trials", f"{self.final_all['trial_key'].nunique()} "
                             f"({len(self.failed)} failed, {len(self.stopped)} stopped early; neither averaged in)"),
                             *provenance_facts(df), *time_facts(df)]) + [""]
        lines += findings_section(self.findings())
        if self.comparisons:
            lines += ["", self.note(), ""]
        lines += ["## Final values per setting", "",
                  "Mean over seeds [Student-t 95% interval of the mean] (n) of each trial's last row.", ""]
        lines += [frame_to_markdown(setting_table(self.final, self.keys, self.metrics)), ""]
        lines += figures_section(paths, {"curves": f"{self.metric} against step, mean ± std over seeds"})
        return "\n".join(lines) + "\n"

    def note(self) -> str:
        verdicts = [v for *_, v in self.comparisons]
        counted = [v for v in verdicts if v.sign is not None and not v.identical and math.isfinite(v.p)]
        ks = sorted({v.k for v in counted})
        if not counted or ks == [len(counted)]:
            return holm_note(verdicts)
        k = f"{ks[0]}" if len(ks) == 1 else f"{ks[0]}–{ks[-1]}"
        return (f"Holm-adjusted over the K = {k} comparisons of the question in this report, family-wise "
                f"α = {counted[0].alpha:.2g}; intervals are the unadjusted paired-t 95% intervals, n = seeds.")


def write(df: pd.DataFrame, status: pd.DataFrame | None, out_dir: str | Path, plan: SweepPlan) -> list[Path]:
    """Write report.md, the figures and verdicts.json into ``out_dir`` (the analysis built twice
    around one Recorder, :func:`write_decided`); return the paths."""
    return write_decided(lambda rec: GenericAnalysis(df, status, plan, rec), out_dir, plan)


REPORT = FamilyReport(NAME, write, detects=lambda df: False)
