"""The plan record (launch/plan_record.py, lowbit_core.sweep.describe_plan) without Ray: its keys and
values for grid, pinned and Optuna axes, the keys a resume must match, and appending runs."""
from __future__ import annotations

import pytest

from conftest import ROOT
from launch.plan_record import RUN_KEYS, differing_keys, matching_plan, new_record, record_run
from lowbit_core.config import ConfigError, flatten
from lowbit_core.families import get_family
from lowbit_core.results import PLAN_FILE, read_plan
from lowbit_core.sweep import Sweep, describe_plan, grid, load_sweep, plan

IDENTITY = ["name", "family", "profile", "metric", "mode", "axes", "fold", "seeds", "canonical_defaults"]


def record(p=None, **kw):
    p = p or plan(Sweep(name="s", family="probe", metric="loss", space={"model.kind": grid("fp", "binary")}))
    return new_record(p, ["sweep.py", "s.py", *kw.pop("args", [])], "abc1234")


def test_describe_plan_keys_and_column_form_values():
    p = plan(Sweep(name="s", family="probe", metric="loss", seeds=(0, 1),
                   space={"model.hidden": grid((8,), (16, 8)), "multi.lr": grid(0.01, 0.1)}),
             overrides={"multi.lr": 0.05})
    d = describe_plan(p)
    assert list(d) == IDENTITY
    # tuples as the cfg.<key> columns hold them (JSON text); a pinned axis keeps its one value
    assert d["axes"] == {"model.hidden": ["[8]", "[16, 8]"], "multi.lr": [0.05]}
    assert d["seeds"] == [0, 1] and d["fold"] == [] and d["profile"] == "default"
    assert d["canonical_defaults"] == flatten(get_family("probe").config_cls())


def test_describe_optuna_plan_describes_distributions():
    d = describe_plan(plan(load_sweep(ROOT / "sweeps" / "tune_multistep.py"), "smoke"))
    assert d["axes"]["multi.lr"] == {"type": "LogUniform", "low": 1e-4, "high": 5e-2, "when": {}}
    assert d["axes"]["multi.beta1"]["when"] == {"multi.optimizer": "adam"}
    assert d["axes"]["multi.optimizer"] == ["sgd", "sgdm", "adam"]


def test_new_record_has_exactly_the_plan_keys():
    r = record()
    assert set(r) == set(IDENTITY) | set(RUN_KEYS)
    assert r["runs"] == [] and r["git_sha"] == "abc1234" and r["command"] == ["sweep.py", "s.py"]


def test_only_plan_keys_count_and_dict_entries_are_named():
    a = record()
    assert differing_keys(a, {**a, "command": ["other"], "created": "x", "git_sha": "y", "runs": [1]}) == []
    pinned = record(plan(Sweep(name="s", family="probe", metric="loss", space={"model.kind": grid("fp", "binary")}),
                         overrides={"model.kind": "fp"}))
    assert differing_keys(a, pinned) == ["axes[model.kind]"]
    assert differing_keys(a, {**a, "seeds": [1], "profile": "smoke"}) == ["profile", "seeds"]
    assert differing_keys({k: v for k, v in a.items() if k != "fold"}, a) == ["fold"]


def test_record_run_writes_then_appends_on_resume(tmp_path):
    a = record()
    record_run(tmp_path, a, "r1", resume=False)
    record_run(tmp_path, {**record(args=["--resume"]), "created": "later"}, "r2", resume=True)
    on_disk = read_plan(tmp_path)
    assert on_disk["created"] == a["created"]  # the first run's origin is kept
    assert [(r["run_id"], r["resumed"], r["command"][-1]) for r in on_disk["runs"]] == [
        ("r1", False, "s.py"), ("r2", True, "--resume")]
    record_run(tmp_path, a, "r3", resume=False)  # a fresh run (the folder held no data) starts over
    assert [r["run_id"] for r in read_plan(tmp_path)["runs"]] == ["r3"]


def test_resume_of_a_folder_without_plan_writes_one(tmp_path):
    assert matching_plan(tmp_path, record()) is None
    record_run(tmp_path, record(), "r1", resume=True)
    assert [r["resumed"] for r in read_plan(tmp_path)["runs"]] == [True]


def test_resume_refuses_a_different_or_unreadable_plan(tmp_path):
    record_run(tmp_path, record(), "r1", resume=False)
    before = (tmp_path / PLAN_FILE).read_text()
    other = {**record(), "metric": "best_loss"}
    with pytest.raises(ConfigError, match=r"differs in metric; resume with the same sweep"):
        record_run(tmp_path, other, "r2", resume=True)
    assert (tmp_path / PLAN_FILE).read_text() == before
    (tmp_path / PLAN_FILE).write_text("{cut")
    with pytest.raises(ConfigError, match="cannot read"):
        matching_plan(tmp_path, record())
