"""Tests of analysis/: loading Parquet parts, mean ± std tables, the paired estimator comparison,
the report CLI (files written, exit status, one-line errors) and the no-torch rule."""
from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from lowbit_sweeps.analysis.common.format import fmt_mean_std
from lowbit_sweeps.analysis.common.groups import final_rows
from lowbit_sweeps.analysis.common.load import load_results
from lowbit_sweeps.analysis.probe.groups import add_estimator_column, group_keys
from lowbit_sweeps.analysis.probe.report import ProbeAnalysis as Analysis
from lowbit_sweeps.analysis.probe.tables import format_mean_std_table, mean_std_table, paired_relative_difference

REPO = Path(__file__).resolve().parents[1]
REPORT = REPO / "analysis" / "report.py"
SEEDS = (0, 1, 2)
STEPS = (0, 10, 20)
NOISES = (0.0, 0.05)
# (model kind, estimator name, clip, window); the FP model carries 'identity' (exact gradient).
SETTINGS = (("fp", "identity", 0.5, 0.1), ("binary", "identity", 0.5, 0.1),
            ("binary", "value_clip", 0.5, 0.1), ("binary", "window", 0.5, 0.1))
SEED_OFFSET = {0: 0.0, 1: 0.01, 2: 0.03}  # added to rel_improvement_best (mean 0.01333, std 0.01528)
EXPECTED_PNGS = ("improvement_vs_step.png", "improvement_vs_noise.png", "estimator_comparison.png", "lr_scan.png")


def single_best(estimator: str, seed: int) -> float:
    """Single-step best loss of the fake sweep: value_clip is +2 %, window is +0.01*(seed+1)."""
    base = 1.0 + 0.1 * seed
    return {"identity": base, "value_clip": 1.02 * base, "window": base + 0.01 * (seed + 1)}[estimator]


def fake_probe_rows(sweep: str = "fake_probe", study: bool = False, eps: float = 0.1) -> pd.DataFrame:
    """A fake probe sweep: FP + binary x estimator settings x 2 noises x 3 seeds, steps 0, 10, 20,
    scan lists on final rows, a few null metric cells. Values are closed-form (see the constants)."""
    rows = []
    for kind, est, clip, window in SETTINGS:
        for noise in NOISES:
            for seed in SEEDS:
                cfg = {
                    "cfg.data.name": "teacher", "cfg.data.batch_size": 1024, "cfg.data.n_features": 32,
                    "cfg.data.n_classes": 10, "cfg.data.teacher_hidden": 64, "cfg.data.root": "",
                    "cfg.model.kind": kind, "cfg.model.hidden": "[128, 128]", "cfg.model.pretrain_steps": 100,
                    "cfg.model.pretrain_lr": 0.01, "cfg.model.pretrain_batch": 256,
                    "cfg.estimator.name": est, "cfg.estimator.clip": clip, "cfg.estimator.window": window,
                    "cfg.budget.epsilon": eps, "cfg.budget.layer": 0, "cfg.scan.lr_min": 1e-5,
                    "cfg.scan.lr_max": 0.1, "cfg.scan.lr_step": 1e-5, "cfg.scan.normalize": "max",
                    "cfg.multi.optimizer": "sgd", "cfg.multi.lr": 0.01, "cfg.multi.momentum": 0.9,
                    "cfg.multi.beta1": 0.9, "cfg.multi.beta2": 0.999, "cfg.multi.steps": STEPS[-1],
                    "cfg.multi.noise": noise, "cfg.multi.normalize": "max", "cfg.multi.report_every": 10,
                    "cfg.seed": seed,
                }
                key = f"{kind}-{est}-{noise}-{seed}"
                sbl = single_best(est, seed)
                rib = (0.02 if kind == "fp" else 0.01) + 0.1 * noise + SEED_OFFSET[seed]
                for step in STEPS:
                    last = step == STEPS[-1]
                    frac = step / STEPS[-1]
                    best = sbl * (1 - rib * frac)
                    lr = np.logspace(-5, -1, 40)
                    rows.append({
                        "sweep": sweep, "family": "probe", "run_id": "run1", "trial_id": f"t_{key}",
                        "trial_key": key, "study": f"{kind}|{est}|{noise}|{seed}" if study else "",
                        "step": step, "seed": seed, "git_sha": "abc1234", "host": "h", "node_ip": "127.0.0.1",
                        "device": "cpu", "time": pd.Timestamp("2024-01-01") + pd.Timedelta(seconds=step),
                        "ver.torch": "2.14.1", "ver.ray": "2.60.0", "ver.lowbit_sweeps": "0.1.0",
                        "ver.python": "3.11", **cfg,
                        "loss": best, "best_loss": best,
                        "max_abs_delta": None if step == 0 else eps * frac,
                        "start_loss": 2.0 + 0.1 * seed, "single_best_loss": sbl, "single_best_lr": 0.01,
                        "rel_improvement": None if (step == 10 and seed == 1) else rib * frac,
                        "rel_improvement_best": rib * frac,
                        "grad_cos_identity": 1.0 if est == "identity" else 0.98,
                        "grad_clipped_frac": 0.0 if est == "identity" else 0.25,
                        "scan_lr": list(lr) if last else None,
                        "scan_loss": list(sbl + (np.log10(lr) + 2) ** 2) if last else None,
                    })
    df = pd.DataFrame(rows)
    # One null final-row metric cell: start_loss of (fp, noise 0, seed 2) -> n=2 in that group.
    df.loc[(df["trial_key"] == "fp-identity-0.0-2") & (df["step"] == STEPS[-1]), "start_loss"] = None
    return df


def write_parts(df: pd.DataFrame, out: Path, n_parts: int = 3, extra_in_last: bool = True,
                failed: bool = True) -> Path:
    """Write ``df`` as ``part-*.parquet`` files split by trial (an extra column in the last part),
    plus ``_trials/part-x.parquet`` with one ERROR trial when ``failed``."""
    out.mkdir(parents=True, exist_ok=True)
    keys = list(dict.fromkeys(df["trial_key"]))
    for i, chunk in enumerate(np.array_split(np.array(keys, dtype=object), n_parts)):
        part = df[df["trial_key"].isin(list(chunk))].copy()
        if extra_in_last and i == n_parts - 1:
            part["extra_metric"] = 1.5
        part.to_parquet(out / f"part-{i:05d}.parquet", index=False)
    status = pd.DataFrame({"trial_key": keys + ["dead"], "trial_id": keys + ["t_dead"],
                           "run_id": "run1", "status": ["TERMINATED"] * len(keys) + ["ERROR" if failed else "TERMINATED"],
                           "error": [""] * len(keys) + ["RuntimeError: boom"],
                           "time": pd.Timestamp("2024-01-01")})
    (out / "_trials").mkdir(exist_ok=True)
    status.to_parquet(out / "_trials" / "part-x.parquet", index=False)
    return out


def run_report(path: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(REPORT), str(path)], cwd=REPO, capture_output=True,
                          text=True, timeout=120)


def listing(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")} if root.exists() else set()


@pytest.fixture(scope="module")
def sweep_dir(tmp_path_factory) -> Path:
    return write_parts(fake_probe_rows(), tmp_path_factory.mktemp("results") / "fake_probe")


@pytest.fixture(scope="module")
def final() -> pd.DataFrame:
    return final_rows(add_estimator_column(fake_probe_rows()))


# ---- CLI ---------------------------------------------------------------------------------------

def test_cli_writes_report_and_pngs(sweep_dir):
    proc = run_report(sweep_dir)
    assert proc.returncode == 0, proc.stderr
    printed = proc.stdout.split()
    out = sweep_dir / "_report"
    assert str(out / "report.md") in printed
    for name in EXPECTED_PNGS:
        png = out / name
        assert png.stat().st_size > 1000 and png.read_bytes()[:4] == b"\x89PNG"
        assert str(png) in printed
    md = (out / "report.md").read_text()
    # the report sits beside the data without breaking pandas.read_parquet on the folder
    assert len(pd.read_parquet(sweep_dir)) == 72
    assert md.startswith("# Sweep report: fake_probe")
    assert "**trials**: 24" in md and "**rows**: 72" in md and "abc1234" in md
    assert "n failed: 1" in md and "boom" in md
    assert "## Findings" in md and "one std" not in md
    # binary, pooled per seed: m = 0.02583, s = 0.01528, n = 3 -> m ± 4.3027·s/√3 = [-0.01212, +0.06378];
    # decided with the question's K = 3 comparisons (multi vs single for fp and binary, binary − FP)
    assert ("+0.02583 [-0.01211, +0.06378], n = 3, d = 1.7, p_Holm = 0.3 (K = 3): 95% interval contains 0, "
            "not inside ±0.01 either: undecided; 80% power at d = 1.7 needs n = 7 seeds (α = 0.05/3)") in md
    assert (sweep_dir / "_report" / "verdicts.json").is_file()
    assert "Holm-adjusted over K = 2 comparisons, family-wise α = 0.05" in md  # under the vSTE vs nSTE table
    assert "≤ 0 — OK" in md
    for name in EXPECTED_PNGS:
        assert f"({name})" in md
    # The fp/noise=0 group's hand-computed mean ± std of rel_improvement_best appears in a table.
    assert "+0.03333 ± 0.01528 (n=3)" in md


def test_budget_violation_is_flagged(tmp_path):
    df = fake_probe_rows(eps=0.1)
    df.loc[df.index[5], "max_abs_delta"] = 0.125
    proc = run_report(write_parts(df, tmp_path / "over"))
    assert proc.returncode == 0
    md = (tmp_path / "over" / "_report" / "report.md").read_text()
    assert "BUDGET VIOLATED" in md and "0.025" in md
    assert "warning" in proc.stderr


@pytest.mark.parametrize("case", ["missing", "empty", "only_trials", "empty_parts"])
def test_bad_input_exits_2_with_one_line(tmp_path, case):
    target = tmp_path / "res"
    if case == "empty":
        target.mkdir()
    elif case == "only_trials":
        write_parts(fake_probe_rows(), tmp_path / "src")
        (target / "_trials").mkdir(parents=True)
        (tmp_path / "src" / "_trials" / "part-x.parquet").rename(target / "_trials" / "part-x.parquet")
    elif case == "empty_parts":
        target.mkdir()
        fake_probe_rows().iloc[0:0].to_parquet(target / "part-00000.parquet", index=False)
    before = listing(target)
    proc = run_report(target)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "valid" in lines[0], proc.stderr
    assert "Traceback" not in proc.stderr and proc.stdout == ""
    assert listing(target) == before


def test_no_argument_is_one_line_error():
    proc = subprocess.run([sys.executable, str(REPORT)], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert len(proc.stderr.strip().splitlines()) == 1 and proc.stderr.startswith("error: ")


# ---- loading -----------------------------------------------------------------------------------

def test_parts_with_different_columns_load_as_union(sweep_dir):
    df = load_results(sweep_dir)
    assert len(df) == 72 and df["trial_key"].nunique() == 24
    assert "extra_metric" in df.columns
    assert df["extra_metric"].notna().sum() == 8 * len(STEPS)  # last of 3 parts holds 8 trials
    assert df["extra_metric"].isna().sum() == 16 * len(STEPS)
    last = df[df["step"] == 20]
    assert all(len(v) == 40 for v in last["scan_lr"])
    assert df.loc[df["step"] < 20, "scan_lr"].isna().all()


# ---- tables ------------------------------------------------------------------------------------

def test_group_keys_follow_what_varies(final):
    assert group_keys(final) == ["cfg.model.kind", "estimator", "cfg.multi.noise"]


def test_mean_std_table_matches_hand_computation(final):
    keys = group_keys(final)
    table = mean_std_table(final, keys)
    row = table[(table["cfg.model.kind"] == "fp") & (table["cfg.multi.noise"] == 0.0)].iloc[0]
    # rel_improvement_best at the final step = 0.02 + {0, 0.01, 0.03}: 0.02, 0.03, 0.05.
    mean = (0.02 + 0.03 + 0.05) / 3
    std = math.sqrt(((0.02 - mean) ** 2 + (0.03 - mean) ** 2 + (0.05 - mean) ** 2) / 2)
    assert row["rel_improvement_best.mean"] == pytest.approx(mean)
    assert row["rel_improvement_best.std"] == pytest.approx(std)
    assert row["rel_improvement_best.n"] == 3
    # start_loss 2.0, 2.1 and a null cell: n=2.
    assert row["start_loss.mean"] == pytest.approx(2.05) and row["start_loss.n"] == 2
    text = format_mean_std_table(table, keys)
    assert "+0.03333 ± 0.01528 (n=3)" in set(text["rel_improvement_best"])
    assert fmt_mean_std(2.05, 0.0707107, 2) == "2.05 ± 0.07071 (n=2)"
    assert fmt_mean_std(1.0, math.nan, 1) == "1 (n=1)"


def test_paired_relative_difference_matches_hand_computation(final):
    keys = group_keys(final)
    pairs = paired_relative_difference(final, "single_best_loss", keys)
    assert set(pairs["estimator"]) == {"value_clip c=0.5", "window t=0.1"}
    clip = pairs[pairs["estimator"] == "value_clip c=0.5"]
    assert len(clip) == 6 and np.allclose(clip["rel_diff"], 0.02)
    window = pairs[pairs["estimator"] == "window t=0.1"].sort_values("seed")
    expected = {0: 0.01 / 1.0, 1: 0.02 / 1.1, 2: 0.03 / 1.2}
    assert np.allclose(window["rel_diff"], [expected[s] for s in window["seed"]])
    cmp = Analysis(fake_probe_rows()).comparison.set_index("estimator")
    assert cmp.loc["window t=0.1", "rel_diff.single_best_loss.mean"] == pytest.approx(sum(expected.values()) / 3)
    # n counts seeds: each seed's pairs (one per noise) are averaged first
    assert cmp.loc["window t=0.1", "rel_diff.single_best_loss.n"] == 3
    assert cmp.loc["value_clip c=0.5", "grad_clipped_frac.mean"] == pytest.approx(0.25)


def test_optuna_sweep_reports_best_trial_per_study():
    df = fake_probe_rows(study=True)
    # Two Optuna trials per study differing in lr; the second is better by +0.5 rel_improvement_best.
    other = df.copy()
    other["trial_key"] += "-b"
    other["cfg.multi.lr"] = 0.05
    other["rel_improvement_best"] += 0.5
    analysis = Analysis(pd.concat([df, other], ignore_index=True))
    assert analysis.searched == ["cfg.multi.lr"]
    assert "cfg.multi.lr" not in analysis.keys
    md = analysis.markdown([])
    assert "## Optuna studies" in md and "| 0.05 |" in md
    assert set(analysis.final["cfg.multi.lr"]) == {0.05}


# ---- import rule -------------------------------------------------------------------------------

def test_analysis_does_not_import_torch_or_ray():
    mods = ["", ".common.load", ".probe.groups", ".probe.tables", ".probe.figures", ".probe.findings", ".probe.report",
            ".report"]
    code = ("import sys; import " + ", ".join(f"lowbit_sweeps.analysis{m}" for m in mods) + "; "
            "print(json.dumps(sorted(m for m in ('torch', 'ray') if m in sys.modules)))")
    proc = subprocess.run([sys.executable, "-c", "import json; " + code], cwd=REPO, capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == []
