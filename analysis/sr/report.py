"""The report of a super-resolution sweep (the ``sr`` family: EDSR in FP / k-bit / binary, one row
per epoch with Y-channel PSNR/SSIM per test set and the bicubic baseline of the same images).

What it shows, all from the rows (rules in :mod:`analysis.sr.groups` and :mod:`analysis.sr.tables`):
findings (the bicubic baseline against the literature's figures, FP against bicubic, which quantized
part costs the most PSNR at each bit-width, with n and spread), one PSNR/SSIM table per test set and
scale (bicubic, FP and every quantized setting: mean ± std and n over seeds, ΔPSNR against FP paired
on seed with the one verdict rule, a paired-t 95% interval; each a record of the question "sr-parts",
Holm-adjusted over that question's comparisons in the report, ``verdicts.json``), the
cost of each setting (lowbit_core.cost columns), and the figures of :mod:`analysis.sr.figures`
(PSNR against bits per part, the crops, PSNR against cost).
Where the trials had a validation set (``val_psnr_y`` / ``val_ssim_y``: the metrics model selection and
early stopping read), a table of its final-epoch scores per setting follows; the headline stays the
test sets at the final epoch.
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from lowbit_sweeps.analysis.common.format import fmt_mean_std, markdown_table
from lowbit_sweeps.analysis.common.groups import distinct_values
from lowbit_sweeps.analysis.common.load import error_line, failed_trials
from lowbit_sweeps.analysis.common.plan import SweepPlan
from lowbit_sweeps.analysis.common.stats import mean_std_n
from lowbit_sweeps.analysis.common.verdicts import Recorder, write_decided
from lowbit_sweeps.analysis.common.writing import (fact_lines, figures_section, findings_section, joined, provenance_facts,
                                     seeds_fact, time_facts, title)
from lowbit_sweeps.analysis.sr.figures import plot_cost_fronts, plot_crops, plot_psnr_vs_bits
from lowbit_sweeps.analysis.sr.groups import SETTING, at_scale, ok_trials, scales, setting_order, test_sets, trial_table
from lowbit_sweeps.analysis.sr.tables import bicubic_check, costliest_parts, fp_vs_bicubic, per_set_table
from lowbit_core.cost.columns import si

FAMILY = "sr"
FIGURES = {
    "psnr_vs_bits": "PSNR-Y against bits, one line per quantized part (mean ± std over seeds; dashed: bicubic)",
    "crops": "Crops: HR, bicubic, FP and every low-bit setting",
}
ENERGY_NOTE = ("energy: an ESTIMATE from the Horowitz ISSCC 2014 45 nm per-operation table "
               "(lowbit_core/cost/energy.py), not a measurement")


def is_sr_sweep(df: pd.DataFrame) -> bool:
    """Whether rows without a plan come from the SR family (``family`` column, else the metrics)."""
    if "family" in df.columns and df["family"].notna().any():
        return FAMILY in set(df["family"].dropna().astype(str))
    return "psnr_y" in df.columns and "bicubic_psnr_y" in df.columns


class SRAnalysis:
    """Everything an SR sweep's report shows, computed once from the rows, statuses and plan."""

    def __init__(self, df: pd.DataFrame, status: pd.DataFrame | None = None, plan: SweepPlan = SweepPlan(),
                 rec: Recorder | None = None):
        """``rec``: the report's Recorder (:func:`write_report` builds the analysis twice around one).
        None: the analysis decides its own verdicts (a fresh Recorder, a first pass over the markdown
        to collect the comparisons, :meth:`Recorder.adjust`), so they read as in the written report."""
        if rec is None:
            rec = Recorder(plan)
            SRAnalysis(df, status, plan, rec).markdown([])
            rec.adjust()
        self.rows, self.plan, self.rec = df, plan, rec
        self.trials = trial_table(df, status)
        failed = failed_trials(status)
        self.failed_without_rows = failed[~failed["trial_key"].isin(set(df["trial_key"]))]
        self.sets = test_sets(df)
        self.scales = scales(self.trials)

    def make_figures(self, out_dir: Path) -> list[Path]:
        drawn = [plot_psnr_vs_bits(self.trials, self.sets, out_dir / "psnr_vs_bits.png"),
                 plot_crops(self.trials, out_dir / "crops.png"), *plot_cost_fronts(self.trials, out_dir)]
        return [p for p in drawn if p is not None]

    def header(self) -> list[str]:
        df, t = self.rows, self.trials
        n_images = ", ".join(f"{s} ({'/'.join(distinct_values(df, f'n_images.{s}'))} images)" for s in self.sets)
        facts = [("family", joined(df, "family")), ("trials", str(len(t) + len(self.failed_without_rows))),
                 ("rows", f"{len(df)} (one per epoch)"), seeds_fact(df),
                 ("scales", ", ".join(f"x{s}" for s in self.scales)), ("test sets", n_images or "–"),
                 ("training images", self.training_images()), *self.validation_fact(),
                 ("model", f"EDSR, {joined(df, 'cfg.model.blocks')} blocks x {joined(df, 'cfg.model.channels')} "
                           f"channels"),
                 ("training", f"{joined(df, 'cfg.train.epochs')} epochs x {joined(df, 'cfg.train.steps_per_epoch')} "
                              f"iterations, batch {joined(df, 'cfg.train.batch_size')}, LR patch "
                              f"{joined(df, 'cfg.data.lr_patch')} px, lr {joined(df, 'cfg.train.lr')}"),
                 ("metric protocol", "Y of BT.601 (16..235; grey files on their grey level), scale px cropped, "
                                     "output rounded to 8 bits; mean over a set's images"),
                 *provenance_facts(df), *time_facts(df)]
        lines = title(df) + fact_lines(facts + self.plan.facts())
        bad = t[t["outcome"] != "ok"]
        if len(bad) or len(self.failed_without_rows):
            lines.append(f"- **n not counted: {len(bad) + len(self.failed_without_rows)}** trial(s) failed or "
                         "stopped early or unfinished (left out of every statistic)")
            for r in bad.head(8).to_dict("records"):
                lines.append(f"  - `{r['trial_key']}` {r[SETTING]}: {r['outcome']}: {r['reason']}")
            for r in self.failed_without_rows.head(5).to_dict("records"):
                lines.append(f"  - `{r['trial_key']}` (no rows): {error_line(r.get('error', ''))}")
        return lines + [""]

    def training_images(self) -> str:
        df = self.rows
        where = joined(df, "cfg.data.train")
        if where != "generated":
            where += f" ({joined(df, 'cfg.data.root')})"
        return f"{where}; {'/'.join(distinct_values(df, 'n_train_images')) or '?'} images used"

    def has_validation(self) -> bool:
        return "val_psnr_y" in self.rows.columns and self.rows["val_psnr_y"].notna().any()

    def validation_fact(self) -> list[tuple[str, str]]:
        if not self.has_validation():
            return []
        df = self.rows
        roots = [r for r in distinct_values(df, "cfg.data.val_root") if r]
        where = ", ".join(roots) if roots else (
            "generated" if joined(df, "cfg.data.train") == "generated" else "held out of the training folder")
        names = distinct_values(df, "val_names")
        shown = names[0] if len(names) == 1 else f"{len(names)} different lists"
        return [("validation", f"{'/'.join(distinct_values(df, 'n_val_images'))} images, {where} ({shown}); "
                               "model selection and early stopping read val_psnr_y only")]

    def validation_tables(self) -> list[str]:
        if not self.has_validation():
            return []
        out = []
        for scale in self.scales:
            ok = at_scale(ok_trials(self.trials), scale)
            rows = [["bicubic", fmt_mean_std(*mean_std_n(ok["val_bicubic_psnr_y"])),
                     fmt_mean_std(*mean_std_n(ok["val_bicubic_ssim_y"]))]]
            for setting in setting_order(ok):
                sub = ok[ok[SETTING] == setting]
                rows.append([setting, fmt_mean_std(*mean_std_n(sub["val_psnr_y"])),
                             fmt_mean_std(*mean_std_n(sub["val_ssim_y"]))])
            out += [f"## Validation set x{scale}: PSNR-Y / SSIM-Y at the final epoch (mean ± std over seeds, n)", "",
                    "The set model selection and early stopping read; not a test set.", "",
                    markdown_table(["setting", "val PSNR-Y (dB)", "val SSIM-Y"], rows), ""]
        return out

    def findings(self) -> list[str]:
        out = []
        for scale in self.scales:
            for s in self.sets:
                out += [x for x in (bicubic_check(self.trials, s, scale),
                                    fp_vs_bicubic(self.trials, s, scale, self.rec, self.plan)) if x]
        for scale in self.scales:
            for s in self.sets:
                out += costliest_parts(self.trials, s, scale, self.rec, self.plan)
        return out or ["no finished trials"]

    def tables(self) -> list[str]:
        out = []
        for scale in self.scales:
            for s in self.sets:
                out += [f"## {s} x{scale}: PSNR-Y / SSIM-Y (mean ± std over seeds, n)", "",
                        per_set_table(self.trials, s, scale, self.rec, self.plan), ""]
        return out

    def cost_table(self) -> list[str]:
        ok = ok_trials(self.trials)
        if "ops" not in ok.columns or ok["ops"].isna().all():
            return []
        rows = []
        for scale in self.scales:
            sub = ok if "cfg.scale" not in ok.columns else ok[ok["cfg.scale"].astype(int) == scale]
            for setting in setting_order(sub):
                r = sub[sub[SETTING] == setting].iloc[0]
                rows.append([f"x{scale}", setting, si(r["ops"]), si(r["bops"]), si(r["fp_macs"]),
                             si(r["param_bits"], "bit"), f"{r['energy_uj']:.4g}"])
        return ["## Cost per 192x192 HR output (the trial's model; lowbit_core.cost)", "",
                f"OPs = BOPs/64 + FP MACs; x25 for a 1280x720 output; {ENERGY_NOTE}.", "",
                markdown_table(["scale", "setting", "OPs", "BOPs", "FP MACs", "parameters", "energy (µJ, estimate)"],
                               rows), ""]

    def markdown(self, paths: list[Path]) -> str:
        titles = {**FIGURES, **{p.stem: f"PSNR-Y against cost, {p.stem.rsplit('_', 1)[-1]} (Pareto front dashed)"
                                for p in paths if p.stem.startswith("psnr_vs_cost")}}
        out = (self.header() + findings_section(self.findings()) + self.tables() + self.validation_tables()
               + self.cost_table()
               + figures_section(paths, titles))
        return "\n".join(out).rstrip() + "\n"


def write_report(df: pd.DataFrame, status: pd.DataFrame | None, out_dir: str | Path,
                 plan: SweepPlan = SweepPlan()) -> list[Path]:
    """Compute the analysis twice around one Recorder (:func:`write_decided`), write the figures,
    report.md and verdicts.json into ``out_dir``; return the paths."""
    return write_decided(lambda rec: SRAnalysis(df, status, plan, rec), out_dir, plan)


__all__ = ["FAMILY", "is_sr_sweep", "SRAnalysis", "write_report"]
