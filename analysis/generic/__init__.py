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
  Holm-adjusted over the table's comparisons.
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
from lowbit_sweeps.analysis.common.stats import holm, holm_note, mean_std_n, paired_t, paired_verdict
from lowbit_sweeps.analysis.common.writing import (REPORT_NAME, FamilyReport, fact_lines, figures_section, findings_section,
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


def baseline_comparisons(final: pd.DataFrame, plan: SweepPlan, keys: list[str], metric: str):
    """[(key, value, baseline value, Verdict)] of every other value of each varying baseline key
    against the baseline value, on ``metric``, paired on seed and the other keys (pooled per seed)."""
    seed = seed_column(final)
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
            out.append((key, value, fmt_value(base), paired_verdict(diff.to_numpy(dtype=float))))
    adjusted = holm([v for *_, v in out])
    return [(k, v, b, a) for (k, v, b, _), a in zip(out, adjusted)]


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


def write(df: pd.DataFrame, status: pd.DataFrame | None, out_dir: str | Path, plan: SweepPlan) -> list[Path]:
    """Write report.md and the figures into ``out_dir``; return the paths."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    metric, mode = plan.metric_mode((None, "min"))
    failed = failed_trials(status)
    stopped = stopped_trials(status)
    bad = set(failed["trial_key"]) | set(stopped)
    final_all = final_rows(df)
    final = final_all[~final_all["trial_key"].isin(bad)]
    keys = varying_keys(final_all)
    metrics = metric_columns(final, metric)[:MAX_METRICS]
    metric = metric or (metrics[0] if metrics else None)

    lines = title(df)
    lines += fact_lines([("family", plan.family or "–"), ("report", "generic (the family has no report of its own)"),
                         *plan.facts(), seeds_fact(df), ("trials", f"{final_all['trial_key'].nunique()} "
                         f"({len(failed)} failed, {len(stopped)} stopped early; neither averaged in)"),
                         *provenance_facts(df), *time_facts(df)]) + [""]
    findings = []
    comparisons = baseline_comparisons(final, plan, keys, metric) if metric else []
    for key, value, base, v in comparisons:
        findings.append(f"{key} = {value} − {base} on {metric} ({mode}): "
                        + v.text("higher", "lower"))
    if not comparisons:
        findings.append("no baseline comparison: the plan names no baseline value among the varying keys"
                        + (f" ({', '.join(f'{k} = {v}' for k, v in plan.baseline.items())})" if plan.baseline else ""))
    for _, row in failed.iterrows():
        findings.append(f"failed: trial {row['trial_key']}: {error_line(row.get('error'))}")
    for key, reason in stopped.items():
        findings.append(f"stopped early: trial {key}: {reason}")
    lines += findings_section(findings)
    if comparisons:
        lines += ["", holm_note([v for *_, v in comparisons]), ""]
    lines += ["## Final values per setting", "",
              "Mean over seeds [Student-t 95% interval of the mean] (n) of each trial's last row.", ""]
    lines += [frame_to_markdown(setting_table(final, keys, metrics)), ""]
    figures = [p for p in [curves_figure(df[~df["trial_key"].isin(bad)], keys, metric, out_dir) if metric else None,
                           *(axis_figure(final, k, metric, out_dir) for k in keys if metric)] if p is not None]
    lines += figures_section(figures, {"curves": f"{metric} against step, mean ± std over seeds"})
    report = out_dir / REPORT_NAME
    report.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return [report, *figures]


REPORT = FamilyReport(NAME, write, detects=lambda df: False)
