"""The report of a gradstats sweep: vSTE against nSTE on a binary ResNet, initialized and pretrained.

It answers "do vSTE and nSTE differ on ResNet, and does it depend on pretraining?" from the rows of
``lowbit_core/families/gradstats`` (rules: :mod:`analysis.gradstats.trials` for what a trial is and how
layers are summarized, :mod:`analysis.gradstats.compare` for pairing and verdicts,
:mod:`analysis.gradstats.figures` for what each figure averages). Tables show mean ± std (sample
std, ddof=1) and n = seeds per group; every verdict needs n >= 2 (the one rule of
:func:`analysis.common.stats.paired_verdict`); every verdict is a record (``verdicts.json``) of the
question "vste-resnet" (the noise-floor checks: "other comparisons"), Holm-adjusted over the question's
comparisons in the report.
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from lowbit_sweeps.analysis.common.format import fmt_acc, fmt_mean_std, fmt_value, frame_to_markdown
from lowbit_sweeps.analysis.common.groups import distinct_values, iter_groups, seed_column
from lowbit_sweeps.analysis.common.load import error_line, failed_trials
from lowbit_sweeps.analysis.common.plan import SweepPlan
from lowbit_sweeps.analysis.common.stats import mean_std_n
from lowbit_sweeps.analysis.common.verdicts import Recorder, write_decided
from lowbit_sweeps.analysis.common.writing import (fact_lines, figures_section, findings_section, provenance_facts, seeds_fact,
                                     time_facts, title)
from lowbit_sweeps.analysis.gradstats.compare import (NSTE, answer_lines, coincide_lines, comparison_table, family_note,
                                       noise_floor_lines, threshold_lines)
from lowbit_sweeps.analysis.gradstats.figures import FIGURES, make_figures
from lowbit_sweeps.analysis.gradstats.trials import STATE, TAU_A, TAU_W, group_keys, is_gradstats_sweep, trial_table

FAMILY = "gradstats"
COLUMNS = {"start.w_snr": "start log10 SNR (w)", "start.w_snr_lin": "start SNR (w)",
           "start.w_snr_c": "start SNR − 1/M (w)", "start.w_cos_ste": "start cos nSTE (w)",
           "start.w_cos_sur": "start cos surrogate (w)", "start.w_inside": "start inside (w)",
           "start.a_snr": "start log10 SNR (a)", "start.a_cos_sur": "start cos surrogate (a)",
           "final.w_snr": "final log10 SNR (w)", "final.w_cos_ste": "final cos nSTE (w)"}
ACCURACY = {"start_test_acc": "start test_acc", "final_test_acc": "final test_acc"}
SETTING = ("cfg.data.name", "cfg.data.n_train", "cfg.model.arch", "cfg.model.width", "cfg.train.epochs",
           "cfg.train.steps_per_epoch", "cfg.stats.batches", "cfg.stats.reference_batches", "cfg.stats.batch_size",
           "cfg.stats.surrogate")
HEADERS = {"estimator": "weight estimator", STATE: "state", TAU_W: "tau (w)", TAU_A: "tau (a)",
           "act_estimator": "activation estimator", "stats.batches": "M (batches)"}


def pretraining_fact(df: pd.DataFrame) -> tuple[str, str]:
    """How the pretrained state was made: from a file, or in the trial for N epochs (pretrained rows only)."""
    pre = df[df[STATE].astype(str) == "pretrained"] if STATE in df.columns else df.iloc[:0]
    if not len(pre):
        return ("pretraining", "–")
    files = [v for v in distinct_values(pre, "cfg.model.init_from") if v]
    if files:
        return ("pretraining", "from " + ", ".join(files))
    return ("pretraining", f"FP, in the trial, {', '.join(distinct_values(pre, 'cfg.state.pretrain_epochs'))} epochs "
                           f"(FP test_acc over seeds {fmt_acc(*mean_std_n(pre.drop_duplicates(seed_column(pre) or 'trial_key')['pretrain_test_acc']))})")


def group_table(trials: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """Per group of counted trials: n and each statistic's mean ± std over seeds (formatted)."""
    good = trials[trials["ok"]] if len(trials) else trials
    rows = []
    for values, sub in iter_groups(good, keys):
        row = {HEADERS.get(k, k): fmt_value(v) for k, v in zip(keys, values)}
        row["n"] = len(sub)
        for col, name in {**ACCURACY, **COLUMNS}.items():
            m, s, n = mean_std_n(sub[col])
            row[name] = fmt_acc(m, s, n) if col in ACCURACY else fmt_mean_std(m, s, n)
        rows.append(row)
    return pd.DataFrame(rows)


class GradStatsAnalysis:
    """Everything the report shows, computed once from the rows, statuses and plan."""

    def __init__(self, df: pd.DataFrame, status: pd.DataFrame | None = None, plan: SweepPlan = SweepPlan(),
                 rec: Recorder | None = None):
        """``rec``: the report's Recorder (:func:`write_report` builds the analysis twice around one).
        None: the analysis decides its own verdicts (a first pass over the markdown collects them)."""
        if rec is None:
            rec = Recorder(plan)
            GradStatsAnalysis(df, status, plan, rec).markdown([])
            rec.adjust()
        self.rows, self.plan, self.rec = df, plan, rec
        self.trials = trial_table(df, status)
        self.keys = group_keys(self.trials)
        failed = failed_trials(status)
        self.failed_without_rows = failed[~failed["trial_key"].isin(set(df["trial_key"]))]

    def make_figures(self, out_dir: Path) -> list[Path]:
        return make_figures(self.trials, out_dir)

    def header(self) -> list[str]:
        df, t = self.rows, self.trials
        counts = t["outcome"].value_counts().to_dict() if len(t) else {}
        facts = [("family", ", ".join(distinct_values(df, "family")) or FAMILY),
                 ("trials", f"{len(t) + len(self.failed_without_rows)} (counted {counts.get('ok', 0)}, unfinished "
                            f"{counts.get('unfinished', 0)}, failed {counts.get('failed', 0) + len(self.failed_without_rows)})"),
                 ("rows", f"{len(df)} (step 1: the start state; then one per fine-tuning epoch)"), seeds_fact(df),
                 ("states", ", ".join(distinct_values(df, STATE)) or "–"), pretraining_fact(df),
                 ("reference (nSTE)", f"{NSTE}; smooth surrogate: {', '.join(distinct_values(df, 'cfg.stats.surrogate'))}"),
                 *((c.removeprefix("cfg."), ", ".join(distinct_values(df, c))) for c in SETTING
                   if c in df.columns and distinct_values(df, c)),
                 *provenance_facts(df), ("group keys", ", ".join(self.keys) or "none (one group)"),
                 *time_facts(df), *self.plan.facts()]
        lines = title(df) + fact_lines(facts)
        for _, r in self.failed_without_rows.head(5).iterrows():
            lines.append(f"  - `{r['trial_key']}` (no rows): {error_line(r.get('error', ''))}")
        return lines + [""]

    def findings(self) -> list[str]:
        return (answer_lines(self.trials, self.rec, self.plan) + coincide_lines(self.trials)
                + noise_floor_lines(self.trials, self.rec, self.plan) + threshold_lines(self.trials))

    def markdown(self, paths: list[Path]) -> str:
        out = self.header() + findings_section(self.findings())
        table = group_table(self.trials, self.keys)
        if len(table):
            out += ["## Per group (mean ± std over seeds, n = seeds)", "",
                    "SNR = ||mean||² / (D · mean variance) per layer (the probe's docstring), shown as the mean "
                    "over layers of log10 SNR; 'SNR' and 'SNR − 1/M' are the arithmetic means over layers of the "
                    "raw SNR and of the bias-corrected max(SNR − 1/M, 0) (a mean of M noise batches has SNR about "
                    "1/M; settings compare only at equal M). Cosines and fractions are means over layers. start: the "
                    "model state before fine-tuning; final: after the fine-tuning budget.", "", frame_to_markdown(table), ""]
        comp = comparison_table(self.trials, self.rec, self.plan)
        if len(comp):
            out += ["## Paired differences to nSTE", "",
                    "Estimator setting minus nSTE, paired on seed, thresholds and activation estimator; pooled over "
                    "the threshold cells per seed first (± = std over seeds). Δ test_acc in percentage points, "
                    "Δ log10 SNR: 1 is a factor 10. Rows 'pretrained − init': the difference of those differences. "
                    "Each cell: mean ± std (n), then the mean with its paired-t 95% interval, n and d; pairs also "
                    "match in M (batches).",
                    "", frame_to_markdown(comp), "",
                    family_note(self.trials, self.rec, self.plan), ""]
        return "\n".join(out + figures_section(paths, FIGURES)).rstrip() + "\n"


def write_report(df: pd.DataFrame, status: pd.DataFrame | None, out_dir: str | Path,
                 plan: SweepPlan = SweepPlan()) -> list[Path]:
    """Compute the analysis twice around one Recorder (:func:`write_decided`), write the figures,
    report.md and verdicts.json into ``out_dir``; return the paths."""
    return write_decided(lambda rec: GradStatsAnalysis(df, status, plan, rec), out_dir, plan)


__all__ = ["FAMILY", "GradStatsAnalysis", "group_table", "is_gradstats_sweep", "write_report"]
