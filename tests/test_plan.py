"""The plan ``_sweep.json`` next to the data, through the real CLI (Ray on this machine): written by a
run and read back, atomically; ``--resume`` appends a run, refuses a different plan -- another axis
value, a ``--set`` of a key that is no axis, an edited sweep file, another profile -- with one line
naming it (exit 2, nothing written); ``--extend`` widens the sweep on purpose and the plan records it;
a dry run writes nothing."""
from __future__ import annotations

import shutil
from datetime import datetime, timedelta, timezone

import pandas as pd
import pytest

from conftest import ROOT, run_sweep
from lowbit_sweeps.launch.plan_record import new_record
from lowbit_core.config import flatten
from lowbit_core.probes.config import ProbeConfig
from lowbit_core.results import PLAN_FILE, read_plan, write_plan
from lowbit_core.sweep import load_sweep, plan, sweep_file_sha256

PLAN_KEYS = {"name", "family", "profile", "metric", "mode", "axes", "fold", "seeds", "git_sha", "command",
             "created", "canonical_defaults", "runs", "base", "overrides", "search", "scheduler", "sweep_sha256",
             "questions", "baseline", "report"}

SWEEP_TEXT = '''"""Tiny probe sweep for the plan tests: 2 trials of 2 steps."""
from lowbit_core.sweep import Sweep, grid

SWEEP = Sweep(name="tiny_plan", family="probe", metric="loss",
              base={"model.hidden": (8,), "model.pretrain_steps": 5, "scan.lr_step": 0.05, "multi.steps": 2},
              space={"model.kind": grid("fp", "binary")}, seeds=(0,))
'''


@pytest.fixture(scope="module")
def first_run(tmp_path_factory, shared_ray):
    """(sweep file, results root, CLI result) of one fresh run of the tiny sweep (on the tests' shared Ray)."""
    tmp = tmp_path_factory.mktemp("plan")
    sweep_file = tmp / "tiny_plan.py"
    sweep_file.write_text(SWEEP_TEXT)
    res = run_sweep(sweep_file, "--results", tmp / "res", ray=shared_ray)
    assert res.returncode == 0, res.stderr[-3000:]
    return sweep_file, tmp / "res", res


def snapshot(folder) -> dict:
    """Every file under ``folder``: relative path -> (size, mtime_ns)."""
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in sorted(folder.rglob("*")) if p.is_file()}


def test_run_writes_the_plan_next_to_the_data(first_run, shared_ray):
    sweep_file, root, _ = first_run
    folder = root / "tiny_plan"
    plan = read_plan(folder)
    assert set(plan) == PLAN_KEYS
    assert {k: plan[k] for k in ("name", "family", "profile", "metric", "mode", "axes", "fold", "seeds")} == {
        "name": "tiny_plan", "family": "probe", "profile": "default", "metric": "loss", "mode": "min",
        "axes": {"model.kind": ["fp", "binary"]}, "fold": [], "seeds": [0]}
    assert plan["canonical_defaults"] == flatten(ProbeConfig())
    assert plan["sweep_sha256"] == sweep_file_sha256(sweep_file) and plan["overrides"] == {}
    assert plan["base"] == {"model.hidden": "[8]", "model.pretrain_steps": 5, "scan.lr_step": 0.05, "multi.steps": 2}
    assert plan["search"] == "grid" and plan["scheduler"] is None and plan["questions"] == []
    assert plan["command"] == [str(ROOT / "launch" / "sweep.py"), "--address", shared_ray.address, str(sweep_file),
                               "--results", str(root)]
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


def refused(root, *args) -> str:
    """The one stderr line of a CLI call into ``root`` that must be refused before Ray starts (exit 2),
    checking that nothing under ``root`` changed."""
    before = snapshot(root)
    res = run_sweep(*args, "--results", root, timeout=60)
    assert res.returncode == 2, res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in res.stderr, res.stderr
    assert snapshot(root) == before
    return lines[0]


def test_resume_with_a_set_of_a_non_axis_key_is_refused(first_run):
    sweep_file, root, _ = first_run
    line = refused(root, sweep_file, "--resume", "--set", "multi.steps=3")
    assert line.startswith("error: --resume of a different plan") and "overrides[multi.steps] (unset -> 3)" in line


def test_resume_of_an_edited_sweep_file_is_refused(first_run, tmp_path):
    sweep_file, root, _ = first_run
    edited = tmp_path / sweep_file.name
    edited.write_text(SWEEP_TEXT.replace('"multi.steps": 2', '"multi.steps": 3'))
    line = refused(root, edited, "--resume")
    assert "base[multi.steps] (2 -> 3)" in line and "sweep_sha256 (the sweep file was edited" in line
    edited.write_text(SWEEP_TEXT + "# a comment\n")  # any edit: the file's hash
    assert "differs in sweep_sha256" in refused(root, edited, "--resume")


def test_smoke_resume_into_a_default_run_is_refused(tmp_path):
    """The new user's mistake: the default profile into results/vste_window, then --smoke --resume."""
    vste = ROOT / "sweeps" / "vste_window.py"
    default = plan(load_sweep(vste), "default", source_sha256=sweep_file_sha256(vste))
    write_plan(tmp_path / "vste_window", {**new_record(default, ["launch/sweep.py", str(vste)], "abc"), "runs": []})
    line = refused(tmp_path, vste, "--smoke", "--resume")
    assert line.startswith("error: --resume of a different plan") and 'profile ("default" -> "smoke")' in line
    assert "--extend" in line


def test_extend_that_narrows_or_has_nothing_to_extend_is_refused(first_run, tmp_path):
    sweep_file, root, _ = first_run
    line = refused(root, sweep_file, "--extend", "--set", "model.kind=fp")
    assert line.startswith("error: --extend only widens") and "axes[model.kind]" in line
    line = refused(tmp_path, sweep_file, "--extend")
    assert "--extend widens a recorded sweep, but" in line


def test_extend_adds_a_seed_and_the_plan_records_it(first_run, tmp_path, shared_ray):
    sweep_file, root, _ = first_run
    shutil.copytree(root / "tiny_plan", tmp_path / "tiny_plan", ignore=shutil.ignore_patterns("_ray", "_lock"))
    before = pd.read_parquet(tmp_path / "tiny_plan")
    res = run_sweep(sweep_file, "--results", tmp_path, "--extend", "--set", "seeds=[0,1]", ray=shared_ray)
    assert res.returncode == 0, res.stderr[-3000:]
    assert "all 4 trials finished" in res.stdout and "(4 rows written this run)" in res.stdout
    after = pd.read_parquet(tmp_path / "tiny_plan")
    assert sorted(after["cfg.seed"].unique()) == [0, 1] and not after.duplicated(["trial_key", "step"]).any()
    kept = after.merge(before, on=["trial_key", "step", "run_id"])
    assert len(kept) == len(before)  # the earlier rows are untouched
    recorded = read_plan(tmp_path / "tiny_plan")
    assert recorded["seeds"] == [0, 1] and recorded["runs"][-1]["extended"] == {"seeds": [1]}
    assert recorded["runs"][-1]["resumed"] is True


def test_dry_run_writes_nothing(first_run):
    sweep_file, root, _ = first_run
    before = snapshot(root)
    res = run_sweep(sweep_file, "--results", root, "--dry-run", "--set", "model.kind=fp", timeout=60)
    assert res.returncode == 0 and "1 trials" in res.stdout, res.stderr
    res = run_sweep(sweep_file, "--results", root / "new", "--dry-run", timeout=60)
    assert res.returncode == 0, res.stderr
    assert snapshot(root) == before


def test_resume_appends_a_run_and_keeps_the_plan(first_run, tmp_path, shared_ray):
    sweep_file, root, _ = first_run
    shutil.copytree(root / "tiny_plan", tmp_path / "tiny_plan", ignore=shutil.ignore_patterns("_ray", "_lock"))
    before = read_plan(tmp_path / "tiny_plan")
    res = run_sweep(sweep_file, "--results", tmp_path, "--resume", ray=shared_ray)
    assert res.returncode == 0 and "(0 rows written this run)" in res.stdout, res.stderr[-3000:]
    after = read_plan(tmp_path / "tiny_plan")
    assert {k: v for k, v in after.items() if k != "runs"} == {k: v for k, v in before.items() if k != "runs"}
    assert after["runs"][0] == before["runs"][0] and len(after["runs"]) == 2
    run = after["runs"][1]
    assert run["resumed"] is True and run["command"][-1] == "--resume" and run["run_id"] != before["runs"][0]["run_id"]
    assert run["time"] >= before["runs"][0]["time"]
