"""Tests of the method comparison in analysis/ (multi-step STE, DG, multi-step DG, CDG): method labels
and the collapse of method-only columns, the methods table against hand-computed values, methods.png,
the findings sentence on "is DG a usable upper bound for STE", and STE-only sweeps unchanged."""
from __future__ import annotations

import json
import math
import subprocess
import sys

import pandas as pd
import pytest

from lowbit_sweeps.analysis.probe import figures
from lowbit_sweeps.analysis.probe.groups import METHOD, group_keys, method_label
from lowbit_sweeps.analysis.probe.methods import SINGLE_STE, method_rank, ordered_methods
from lowbit_sweeps.analysis.probe.report import ProbeAnalysis as Analysis
from test_report import REPO, fake_probe_rows, run_report, write_parts

SEEDS = (0, 1, 2)
SEED_OFFSET = {0: 0.0, 1: 0.004, 2: 0.01}  # added to every method's relative gain
DG_DEFAULTS = {"cfg.dg.steps": 1, "cfg.dg.select": "best_prefix", "cfg.dg.max_coords": 0,
               "cfg.dg.prefix_points": 32, "cfg.dg.cdg_max_moves": 50, "cfg.dg.cdg_refresh": 1,
               "cfg.dg.cdg_shortlist": 64, "cfg.dg.fp_moves": "[1.0, 0.5]", "cfg.dg.report_every": 1}
MULTI_DEFAULTS = {"cfg.multi.optimizer": "sgd", "cfg.multi.lr": 0.001, "cfg.multi.momentum": 0.9,
                  "cfg.multi.beta1": 0.9, "cfg.multi.beta2": 0.999, "cfg.multi.steps": 100,
                  "cfg.multi.noise": 0.0, "cfg.multi.normalize": "max", "cfg.multi.report_every": 10}
# Relative gain r over single-step STE of each method's final best_loss: L = L_single * (1 - r - offset).
# FP: DG (best S=4, +2 %) stays above multi-step STE (+5 %); binary: DG S=4 (+10 %) beats STE (+1 %).
GAINS = {
    "fp": {("ste", None): 0.05, ("dg", 1): -0.02, ("dg", 2): 0.0, ("dg", 4): 0.02, ("cdg", None): -0.05},
    "binary": {("ste", None): 0.01, ("dg", 1): 0.03, ("dg", 2): 0.06, ("dg", 4): 0.10, ("cdg", None): 0.0},
}
N_WEIGHTS = 64 * 64


def single_best(kind: str, seed: int) -> float:
    return (1.0 if kind == "fp" else 2.0) + 0.1 * seed


def fake_method_rows(gains: dict = GAINS, sweep: str = "fake_dg") -> pd.DataFrame:
    """A fake dg_vs_ste sweep as the probe family writes it (sections of other methods at their
    defaults): FP + binary x {multi-step STE (sgd), DG S=1,2,4, CDG refresh 20} x 3 seeds."""
    rows = []
    for kind, methods in gains.items():
        for (method, s), r in methods.items():
            for seed in SEEDS:
                multi, dg = dict(MULTI_DEFAULTS), dict(DG_DEFAULTS)
                if method == "ste":
                    multi.update({"cfg.multi.lr": 0.002, "cfg.multi.steps": 20})
                    steps, moved = (0, 10, 20), (N_WEIGHTS if kind == "fp" else 30)
                elif method == "dg":
                    dg.update({"cfg.dg.steps": s})
                    steps, moved = tuple(range(s + 1)), 10 * s
                else:
                    dg.update({"cfg.dg.cdg_max_moves": 200, "cfg.dg.cdg_refresh": 20, "cfg.dg.cdg_shortlist": 256,
                               "cfg.dg.report_every": 100})
                    steps, moved = (0, 100, 200), 150
                cfg = {"cfg.data.name": "teacher", "cfg.data.batch_size": 1024, "cfg.model.kind": kind,
                       "cfg.model.hidden": "[64, 64]", "cfg.estimator.name": "identity", "cfg.estimator.clip": 0.5,
                       "cfg.estimator.window": 1.0, "cfg.budget.epsilon": 0.1, "cfg.budget.layer": 0,
                       "cfg.method": method, "cfg.seed": seed, **multi, **dg}
                key = f"{kind}-{method}-{s}-{seed}"
                sbl = single_best(kind, seed)
                final = sbl * (1 - r - SEED_OFFSET[seed])
                start = 1.2 * sbl
                for step in steps:
                    f = step / steps[-1]
                    loss = start + (final - start) * f
                    last = step == steps[-1]
                    rows.append({
                        "sweep": sweep, "family": "probe", "run_id": "run1", "trial_id": f"t_{key}",
                        "trial_key": key, "study": "", "step": step, "seed": seed, "git_sha": "abc1234",
                        "time": pd.Timestamp("2024-01-01") + pd.Timedelta(seconds=step), **cfg,
                        "loss": loss, "best_loss": loss, "max_abs_delta": 0.1 * f, "coords_moved": int(round(moved * f)),
                        "start_loss": start, "single_best_loss": sbl, "single_best_lr": 0.01,
                        "rel_improvement": (sbl - loss) / sbl, "rel_improvement_best": (sbl - loss) / sbl,
                        "grad_cos_identity": 1.0, "grad_clipped_frac": 0.0,
                        "scan_lr": [1e-3, 1e-2, 1e-1] if last else None,
                        "scan_loss": [sbl + 0.1, sbl, sbl + 0.2] if last else None,
                    })
    return pd.DataFrame(rows)


@pytest.fixture(scope="module")
def analysis() -> Analysis:
    return Analysis(fake_method_rows())


@pytest.fixture(scope="module")
def report_dir(tmp_path_factory):
    out = write_parts(fake_method_rows(), tmp_path_factory.mktemp("results") / "fake_dg")
    proc = run_report(out)
    assert proc.returncode == 0, proc.stderr
    return out / "_report"


def findings_lines(md: str) -> list[str]:
    section = md.split("## Findings", 1)[1].split("\n## ", 1)[0]
    return [line for line in section.splitlines() if line.strip()]


# ---- labels and grouping -----------------------------------------------------------------------

def test_method_labels_and_order():
    assert method_label("ste", 1, "adam", 1) == "multi-step STE (adam)"
    assert method_label("dg", 1, "sgd", 1) == "DG S=1 (single-step)"
    assert method_label("dg", 8.0, "sgd", 1) == "DG S=8"
    assert method_label("cdg", 1, "sgd", 1) == "CDG" and method_label("cdg", 1, "sgd", 20) == "CDG (refresh 20)"
    labels = ["CDG (refresh 20)", "DG S=16", "multi-step STE (adam)", "DG S=2", SINGLE_STE, "CDG",
              "multi-step STE (sgd)", "DG S=1 (single-step)"]
    assert ordered_methods(labels) == [SINGLE_STE, "multi-step STE (sgd)", "multi-step STE (adam)",
                                       "DG S=1 (single-step)", "DG S=2", "DG S=16", "CDG", "CDG (refresh 20)"]
    assert method_rank("DG S=16") > method_rank("DG S=2")


def test_method_only_columns_collapse_into_the_label(analysis):
    # cfg.method, cfg.dg.steps/cdg_*/report_every and cfg.multi.lr/steps vary only with the method
    assert analysis.keys == ["cfg.model.kind", METHOD]
    assert set(analysis.final[METHOD]) == {"multi-step STE (sgd)", "DG S=1 (single-step)", "DG S=2", "DG S=4",
                                           "CDG (refresh 20)"}
    # the STE-only analyses see the multi-step STE trials, grouped by what varies among them
    assert analysis.ste_keys == ["cfg.model.kind"] and len(analysis.ste_final) == 6


def test_a_setting_that_varies_inside_a_method_stays_a_key():
    df = fake_method_rows()
    other = df[df["cfg.method"] == "ste"].copy()
    other["trial_key"] += "-lr"
    other["cfg.multi.lr"] = 0.005
    keys = group_keys(Analysis(pd.concat([df, other], ignore_index=True)).all_rows)
    assert keys == ["cfg.model.kind", METHOD, "cfg.multi.lr"]


# ---- the table ---------------------------------------------------------------------------------

def test_methods_table_matches_hand_computation(analysis):
    t = analysis.method_table
    fp = t[t["cfg.model.kind"] == "fp"]
    assert list(fp[METHOD]) == [SINGLE_STE, "multi-step STE (sgd)", "DG S=1 (single-step)", "DG S=2", "DG S=4",
                                "CDG (refresh 20)"]
    row = fp[fp[METHOD] == "DG S=2"].iloc[0]
    # DG S=2 on FP gains 0 + seed offset: 1.0 * 1, 1.1 * 0.996, 1.2 * 0.99; rel_improvement_best = the offsets
    vals = [1.0, 1.1 * 0.996, 1.2 * 0.99]
    mean = sum(vals) / 3
    std = math.sqrt(sum((v - mean) ** 2 for v in vals) / 2)
    assert row["best_loss.mean"] == pytest.approx(mean) and row["best_loss.std"] == pytest.approx(std)
    assert row["best_loss.n"] == 3 and row["coords_moved.mean"] == 20
    single = fp[fp[METHOD] == SINGLE_STE].iloc[0]
    assert single["best_loss.mean"] == pytest.approx(1.1) and single["best_loss.std"] == pytest.approx(0.1)
    assert single["rel_improvement_best.mean"] == 0 and single["coords_moved.n"] == 0
    md = analysis.markdown([])
    assert "## Methods" in md
    table = md.split("## Methods", 1)[1].split("\n## ", 1)[0]
    assert "| fp | DG S=2 | select=best_prefix" not in table  # select does not vary: not a setting
    assert "| fp | DG S=2 | – | 1.095 ± 0.094 (n=3) | +0.004667 ± 0.005033 (n=3) | 20 ± 0 (n=3) | 0.1 ± 0 (n=3) |" in table
    assert "| fp | multi-step STE (sgd) | lr=0.002 steps=20 | " in table
    assert "| binary | CDG (refresh 20) | cdg_max_moves=200 cdg_shortlist=256 | " in table
    assert f"| fp | {SINGLE_STE} | – | 1.1 ± 0.1 (n=3) | +0 ± 0 (n=3) | – | – |" in table


# ---- report files ------------------------------------------------------------------------------

def test_cli_writes_methods_png_and_split_step_figure(report_dir):
    md = (report_dir / "report.md").read_text()
    for name in ("methods.png", "improvement_vs_step.png", "lr_scan.png"):
        png = report_dir / name
        assert png.stat().st_size > 1000 and png.read_bytes()[:4] == b"\x89PNG"
        assert f"({name})" in md
    assert not (report_dir / "improvement_vs_noise.png").exists()


def test_step_figure_has_one_panel_per_method_family(analysis):
    panels, line_keys = figures.step_panels(analysis.rows, analysis.keys)
    assert [(t, x) for t, _, x in panels] == [("multi-step STE", "STE iteration"), ("DG / multi-step DG", "DG step"),
                                              ("CDG", "accepted coordinate moves")]
    assert line_keys == analysis.keys and sum(len(sub) for _, sub, _ in panels) == len(analysis.rows)


# ---- findings ----------------------------------------------------------------------------------

def test_findings_say_which_is_lower(report_dir):
    lines = findings_lines((report_dir / "report.md").read_text())
    answer = {k: next(line for line in lines if "usable upper bound" in line and f"({k})" in line)
              for k in ("fp", "binary")}
    # every DG and CDG variant is tested against every STE reference; each answer comes from its records.
    # FP: DG S=4 (L = 0.98 L_single) stays above multi-step STE (0.95 L_single), below single-step
    assert ("DG: NO — DG S=4 does not reach a lower final best_loss than every STE method here: "
            "multi-step STE (sgd) (+3.174 [+3.132, +3.216]%, n = 3") in answer["fp"]
    # below single-step STE by its own interval, but no direction after Holm over the question's K = 16
    assert ("is lower; undecided against single-step STE (-2.467 [-3.717, -1.216]%, n = 3, d = -4.9, "
            "p_Holm = 0.22 (K = 16))") in answer["fp"]
    assert "DG: NO — DG S=1 (single-step) " in answer["fp"] and "DG: NO — DG S=2 " in answer["fp"]
    assert "CDG: NO" in answer["fp"] and "YES" not in answer["fp"]
    # binary: DG S = 2 and 4 below both STE methods; S = 1 below single-step STE by its own interval, but
    # not after the closed Holm test over the question's 16 comparisons (p_Holm 0.11): undecided, no word
    for s in ("S=2", "S=4"):
        assert f"DG: YES — DG {s} reaches a lower final best_loss than every STE method here" in answer["binary"]
    assert "DG: UNDECIDED — DG S=1 (single-step): against single-step STE (-3.467 [-4.717, -2.216]%" in answer["binary"]
    assert "CDG: NO — CDG (refresh 20) does not reach" in answer["binary"]
    records = json.loads((report_dir / "verdicts.json").read_text())["records"]
    dg = [r for r in records if r["question"] == "dg-upper-bound"]
    # 2 kinds x 4 variants x 2 references, one family
    assert len(dg) == 16 and {r["k"] for r in dg} == {16} and {r["margin"] for r in dg} == {0.01}
    assert {r["baseline"] for r in dg} == {"multi-step STE (sgd)", SINGLE_STE}
    # the paired relative difference DG S=4 vs multi-step STE on FP: (0.98 - 0.95) / 0.95 per seed minus offsets
    fp_pairs = [((1 - 0.02 - o) - (1 - 0.05 - o)) / (1 - 0.05 - o) for o in SEED_OFFSET.values()]
    m = sum(fp_pairs) / 3
    assert any("DG S=4 " in line and "vs multi-step STE (sgd)" in line and f"{100 * m:+.4g}%" in line
               and "DG lower in 0/3" in line for line in lines)
    trend = {k: next(line for line in lines if line.startswith(f"- Multi-step DG ({k})")) for k in ("fp", "binary")}
    assert all("improves with S: yes, monotonically" in t for t in trend.values())
    # the STE-only lines still speak of multi-step vs single-step STE
    assert any(line.startswith("- Multi-step vs single-step for fp") for line in lines)


@pytest.mark.parametrize("dg_gain, expected", [(0.08, "YES"), (0.03, "NO")])
def test_findings_follow_the_data(dg_gain, expected):
    gains = {"fp": {("ste", None): 0.05, ("dg", 1): dg_gain, ("cdg", None): 0.0}}
    md = Analysis(fake_method_rows(gains)).markdown([])
    line = next(x for x in findings_lines(md) if "usable upper bound" in x)
    assert f"DG: {expected} — DG S=1 (single-step) " in line
    assert "Multi-step DG" not in md  # one S only: no trend line


def test_unpaired_seeds_still_compared():
    df = fake_method_rows()
    df = df[~((df["cfg.method"] == "cdg") & (df["seed"] == 2))]
    lines = findings_lines(Analysis(df).markdown([]))
    assert any("CDG (refresh 20) " in x and "paired over 2 seed(s)" in x for x in lines)


# ---- STE-only sweeps unchanged -----------------------------------------------------------------

def test_ste_only_sweep_with_new_columns_reads_as_before():
    old = fake_probe_rows()
    new = old.assign(**{"cfg.method": "ste", **DG_DEFAULTS, "coords_moved": 7})
    a_old, a_new = Analysis(old), Analysis(new)
    assert METHOD not in a_new.all_rows.columns and a_new.keys == a_old.keys
    assert a_new.markdown([]) == a_old.markdown([])
    assert "## Methods" not in a_old.markdown([])


def test_methods_module_imports_no_torch_or_ray():
    code = ("import sys, json, lowbit_sweeps.analysis.probe.methods, lowbit_sweeps.analysis.probe.report; "
            "print(json.dumps(sorted(m for m in ('torch', 'ray') if m in sys.modules)))")
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == []


def test_one_seed_gives_no_answer():
    """One seed: the gains are clear in the means, but no verdict rests on n = 1."""
    md = Analysis(fake_method_rows()[lambda d: d["seed"] == 0]).markdown([])
    lines = findings_lines(md)
    answer = next(x for x in lines if "usable upper bound" in x and "(binary)" in x)
    assert ("DG: UNDECIDED — DG S=4: against single-step STE (n = 1: no verdict, fewer than 2 paired seeds), "
            "multi-step STE (sgd) (n = 1: no verdict, fewer than 2 paired seeds)") in answer
    assert "YES" not in md and "NO —" not in md
    assert any("improves with S: no verdict (needs >= 2 seeds) (n = 1)." in x for x in lines)
