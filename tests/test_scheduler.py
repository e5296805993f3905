"""Early stopping (``Sweep(scheduler=ASHA(...) | HyperBand(...))``): the typed specs and their checks
before Ray starts, how a completed trial is told apart from one the scheduler stopped, and through the
real CLI: a training sweep whose validation losses are fixed in advance (the test-only fault hook
sets them), so ASHA's decisions are known -- the stopped trials are recorded STOPPED_EARLY with their
epoch (never failed, exit 0), counted in the progress line and the summary, marked and left out of the
statistics in the report; and a SIGKILL mid-sweep then ``--resume``: stopped trials are not rerun and
no row is lost or written twice.
"""
from __future__ import annotations

import json
import os
import signal
from types import SimpleNamespace

import pandas as pd
import pytest

from conftest import ROOT, run_script, run_sweep
from lowbit_sweeps.launch.callbacks import TrialEnds
from lowbit_sweeps.launch.runner import make_scheduler
from lowbit_core.config import ConfigError
from lowbit_core.families import get_family
from lowbit_core.results import STOPPED_EARLY, data_parts, finished_trials, latest_status
from lowbit_core.sweep import (ASHA, NO_SCHEDULER, HyperBand, IntUniform, LogUniform, Optuna, Profile, Sweep,
                               describe_plan, grid, plan)
from test_faults import Driver, inject_env, sessions, statuses, wait_for  # noqa: F401 -- fixture

GOOD, BAD = (1e-3, 2e-3), (3e-3, 4e-3)
EPOCHS = 4


def sweep_text(lrs: tuple, scheduler: str = "ASHA(grace_period=1, reduction_factor=2)") -> str:
    """A tiny training sweep for the scheduler tests: one trial per lr, of EPOCHS one-step epochs."""
    return f'''"""Tiny training sweep for the scheduler tests: {len(lrs)} trials of {EPOCHS} one-step epochs."""
from lowbit_core.sweep import ASHA, HyperBand, Sweep, grid

SWEEP = Sweep(name="tiny_asha", family="train", metric="val_loss", mode="min",
              base={{"model.width": 4, "data.n_train": 128, "data.n_test": 64, "train.batch_size": 32,
                     "train.epochs": {EPOCHS}, "train.steps_per_epoch": 1, "train.optimizer": "adam"}},
              space={{"train.lr": grid{lrs}}}, seeds=(0,), scheduler={scheduler})
'''


def fixed_losses(marks, extra: list[dict] = (), good=GOOD, bad=BAD) -> dict:
    """Fault-hook env: the good trials report val_loss 1, the bad ones 5, at every epoch."""
    rules = [{"match": {"train.lr": lr}, "action": "set", "metric": "val_loss", "value": 1.0} for lr in good]
    rules += [{"match": {"train.lr": lr}, "action": "set", "metric": "val_loss", "value": 5.0} for lr in bad]
    return inject_env(marks, [*rules, *extra])


@pytest.fixture
def sweep_file(tmp_path):
    f = tmp_path / "tiny_asha.py"
    f.write_text(sweep_text(GOOD + BAD))
    return f


def keys_by_lr(folder) -> dict[float, str]:
    df = pd.read_parquet(folder, columns=["trial_key", "cfg.train.lr"]).drop_duplicates()
    return dict(zip(df["cfg.train.lr"], df["trial_key"]))


# ---------------------------------------------------------------- specs and checks (no Ray)
def train_sweep(**kw) -> Sweep:
    return Sweep(**{"name": "t", "family": "train", "metric": "val_acc", "mode": "max",
                    "base": {"train.epochs": 6}, "space": {"train.lr": grid(0.01, 0.1)}, **kw})


def test_scheduler_max_epochs_resolves_to_the_planned_epochs():
    p = plan(train_sweep(scheduler=ASHA(grace_period=2, reduction_factor=4, brackets=2)))
    assert p.scheduler == ASHA(grace_period=2, reduction_factor=4, max_epochs=6, brackets=2)
    assert plan(train_sweep(scheduler=HyperBand(max_epochs=9))).scheduler == HyperBand(max_epochs=9)
    assert plan(train_sweep()).scheduler is None


@pytest.mark.parametrize("kwargs, needle", [
    ({"scheduler": ASHA(grace_period=6)}, "grace_period=6 is not below train.epochs=6; no trial could be stopped"),
    ({"scheduler": ASHA(max_epochs=4)}, "max_epochs=4 is below train.epochs=6 of some trials"),
    ({"scheduler": ASHA(), "family": "probe", "metric": "loss", "base": {}, "space": {}},
     "scheduler ASHA needs a family that reports once per epoch"),
    ({"scheduler": ASHA(), "search": Optuna(num_samples=2), "space": {"train.epochs": IntUniform(2, 8)}},
     "needs train.epochs fixed per trial; it is searched (IntUniform)"),
    ({"scheduler": "asha"}, "sweep scheduler must be ASHA(...), HyperBand(...) or None, got 'asha'"),
])
def test_bad_scheduler_is_one_config_error(kwargs, needle):
    with pytest.raises(ConfigError, match=needle.replace("(", r"\(").replace(")", r"\)")):
        plan(train_sweep(**kwargs))


@pytest.mark.parametrize("make, needle", [
    (lambda: ASHA(grace_period=0), "ASHA.grace_period must be an int >= 1, got 0"),
    (lambda: ASHA(reduction_factor=1), "ASHA.reduction_factor must be a number > 1, got 1"),
    (lambda: ASHA(brackets=1.5), "ASHA.brackets must be an int >= 1, got 1.5"),
    (lambda: HyperBand(max_epochs=-1), "HyperBand.max_epochs must be an int >= 0, got -1"),
    (lambda: HyperBand(reduction_factor=True), "HyperBand.reduction_factor must be a number > 1, got True"),
])
def test_scheduler_fields_are_typed(make, needle):
    with pytest.raises(ConfigError, match=needle.replace("(", r"\(").replace(")", r"\)")):
        make()


def test_profiles_set_search_and_scheduler_or_drop_it():
    s = train_sweep(scheduler=ASHA(), profiles={
        "grid": Profile(scheduler=NO_SCHEDULER),
        "hb": Profile(scheduler=HyperBand()),
        "search": Profile(search=Optuna(num_samples=3), space={"train.lr": LogUniform(1e-3, 1e-1)}),
    })
    assert plan(s, "grid").scheduler is None
    assert isinstance(plan(s, "hb").scheduler, HyperBand)
    p = plan(s, "search")
    assert p.is_optuna and p.n_trials == 3 and p.scheduler.max_epochs == 6
    assert describe_plan(p)["search"] == {"type": "Optuna", "num_samples": 3, "sampler_seed": 0}
    with pytest.raises(ConfigError, match="profile 'bad': scheduler must be ASHA"):
        plan(train_sweep(profiles={"bad": Profile(scheduler="off")}))
    with pytest.raises(ConfigError, match="profile 'bad': search must be 'grid', Optuna"):
        plan(train_sweep(profiles={"bad": Profile(search="random")}))


def test_ray_scheduler_is_built_on_epochs():
    from ray.tune.schedulers import ASHAScheduler, HyperBandScheduler

    a = make_scheduler(plan(train_sweep(scheduler=ASHA(grace_period=2, reduction_factor=3))))
    assert isinstance(a, ASHAScheduler) and a._time_attr == "epoch" and a._max_t == 6
    h = make_scheduler(plan(train_sweep(scheduler=HyperBand(reduction_factor=2))))
    assert isinstance(h, HyperBandScheduler) and h._time_attr == "epoch" and h._max_t_attr == 6
    assert make_scheduler(plan(train_sweep())) is None


def fake_trial(epoch: int, epochs: int = 6, trial_id: str = "t1"):
    p = plan(train_sweep(base={"train.epochs": epochs}))
    return SimpleNamespace(trial_id=trial_id, config={"base": p.trials[0].ray_base, "study": ""},
                           last_result={"epoch": epoch, "step": epoch})


def test_a_completed_trial_before_its_last_epoch_was_stopped_early():
    ends = TrialEnds(get_family("train"), scheduler="ASHA")
    assert ends.ended(fake_trial(2)) == (STOPPED_EARLY, "stopped early by ASHA at epoch 2 of 6")
    assert ends.ended(fake_trial(6)) == ("TERMINATED", "")
    # without a scheduler nothing is ever stopped early (a short trial is the report's "incomplete")
    assert TrialEnds(get_family("train")).ended(fake_trial(2)) == ("TERMINATED", "")


# ---------------------------------------------------------------- through the CLI
@pytest.mark.slow
def test_asha_stops_the_bad_trials_early_and_the_sweep_succeeds(sweep_file, tmp_path, shared_ray):
    # one trial at a time, in grid order: the good ones set the rungs, each bad one is cut at epoch 1
    res = run_sweep(sweep_file, "--results", tmp_path / "res", "--max-concurrent", "1",
                    env=fixed_losses(tmp_path / "marks"), timeout=600, ray=shared_ray)
    assert res.returncode == 0, res.stderr[-3000:]
    assert "all 4 trials finished (2 stopped early by the scheduler)" in res.stdout
    last = [ln for ln in res.stderr.splitlines() if ln.startswith("trials ")][-1]
    assert last.startswith("trials 4/4 done (2 stopped early), 0 running, 0 failed | best val_loss 1 |"), last
    folder = tmp_path / "res" / "tiny_asha"
    rows = pd.read_parquet(folder)
    key = keys_by_lr(folder)
    st = statuses(folder).set_index("trial_key")
    for lr in GOOD:
        assert st.loc[key[lr], "status"] == "TERMINATED" and st.loc[key[lr], "rows"] == EPOCHS
        assert sorted(rows[rows.trial_key == key[lr]].step) == list(range(1, EPOCHS + 1))
    for lr in BAD:
        assert st.loc[key[lr], "status"] == STOPPED_EARLY and st.loc[key[lr], "step"] == 1
        assert st.loc[key[lr], "error"] == f"stopped early by ASHA at epoch 1 of {EPOCHS}"
        assert sorted(rows[rows.trial_key == key[lr]].step) == [1]
    assert finished_trials(folder) == set(key.values())  # stopped trials need no rerun
    rep = run_script("analysis/report.py", folder, timeout=300)
    assert rep.returncode == 0, rep.stderr[-3000:]
    text = (folder / "_report" / "report.md").read_text()
    assert "stopped early: 2" in text and f"stopped early, by ASHA at epoch 1 of {EPOCHS}" in text
    assert "excluded" in text  # the group table says which trials were left out of the means


@pytest.mark.slow
def test_hyperband_pauses_resumes_from_checkpoints_and_stops_the_worst(tmp_path, shared_ray):
    """HyperBand(reduction_factor=2) over 4 epochs: trials 1-3 fill the full-budget bracket; trials 4-6
    a bracket that halves at epoch 2 (Tune creates every trial up front, so the brackets are known).
    Trials of that bracket pause at epoch 2 (Tune keeps their checkpoints) until all three got there;
    the last to get there is decided at once: 6 (the bad one) is stopped, a good one goes on without a
    pause. Each good one that paused resumes from its epoch-2 checkpoint. Which one is last depends on
    how Tune interleaved the brackets (CI once saw 4 arrive last); the rows' arrival times tell."""
    good, bad = (1e-3, 2e-3, 3e-3, 4e-3, 5e-3), (6e-3,)
    f = tmp_path / "tiny_hb.py"
    f.write_text(sweep_text(good + bad, "HyperBand(reduction_factor=2)"))
    res = run_sweep(f, "--results", tmp_path / "res", env=fixed_losses(tmp_path / "marks", good=good, bad=bad),
                    timeout=900, ray=shared_ray)
    assert res.returncode == 0, res.stderr[-3000:]
    assert "all 6 trials finished (1 stopped early by the scheduler)" in res.stdout
    folder = tmp_path / "res" / "tiny_asha"
    rows = pd.read_parquet(folder, columns=["trial_key", "step", "cfg.train.lr", "resumed_from_epoch", "time"])
    assert not rows.duplicated(["trial_key", "step"]).any()
    key = keys_by_lr(folder)
    st = statuses(folder).set_index("trial_key")
    assert st.index.is_unique
    assert st.loc[key[6e-3], "status"] == STOPPED_EARLY and st.loc[key[6e-3], "step"] == 2
    assert st.loc[key[6e-3], "error"] == f"stopped early by HyperBand at epoch 2 of {EPOCHS}"
    for lr in good:
        assert st.loc[key[lr], "status"] == "TERMINATED"
        assert sorted(rows[rows.trial_key == key[lr]].step) == list(range(1, EPOCHS + 1))
    at_2 = rows[rows.step == 2].set_index("trial_key")["time"]  # when the driver (and the scheduler) got it
    last = at_2[[key[lr] for lr in (4e-3, 5e-3, 6e-3)]].max()
    paused = [lr for lr in (4e-3, 5e-3) if at_2[key[lr]] < last]
    assert paused, "at most one trial of the bracket arrives last"
    for lr in (4e-3, 5e-3):
        t = rows[rows.trial_key == key[lr]].sort_values("step")
        assert list(t.resumed_from_epoch) == ([0, 0, 2, 2] if lr in paused else [0, 0, 0, 0]), (lr, at_2.to_dict())


@pytest.mark.slow
def test_resume_with_a_scheduler_reruns_no_stopped_trial_and_loses_no_row(sweep_file, tmp_path, sessions):
    folder = tmp_path / "res" / "tiny_asha"
    env = fixed_losses(tmp_path / "marks", [{"action": "sleep", "seconds": 0.3}])
    args = [sweep_file, "--results", tmp_path / "res", "--max-concurrent", "1"]
    d = Driver(args, env)
    sessions.append(d.sid)

    def one_stopped():
        return (folder / "_trials").is_dir() and any(
            r["status"] == STOPPED_EARLY for r in latest_status(folder).values())

    wait_for(one_stopped, "a trial stopped early", d, timeout=400)
    os.kill(d.proc.pid, signal.SIGKILL)
    d.wait()
    before = pd.read_parquet(folder, columns=["trial_key", "step", "run_id"]) if data_parts(folder) else None
    stopped = {k for k, r in latest_status(folder).items() if r["status"] == STOPPED_EARLY}
    done = finished_trials(folder)
    rc, out, err = Driver([*args, "--resume"], env).wait(timeout=600)
    assert rc == 0, err[-3000:]
    after = pd.read_parquet(folder, columns=["trial_key", "step", "run_id"])
    assert not after.duplicated(["trial_key", "step"]).any()
    kept = before.merge(after, on=["trial_key", "step"], suffixes=("_before", "_after"))
    assert len(kept) == len(before) and (kept.run_id_before == kept.run_id_after).all()  # nothing rewritten
    # a trial ended before the kill (stopped early or finished) was not run again: no row and no
    # status of the resumed run
    resumed_run = set(after.run_id) - set(before.run_id)
    assert not after[after.trial_key.isin(done) & after.run_id.isin(resumed_run)].shape[0]
    st = statuses(folder)
    assert st[st.trial_key.isin(done)].trial_key.value_counts().max() == 1
    assert {k for k, r in latest_status(folder).items() if r["status"] == STOPPED_EARLY} >= stopped
    # every trial ended, each with its rows 1..last epoch
    assert finished_trials(folder) == set(keys_by_lr(folder).values())
    for key, r in latest_status(folder).items():
        assert sorted(after[after.trial_key == key].step) == list(range(1, r["step"] + 1))
    assert "4/4 done" in [ln for ln in err.splitlines() if ln.startswith("trials ")][-1]


@pytest.mark.slow
def test_shipped_search_sweep_smoke_runs_optuna_with_asha(tmp_path, shared_ray):
    """sweeps/train_search.py --smoke: Optuna proposes, ASHA may stop; every trial ends finished or
    stopped early, with its rows 1..its last epoch, and the plan records both."""
    res = run_sweep(ROOT / "sweeps" / "train_search.py", "--smoke", "--results", tmp_path, timeout=600, ray=shared_ray)
    assert res.returncode == 0, res.stderr[-3000:]
    assert "all 4 trials finished" in res.stdout
    folder = tmp_path / "train_search"
    rows = pd.read_parquet(folder, columns=["trial_key", "step", "cfg.train.lr"])
    ends = latest_status(folder)
    assert len(ends) == 4 and {r["status"] for r in ends.values()} <= {"TERMINATED", STOPPED_EARLY}
    for key, r in ends.items():
        assert sorted(rows[rows.trial_key == key].step) == list(range(1, r["step"] + 1))
        assert (r["step"] == 3) == (r["status"] == "TERMINATED")
    assert rows.groupby("trial_key")["cfg.train.lr"].nunique().max() == 1 and rows["cfg.train.lr"].nunique() == 4
    recorded = json.loads((folder / "_sweep.json").read_text())
    assert recorded["search"]["type"] == "Optuna" and recorded["scheduler"]["type"] == "ASHA"
