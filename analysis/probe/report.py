"""Assembles a probe sweep's report: the figures and ``report.md`` written next to the data.

The sweep's metric and mode come from its plan (``_sweep.json``): Optuna studies are summarized by
their best trial on that metric, the final-row table shows it, and a findings line ranks the groups
by it. Folders without a plan use ``rel_improvement_best`` (higher is better), as before plans.

Verdicts are data: :func:`write_report` builds the analysis twice around one
:class:`analysis.common.verdicts.Recorder` (:func:`analysis.common.verdicts.write_decided`), so
every verdict the text shows is a record of ``verdicts.json``, decided with its question's others.
"""
from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from lowbit_sweeps.analysis.common.estimators import REFERENCE
from lowbit_sweeps.analysis.common.format import frame_to_markdown, short_names
from lowbit_sweeps.analysis.common.groups import distinct_values, final_rows, is_optuna, searched_keys
from lowbit_sweeps.analysis.common.load import error_line, failed_trials
from lowbit_sweeps.analysis.common.plan import SweepPlan
from lowbit_sweeps.analysis.common.stats import holm_note
from lowbit_sweeps.analysis.common.verdicts import Recorder, write_decided
from lowbit_sweeps.analysis.common.writing import (fact_lines, figures_section, findings_section, provenance_facts, seeds_fact,
                                     time_facts, title)
from lowbit_sweeps.analysis.probe import budget_curve, cost, figures
from lowbit_sweeps.analysis.probe.findings import budget_line, findings, metric_line
from lowbit_sweeps.analysis.probe.groups import (ESTIMATOR, METHOD, METHOD_COLUMN, STE, add_estimator_column, add_method_column,
                                   best_trials_per_study, group_keys, method_family)
from lowbit_sweeps.analysis.probe.methods import (dg_findings, format_methods_table, method_settings, methods_table,
                                    sort_by_method, with_single_step)
from lowbit_sweeps.analysis.probe.tables import (DEFAULT_METRIC, FINAL_METRICS, budget_excess, estimator_comparison,
                                   format_estimator_comparison, format_mean_std_table, format_study_best,
                                   mean_std_table, pooled_keys, study_best_table)

FIGURES = {
    "improvement_vs_step": "Relative improvement of multi-step over single-step STE vs step",
    "improvement_vs_noise": "Relative improvement vs noise amplitude of the random start",
    "estimator_comparison": "vSTE vs nSTE (estimator settings against identity)",
    "lr_scan": "Single-step lr scan",
    "methods": "Final best loss and coordinates moved per method (single-step STE, multi-step STE, DG, CDG, "
               "ADMM, GA, ES)",
    "budget_curve": "Budget curve: relative improvement over single-step STE against epsilon, probe batch and "
                    "held-out batch, with the reach fraction (dashed)",
    "loss_vs_evals": "Best loss against loss evaluations on the probe batch, every method",
}
METHODS_STEP_TITLE = ("Relative improvement over single-step STE vs step, one panel per method "
                      "(step: STE iteration, DG step, CDG accepted move, ADMM iteration, GA or ES generation)")


class ProbeAnalysis:
    """Everything the report shows, computed once from the rows, trial statuses and plan."""

    def __init__(self, df: pd.DataFrame, status: pd.DataFrame | None = None, plan: SweepPlan = SweepPlan(),
                 rec: Recorder | None = None):
        """``rec``: the report's Recorder (None: a fresh one, whose verdicts stay raw, unadjusted)."""
        self.plan = plan
        self.rec = rec if rec is not None else Recorder(plan)
        self.metric, self.mode = plan.metric_mode(DEFAULT_METRIC)
        self.all_rows = add_method_column(add_estimator_column(df))
        self.methods = METHOD in self.all_rows.columns
        self.optuna = is_optuna(self.all_rows)
        self.searched = searched_keys(self.all_rows)
        self.keys = group_keys(self.all_rows)
        self.all_final = final_rows(self.all_rows)
        # In Optuna sweeps, per-group statistics are taken over each study's best trial.
        self.rows = best_trials_per_study(self.all_rows, self.metric, self.mode)
        self.final = final_rows(self.rows)
        self.failed = failed_trials(status)
        # STE-only analyses (multi- vs single-step, noise, estimators) use the multi-step STE trials,
        # grouped by what varies among them; without a method label that is every trial.
        if self.methods:
            ste = method_family(self.all_rows) == STE
            self.ste_keys = group_keys(self.all_rows[ste].drop(columns=[METHOD, METHOD_COLUMN]))
            self.ste_final = self.final[method_family(self.final) == STE]
            self.final_ws = with_single_step(self.final, self.keys)
            self.method_table = methods_table(self.final_ws, self.keys)
        else:
            self.ste_keys, self.ste_final = self.keys, self.final
            self.final_ws, self.method_table = self.final, pd.DataFrame()
        self.comparison = (estimator_comparison(self.ste_final, self.ste_keys, self.rec) if ESTIMATOR in self.ste_keys
                           else pd.DataFrame())
        self.curve = (budget_curve.curve_table(self.final_ws, self.rec)
                      if self.methods and budget_curve.applies(self.final) else pd.DataFrame())
        self.scaling = cost.scaling_table(self.final_ws, self.rec) if self.methods else pd.DataFrame()
        self.excess = budget_excess(self.all_rows)
        eps = pd.to_numeric(self.all_rows.get("cfg.budget.epsilon", pd.Series(dtype=float)), errors="coerce")
        self.epsilon = float(eps.max()) if eps.notna().any() else 1.0

    @property
    def better(self) -> str:
        return "lower" if self.mode == "min" else "higher"

    def make_figures(self, out_dir: Path) -> list[Path]:
        """Draw the figures that apply to this sweep into ``out_dir``; return the paths written."""
        drawn = [
            figures.plot_improvement_vs_step(self.rows, self.keys, out_dir / "improvement_vs_step.png"),
            figures.plot_improvement_vs_noise(self.ste_final, self.ste_keys, out_dir / "improvement_vs_noise.png"),
            figures.plot_estimator_comparison(self.comparison, out_dir / "estimator_comparison.png"),
            figures.plot_lr_scan(self.final, self.keys, out_dir / "lr_scan.png"),
        ]
        if self.methods:
            drawn += [figures.plot_methods(self.method_table, out_dir / "methods.png"),
                      budget_curve.plot(self.curve, out_dir / "budget_curve.png"),
                      cost.plot_loss_vs_evals(self.rows, self.final, self.keys, out_dir / "loss_vs_evals.png")]
        return [p for p in drawn if p is not None]

    # ---- markdown sections ---------------------------------------------------------------------

    def header(self) -> list[str]:
        df = self.all_rows
        facts = [("family", ", ".join(distinct_values(df, "family")) or "–"),
                 ("trials", str(df["trial_key"].nunique())), ("rows", str(len(df))), seeds_fact(df),
                 *provenance_facts(df), ("varying config keys", ", ".join(self.keys) or "none"), *time_facts(df)]
        if self.optuna:
            facts.append(("Optuna", f"{df['study'].nunique()} studies; searched keys: {', '.join(self.searched) or 'none'}; "
                                    f"tables and figures below use each study's best trial ({self.metric}, "
                                    f"{self.better} is better)"))
        lines = title(df) + fact_lines(facts + self.plan.facts())
        if len(self.failed):
            lines.append(f"- **n failed: {len(self.failed)}** trial(s) ended in ERROR")
            for _, r in self.failed.head(5).iterrows():
                lines.append(f"  - `{r['trial_key']}`: {error_line(r.get('error', ''))}")
        if self.excess > 0:  # loud at the top too; the check line itself is in Findings
            lines += ["", budget_line(self.excess, self.epsilon)]
        lines.append("")
        return lines

    def findings_lines(self) -> list[str]:
        ranked = metric_line(self.final, self.keys, self.metric, self.mode) if self.plan.metric else []
        extra = (dg_findings(self.final_ws, self.keys, self.rec) + budget_curve.findings(self.curve)
                 + cost.scaling_findings(self.scaling, self.final_ws, self.rec)) if self.methods else []
        return ranked + findings(self.ste_final, self.ste_keys, self.comparison, self.excess, self.epsilon, extra,
                                 self.rec)

    def budget_curve_section(self) -> list[str]:
        if self.curve.empty:
            return []
        return ["## Budget curve (final rows, mean ± std over seeds)", "",
                "Relative improvement over single-step STE on the probe batch (rel_improvement_best) and on "
                "the held-out batch (rel_improvement_heldout), gain over the start on the probe batch "
                "(gain_from_start = (L_start - L_best) / L_start) and reach_frac (binary: fraction of "
                "first-layer weights with |w0| <= epsilon; FP: mean |delta| / mean |w0| of the answer), per "
                "epsilon. Where the budget binds is stated in Findings, from the records of question budget-binds "
                "(the gain at each epsilon against the gain at the largest, paired on seed).", "",
                frame_to_markdown(format_mean_std_table(self.curve, [k for k in self.curve.columns if "." not in k
                                                                     or k.startswith("cfg.")],
                                                        budget_curve.CURVE_METRICS)), ""]

    def scaling_section(self) -> list[str]:
        table = cost.format_scaling(self.scaling)
        if not table:
            return []
        return ["## Equal compute (forward-pass equivalents): methods as the layer grows (final rows, mean ± std over seeds)", "",
                "Cells: final best_loss; the paired ratio (L_m - L_STE) / L_STE against each multi-step STE "
                "with its paired-t 95% interval and n and its record's decision (question discrete-methods); the mean "
                "forward-pass equivalents used (fwd_equiv = loss_evals + 2 grad_evals). Under budget.fwd_equiv_per_weight "
                "every method had the same allowance.", "",
                *table]

    def metrics_section(self) -> list[str]:
        metrics = FINAL_METRICS + ((self.metric,) if self.metric not in FINAL_METRICS else ())
        table = mean_std_table(self.final, self.keys, metrics)
        if not any(f"{m}.mean" in table.columns for m in metrics):
            return []
        if METHOD in self.keys:  # methods in their order, not alphabetical
            table = sort_by_method(table, self.keys)
        return ["## Final-row metrics (mean ± std over seeds)", "",
                "One final row (largest step) per trial; std is the sample std; n counts non-null values.", "",
                frame_to_markdown(format_mean_std_table(table, self.keys, metrics)), ""]

    def methods_section(self) -> list[str]:
        if self.method_table.empty:
            return []
        return ["## Methods (final rows, mean ± std over seeds)", "",
                "Single-step STE is the lr scan every trial carries (best_loss = single_best_loss, "
                "rel_improvement_best = rel_improvement_heldout = 0 by definition, loss_evals = the scan's cost). "
                "`step` counts STE iterations for multi-step STE, DG steps for DG (S steps of reach epsilon/S), "
                "accepted coordinate moves for CDG, iterations for ADMM and generations for GA and ES; "
                "rel_improvement_heldout compares each method's answer (its lowest probe-batch loss) with "
                "single-step STE's on the held-out batch; loss_evals counts loss evaluations on the probe batch; "
                "coords_moved counts first-layer weights that differ from the start (binary: sign flips). "
                "settings: the method's own settings that differ between methods.", "",
                frame_to_markdown(format_methods_table(self.method_table, method_settings(self.all_rows, self.plan))),
                ""]

    def estimator_section(self) -> list[str]:
        if self.comparison.empty:
            return []
        pooled = list(short_names(pooled_keys(self.ste_final, self.ste_keys)).values())
        spread = (f"each seed's pairs are first averaged over {', '.join(pooled)}; mean ± std and n are over seeds."
                  if pooled else "mean ± std and n are over seeds (one pair per seed).")
        return ["## vSTE vs nSTE (binary model)", "",
                f"Each setting paired with {REFERENCE} (nSTE) on the same seed and other config keys; "
                f"Δrel = (L_est - L_{REFERENCE}) / L_{REFERENCE}; {spread} grad_cos_identity = 1 and "
                "grad_clipped_frac = 0 mean the estimator left the gradient unchanged.", "",
                frame_to_markdown(format_estimator_comparison(self.comparison)), "",
                holm_note([v for v in self.comparison.get("rel_diff.single_best_loss.verdict", []) if v is not None]),
                ""]

    def optuna_section(self) -> list[str]:
        if not self.optuna:
            return []
        best = study_best_table(self.all_final, self.keys, self.metric, self.mode)
        if best.empty:
            return []
        grid = [k for k in self.keys if k in best.columns]
        extreme = "lowest" if self.mode == "min" else "highest"
        out = ["## Optuna studies", "", f"Best trial per study ({extreme} final {self.metric}); "
               "searched keys shown where they vary in that study.", "",
               frame_to_markdown(format_study_best(best, grid, self.metric)), ""]
        summary = mean_std_table(best, grid, (self.metric,))
        out += [f"Best {self.metric} over studies (seeds) per grid point:", "",
                frame_to_markdown(format_mean_std_table(summary, grid, (self.metric,))), ""]
        return out

    def markdown(self, paths: list[Path]) -> str:
        """The whole report.md text, figures linked by file name (they sit next to it)."""
        titles = {**FIGURES, **({"improvement_vs_step": METHODS_STEP_TITLE} if self.methods else {})}
        parts = (self.header() + findings_section(self.findings_lines()) + self.methods_section()
                 + self.budget_curve_section() + self.scaling_section() + self.metrics_section() + self.estimator_section() + self.optuna_section()
                 + figures_section(paths, titles))
        return "\n".join(parts).rstrip() + "\n"


def write_report(df: pd.DataFrame, status: pd.DataFrame | None, out_dir: str | Path,
                 plan: SweepPlan = SweepPlan()) -> list[Path]:
    """Compute the analysis twice around one Recorder (module docstring), write the figures, report.md
    and verdicts.json into ``out_dir``; return the paths."""
    return write_decided(lambda rec: ProbeAnalysis(df, status, plan, rec), out_dir, plan)


def budget_warnings(df: pd.DataFrame) -> list[str]:
    """The stderr warning when some row's max_abs_delta exceeds its cfg.budget.epsilon."""
    excess = budget_excess(df)
    if math.isnan(excess) or excess <= 0:
        return []
    return ["warning: some rows exceed the budget (max_abs_delta > cfg.budget.epsilon); see report.md"]
