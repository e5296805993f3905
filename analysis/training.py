"""The report of a training sweep (the ``train`` family: CIFAR ResNets, one row per epoch).

What a row holds (``lowbit_core/train/loop.py``): ``epoch`` (1-based, equal to ``step``), ``phase``
(``pretrain`` = the FP model of the pretrain path, ``finetune`` = the quantized model after it,
``scratch``), ``train_loss`` / ``train_acc`` (under mixup: the mixed loss and the lambda-weighted
accuracy), ``test_loss`` / ``test_acc``, ``dsq_alpha``, ``perturbed`` (1 on epochs that started with
a weight kick), and the flattened config.

Rules used here, all computed from the rows:

- **Groups** are the ``cfg.*`` columns that vary (seed excluded). ``cfg.model.kind`` and the
  ``cfg.quant.*`` columns collapse into one ``quantizer`` label ('binary (w: window t=0.1)',
  'DSQ 1-bit (alpha: learned)') where they vary, since the family resets the fields that do not act.
- **Final** = the trial's last row; a trial counts in the statistics only when it finished every
  planned epoch (``cfg.train.epochs``) with finite ``test_acc`` and ``train_loss``, and its trial
  status is not ERROR. The others are counted per group and listed, never averaged in.
- **Best** = the highest ``test_acc`` over the epochs of the trial's last phase: on the pretrain path
  the FP model's epochs are excluded (its ``best_test_acc`` column includes them, so it is not used).
  It is selected on the test set, hence optimistic.
- **Paired differences**: for an axis A and value v against a reference r, pairs are trials equal in
  seed and every other group key; the difference is v - r of the metric, over pairs. The reference is
  0 where the axis is numeric and holds 0 (off: scratch, no mixup, no perturbation), else the smallest
  number, ``False`` for booleans, ``default`` where present, otherwise the value with the highest mean
  final test_acc. Axes under ``cfg.data.``, ``cfg.model.arch`` and ``cfg.model.width`` are the
  setting, not a treatment: they split the comparisons but are not compared.
- **Verdicts**: a mean difference is called positive (negative) only with at least two pairs and
  more than one std away from zero; one pair gets no verdict.

The parts live in ``analysis/training_groups.py`` (labels, trial and group tables, formatting),
``analysis/training_findings.py`` (paired differences, verdicts, findings) and
``analysis/training_figures.py`` (plots); this module computes them in order and writes the report.
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from analysis.groups import distinct_values, seed_column
from analysis.load import error_line, failed_trials
from analysis.summary import write_analysis
from analysis.tables import frame_to_markdown
from analysis.training_figures import plot_curves, plot_final
from analysis.training_findings import comparisons, format_comparisons, train_findings
from analysis.training_groups import (ACC, EPOCHS, QUANTIZER, add_quantizer_column, format_group_table,
                                      group_table, quantizer_collapsed_columns, train_group_keys,
                                      trial_table)

FAMILY = "train"
FIGURES = {
    "train_curves": "Test accuracy and train loss vs epoch (mean ± std over seeds)",
    "final_test_acc": "Final test accuracy per group (mean ± std over seeds; dots: single seeds)",
}


# ---- which sweeps ------------------------------------------------------------------------------

def is_train_sweep(df: pd.DataFrame) -> bool:
    """Whether the rows come from the training family (``family`` column, else the epoch metrics)."""
    if "family" in df.columns and df["family"].notna().any():
        return FAMILY in set(df["family"].dropna().astype(str))
    return ACC in df.columns and "epoch" in df.columns


# ---- the report --------------------------------------------------------------------------------


class TrainAnalysis:
    """Everything a training sweep's report shows, computed once from the rows and trial statuses."""

    def __init__(self, df: pd.DataFrame, status: pd.DataFrame | None = None):
        self.rows = add_quantizer_column(df)
        self.keys = train_group_keys(self.rows)
        self.trials = trial_table(self.rows, self.keys, status)
        failed = failed_trials(status)
        self.failed_without_rows = failed[~failed["trial_key"].isin(set(self.rows["trial_key"]))]
        self.table = group_table(self.trials, self.keys)
        self.comparisons = comparisons(self.trials, self.keys)
        self.findings = train_findings(self.trials, self.table, self.comparisons, self.keys, self.rows,
                                       self.failed_without_rows)

    def make_figures(self, out_dir: Path) -> list[Path]:
        drawn = [plot_curves(self.rows, self.trials, self.keys, out_dir / "train_curves.png"),
                 plot_final(self.trials, self.table, self.keys, out_dir / "final_test_acc.png")]
        return [p for p in drawn if p is not None]

    def header(self) -> list[str]:
        df = self.rows
        seed = seed_column(df)
        facts = [
            ("family", ", ".join(distinct_values(df, "family")) or "–"),
            ("trials", str(df["trial_key"].nunique() + len(self.failed_without_rows))),
            ("rows", f"{len(df)} (one per epoch)"),
            ("seeds", f"{df[seed].nunique()} ({', '.join(distinct_values(df, seed))})" if seed else "–"),
            ("epochs", ", ".join(distinct_values(df, EPOCHS)) or "–"),
            ("data", ", ".join(f"{d} (n_train {'all' if n == '0' else n})" for d, n in
                               df[["cfg.data.name", "cfg.data.n_train"]].drop_duplicates().astype(str).itertuples(index=False))
             if {"cfg.data.name", "cfg.data.n_train"} <= set(df.columns) else "–"),
            ("runs", ", ".join(distinct_values(df, "run_id")) or "–"),
            ("git sha", ", ".join(distinct_values(df, "git_sha")) or "–"),
            ("lowbit_sweeps version", ", ".join(distinct_values(df, "ver.lowbit_sweeps")) or "–"),
            ("devices", ", ".join(distinct_values(df, "device")) or "–"),
            ("group keys", ", ".join(self.keys) or "none (one group)"),
        ]
        if QUANTIZER in self.keys:
            facts.append(("quantizer label stands for", ", ".join(quantizer_collapsed_columns(df)) or "–"))
        if "time" in df.columns and df["time"].notna().any():
            facts.append(("time", f"{df['time'].min()} … {df['time'].max()}"))
        lines = [f"# Sweep report: {', '.join(distinct_values(df, 'sweep')) or '(unnamed sweep)'}", ""]
        lines += [f"- **{k}**: {v}" for k, v in facts]
        n_failed = int((self.trials["outcome"] == "failed").sum()) + len(self.failed_without_rows)
        if n_failed:
            lines.append(f"- **n failed: {n_failed}** trial(s) ended in ERROR")
            for _, r in self.failed_without_rows.head(5).iterrows():
                lines.append(f"  - `{r['trial_key']}` (no rows): {error_line(r.get('error', ''))}")
        return lines + [""]

    def markdown(self, paths: list[Path]) -> str:
        out = self.header() + ["## Findings", ""]
        for line in self.findings:
            out.append(("  - " + line.strip()) if line.startswith("  ") else f"- {line}")
        out.append("")
        if not self.table.empty:
            out += ["## Final and best test accuracy per group (mean ± std over seeds, sorted)", "",
                    "Final: the last epoch (equal for every trial of a group). Best: the highest test_acc over "
                    "the epochs of the trial's last phase (the pretrain path's FP epochs excluded), selected on "
                    "the test set, hence optimistic. Only trials that finished every epoch with finite metrics "
                    "count; std is the sample std (ddof=1), left out for n=1; n counts seeds."
                    + (" Under mixup train_loss/train_acc are on mixed batches." if self._mixup() else ""), "",
                    frame_to_markdown(format_group_table(self.table, self.keys)), ""]
        if not self.comparisons.empty:
            out += ["## Paired differences", "",
                    "Value minus reference of final (and best) test_acc over pairs of finished trials equal in "
                    "seed and every other group key; Δ in percentage points. Reference: 0 (off) for numeric "
                    "axes that include it, else the smallest value; for categorical axes `default` or the "
                    "group with the highest mean final test_acc. Data/arch/width axes only split.", "",
                    frame_to_markdown(format_comparisons(self.comparisons, self.keys)), ""]
        if paths:
            out += ["## Figures", ""]
            for p in paths:
                out += [f"### {FIGURES.get(p.stem, p.stem)}", "", f"![{p.stem}]({p.name})", ""]
        return "\n".join(out).rstrip() + "\n"

    def _mixup(self) -> bool:
        col = "cfg.train.mixup_alpha"
        return col in self.rows.columns and (pd.to_numeric(self.rows[col], errors="coerce") > 0).any()


def write_train_report(df: pd.DataFrame, status: pd.DataFrame | None, out_dir: str | Path) -> list[Path]:
    """Compute the analysis, write the figures and report.md into ``out_dir``; return the paths."""
    return write_analysis(TrainAnalysis(df, status), out_dir)
