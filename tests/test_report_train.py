"""Tests of the training-sweep report (analysis/training*.py): the per-group table, paired
differences and findings against closed-form values of a fake sweep, the quantizer label (DSQ vs
STE windows), failed / non-finite / incomplete trials, one seed, one group, the PNGs, and one real
smoke sweep end to end."""
from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from matplotlib import image as mpimg

from lowbit_sweeps.analysis.common.format import fmt_acc, fmt_pp
from lowbit_sweeps.analysis.train.findings import comparisons
from lowbit_sweeps.analysis.train.groups import QUANTIZER, trial_table
from lowbit_sweeps.analysis.train.report import TrainAnalysis, is_train_sweep
from conftest import run_sweep

REPO = Path(__file__).resolve().parents[1]
REPORT = REPO / "analysis" / "report.py"
EPOCHS = 4
SEEDS = (0, 1, 2)
BASE = {"cifar10": 0.6, "cifar100": 0.3}          # final test_acc of scratch, no mixup, seed 0
OFFSET = {0: 0.0, 1: 0.01, 2: 0.03}               # per seed, shared by every group
MIXUP_EFFECT = -0.02                              # mixup_alpha=1 costs 2 points, in every pair
FP_ACC = (0.85, 0.9)                              # the FP model's test_acc in the two pretrain epochs


def pretrain_effect(seed: int) -> float:
    """FP pretrain (P=2) minus scratch, final test_acc: 0.05, 0.06, 0.07 for seeds 0, 1, 2."""
    return 0.05 + 0.01 * seed


def final_acc(data: str, mixup: float, pretrain: int, seed: int) -> float:
    return BASE[data] + (pretrain_effect(seed) if pretrain else 0.0) + MIXUP_EFFECT * mixup + OFFSET[seed]


CFG_DEFAULTS = {
    "cfg.data.root": "data", "cfg.data.n_train": 512, "cfg.data.n_test": 256, "cfg.model.arch": "resnet20",
    "cfg.model.width": 8, "cfg.model.kind": "binary", "cfg.model.init": "default", "cfg.quant.act": "quant",
    "cfg.quant.weight_estimator": "identity", "cfg.quant.weight_param": 0.0, "cfg.quant.weight_scale": "mean_abs",
    "cfg.quant.threshold": 0.0, "cfg.quant.act_estimator": "approx_sign", "cfg.quant.act_param": 0.0,
    "cfg.quant.kbit": "dorefa", "cfg.quant.bits": 2, "cfg.quant.dsq_alpha": 0.2, "cfg.quant.dsq_schedule": "learned",
    "cfg.quant.dsq_alpha_min": 0.001, "cfg.quant.dsq_train_forward": "soft", "cfg.train.lr": 0.01,
    "cfg.train.epochs": EPOCHS, "cfg.perturb.amplitude": 0.0, "cfg.perturb.period": 1,
}


def epoch_rows(key: str, seed: int, cfg: dict, accs: list[float], phases: list[str], sweep: str = "fake_train",
               alphas: list[float] | None = None) -> list[dict]:
    """One row per epoch as the loop reports it (best_test_acc: the running max over ALL epochs)."""
    rows, best = [], 0.0
    for e, (acc, phase) in enumerate(zip(accs, phases), start=1):
        best = max(best, acc)
        rows.append({
            "sweep": sweep, "family": "train", "run_id": "run1", "trial_id": f"t_{key}", "trial_key": key,
            "study": "", "step": e, "seed": seed, "git_sha": "abc1234", "host": "h", "device": "cpu",
            "time": pd.Timestamp("2024-01-01") + pd.Timedelta(seconds=e), "ver.lowbit_sweeps": "0.1.0",
            "epoch": e, "phase": phase, "train_loss": 2.0 - 0.2 * e - 0.01 * seed, "train_acc": acc + 0.05,
            "test_loss": 2.5 - 0.2 * e, "test_acc": acc, "best_test_acc": best, "lr": 0.01,
            "dsq_alpha": alphas[e - 1] if alphas else math.nan, "perturbed": 0, **CFG_DEFAULTS, **cfg,
            "cfg.seed": seed,
        })
    return rows


def fake_train_rows(seeds=SEEDS, datasets=("cifar10", "cifar100"), mixups=(0.0, 1.0), pretrains=(0, 2)) -> pd.DataFrame:
    """The fake mixup/pretrain sweep. Scratch: test_acc = final * (0.4, 0.6, 0.8, 1), except that with
    mixup epoch 3 peaks at final + 0.02 (best at epoch 3). Pretrain (P=2): the FP epochs read 0.85,
    0.9 (above every quantized value, and in best_test_acc), the first quantized epoch 0.2 + 0.01 seed,
    then the final value (the best of the quantized phase)."""
    rows = []
    for data in datasets:
        for mixup in mixups:
            for p in pretrains:
                for seed in seeds:
                    f = final_acc(data, mixup, p, seed)
                    if p:
                        accs, phases = [*FP_ACC, 0.2 + 0.01 * seed, f], ["pretrain"] * 2 + ["finetune"] * 2
                    else:
                        accs = [0.4 * f, 0.6 * f, f + 0.02 if mixup else 0.8 * f, f]
                        phases = ["scratch"] * EPOCHS
                    cfg = {"cfg.data.name": data, "cfg.train.mixup_alpha": mixup, "cfg.train.pretrain_epochs": p}
                    rows += epoch_rows(f"{data}-{mixup}-{p}-{seed}", seed, cfg, accs, phases)
    return pd.DataFrame(rows)


def write_results(df: pd.DataFrame, out: Path, status: pd.DataFrame | None = None) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    keys = list(dict.fromkeys(df["trial_key"]))
    for i, chunk in enumerate(np.array_split(np.array(keys, dtype=object), 2)):
        df[df["trial_key"].isin(list(chunk))].to_parquet(out / f"part-{i:05d}.parquet", index=False)
    if status is not None:
        (out / "_trials").mkdir(exist_ok=True)
        status.to_parquet(out / "_trials" / "part-x.parquet", index=False)
    return out


def status_frame(entries: dict[str, tuple[str, str]]) -> pd.DataFrame:
    return pd.DataFrame({"trial_key": list(entries), "status": [s for s, _ in entries.values()],
                         "error": [e for _, e in entries.values()], "time": pd.Timestamp("2024-01-01")})


def run_report(path: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(REPORT), str(path)], cwd=REPO, capture_output=True, text=True,
                          timeout=120)


def assert_png(path: Path, min_side: int = 200):
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    img = mpimg.imread(path)  # decodes the whole file
    assert img.ndim == 3 and min(img.shape[:2]) >= min_side


def row_of(table: pd.DataFrame, **sel) -> pd.Series:
    mask = pd.Series(True, index=table.index)
    for k, v in sel.items():
        mask &= table[k] == v
    assert mask.sum() == 1, sel
    return table[mask].iloc[0]


def msn(values) -> tuple[float, float, int]:
    v = np.asarray(values, dtype=float)
    return float(v.mean()), float(v.std(ddof=1)) if len(v) > 1 else math.nan, len(v)


@pytest.fixture(scope="module")
def analysis() -> TrainAnalysis:
    return TrainAnalysis(fake_train_rows())


# ---- groups, table ------------------------------------------------------------------------------

def test_group_keys_are_the_varying_axes_without_seed(analysis):
    assert set(analysis.keys) == {"cfg.data.name", "cfg.train.mixup_alpha", "cfg.train.pretrain_epochs"}
    assert QUANTIZER not in analysis.rows.columns  # the model kind and quant settings do not vary


def test_group_table_matches_closed_form(analysis):
    t = analysis.table
    assert len(t) == 8 and (t["n_trials"] == 3).all() and (t["n_excluded"] == 0).all()
    for data in BASE:
        for mixup in (0.0, 1.0):
            for p in (0, 2):
                r = row_of(t, **{"cfg.data.name": data, "cfg.train.mixup_alpha": mixup, "cfg.train.pretrain_epochs": p})
                finals = [final_acc(data, mixup, p, s) for s in SEEDS]
                m, s, n = msn(finals)
                assert r["final_test_acc.mean"] == pytest.approx(m, abs=1e-12)
                assert r["final_test_acc.std"] == pytest.approx(s, abs=1e-12)
                assert r["final_test_acc.n"] == n == 3
                # no validation columns (a folder from before validation): selected = the best test_acc
                # over the last phase; scratch+mixup peaks at epoch 3 (+0.02); the pretrain path's FP
                # epochs (0.9, in the loop's best_test_acc column) are not counted
                best = [f + 0.02 if (mixup and not p) else f for f in finals]
                assert r["selected_test_acc.mean"] == pytest.approx(np.mean(best), abs=1e-12)
                assert r["selected_epoch.mean"] == (3 if (mixup and not p) else 4)
                if p:
                    assert r["fp_end_acc.mean"] == pytest.approx(0.9) and r["fp_end_acc.std"] == pytest.approx(0.0)
                    assert r["first_quant_acc.mean"] == pytest.approx(0.21)
                    assert r["first_quant_acc.std"] == pytest.approx(0.01)
                else:
                    assert r["fp_end_acc.n"] == 0
    # sorted by mean final test_acc, highest first
    assert list(t["final_test_acc.mean"]) == sorted(t["final_test_acc.mean"], reverse=True)
    # cifar10, no mixup, P=2: 0.65, 0.67, 0.70 -> 67.33 ± 2.52 %
    assert row_of(t, **{"cfg.data.name": "cifar10", "cfg.train.mixup_alpha": 0.0,
                        "cfg.train.pretrain_epochs": 2}).name == 0


def table_section(md: str) -> str:
    return md.split("## Final test accuracy and model selection")[1].split("## Paired")[0]


def test_formatted_table_cells(analysis):
    table = table_section(analysis.markdown([]))
    assert ("| data | mixup_alpha | pretrain_epochs | final test_acc | selected test_acc (test acc at the best-test "
            "epoch; selected on test: optimistic) | selected epoch | final train_acc "
            "| final train_loss | final test_loss | FP test_acc at end of pretraining | after first quantized epoch |"
            ) in table  # no 'excluded' column when no trial was excluded
    # first row: cifar10, no mixup, P=2: finals 0.65, 0.67, 0.70; FP epochs 0.9; first quantized 0.20/0.21/0.22
    assert ("| cifar10 | 0 | 2 | 67.33 ± 2.52% (n=3) | 67.33 ± 2.52% (n=3) | 4 ± 0 (n=3) | 72.33 ± 2.52% (n=3) "
            "| 1.19 ± 0.01 (n=3) | 1.7 ± 0 (n=3) | 90.00 ± 0.00% (n=3) | 21.00 ± 1.00% (n=3) |") in table
    # scratch with mixup: selected (on test) 0.02 above final, at epoch 3; no pretrain columns
    assert "| cifar10 | 1 | 0 | 59.33 ± 1.53% (n=3) | 61.33 ± 1.53% (n=3) | 3 ± 0 (n=3) |" in table


# ---- paired differences and findings -----------------------------------------------------------

def test_paired_pretrain_vs_scratch(analysis):
    c = analysis.comparisons
    pre = c[c["axis"] == "cfg.train.pretrain_epochs"]
    pooled = pre[pre["cell"] == "pooled"].iloc[0]
    # 4 cells (data x mixup) x 3 seeds: each seed's 4 differences are averaged first, the spread is over seeds
    per_seed = [np.mean([pretrain_effect(s)] * 4) for s in SEEDS]
    m, s, n = msn(per_seed)
    assert (pooled["value"], pooled["reference"]) == (2, 0)
    assert pooled["final.mean"] == pytest.approx(m, abs=1e-12) and pooled["final.std"] == pytest.approx(s, abs=1e-12)
    assert pooled["final.n"] == n == 3 and pooled["n_pairs"] == 12 and pooled["n_positive"] == 12
    assert pooled["final.note"] == "± std over seeds of the per-seed mean over 4 settings"
    # Δ selected (on test, no validation columns): the scratch+mixup runs peak 0.02 above their final value
    sel = [np.mean([pretrain_effect(sd) - (0.02 if mixup else 0.0) for _ in BASE for mixup in (0, 1)]) for sd in SEEDS]
    assert pooled["selected.mean"] == pytest.approx(np.mean(sel), abs=1e-12)
    assert pooled["selected.std"] == pytest.approx(np.std(sel, ddof=1), abs=1e-12)
    cells = pre[pre["cell"] != "pooled"]
    assert len(cells) == 4
    for _, cell in cells.iterrows():
        assert cell["final.mean"] == pytest.approx(0.06, abs=1e-12)
        assert cell["final.std"] == pytest.approx(0.01, abs=1e-12) and cell["final.n"] == 3
    # data.name is the setting: it splits the comparisons but is not compared itself
    assert "cfg.data.name" not in set(c["axis"])


def test_paired_mixup(analysis):
    c = analysis.comparisons
    pooled = c[(c["axis"] == "cfg.train.mixup_alpha") & (c["cell"] == "pooled")].iloc[0]
    assert (pooled["value"], pooled["reference"]) == (1.0, 0.0)
    assert pooled["final.mean"] == pytest.approx(MIXUP_EFFECT, abs=1e-12)
    assert pooled["final.std"] == pytest.approx(0.0, abs=1e-9) and pooled["final.n"] == 3 and pooled["n_pairs"] == 12
    assert pooled["n_positive"] == 0


def test_findings_text(analysis):
    text = "\n".join(analysis.findings)
    assert "All 24 trials finished every planned epoch (4) with finite metrics." in text
    pooled = "n=3; ± std over seeds of the per-seed mean over 4 settings"
    expected = fmt_pp(*msn([pretrain_effect(s) for s in SEEDS]), note=pooled.removeprefix("n=3; "))
    assert expected == f"+6.00 ± 1.00 pp ({pooled})"
    assert ("FP pretrain (pretrain_epochs=2 + 2 quantized) − binary from scratch (pretrain_epochs=0) (reference "
            "declared: 0 = off, by design (the plan declares none); pairs equal in "
            f"seed, data, mixup_alpha; pooled over all cells): Δ final test_acc = {expected}; "
            "Δ > 0 in 12/12 pairs; +6.00 [+3.52, +8.48] pp, n = 3, d = 6, p_Holm = 0.091 (K = 10): "
            "no direction after Holm over K = 10") in text
    # 6 ± 4.3027·1/√3 = [3.52, 8.48]; t = 6√3 = 10.39 on 2 df: p = 1 - t/sqrt(2 + t²) = 0.00914; Holm with the
    # question's equivalence margin (±1 pp) as a closed test over the 2K nulls (analysis.common.stats.holm):
    # the 5 mixup rows are decided first, but their equivalence nulls stay possible: 10 · 0.00914 = 0.091
    assert 1 - 6 * 3 ** 0.5 / (2 + 108) ** 0.5 == pytest.approx(0.091 / 10, abs=2e-4)
    assert ("  data=cifar10 mixup_alpha=0: +6.00 ± 1.00 pp (n=3); +6.00 [+3.52, +8.48] pp, n = 3, d = 6, p_Holm = 0.091 "
            "(K = 10): no direction after Holm") in text
    assert ("mixup_alpha=1 − mixup_alpha=0 (reference declared: 0 = off, by design (the plan declares none); pairs "
            "equal in seed, data, pretrain_epochs; pooled over all cells): "
            f"Δ final test_acc = -2.00 ± 0.00 pp ({pooled}); Δ > 0 in 0/12 pairs; -2.00 [-2.00, -2.00] pp, n = 3, "
            "no spread (s = 0, t infinite), p_Holm = 0 (K = 10): mixup_alpha=0 higher.") in text
    md = analysis.markdown([])
    assert "Holm-adjusted over K = 10 comparisons, family-wise α = 0.05" in md
    assert "| +6.00 ± 1.00 pp (n=3) | +6.00 [+3.52, +8.48] pp, n = 3, d = 6, p_Holm = 0.091 (K = 10): no direction" in md
    assert "Highest mean final test_acc: data=cifar10 mixup_alpha=0 pretrain_epochs=2 → 67.33 ± 2.52% (n=3)" in text
    assert "lowest: data=cifar100 mixup_alpha=1 pretrain_epochs=0 → 29.33 ± 1.53% (n=3) (means only, no test" in text
    assert ("Pretrain path (data=cifar10 mixup_alpha=0 pretrain_epochs=2): FP test_acc at the end of pretraining "
            "90.00 ± 0.00% (n=3), after the first quantized epoch 21.00 ± 1.00% (n=3), final 67.33 ± 2.52% (n=3).") in text


def test_accuracy_formatting():
    assert fmt_acc(0.5, math.nan, 1) == "50.00% (n=1)" and fmt_acc(math.nan, math.nan, 0) == "–"


# ---- failures, one seed, one group -------------------------------------------------------------

def broken_rows() -> tuple[pd.DataFrame, pd.DataFrame]:
    """The fake sweep with: a NaN-stopped trial (ERROR status), a trial cut after 2 of 4 epochs (no
    status), a trial whose final test_acc is NaN (TERMINATED), and an ERROR trial with no rows."""
    df = fake_train_rows()
    nan_key, cut_key, nonfinite_key = "cifar10-0.0-0-2", "cifar100-1.0-2-1", "cifar100-0.0-0-0"
    df = df[~((df["trial_key"] == nan_key) & (df["epoch"] > 2))]
    df.loc[(df["trial_key"] == nan_key) & (df["epoch"] == 2), "train_loss"] = math.nan
    df = df[~((df["trial_key"] == cut_key) & (df["epoch"] > 2))]
    df.loc[(df["trial_key"] == nonfinite_key) & (df["epoch"] == EPOCHS), "test_acc"] = math.nan
    status = status_frame({k: ("TERMINATED", "") for k in df["trial_key"].unique() if k not in (nan_key, cut_key)}
                          | {nan_key: ("ERROR", "stopped: non-finite loss (nan) at step 2"),
                             "ghost": ("ERROR", "Traceback ...\nRuntimeError: CUDA out of memory")})
    return df.reset_index(drop=True), status


def test_failed_nan_and_incomplete_trials_are_excluded_and_reported(tmp_path):
    df, status = broken_rows()
    a = TrainAnalysis(df, status)
    outcome = dict(zip(a.trials["trial_key"], a.trials["outcome"]))
    assert outcome["cifar10-0.0-0-2"] == "failed"
    assert outcome["cifar100-1.0-2-1"] == "incomplete"
    assert outcome["cifar100-0.0-0-0"] == "non-finite"
    assert list(a.failed_without_rows["trial_key"]) == ["ghost"]
    r = row_of(a.table, **{"cfg.data.name": "cifar10", "cfg.train.mixup_alpha": 0.0, "cfg.train.pretrain_epochs": 0})
    m, s, n = msn([final_acc("cifar10", 0.0, 0, sd) for sd in (0, 1)])
    assert (r["final_test_acc.mean"], r["final_test_acc.n"], r["n_excluded"]) == (pytest.approx(m), 2, 1)
    assert r["final_test_acc.std"] == pytest.approx(s)
    cell = a.comparisons[(a.comparisons["axis"] == "cfg.train.pretrain_epochs")
                         & (a.comparisons["cell"] == "data=cifar10 mixup_alpha=0")].iloc[0]
    assert cell["final.n"] == 2 and cell["final.mean"] == pytest.approx(0.055)
    text = "\n".join(a.findings)
    assert ("Excluded from all statistics: 4 of 25 trials** (failed: 1; non-finite: 1; incomplete: 1; "
            "failed before reporting an epoch: 1)") in text
    assert "stopped: non-finite loss (nan) at step 2" in text and "stopped at epoch 2 of 4" in text
    out = write_results(df, tmp_path / "broken", status)
    proc = run_report(out)
    assert proc.returncode == 0, proc.stderr
    md = (out / "_report" / "report.md").read_text()
    assert "**n failed: 2** trial(s) ended in ERROR" in md and "`ghost` (no rows): RuntimeError: CUDA out of memory" in md
    table = table_section(md)
    assert "| after first quantized epoch | excluded |" in table
    assert "| cifar10 | 0 | 0 | 60.50 ± 0.71% (n=2) |" in table and table.count("| 1/3 |") == 3
    assert_png(out / "_report" / "train_curves.png")


def test_single_seed_has_no_std_and_no_verdict_per_cell():
    a = TrainAnalysis(fake_train_rows(seeds=(0,)))
    assert (a.table["final_test_acc.n"] == 1).all() and a.table["final_test_acc.std"].isna().all()
    table = table_section(a.markdown([]))
    rows = [line for line in table.splitlines() if line.startswith("| cifar")]
    assert len(rows) == 8 and not any("±" in r for r in rows)
    assert "| cifar10 | 0 | 0 | 60.00% (n=1) | 60.00% (n=1) | 4 (n=1) |" in table
    text = "\n".join(a.findings)
    assert "  data=cifar10 mixup_alpha=0: +5.00 pp (n=1); n = 1: no verdict (needs >= 2 seeds)." in text
    assert "One seed per group: no seed-to-seed spread, so no verdicts (each needs >= 2 seeds)." in text
    assert "one std" not in text and "[" not in text


def test_one_group_sweep(tmp_path):
    df = fake_train_rows(datasets=("cifar10",), mixups=(0.0,), pretrains=(0,))
    a = TrainAnalysis(df)
    assert a.keys == [] and len(a.table) == 1 and a.comparisons.empty
    m, s, n = msn([final_acc("cifar10", 0.0, 0, sd) for sd in SEEDS])
    assert a.table.loc[0, "final_test_acc.mean"] == pytest.approx(m)
    assert any(line.startswith("One configuration group") and fmt_acc(m, s, n) in line for line in a.findings)
    out = write_results(df, tmp_path / "one")
    assert run_report(out).returncode == 0
    md = (out / "_report" / "report.md").read_text()
    assert "| all trials |" in md and "## Paired differences" not in md
    assert_png(out / "_report" / "final_test_acc.png", min_side=80)


# ---- quantizer label (DSQ vs STE windows) ------------------------------------------------------

QUANTS = {  # label -> (config, final test_acc at seed 0 before the per-seed terms)
    "binary (w: window t=0.1)": ({"cfg.model.kind": "binary", "cfg.quant.weight_estimator": "window",
                                  "cfg.quant.weight_param": 0.1, "cfg.quant.act_estimator": "window",
                                  "cfg.quant.act_param": 1.0}, 0.50),
    "binary (w: window t=1)": ({"cfg.model.kind": "binary", "cfg.quant.weight_estimator": "window",
                                "cfg.quant.weight_param": 1.0, "cfg.quant.act_estimator": "window",
                                "cfg.quant.act_param": 1.0}, 0.55),
    "DSQ 1-bit (alpha: learned from 0.2)": ({"cfg.model.kind": "kbit", "cfg.quant.kbit": "dsq", "cfg.quant.bits": 1,
                                             "cfg.quant.dsq_schedule": "learned"}, 0.52),
    "DSQ 1-bit (alpha: geometric 0.2→0.001)": ({"cfg.model.kind": "kbit", "cfg.quant.kbit": "dsq", "cfg.quant.bits": 1,
                                                "cfg.quant.dsq_schedule": "geometric"}, 0.58),
    "DoReFa 2-bit": ({"cfg.model.kind": "kbit", "cfg.quant.kbit": "dorefa", "cfg.quant.bits": 2}, 0.60),
}


def fake_dsq_rows() -> pd.DataFrame:
    """DSQ final test_acc gets +0.01 seed on top of the shared seed offset, so DSQ geometric minus the
    best window (t=1) is 0.03, 0.04, 0.05 over seeds."""
    rows = []
    for label, (cfg, base) in QUANTS.items():
        for seed in SEEDS:
            f = base + OFFSET[seed] + (0.01 * seed if "DSQ" in label else 0.0)
            alphas = ([0.2, 0.19, 0.19, 0.19] if "learned" in label else [0.2, 0.03, 0.006, 0.001]) if "DSQ" in label else None
            rows += epoch_rows(f"{label}-{seed}", seed, cfg, [0.4 * f, 0.6 * f, 0.8 * f, f], ["scratch"] * 4,
                               sweep="fake_dsq", alphas=alphas)
    return pd.DataFrame(rows)


def test_quantizer_label_collapses_kind_and_quant_columns():
    a = TrainAnalysis(fake_dsq_rows())
    assert a.keys == [QUANTIZER]
    assert set(a.rows[QUANTIZER]) == set(QUANTS)
    assert row_of(a.table, **{QUANTIZER: "DoReFa 2-bit"}).name == 0  # highest mean, first row
    c = a.comparisons
    # the reference is declared (no plan: the first label of the rows), never the best group (DoReFa 2-bit)
    assert set(c["reference"]) == {"binary (w: window t=0.1)"}
    assert set(c["reference_rule"]) == {"the first label in the rows' order (the plan declares none)"}


def test_dsq_vs_best_ste_baseline_finding():
    a = TrainAnalysis(fake_dsq_rows())
    text = "\n".join(a.findings)
    # every DSQ label against the declared STE reference of its bit width (not the best one): geometric 0.58 + 0.01
    # seed against window t=0.1 at 0.50, +8, +9, +10 pp; Holm over the question's 4 comparisons
    assert ("1 bit: DSQ 1-bit (alpha: geometric 0.2→0.001) − the STE reference binary (w: window t=0.1) (declared: "
            "the first label in the rows' order (the plan declares none)): Δ final test_acc = +9.00 ± 1.00 pp (n=3); "
            "+9.00 [+6.52, +11.48] pp, n = 3, d = 9, p_Holm = 0.016 (K = 4): DSQ higher.") in text
    assert "best DSQ" not in text and "chosen by mean" not in text
    assert "2 bit:" not in text  # DoReFa alone at 2 bits: nothing to compare
    assert "final alpha 0.19 ± 0 (n=3)" in text and "final alpha 0.001 ± 0 (n=3)" in text
    assert "test_acc (hard quantizer at evaluation) = +5.00 pp." in text  # train_acc = test_acc + 0.05
    assert "final dsq_alpha" in a.markdown([])


# ---- CLI, figures, routing ----------------------------------------------------------------------

def test_cli_writes_train_report_and_valid_pngs(tmp_path):
    out = write_results(fake_train_rows(), tmp_path / "fake_train",
                        status_frame({k: ("TERMINATED", "") for k in fake_train_rows()["trial_key"].unique()}))
    proc = run_report(out)
    assert proc.returncode == 0, proc.stderr
    rep = out / "_report"
    printed = proc.stdout.split()
    assert printed == [str(rep / "report.md"), str(rep / "train_curves.png"), str(rep / "final_test_acc.png"),
                       str(rep / "verdicts.json")]
    for name in ("train_curves.png", "final_test_acc.png"):
        assert_png(rep / name)
    md = (rep / "report.md").read_text()
    for section in ("## Findings", "## Final test accuracy and model selection per group", "## Paired differences",
                    "![train_curves](train_curves.png)", "![final_test_acc](final_test_acc.png)"):
        assert section in md
    assert pd.read_parquet(out).shape[0] == len(fake_train_rows())  # the report folder is not read as data


def test_routing_by_family():
    assert is_train_sweep(fake_train_rows())
    assert not is_train_sweep(pd.DataFrame({"family": ["probe"], "trial_key": ["a"], "step": [0]}))
    assert is_train_sweep(fake_train_rows().drop(columns=["family"]))


def test_trial_table_ignores_best_test_acc_column_on_pretrain_path():
    df = fake_train_rows(datasets=("cifar10",), mixups=(0.0,), seeds=(0,))
    t = trial_table(df, ["cfg.train.pretrain_epochs"])
    pre = t[t["cfg.train.pretrain_epochs"] == 2].iloc[0]
    assert df[df["trial_key"] == pre["trial_key"]]["best_test_acc"].iloc[-1] == pytest.approx(0.9)
    assert pre["selected_test_acc"] == pytest.approx(final_acc("cifar10", 0.0, 2, 0))
    assert bool(pre["selected_on_test"])  # no validation columns: selected on the test set


def with_validation(df: pd.DataFrame, val_fraction: float = 0.1) -> pd.DataFrame:
    """The fake rows with the validation columns as the loop reports them: val_acc peaks at epoch 2
    (0.5, 0.9, 0.7, 0.8); selected_epoch / selected_test_acc follow the best score so far (val_acc,
    or test_acc when val_fraction is 0; ties keep the earlier epoch), over all epochs of the trial.
    best_test_acc is spoiled to 0.987654: the report must not use it."""
    out = []
    for _, t in df.sort_values(["trial_key", "epoch"]).groupby("trial_key", sort=False):
        t = t.copy()
        t["cfg.data.val_fraction"] = val_fraction
        t["val_acc"] = [0.5, 0.9, 0.7, 0.8] if val_fraction else math.nan
        t["val_loss"] = 1.0 if val_fraction else math.nan
        score = t["val_acc"] if val_fraction else t["test_acc"]
        best, sel = -math.inf, []
        for e, sc, acc in zip(t["epoch"], score, t["test_acc"]):
            if sc > best:
                best, chosen = sc, (e, acc)
            sel.append((best, *chosen))
        t["best_val_acc"], t["selected_epoch"], t["selected_test_acc"] = zip(*sel)
        t["best_test_acc"] = 0.987654
        out.append(t)
    return pd.concat(out, ignore_index=True)


def test_selection_on_validation_split():
    df = with_validation(fake_train_rows(pretrains=(0,)))
    a = TrainAnalysis(df)
    r = row_of(a.table, **{"cfg.data.name": "cifar10", "cfg.train.mixup_alpha": 0.0})
    finals = [final_acc("cifar10", 0.0, 0, s) for s in SEEDS]
    # the best val_acc is at epoch 2, where test_acc = 0.6 * final: the report shows that, not a test peak
    assert r["selected_test_acc.mean"] == pytest.approx(0.6 * np.mean(finals), abs=1e-12)
    assert r["selected_epoch.mean"] == 2 and r["final_test_acc.mean"] == pytest.approx(np.mean(finals))
    md = a.markdown([])
    assert "- **model selection**: best-validation epoch (val_fraction 0.1)" in md
    assert "| selected test_acc (test acc at the best-validation epoch) | selected epoch |" in md
    assert "selected on test: optimistic" not in md and "98.77" not in md  # best_test_acc is never used
    # the headline is the final epoch's test_acc: 60.00, 61.00, 63.00 %
    assert "| cifar10 | 0 | 61.33 ± 1.53% (n=3) | 36.80 ± 0.92% (n=3) | 2 ± 0 (n=3) |" in table_section(md)


def test_no_validation_split_is_labelled_optimistic():
    md = TrainAnalysis(with_validation(fake_train_rows(pretrains=(0,)), val_fraction=0.0)).markdown([])
    assert ("- **model selection**: on the test set for 12 of 12 finished trials (no validation split); "
            "selected on test: optimistic") in md
    assert "| selected test_acc (test acc at the best-test epoch; selected on test: optimistic) |" in md
    assert "| Δ selected test_acc (selected on test: optimistic) |" in md
    assert "98.77" not in md
    # selected on test = the test peak: scratch+mixup peaks at epoch 3 (+0.02), the others at the last epoch
    assert "| cifar10 | 1 | 59.33 ± 1.53% (n=3) | 61.33 ± 1.53% (n=3) | 3 ± 0 (n=3) |" in table_section(md)


def test_selection_in_the_pretraining_phase_is_left_out():
    """The loop selects over every epoch; on the pretrain path the best val_acc (epoch 2) is the FP
    model's, not the binary model's: that number is left out and the findings say so."""
    a = TrainAnalysis(with_validation(fake_train_rows(datasets=("cifar10",), mixups=(0.0,))))
    pre = a.trials[a.trials["cfg.train.pretrain_epochs"] == 2]
    assert pre["selected_outside"].all() and pre["selected_test_acc"].isna().all()
    scratch = a.trials[a.trials["cfg.train.pretrain_epochs"] == 0]
    assert not scratch["selected_outside"].any() and scratch["selected_test_acc"].notna().all()
    assert any("in 3 of 6 finished trials the recorded selected epoch lies in an earlier phase" in line
               for line in a.findings)


def test_comparisons_empty_without_axes():
    t = trial_table(fake_train_rows(datasets=("cifar10",), mixups=(0.0,), pretrains=(0,)), [])
    assert comparisons(t, []).empty


def test_training_module_imports_no_torch_or_ray():
    code = ("import sys, json; import lowbit_sweeps.analysis.train.report, lowbit_sweeps.analysis.report; "
            "print(json.dumps(sorted(m for m in ('torch', 'ray') if m in sys.modules)))")
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == []


# ---- end to end ---------------------------------------------------------------------------------

@pytest.mark.slow
def test_smoke_train_sweep_then_report(tmp_path, shared_ray):
    """The mixup/pretrain smoke profile (4 trials, ~25 s on 2 cores), then its report."""
    proc = run_sweep("sweeps/mixup_pretrain.py", "--smoke", "--results", tmp_path, timeout=300, ray=shared_ray)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    folder = tmp_path / "mixup_pretrain"
    rep = run_report(folder)
    assert rep.returncode == 0, rep.stderr
    md = (folder / "_report" / "report.md").read_text()
    assert "- **family**: train" in md and "- **trials**: 4" in md
    assert "- **group keys**: cfg.train.pretrain_epochs, cfg.train.mixup_alpha" in md \
        or "- **group keys**: cfg.train.mixup_alpha, cfg.train.pretrain_epochs" in md
    assert "All 4 trials finished every planned epoch (4) with finite metrics." in md
    assert "One seed per group" in md and "FP pretrain (pretrain_epochs=2 + 2 quantized)" in md
    table = table_section(md)
    assert table.count("(n=1)") >= 4 * 6 and "FP test_acc at end of pretraining" in table
    for name in ("train_curves.png", "final_test_acc.png"):
        assert_png(folder / "_report" / name)


# ---- cost: fronts, per-model tables, equal bits -------------------------------------------------

from lowbit_sweeps.analysis.common.fronts import front_line, pareto_front  # noqa: E402
from lowbit_sweeps.analysis.train.equal_bits import equal_bits_diffs, equal_bits_lines  # noqa: E402
from lowbit_core.cost.columns import layers_json  # noqa: E402

# (series, kind, bits, width) -> (log2 param_bits, final test_acc at seed 0 before the seed terms)
BW = {
    ("binary", "binary", 1, 8): (17, 0.30), ("binary", "binary", 1, 16): (19, 0.50),
    ("binary", "binary", 1, 24): (20, 0.60),
    ("DoReFa 2-bit", "kbit", 2, 8): (18, 0.45),   # the binary curve at 2^18 bits: 0.40 -> Δ +0.05
    ("DoReFa 2-bit", "kbit", 2, 16): (20, 0.58),  # at 2^20 (the curve's end): 0.60 -> Δ -0.02
    ("DoReFa 2-bit", "kbit", 2, 24): (21, 0.66),  # beyond the binary curve: not compared
}


def bw_acc(series: str, width: int, seed: int) -> float:
    """The 2-bit groups get +0.01 x seed on top of the shared offset: per-seed mean Δ = 0.015 + 0.01 seed."""
    key = next(k for k in BW if k[0] == series and k[3] == width)
    return BW[key][1] + OFFSET[seed] + (0.01 * seed if key[2] == 2 else 0.0)


def fake_bits_width_rows(seeds=SEEDS) -> pd.DataFrame:
    rows = []
    for (series, kind, bits, width), (log_bits, _) in BW.items():
        layers = layers_json([("conv1", "conv 3x3 s1", f"{width}x32x32", 32, 32, 1000 * width, 0, 1000.0 * width,
                               2 ** log_bits - 64, 1e-6), ("(other)", "", "", None, None, 0, 0, 0.0, 64, 0.0)])
        cost = {"macs": 1000 * width, "fp_macs": 10 * width, "lowbit_macs": 990 * width,
                "bops": 990 * width * bits * bits, "ops": 10 * width + 990 * width * bits * bits / 64,
                "params": 2 ** log_bits // bits, "param_bits": 2 ** log_bits, "peak_act_elems": 1024 * width,
                "energy_uj": 0.001 * width * bits, "cost_layers": layers}
        for seed in SEEDS if seeds is None else seeds:
            f = bw_acc(series, width, seed)
            cfg = {"cfg.model.kind": kind, "cfg.quant.bits": bits if kind == "kbit" else 2, "cfg.model.width": width,
                   **cost}
            rows += epoch_rows(f"{kind}-{bits}-{width}-{seed}", seed, cfg, [0.4 * f, 0.6 * f, 0.8 * f, f],
                               ["scratch"] * EPOCHS, sweep="fake_bits_width")
    return pd.DataFrame(rows)


def test_pareto_front_rule():
    cost, score = [1, 2, 3, 4, 2, np.nan], [0.5, 0.7, 0.6, 0.9, 0.7, 0.99]
    assert list(pareto_front(cost, score)) == [True, True, False, True, True, False]  # ties both stay
    assert list(pareto_front([1, 2, 3], [1.0, 2.0, 0.5], higher_is_better=False)) == [True, False, True]
    x, y = front_line(cost, score)
    assert list(x) == [1, 2, 2, 4] and list(y) == [0.5, 0.7, 0.7, 0.9]


@pytest.fixture(scope="module")
def bw() -> TrainAnalysis:
    return TrainAnalysis(fake_bits_width_rows())


def test_front_points_and_members(bw):
    assert bw.costed and bw.keys == [QUANTIZER, "cfg.model.width"]
    p = bw.points.set_index(["series", "label"])
    assert set(p.index) == {(s, f"width={w}") for s, _, _, w in BW}
    r = p.loc[("binary", "width=16")]
    assert r["param_bits"] == 2 ** 19 and r["weight_bits"] == 1
    assert r["mean"] == pytest.approx(np.mean([bw_acc("binary", 16, s) for s in SEEDS]))
    # front against parameter bits: binary w8 (2^17) < 2-bit w8 (2^18) < binary w16 (2^19) ... every point
    # beats the cheaper ones here except binary w24 (2^20, 0.60 + offsets) vs 2-bit w16 (2^20, lower) and
    # 2-bit w24 (2^21, highest)
    from lowbit_sweeps.analysis.train.cost import front_members

    assert front_members(bw.points, "param_bits") == ["binary width=8", "DoReFa 2-bit width=8", "binary width=16",
                                                      "binary width=24", "DoReFa 2-bit width=24"]


def test_equal_bits_closed_form(bw):
    d = equal_bits_diffs(bw.trials, bw.keys)
    assert set(zip(d["hi"], d["lo"], d["point"])) == {("DoReFa 2-bit", "binary", "width=8"),
                                                      ("DoReFa 2-bit", "binary", "width=16")}
    for _, r in d.iterrows():  # width 8: 0.45 - 0.40 (+0.01 seed); width 16: 0.58 - 0.60 (+0.01 seed)
        expected = (0.05 if r["point"] == "width=8" else -0.02) + 0.01 * r["seed"]
        assert r["diff"] == pytest.approx(expected, abs=1e-12)
    line = next(x for x in bw.findings if x.startswith("**At equal parameter bits"))
    m, s, n = msn([0.015 + 0.01 * sd for sd in SEEDS])
    note = "± std over seeds of the per-seed mean over 2 settings"
    half = 4.302652729911275 * s / 3 ** 0.5  # t(0.975, 2)·s/√n
    assert fmt_pp(m, s, n, note=note) in line
    # the report's line is Holm-adjusted over the question's 8 comparisons (bits-vs-width: the quantizer table
    # and the equal-bits lines); the raw verdict (a fresh Recorder, nothing adjusted) has the direction
    assert f"{100 * m:+.2f} [{100 * (m - half):+.2f}, {100 * (m + half):+.2f}] pp, n = 3, d = 2.5, p_Holm = 0.4 (K = 8): " \
           "no direction after Holm" in line
    raw = equal_bits_lines(bw.trials, bw.keys)[0]
    assert f"{100 * m:+.2f} [{100 * (m - half):+.2f}, {100 * (m + half):+.2f}] pp, n = 3, d = 2.5: more bits per weight higher" in raw
    # measured points only: width 8 (2^18 bits) against binary width 8 (2^17; 2^19 is as near, the fewer bits win):
    # 0.45 - 0.30 = +0.15; width 16 (2^20) against binary width 24 (2^20): -0.02; per seed +0.065 + 0.01 seed
    mm, ms, mn = msn([0.065 + 0.01 * sd for sd in SEEDS])
    assert d["diff_near"].to_list() == pytest.approx([(0.15 if p == "width=8" else -0.02) + 0.01 * sd
                                                      for p, sd in zip(d["point"], d["seed"])], abs=1e-12)
    assert ("between measured points only (the nearest lower-bit trial of the seed, parameter bits up to a factor 2 "
            f"apart): {fmt_pp(mm, ms, mn, note=note)}") in line and "disagree" not in line
    assert "4 comparisons" not in line and f"{2 * len(SEEDS)} comparisons" in line


def test_equal_bits_needs_two_seeds_and_overlap():
    one = TrainAnalysis(fake_bits_width_rows(seeds=(0,)))
    line = next(x for x in one.findings if x.startswith("**At equal parameter bits"))
    assert "no verdict" in line
    narrow = fake_bits_width_rows()
    narrow = narrow[narrow["cfg.model.width"] != 24]  # the binary curve (2^17..2^19) no longer reaches 2^20
    a = TrainAnalysis(narrow)
    d = equal_bits_diffs(a.trials, a.keys)
    assert set(d["point"]) == {"width=8"}


def test_cost_report_section_and_figure(bw, tmp_path):
    out = write_results(fake_bits_width_rows(), tmp_path / "bw")
    assert run_report(out).returncode == 0
    md = (out / "_report" / "report.md").read_text()
    assert "## Cost per inference (lowbit_core.cost)" in md and "ESTIMATE" in md
    assert md.count("<details><summary>Per layer:") == len(BW)  # one table per distinct model
    assert "| quantizer=binary width=8 | 8k | 80 |" in md        # the summary row: MACs, FP MACs
    assert "Pareto front of mean final test_acc against parameter bits" in md
    assert "## Final test accuracy and model selection per group" in md and "## Paired differences" in md
    assert_png(out / "_report" / "cost_fronts.png")


def test_rows_without_cost_columns_have_no_cost_section(analysis):
    assert not analysis.costed
    assert "## Cost per inference" not in analysis.markdown([])


def test_equal_bits_says_when_interpolation_and_measured_points_disagree(monkeypatch):
    """binary width 16 at 0.70 instead of 0.50: at 2^18 bits the interpolated binary curve is 0.50, so
    2-bit width 8 (0.45) loses by 0.05; its nearest measured binary point (2^17, 0.30) it beats by 0.15.
    Per seed: interpolated (-0.05 - 0.02)/2 + 0.01 seed = -0.035 + 0.01 seed (mean -0.025), measured
    (+0.15 - 0.02)/2 + 0.01 seed = +0.065 + 0.01 seed."""
    monkeypatch.setitem(BW, ("binary", "binary", 1, 16), (19, 0.70))
    a = TrainAnalysis(fake_bits_width_rows())
    line = equal_bits_lines(a.trials, a.keys)[0]  # raw verdicts (no Holm): the two point opposite ways
    note = "± std over seeds of the per-seed mean over 2 settings"
    assert f"Δ final test_acc = {fmt_pp(*msn([-0.035 + 0.01 * sd for sd in SEEDS]), note=note)}" in line
    assert f"apart): {fmt_pp(*msn([0.065 + 0.01 * sd for sd in SEEDS]), note=note)}" in line
    assert "**Interpolated and measured points disagree in the sign of the mean difference**" in line
    # interpolated -2.50 ± 1.00 pp over 3 seeds: -2.50 ∓ 4.3027/√3 = [-4.98, -0.02] pp, lower; measured +7.50 [+5.02, +9.98]
    assert "-2.50 [-4.98, -0.02] pp, n = 3, d = -2.5: more weights higher" in line
    assert "and their verdicts point opposite ways." in line
