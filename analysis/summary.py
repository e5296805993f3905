"""Assembles one sweep's report: the figures and ``report.md`` written next to the data."""
from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from analysis import figures
from analysis.findings import budget_line, findings
from analysis.groups import (ESTIMATOR, METHOD, METHOD_COLUMN, add_estimator_column, add_method_column,
                             best_trials_per_study, distinct_values, final_rows, group_keys, is_optuna,
                             method_family, searched_keys, seed_column)
from analysis.methods import (dg_findings, format_methods_table, method_rank, method_settings,
                              methods_table, with_single_step)
from analysis.load import error_line, failed_trials
from analysis.tables import (FINAL_METRICS, SWEEP_METRIC, budget_excess, estimator_comparison,
                             format_estimator_comparison, format_mean_std_table, format_study_best,
                             frame_to_markdown, mean_std_table, study_best_table, study_summary)

REPORT_NAME = "report.md"
FIGURES = {
    "improvement_vs_step": "Relative improvement of multi-step over single-step STE vs step",
    "improvement_vs_noise": "Relative improvement vs noise amplitude of the random start",
    "estimator_comparison": "vSTE vs nSTE (estimator settings against identity)",
    "lr_scan": "Single-step lr scan",
    "methods": "Final best loss and coordinates moved per method (single-step STE, multi-step STE, DG, CDG)",
}



class Analysis:
    """Everything the report shows, computed once from the rows (and trial statuses)."""

    def __init__(self, df: pd.DataFrame, status: pd.DataFrame | None = None):
        self.all_rows = add_method_column(add_estimator_column(df))
        self.methods = METHOD in self.all_rows.columns
        self.optuna = is_optuna(self.all_rows)
        self.searched = searched_keys(self.all_rows)
        self.keys = group_keys(self.all_rows)
        self.all_final = final_rows(self.all_rows)
        # In Optuna sweeps, per-group statistics are taken over each study's best trial.
        self.rows = best_trials_per_study(self.all_rows)
        self.final = final_rows(self.rows)
        self.failed = failed_trials(status)
        # STE-only analyses (multi- vs single-step, noise, estimators) use the multi-step STE trials,
        # grouped by what varies among them; without a method label that is every trial.
        if self.methods:
            ste = method_family(self.all_rows) == "ste"
            self.ste_keys = group_keys(self.all_rows[ste].drop(columns=[METHOD, METHOD_COLUMN]))
            self.ste_final = self.final[method_family(self.final) == "ste"]
            self.final_ws = with_single_step(self.final, self.keys)
            self.method_table = methods_table(self.final_ws, self.keys)
        else:
            self.ste_keys, self.ste_final = self.keys, self.final
            self.final_ws, self.method_table = self.final, pd.DataFrame()
        self.comparison = (estimator_comparison(self.ste_final, self.ste_keys) if ESTIMATOR in self.ste_keys
                           else pd.DataFrame())
        self.excess = budget_excess(self.all_rows)
        eps = pd.to_numeric(self.all_rows.get("cfg.budget.epsilon", pd.Series(dtype=float)), errors="coerce")
        self.epsilon = float(eps.max()) if eps.notna().any() else 1.0

    def make_figures(self, out_dir: Path) -> list[Path]:
        """Draw the figures that apply to this sweep into ``out_dir``; return the paths written."""
        drawn = [
            figures.plot_improvement_vs_step(self.rows, self.keys, out_dir / "improvement_vs_step.png"),
            figures.plot_improvement_vs_noise(self.ste_final, self.ste_keys, out_dir / "improvement_vs_noise.png"),
            figures.plot_estimator_comparison(self.comparison, out_dir / "estimator_comparison.png"),
            figures.plot_lr_scan(self.final, self.keys, out_dir / "lr_scan.png"),
        ]
        if self.methods:
            drawn.append(figures.plot_methods(self.method_table, out_dir / "methods.png"))
        return [p for p in drawn if p is not None]

    # ---- markdown sections ---------------------------------------------------------------------

    def header(self) -> list[str]:
        df = self.all_rows
        sweep = ", ".join(distinct_values(df, "sweep")) or "(unnamed sweep)"
        seed = seed_column(df)
        lines = [f"# Sweep report: {sweep}", ""]
        facts = [
            ("family", ", ".join(distinct_values(df, "family")) or "–"),
            ("trials", str(df["trial_key"].nunique())),
            ("rows", str(len(df))),
            ("seeds", f"{df[seed].nunique()} ({', '.join(distinct_values(df, seed))})" if seed else "–"),
            ("runs", ", ".join(distinct_values(df, "run_id")) or "–"),
            ("git sha", ", ".join(distinct_values(df, "git_sha")) or "–"),
            ("lowbit_sweeps version", ", ".join(distinct_values(df, "ver.lowbit_sweeps")) or "–"),
            ("devices", ", ".join(distinct_values(df, "device")) or "–"),
            ("varying config keys", ", ".join(self.keys) or "none"),
        ]
        if "time" in df.columns and df["time"].notna().any():
            facts.append(("time", f"{df['time'].min()} … {df['time'].max()}"))
        if self.optuna:
            facts.append(("Optuna", f"{df['study'].nunique()} studies; searched keys: {', '.join(self.searched) or 'none'}; "
                                    f"tables and figures below use each study's best trial ({SWEEP_METRIC}, higher is better)"))
        lines += [f"- **{k}**: {v}" for k, v in facts]
        if len(self.failed):
            lines.append(f"- **n failed: {len(self.failed)}** trial(s) ended in ERROR")
            for _, r in self.failed.head(5).iterrows():
                lines.append(f"  - `{r['trial_key']}`: {error_line(r.get('error', ''))}")
        if self.excess > 0:  # loud at the top too; the check line itself is in Findings
            lines += ["", budget_line(self.excess, self.epsilon)]
        lines.append("")
        return lines

    def findings_section(self) -> list[str]:
        extra = dg_findings(self.final_ws, self.keys) if self.methods else []
        items = findings(self.ste_final, self.ste_keys, self.comparison, self.excess, self.epsilon, extra)
        out = ["## Findings", ""]
        for line in items:
            out.append(("  - " + line.strip()) if line.startswith("  ") else f"- {line}")
        return out + [""]

    def figures_section(self, paths: list[Path]) -> list[str]:
        if not paths:
            return []
        out = ["## Figures", ""]
        for p in paths:
            title = FIGURES.get(p.stem, p.stem)
            if self.methods and p.stem == "improvement_vs_step":
                title = ("Relative improvement over single-step STE vs step, one panel per method "
                         "(step: STE iteration, DG step, CDG accepted move)")
            out += [f"### {title}", "", f"![{p.stem}]({p.name})", ""]
        return out

    def metrics_section(self) -> list[str]:
        table = mean_std_table(self.final, self.keys, FINAL_METRICS)
        if METHOD in self.keys and not table.empty:  # methods in their order, not alphabetical
            order = [k for k in self.keys if k != METHOD]
            table = (table.assign(_rank=table[METHOD].map(method_rank))
                     .sort_values(order + ["_rank"], kind="stable").drop(columns="_rank").reset_index(drop=True))
        if not any(f"{m}.mean" in table.columns for m in FINAL_METRICS):
            return []
        return ["## Final-row metrics (mean ± std over seeds)", "",
                "One final row (largest step) per trial; std is the sample std; n counts non-null values.", "",
                frame_to_markdown(format_mean_std_table(table, self.keys)), ""]

    def methods_section(self) -> list[str]:
        if self.method_table.empty:
            return []
        return ["## Methods: single-step STE, multi-step STE, DG, CDG (final rows, mean ± std over seeds)", "",
                "Single-step STE is the lr scan every trial carries (best_loss = single_best_loss, "
                "rel_improvement_best = 0 by definition). `step` counts STE iterations for multi-step STE, "
                "DG steps for DG (S steps of reach epsilon/S) and accepted coordinate moves for CDG; "
                "coords_moved counts first-layer weights that differ from the start (binary: sign flips). "
                "settings: the method's own settings that differ between methods.", "",
                frame_to_markdown(format_methods_table(self.method_table, method_settings(self.all_rows))), ""]

    def estimator_section(self) -> list[str]:
        if self.comparison.empty:
            return []
        return ["## vSTE vs nSTE (binary model)", "",
                "Each setting paired with identity (nSTE) on the same seed and other config keys; "
                "Δrel = (L_est - L_identity) / L_identity over pairs; grad_cos_identity = 1 and "
                "grad_clipped_frac = 0 mean the estimator left the gradient unchanged.", "",
                frame_to_markdown(format_estimator_comparison(self.comparison, self.keys)), ""]

    def optuna_section(self) -> list[str]:
        if not self.optuna:
            return []
        best = study_best_table(self.all_final, self.keys)
        if best.empty:
            return []
        grid = [k for k in self.keys if k in best.columns]
        out = ["## Optuna studies", "", f"Best trial per study (highest final {SWEEP_METRIC}); "
               "searched keys shown where they vary in that study.", "",
               frame_to_markdown(format_study_best(best, grid)), ""]
        summary = study_summary(best, grid)
        if not summary.empty:
            out += [f"Best {SWEEP_METRIC} over studies (seeds) per grid point:", "",
                    frame_to_markdown(format_mean_std_table(summary, grid, (SWEEP_METRIC,))), ""]
        return out

    def markdown(self, paths: list[Path]) -> str:
        """The whole report.md text, figures linked by file name (they sit next to it)."""
        parts = (self.header() + self.findings_section() + self.methods_section() + self.metrics_section()
                 + self.estimator_section()
                 + self.optuna_section() + self.figures_section(paths))
        return "\n".join(parts).rstrip() + "\n"


def write_report(df: pd.DataFrame, status: pd.DataFrame | None, out_dir: str | Path) -> list[Path]:
    """Compute the analysis, write the figures and report.md into ``out_dir``; return the paths."""
    return write_analysis(Analysis(df, status), out_dir)


def write_analysis(analysis, out_dir: str | Path) -> list[Path]:
    """Write ``analysis``'s figures and report.md (``make_figures(dir)``, ``markdown(paths)``) into
    ``out_dir``; return the paths."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = analysis.make_figures(out_dir)
    report = out_dir / REPORT_NAME
    report.write_text(analysis.markdown(paths), encoding="utf-8")
    return [report, *paths]


def has_budget_violation(df: pd.DataFrame) -> bool:
    """Whether some row's max_abs_delta exceeds its cfg.budget.epsilon."""
    excess = budget_excess(df)
    return not math.isnan(excess) and excess > 0
