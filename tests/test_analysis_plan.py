"""The reports read the sweep's plan (_sweep.json): the metric and mode, the family, the axes and
canonical defaults; a folder without a plan reports as before plans were recorded."""
from __future__ import annotations

import pandas as pd
import pytest

from lowbit_sweeps.analysis.common.load import load_results, load_trial_status
from lowbit_sweeps.analysis.common.plan import SweepPlan
from lowbit_sweeps.analysis.probe.methods import method_settings
from lowbit_sweeps.analysis.probe.report import ProbeAnalysis
from lowbit_core.results import write_plan
from test_report import fake_probe_rows, run_report, write_parts
from test_report_dg import DG_DEFAULTS, MULTI_DEFAULTS, fake_method_rows
from test_report_train import fake_train_rows, write_results

PROBE_AXES = {"model.kind": ["fp", "binary"], "estimator.name": ["identity", "value_clip", "window"],
              "multi.noise": [0.0, 0.05]}


def plan(**kw) -> dict:
    base = {"name": "fake", "family": "probe", "profile": "default", "metric": "rel_improvement_best", "mode": "max",
            "axes": PROBE_AXES, "fold": [], "seeds": [0, 1, 2], "git_sha": "abc1234",
            "command": ["python", "launch/sweep.py", "sweeps/fake.py"]}
    return {**base, **kw}


def sweep_of(folder) -> str:
    """The sweep name the rows carry: a plan naming another sweep marks the parts as foreign."""
    return str(load_results(folder)["sweep"].iloc[0])


def optuna_rows() -> pd.DataFrame:
    """Two trials per Optuna study: the second (lr 0.05) has the lower best_loss but the lower
    rel_improvement_best, so the two metrics pick different best trials."""
    df = fake_probe_rows(study=True)
    other = df.copy()
    other["trial_key"] += "-b"
    other["cfg.multi.lr"] = 0.05
    other["rel_improvement_best"] -= 0.5
    other["best_loss"] -= 0.05
    return pd.concat([df, other], ignore_index=True)


def report_md(folder) -> str:
    proc = run_report(folder)
    assert proc.returncode == 0, proc.stderr
    return (folder / "_report" / "report.md").read_text()


def test_plan_metric_and_mode_drive_the_probe_report(tmp_path):
    folder = write_parts(optuna_rows(), tmp_path / "planned")
    write_plan(folder, plan(name=sweep_of(folder), metric="best_loss", mode="min"))
    md = report_md(folder)
    assert "tables and figures below use each study's best trial (best_loss, lower is better)" in md
    assert "Best trial per study (lowest final best_loss)" in md and "Best best_loss over studies" in md
    assert "- Sweep metric best_loss (lower is better; from _sweep.json), final rows: best mean " in md
    assert ("- **plan (_sweep.json)**: profile default; metric best_loss (min); axes estimator.name (3), "
            "model.kind (2), multi.noise (2); seeds 0, 1, 2") in md
    assert "- **command**: python launch/sweep.py sweeps/fake.py" in md
    a = ProbeAnalysis(load_results(folder), plan=SweepPlan.read(folder))
    assert set(a.final["cfg.multi.lr"]) == {0.05}  # each study's best trial by the plan's metric
    assert set(ProbeAnalysis(load_results(folder)).final["cfg.multi.lr"]) == {0.01}  # the old constant's pick


def test_plan_metric_outside_the_old_table_is_reported(tmp_path):
    folder = write_parts(fake_probe_rows(), tmp_path / "loss")
    write_plan(folder, plan(name=sweep_of(folder), metric="loss", mode="min"))
    md = report_md(folder)
    table = md.split("## Final-row metrics")[1].split("\n## ")[0]
    assert "| max_abs_delta | loss |" in table
    line = next(x for x in md.splitlines() if x.startswith("- Sweep metric loss"))
    # lowest mean final loss: binary identity at noise 0.05 (single_best 1.1 * (1 - rib) ...), seeds 0..2
    assert "best mean kind=" in line and "worst mean kind=" in line and "(n=3)" in line


def test_folder_without_plan_reports_as_with_a_plan_restating_the_fallbacks(tmp_path):
    plain = write_parts(fake_probe_rows(), tmp_path / "a" / "fake_probe")
    planned = write_parts(fake_probe_rows(), tmp_path / "b" / "fake_probe")
    write_plan(planned, plan(name=sweep_of(planned)))
    old, new = report_md(plain), report_md(planned)
    assert "_sweep.json" not in old
    extra = [x for x in new.splitlines() if "_sweep.json" in x or x.startswith("- **command**")]
    assert len(extra) == 3  # the plan fact, the command, the sweep-metric line
    assert [x for x in new.splitlines() if x not in extra] == old.splitlines()


def test_family_comes_from_the_plan(tmp_path):
    df = fake_train_rows(datasets=("cifar10",), mixups=(0.0,)).assign(family="probe")
    folder = write_results(df, tmp_path / "train")
    write_plan(folder, plan(name=sweep_of(folder), family="train", metric="test_acc",
                            axes={"train.pretrain_epochs": [0, 2]}))
    md = report_md(folder)
    assert "## Final test accuracy and model selection per group" in md
    assert "- **plan (_sweep.json)**: profile default; metric test_acc (max); axes train.pretrain_epochs (2)" in md


def test_a_family_without_its_own_report_gets_the_generic_one(tmp_path):
    folder = write_parts(fake_probe_rows(), tmp_path / "mine")
    write_plan(folder, plan(name=sweep_of(folder), family="nosuch"))
    proc = run_report(folder)
    assert proc.returncode == 0, proc.stderr
    md = (folder / "_report" / "report.md").read_text()
    assert "- **report**: generic (the family has no report of its own)" in md and "## Final values per setting" in md


def test_a_family_report_that_cannot_be_imported_is_one_line(tmp_path):
    folder = write_parts(fake_probe_rows(), tmp_path / "mine")
    write_plan(folder, plan(name=sweep_of(folder), family="nosuch", report="no_such_module:REPORT"))
    proc = run_report(folder)
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.strip() == ("error: the report 'no_such_module:REPORT' of family 'nosuch' could not be "
                                   "imported: ModuleNotFoundError: No module named 'no_such_module'")
    assert not (folder / "_report").exists()


@pytest.mark.parametrize("bad, message", [
    ({"mode": "best"}, "mode 'best' is not valid; valid: min, max"),
])
def test_unusable_plan_is_a_one_line_error(tmp_path, bad, message):
    folder = write_parts(fake_probe_rows(), tmp_path / "bad")
    write_plan(folder, plan(name=sweep_of(folder), **bad))
    proc = run_report(folder)
    assert proc.returncode == 2 and proc.stdout == ""
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0]
    assert not (folder / "_report").exists()


def test_method_settings_from_the_plans_canonical_defaults(tmp_path):
    folder = write_parts(fake_method_rows(), tmp_path / "fake_dg")
    rows = ProbeAnalysis(load_results(folder), load_trial_status(folder)).all_rows
    defaults = {k.removeprefix("cfg."): v for k, v in {**DG_DEFAULTS, **MULTI_DEFAULTS}.items()}
    defaults["dg.fp_moves"] = [1.0, 0.5]
    axes = {"model.kind": ["fp", "binary"], "method": ["ste", "dg", "cdg"], "dg.steps": [1, 2, 4]}
    from_plan = method_settings(rows, SweepPlan.from_dict(plan(axes=axes, canonical_defaults=defaults)))
    assert from_plan == method_settings(rows, SweepPlan()) == {
        "multi-step STE (sgd)": "lr=0.002 steps=20", "DG S=1 (single-step)": "", "DG S=2": "", "DG S=4": "",
        "CDG (refresh 20)": "cdg_max_moves=200 cdg_shortlist=256"}
    # a key without a canonical default is every method's setting; an axis is no method's setting
    partial = {k: v for k, v in defaults.items() if k != "multi.lr"}
    moved = method_settings(rows, SweepPlan.from_dict(plan(axes={**axes, "dg.cdg_shortlist": [64, 256]},
                                                           canonical_defaults=partial)))
    assert moved["multi-step STE (sgd)"] == "lr=0.002 steps=20" and moved["DG S=2"] == "lr=0.001"
    assert moved["CDG (refresh 20)"] == "lr=0.001 cdg_max_moves=200"
