"""The plan record (launch/plan_record.py, lowbit_core.sweep.describe_plan) without Ray: its keys and
values for grid, pinned and Optuna axes, overrides, base, search, scheduler and the sweep file's hash;
the keys a resume must match and how a refusal names them; what --extend accepts as widening (and
records) and what it refuses; appending runs."""
from __future__ import annotations

import hashlib

import pytest

from conftest import ROOT
from lowbit_sweeps.launch.plan_record import (LATER_KEYS, RUN_KEYS, describe_difference, differing_keys, matching_plan,
                                new_record, record_run, widening)
from lowbit_core.config import ConfigError, flatten
from lowbit_core.families import get_family
from lowbit_core.results import PLAN_FILE, read_plan
from lowbit_core.sweep import ASHA, Optuna, LogUniform, Sweep, describe_plan, grid, load_sweep, plan, sweep_file_sha256

IDENTITY = ["name", "family", "profile", "metric", "mode", "axes", "fold", "seeds", "canonical_defaults",
            "base", "overrides", "search", "scheduler", "sweep_sha256", "baseline", "report", "questions"]


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
    assert d["overrides"] == {"multi.lr": 0.05} and d["base"] == {}
    assert d["search"] == "grid" and d["scheduler"] is None and d["sweep_sha256"] is None


def test_describe_plan_records_base_search_scheduler_and_the_file_hash(tmp_path):
    f = tmp_path / "s.py"
    f.write_text("x = 1\n")
    sweep = Sweep(name="t", family="train", metric="val_acc", mode="max", base={"train.epochs": 6, "model.width": 4},
                  space={"train.lr": LogUniform(1e-3, 1e-1)}, search=Optuna(num_samples=5),
                  scheduler=ASHA(grace_period=2))
    d = describe_plan(plan(sweep, source_sha256=sweep_file_sha256(f)))
    assert d["base"] == {"train.epochs": 6, "model.width": 4}
    assert d["search"] == {"type": "Optuna", "num_samples": 5, "sampler_seed": 0}
    # max_epochs resolved from the trials' planned epochs
    assert d["scheduler"] == {"type": "ASHA", "grace_period": 2, "reduction_factor": 3, "max_epochs": 6, "brackets": 1}
    assert d["sweep_sha256"] == hashlib.sha256(b"x = 1\n").hexdigest()


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
    assert differing_keys(a, pinned) == ["axes[model.kind]", "overrides[model.kind]"]
    assert differing_keys(a, {**a, "seeds": [1], "profile": "smoke"}) == ["profile", "seeds"]
    assert differing_keys({k: v for k, v in a.items() if k != "fold"}, a) == ["fold"]
    # a --set of a key that is no axis is a difference too (it was not recorded before)
    other = record(plan(Sweep(name="s", family="probe", metric="loss", space={"model.kind": grid("fp", "binary")}),
                        overrides={"multi.steps": 7}))
    assert differing_keys(a, other) == ["overrides[multi.steps]"]
    assert differing_keys(a, {**a, "sweep_sha256": "beef"}) == ["sweep_sha256"]
    assert differing_keys(a, {**a, "scheduler": {"type": "ASHA"}}) == ["scheduler"]


def test_keys_a_plan_recorded_before_they_existed_are_not_compared():
    a = record()
    old = {k: v for k, v in a.items() if k not in LATER_KEYS}
    assert differing_keys(old, {**a, "overrides": {"multi.steps": 7}, "sweep_sha256": "beef"}) == []
    assert differing_keys(a, old) == ["base", "baseline", "overrides", "search"]  # (scheduler, sweep_sha256: None in both)


def test_a_difference_is_named_with_both_values():
    a = record()
    assert describe_difference(a, {**a, "profile": "smoke"}, "profile") == 'profile ("default" -> "smoke")'
    b = {**a, "overrides": {"multi.steps": 7}}
    assert describe_difference(a, b, "overrides[multi.steps]") == "overrides[multi.steps] (unset -> 7)"
    assert "edited" in describe_difference(a, {**a, "sweep_sha256": "x"}, "sweep_sha256")
    long = {**a, "axes": {"model.kind": ["x" * 80]}}
    assert describe_difference(a, long, "axes[model.kind]").endswith('...)')


def test_widening_accepts_more_seeds_values_and_samples_only():
    a = record()
    wider = {**a, "seeds": [0, 1], "axes": {"model.kind": ["fp", "binary", "fp"]}, "sweep_sha256": "new"}
    added, other = widening(a, {**wider, "axes": {"model.kind": ["binary", "fp", "kbit"]}})
    assert other == [] and added == {"axes[model.kind]": ["kbit"], "seeds": [1], "sweep_sha256": "new"}
    # narrowing, a changed base or override, a new axis: not a widening
    _, other = widening(a, {**a, "seeds": [1]})
    assert other == ["seeds"]
    _, other = widening(a, {**a, "axes": {"model.kind": ["fp"]}})
    assert other == ["axes[model.kind]"]
    _, other = widening(a, {**a, "base": {"multi.steps": 3}, "axes": {**a["axes"], "multi.lr": [0.1]}})
    assert other == ["axes[multi.lr]", "base[multi.steps]"]
    # dropping a --set that pinned an axis widens that axis
    pinned = record(plan(Sweep(name="s", family="probe", metric="loss", space={"model.kind": grid("fp", "binary")}),
                         overrides={"model.kind": "fp"}))
    added, other = widening(pinned, a)
    assert other == [] and added == {"axes[model.kind]": ["binary"]}
    opt = {"type": "Optuna", "num_samples": 4, "sampler_seed": 0}
    added, other = widening({**a, "search": opt}, {**a, "search": {**opt, "num_samples": 10}})
    assert other == [] and added == {"search": {"num_samples": 6}}
    _, other = widening({**a, "search": opt}, {**a, "search": {**opt, "sampler_seed": 1}})
    assert other == ["search"]


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
    assert matching_plan(tmp_path, record()) == (None, {})
    record_run(tmp_path, record(), "r1", resume=True)
    assert [r["resumed"] for r in read_plan(tmp_path)["runs"]] == [True]


def test_resume_refuses_a_different_or_unreadable_plan(tmp_path):
    record_run(tmp_path, record(), "r1", resume=False)
    before = (tmp_path / PLAN_FILE).read_text()
    other = {**record(), "metric": "best_loss"}
    with pytest.raises(ConfigError, match=r'differs in metric \("loss" -> "best_loss"\); resume with the same sweep'):
        record_run(tmp_path, other, "r2", resume=True)
    with pytest.raises(ConfigError, match=r"--extend only widens .* differs in metric"):
        record_run(tmp_path, other, "r2", resume=True, extend=True)
    assert (tmp_path / PLAN_FILE).read_text() == before
    (tmp_path / PLAN_FILE).write_text("{cut")
    with pytest.raises(ConfigError, match="cannot read"):
        matching_plan(tmp_path, record())


def test_extend_records_the_wider_plan_and_what_it_added(tmp_path):
    a = record()
    record_run(tmp_path, a, "r1", resume=False)
    wider = {**record(args=["--extend"]), "seeds": [0, 2], "sweep_sha256": "edited", "created": "later"}
    assert record_run(tmp_path, wider, "r2", resume=True, extend=True) == {"seeds": [2], "sweep_sha256": "edited"}
    on_disk = read_plan(tmp_path)
    assert on_disk["seeds"] == [0, 2] and on_disk["sweep_sha256"] == "edited"
    assert on_disk["created"] == a["created"] and on_disk["command"] == a["command"]
    assert [r.get("extended") for r in on_disk["runs"]] == [None, {"seeds": [2], "sweep_sha256": "edited"}]
    # the widened plan is what a plain resume must now match
    record_run(tmp_path, wider, "r3", resume=True)
    with pytest.raises(ConfigError, match="differs in seeds"):
        record_run(tmp_path, a, "r4", resume=True)


def test_extend_needs_a_recorded_plan(tmp_path):
    with pytest.raises(ConfigError, match="--extend widens a recorded sweep, but .* has no _sweep.json"):
        matching_plan(tmp_path, record(), extend=True)


def test_resume_of_an_older_plan_fills_in_the_later_keys(tmp_path):
    a = record()
    old = {k: v for k, v in a.items() if k not in LATER_KEYS}
    record_run(tmp_path, old, "r1", resume=False)
    record_run(tmp_path, {**a, "overrides": {"multi.steps": 7}}, "r2", resume=True)
    assert read_plan(tmp_path)["overrides"] == {"multi.steps": 7}
