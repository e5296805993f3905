"""The plan ``_sweep.json`` next to the data, through the real CLI (Ray on this machine): written by a
run and read back, atomically; ``--resume`` appends a run, refuses a different plan (exit 2, nothing
written); a dry run writes nothing."""
from __future__ import annotations

import shutil
from datetime import datetime, timedelta, timezone

import pandas as pd
import pytest

from conftest import ROOT, run_sweep
from lowbit_core.config import flatten
from lowbit_core.probes.config import ProbeConfig
from lowbit_core.results import PLAN_FILE, read_plan

PLAN_KEYS = {"name", "family", "profile", "metric", "mode", "axes", "fold", "seeds", "git_sha", "command",
             "created", "canonical_defaults", "runs"}

SWEEP_TEXT = '''"""Tiny probe sweep for the plan tests: 2 trials of 2 steps."""
from lowbit_core.sweep import Sweep, grid

SWEEP = Sweep(name="tiny_plan", family="probe", metric="loss",
              base={"model.hidden": (8,), "model.pretrain_steps": 5, "scan.lr_step": 0.05, "multi.steps": 2},
              space={"model.kind": grid("fp", "binary")}, seeds=(0,))
'''


@pytest.fixture(scope="module")
def first_run(tmp_path_factory):
    """(sweep file, results root, CLI result) of one fresh run of the tiny sweep."""
    tmp = tmp_path_factory.mktemp("plan")
    sweep_file = tmp / "tiny_plan.py"
    sweep_file.write_text(SWEEP_TEXT)
    res = run_sweep(sweep_file, "--results", tmp / "res")
    assert res.returncode == 0, res.stderr[-3000:]
    return sweep_file, tmp / "res", res


def snapshot(folder) -> dict:
    """Every file under ``folder``: relative path -> (size, mtime_ns)."""
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in sorted(folder.rglob("*")) if p.is_file()}


def test_run_writes_the_plan_next_to_the_data(first_run):
    sweep_file, root, _ = first_run
    folder = root / "tiny_plan"
    plan = read_plan(folder)
    assert set(plan) == PLAN_KEYS
    assert {k: plan[k] for k in ("name", "family", "profile", "metric", "mode", "axes", "fold", "seeds")} == {
        "name": "tiny_plan", "family": "probe", "profile": "default", "metric": "loss", "mode": "min",
        "axes": {"model.kind": ["fp", "binary"]}, "fold": [], "seeds": [0]}
    assert plan["canonical_defaults"] == flatten(ProbeConfig())
    assert plan["command"] == [str(ROOT / "launch" / "sweep.py"), str(sweep_file), "--results", str(root)]
    created = datetime.fromisoformat(plan["created"])
    assert created.utcoffset() == timedelta(0) and abs(datetime.now(timezone.utc) - created) < timedelta(minutes=30)
    df = pd.read_parquet(folder)
    assert [plan["git_sha"]] == list(df.git_sha.unique())
    assert plan["runs"] == [{"run_id": df.run_id.unique()[0], "time": plan["runs"][0]["time"],
                             "command": plan["command"], "resumed": False}]
    # atomic: written through a temp file that was renamed; none is left behind
    assert not [p for p in folder.rglob("*") if p.name.endswith(".tmp")]
    # the data readers skip it
    assert len(df) == 4


def test_resume_of_a_different_axis_value_is_refused_and_writes_nothing(first_run):
    sweep_file, root, _ = first_run
    before = snapshot(root)
    res = run_sweep(sweep_file, "--results", root, "--resume", "--set", "model.kind=fp", timeout=60)
    assert res.returncode == 2, res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: --resume of a different plan") and "axes[model.kind]" in lines[0]
    assert str(root / "tiny_plan" / PLAN_FILE) in lines[0]
    assert snapshot(root) == before


def test_dry_run_writes_nothing(first_run):
    sweep_file, root, _ = first_run
    before = snapshot(root)
    res = run_sweep(sweep_file, "--results", root, "--dry-run", "--set", "model.kind=fp", timeout=60)
    assert res.returncode == 0 and "1 trials" in res.stdout, res.stderr
    res = run_sweep(sweep_file, "--results", root / "new", "--dry-run", timeout=60)
    assert res.returncode == 0, res.stderr
    assert snapshot(root) == before


def test_resume_appends_a_run_and_keeps_the_plan(first_run, tmp_path):
    sweep_file, root, _ = first_run
    shutil.copytree(root / "tiny_plan", tmp_path / "tiny_plan", ignore=shutil.ignore_patterns("_ray", "_lock"))
    before = read_plan(tmp_path / "tiny_plan")
    res = run_sweep(sweep_file, "--results", tmp_path, "--resume")
    assert res.returncode == 0 and "(0 rows written this run)" in res.stdout, res.stderr[-3000:]
    after = read_plan(tmp_path / "tiny_plan")
    assert {k: v for k, v in after.items() if k != "runs"} == {k: v for k, v in before.items() if k != "runs"}
    assert after["runs"][0] == before["runs"][0] and len(after["runs"]) == 2
    run = after["runs"][1]
    assert run["resumed"] is True and run["command"][-1] == "--resume" and run["run_id"] != before["runs"][0]["run_id"]
    assert run["time"] >= before["runs"][0]["time"]
