"""The training sweeps: plans of every profile, docstrings, and one smoke sweep end to end through the
CLI (Ray on this machine) with a trial that fails once and continues from its epoch checkpoint."""
import json

import pandas as pd
import pyarrow.parquet as pq
import pytest

from conftest import ROOT, run_sweep
from lowbit_core.config import ConfigError
from lowbit_core.sweep import load_sweep, plan
from test_cifar_data import _fake_cifar10, _fake_cifar100

SWEEPS = {"mixup_pretrain": (4, 16, 80), "dsq": (4, 18, 27), "init_perturb": (6, 18, 45), "cifar_sanity": (2, 2, 6)}


@pytest.fixture(scope="module")
def cifar_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("cifar")
    _fake_cifar10(root)
    _fake_cifar100(root)
    return root


@pytest.mark.parametrize("name", list(SWEEPS))
def test_profiles_plan_and_docstring(name, cifar_root):
    sweep = load_sweep(ROOT / "sweeps" / f"{name}.py")
    assert sweep.family == "train" and sweep.metric == "test_acc" and sweep.retries >= 1
    for word in ("Question", "Expected", "Cost", "Command"):
        assert any(line.startswith(word) for line in sweep.doc.splitlines()), word
    smoke, default, full = SWEEPS[name]
    p = plan(sweep, "smoke")
    assert p.n_trials == smoke and {t.config.data.name for t in p.trials} == {"synthetic"}
    assert all(t.config.model.width == 8 and t.config.train.epochs == 4 for t in p.trials)
    assert plan(sweep, "default", {"data.root": str(cifar_root)}).n_trials == default
    full_plan = plan(sweep, "full", {"data.root": str(cifar_root)})
    assert full_plan.n_trials == full and all(t.config.train.epochs == 200 for t in full_plan.trials)
    with pytest.raises(ConfigError, match="not found"):  # no CIFAR on disk: one line before Ray starts
        plan(sweep, "default", {"data.root": str(cifar_root / "nothing")})


def test_mixup_pretrain_compares_equal_budgets(cifar_root):
    p = plan(load_sweep(ROOT / "sweeps" / "mixup_pretrain.py"), "default", {"data.root": str(cifar_root)})
    assert {t.config.train.epochs for t in p.trials} == {10}
    assert {(t.config.data.name, t.config.train.pretrain_epochs, t.config.train.mixup_alpha) for t in p.trials} == {
        (d, pe, m) for d in ("cifar10", "cifar100") for pe in (0, 5) for m in (0.0, 1.0)}


def test_dsq_sweep_has_dsq_and_window_baselines(cifar_root):
    p = plan(load_sweep(ROOT / "sweeps" / "dsq.py"), "default", {"data.root": str(cifar_root)})
    kinds = {(t.config.model.kind, t.config.quant.kbit if t.config.model.kind == "kbit" else
              t.config.quant.weight_param, t.config.quant.bits if t.config.model.kind == "kbit" else 1,
              t.config.quant.dsq_schedule) for t in p.trials}
    assert ("kbit", "dsq", 1, "learned") in kinds and ("kbit", "dsq", 2, "geometric") in kinds
    assert {("binary", w, 1, "learned") for w in (0.05, 0.1, 1.0)} <= kinds and len(kinds) == 9


@pytest.mark.slow
def test_smoke_sweep_end_to_end_with_a_retried_trial(tmp_path, shared_ray):
    marks = tmp_path / "marks"
    marks.mkdir()
    faulty = {"model.init": "kaiming", "perturb.amplitude": 0.2}
    env = {"LOWBIT_FAULT_INJECT": json.dumps(
        {"dir": str(marks), "rules": [{"match": faulty, "action": "raise", "step": 3, "times": 1}]})}
    res = run_sweep(ROOT / "sweeps" / "init_perturb.py", "--smoke", "--results", tmp_path / "res", env=env, ray=shared_ray,
                    timeout=240)
    assert res.returncode == 0, res.stderr[-3000:]
    assert "all 6 trials finished" in res.stdout
    folder = tmp_path / "res" / "init_perturb"
    df = pd.read_parquet(folder)
    assert len(df) == 6 * 4 and not df.duplicated(["trial_key", "step"]).any()
    assert sorted(df.groupby("trial_key").step.apply(sorted).map(tuple).unique()) == [(1, 2, 3, 4)]
    assert (df.epoch == df.step).all() and set(df.phase) == {"scratch"} and set(df["cfg.model.kind"]) == {"binary"}
    assert df.test_acc.between(0, 1).all() and (df.images_per_s > 0).all()
    assert df[df["cfg.perturb.amplitude"] > 0].groupby("trial_key").perturbed.sum().eq(3).all()
    status = pq.read_table(folder / "_trials").to_pandas()
    assert set(status.drop_duplicates("trial_key", keep="last").status) == {"TERMINATED"}
    assert len(list(marks.glob("raise-*"))) == 1  # the fault fired once
    # the retried trial continued from its epoch-2 checkpoint: its rows for epochs 3 and 4 (written by
    # the retry; epochs 1-2 by the first attempt) say so -- a restart from scratch would say 0 there
    retried = df[(df["cfg.model.init"] == "kaiming") & (df["cfg.perturb.amplitude"] == 0.2)].sort_values("step")
    assert list(retried.resumed_from_epoch) == [0, 0, 2, 2]
    assert (df[df.trial_key != retried.trial_key.iloc[0]].resumed_from_epoch == 0).all()
    # checkpoints after every epoch, the last included (the trial's final state, for model.init_from);
    # Ray keeps the newest 2 per trial (num_to_keep),
    # each with the marker that finds it again after a driver crash
    trial_dirs = [d for d in (folder / "_ray").glob("*/*") if d.is_dir()]
    errored = [d for d in trial_dirs if (d / "error.txt").exists()]
    assert len(trial_dirs) == 6 and len(errored) == 1
    for d in trial_dirs:
        kept = sorted(c.name for c in d.glob("checkpoint_*") if (c / "state.pt").is_file())
        assert len(kept) == 2 and all((d / c / "lowbit_checkpoint.json").is_file() for c in kept), (d, kept)
        assert sorted(json.loads((d / c / "lowbit_checkpoint.json").read_text())["step"] for c in kept) == [3, 4]
