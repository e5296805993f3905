"""The report of a training sweep (the ``train`` family: CIFAR ResNets, one row per epoch).

What a row holds (``lowbit_core/families/train/run.py``): ``epoch`` (1-based, equal to ``step``), ``phase``
(``pretrain`` = the FP model of the pretrain path, ``finetune`` = the quantized model after it,
``scratch``), ``train_loss`` / ``train_acc`` (under mixup: the mixed loss and the lambda-weighted
accuracy), ``test_loss`` / ``test_acc``, ``val_loss`` / ``val_acc`` on the validation split,
``selected_epoch`` / ``selected_test_acc``, ``dsq_alpha``, ``perturbed`` (1 on epochs that started
with a weight kick), and the flattened config.

Rules used here, all computed from the rows:

- **Groups** are the ``cfg.*`` columns that vary (seed excluded). ``cfg.model.kind`` and the
  ``cfg.quant.*`` columns collapse into one ``quantizer`` label ('binary (w: window t=0.1)',
  'DSQ 1-bit (alpha: learned)') where they vary, since the family resets the fields that do not act.
- **Final** = the trial's last row; its ``test_acc`` is the headline number. A trial counts in the
  statistics only when it finished every planned epoch (``cfg.train.epochs``) with finite
  ``test_acc`` and ``train_loss``, and its trial status is not ERROR. The others are counted per
  group and listed, never averaged in.
- **Selected** = ``selected_test_acc`` of the last row: the test accuracy at the epoch with the best
  validation accuracy (``cfg.data.val_fraction`` of the training set held out). With
  ``val_fraction = 0``, or in folders from before validation (no ``val_acc`` / ``selected_test_acc``:
  then the highest ``test_acc`` over the epochs of the trial's last phase), the epoch was selected
  on the test set: the report says "selected on test: optimistic". A recorded selected epoch outside
  the trial's last phase (an FP pretraining epoch) is another model's and is left out.
  ``best_test_acc`` is never used.
- **Paired differences**: for an axis A and value v against a reference r, pairs are trials equal in
  seed and every other group key; the difference is v - r of the metric. Pooled over the cells of
  the other keys, each seed's differences are averaged first; mean ± std and n are over seeds. The
  reference is declared, never chosen from the results: the plan's ``baseline`` where it names the
  key, else the family's canonical default (``canonical_defaults``), else the first value of the
  plan's axis; without a plan 0 where the axis is numeric and holds 0 (off: scratch, no mixup, no
  perturbation), else the smallest number, ``False`` for booleans, ``default`` where present,
  otherwise the first value of the trial table. The quantizer label's reference is the label whose
  kind/quant columns hold those values (:func:`analysis.train.findings.quantizer_reference`). The
  text says which rule chose it. Axes under ``cfg.data.``, ``cfg.model.arch`` and
  ``cfg.model.width`` are the setting, not a treatment: they split the comparisons but are not compared.
- **Verdicts**: the one rule of :func:`analysis.common.stats.paired_verdict` (n >= 2 seeds; a
  direction only when the paired-t 95% interval of the per-seed differences excludes 0); each is a
  record (:class:`analysis.common.verdicts.Recorder`, ``verdicts.json``) of the question the sweep
  answers (:func:`analysis.train.findings.question_for`), Holm-adjusted over that question's
  comparisons in the report (the table's rows, the DSQ lines and the equal-bits lines).
- **Cost** (rows with the cost columns of :mod:`lowbit_core.cost.columns`): each group's model cost
  (OPs, parameter bits, energy ESTIMATE) next to its mean final test_acc, the Pareto fronts against
  OPs and parameter bits (one line per quantizer label), a per-model summary and per-layer table
  (:mod:`analysis.train.cost`), and the equal-bits comparison of bits per weight against more
  weights (:mod:`analysis.train.equal_bits`).

The parts live in :mod:`analysis.train.groups` (labels, trial and group tables),
:mod:`analysis.train.findings` (paired differences, findings) and :mod:`analysis.train.figures`
(plots); this module computes them in order and writes the report.
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from lowbit_sweeps.analysis.common.format import fmt_value, frame_to_markdown
from lowbit_sweeps.analysis.common.groups import distinct_values
from lowbit_sweeps.analysis.common.load import error_line, failed_trials
from lowbit_sweeps.analysis.common.plan import SweepPlan
from lowbit_sweeps.analysis.common.verdicts import Recorder, write_decided
from lowbit_sweeps.analysis.common.writing import (fact_lines, figures_section, findings_section, joined, provenance_facts,
                                     seeds_fact, time_facts, title)
from lowbit_sweeps.analysis.train.cost import cost_section, front_points, has_cost, models, with_costs
from lowbit_sweeps.analysis.train.equal_bits import equal_bits_lines
from lowbit_sweeps.analysis.train.figures import plot_cost_fronts, plot_curves, plot_final
from lowbit_sweeps.analysis.train.findings import comparisons, format_comparisons, train_findings, trial_cfg, verdicts_note
from lowbit_sweeps.analysis.train.groups import (ACC, EPOCHS, OPTIMISTIC, QUANTIZER, VAL_FRACTION, add_quantizer_column,
                                   format_group_table, group_table, ok_trials, quantizer_collapsed_columns,
                                   names_of, selection_note, train_group_keys, trial_table)

FAMILY = "train"
FIGURES = {
    "train_curves": "Test accuracy and train loss vs epoch (mean ± std over seeds)",
    "final_test_acc": "Final test accuracy per group (mean ± std over seeds; dots: single seeds)",
    "cost_fronts": "Final test accuracy vs OPs and vs parameter bits (one point per group, mean ± std over seeds; "
                   "a line per quantizer; dashed: Pareto front)",
}


def is_train_sweep(df: pd.DataFrame) -> bool:
    """Whether rows without a plan come from the training family (``family`` column, else the epoch metrics)."""
    if "family" in df.columns and df["family"].notna().any():
        return FAMILY in set(df["family"].dropna().astype(str))
    return ACC in df.columns and "epoch" in df.columns


class TrainAnalysis:
    """Everything a training sweep's report shows, computed once from the rows, statuses and plan."""

    def __init__(self, df: pd.DataFrame, status: pd.DataFrame | None = None, plan: SweepPlan = SweepPlan(),
                 rec: Recorder | None = None):
        """``rec``: the report's Recorder (:func:`write_report` builds the analysis twice around one).
        None: the analysis decides its own verdicts (a fresh Recorder, a first build to collect the
        comparisons, :meth:`Recorder.adjust`), so they read as in the written report."""
        if rec is None:
            rec = Recorder(plan)
            TrainAnalysis(df, status, plan, rec)
            rec.adjust()
        self.plan, self.rec = plan, rec
        self.rows = add_quantizer_column(df)
        self.keys = train_group_keys(self.rows)
        self.trials = trial_table(self.rows, self.keys, status)
        failed = failed_trials(status)
        self.failed_without_rows = failed[~failed["trial_key"].isin(set(self.rows["trial_key"]))]
        self.table = group_table(self.trials, self.keys)
        self.comparisons = comparisons(self.trials, self.keys, rec, plan, self.rows)
        self.findings = train_findings(self.trials, self.table, self.comparisons, self.keys, self.rows,
                                       self.failed_without_rows, rec, plan)
        self.costed = has_cost(self.rows) and len(self.trials) > 0
        if self.costed:
            self.trials = with_costs(self.trials, self.rows)
            self.points = front_points(self.trials, self.table, self.keys)
            self.models = models(self.trials, self.keys)
            self.findings += equal_bits_lines(self.trials, self.keys, rec, plan, trial_cfg(self.rows))
        good = ok_trials(self.trials)
        self.optimistic = bool(len(good) and good["selected_on_test"].any())

    def make_figures(self, out_dir: Path) -> list[Path]:
        drawn = [plot_curves(self.rows, self.trials, self.keys, out_dir / "train_curves.png"),
                 plot_final(self.trials, self.table, self.keys, out_dir / "final_test_acc.png")]
        if self.costed:
            drawn.append(plot_cost_fronts(self.points, self.trials, self.keys, out_dir / "cost_fronts.png"))
        return [p for p in drawn if p is not None]

    def selection_fact(self) -> tuple[str, str]:
        if not self.optimistic:
            return ("model selection", f"best-validation epoch (val_fraction {joined(self.rows, VAL_FRACTION)})")
        good = ok_trials(self.trials)
        return ("model selection", f"on the test set for {int(good['selected_on_test'].sum())} of {len(good)} "
                                   f"finished trials (no validation split); {OPTIMISTIC}")

    def header(self) -> list[str]:
        df = self.rows
        facts = [
            ("family", ", ".join(distinct_values(df, "family")) or "–"),
            ("trials", str(df["trial_key"].nunique() + len(self.failed_without_rows))),
            ("rows", f"{len(df)} (one per epoch)"), seeds_fact(df),
            ("epochs", ", ".join(distinct_values(df, EPOCHS)) or "–"),
            ("data", ", ".join(f"{d} (n_train {'all' if n == '0' else n})" for d, n in
                               df[["cfg.data.name", "cfg.data.n_train"]].drop_duplicates().astype(str).itertuples(index=False))
             if {"cfg.data.name", "cfg.data.n_train"} <= set(df.columns) else "–"),
            *provenance_facts(df), ("group keys", ", ".join(self.keys) or "none (one group)"),
        ]
        if QUANTIZER in self.keys:
            facts.append(("quantizer label stands for", ", ".join(quantizer_collapsed_columns(df)) or "–"))
        facts += time_facts(df)
        if len(self.trials):
            facts.append(self.selection_fact())
        lines = title(df) + fact_lines(facts + self.plan.facts())
        n_failed = int((self.trials["outcome"] == "failed").sum()) + len(self.failed_without_rows)
        if n_failed:
            lines.append(f"- **n failed: {n_failed}** trial(s) ended in ERROR")
            for _, r in self.failed_without_rows.head(5).iterrows():
                lines.append(f"  - `{r['trial_key']}` (no rows): {error_line(r.get('error', ''))}")
        return lines + [""]

    def table_section(self) -> list[str]:
        if self.table.empty:
            return []
        return ["## Final test accuracy and model selection per group (mean ± std over seeds, sorted)", "",
                "Final: the last epoch's test_acc (the headline; equal epochs for every trial of a group). "
                "Selected: test_acc at the epoch with the best validation accuracy (a split of "
                "cfg.data.val_fraction of the training set); without a validation split (val_fraction = 0, or "
                "results from before validation) the epoch was selected on the test set, hence optimistic. "
                "Only trials that finished every epoch with finite metrics count; std is the sample std "
                "(ddof=1), left out for n=1; n counts seeds."
                + (" Under mixup train_loss/train_acc are on mixed batches." if self.mixup() else ""), "",
                frame_to_markdown(format_group_table(self.table, self.keys, selection_note(self.trials))), ""]

    def comparisons_section(self) -> list[str]:
        if self.comparisons.empty:
            return []
        return ["## Paired differences", "",
                "Value minus reference of final (and selected) test_acc over pairs of finished trials equal in "
                "seed and every other group key; Δ in percentage points. Pooled rows average each seed's pairs "
                "over the cells first: ± is the std over seeds of those per-seed means, n counts seeds. "
                "Reference: declared, never chosen from the results: the plan's baseline where it names the "
                "key, else the family's canonical default, else the first value of the plan's axis; without a "
                "plan 0 (off) for numeric axes that include it, else the smallest value, `default` for "
                "categorical axes, else the first value of the sweep. Reference: "
                + "; ".join(f"{names_of(self.keys).get(a, a)} = {fmt_value(r)} ({rule})" for a, r, rule in
                            self.comparisons[["axis", "reference", "reference_rule"]].drop_duplicates("axis")
                            .itertuples(index=False)) + ". Data/arch/width axes only split.",
                "", frame_to_markdown(format_comparisons(self.comparisons, self.keys, self.optimistic)), "",
                verdicts_note(list(self.comparisons["final.verdict"])), ""]

    def markdown(self, paths: list[Path]) -> str:
        out = (self.header() + findings_section(self.findings) + self.table_section() + self.comparisons_section()
               + (cost_section(self.models, self.points) if self.costed else []) + figures_section(paths, FIGURES))
        return "\n".join(out).rstrip() + "\n"

    def mixup(self) -> bool:
        col = "cfg.train.mixup_alpha"
        return col in self.rows.columns and (pd.to_numeric(self.rows[col], errors="coerce") > 0).any()


def write_report(df: pd.DataFrame, status: pd.DataFrame | None, out_dir: str | Path,
                 plan: SweepPlan = SweepPlan()) -> list[Path]:
    """Compute the analysis twice around one Recorder (:func:`write_decided`), write the figures,
    report.md and verdicts.json into ``out_dir``; return the paths."""
    return write_decided(lambda rec: TrainAnalysis(df, status, plan, rec), out_dir, plan)
