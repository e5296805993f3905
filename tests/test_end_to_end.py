"""Smoke sweeps through the real CLI (Ray on this machine), Parquet checked, report written, resume."""
import shutil

import pandas as pd
import pyarrow.parquet as pq
import pytest

from conftest import ROOT, run_script, run_sweep
from lowbit_core.families import get_family
from lowbit_core.results import PLAN_FILE, PROVENANCE, read_plan
from lowbit_core.sweep import load_sweep, plan


def expected_rows(sweep_file: str, profile: str = "smoke") -> tuple[int, int]:
    p = plan(load_sweep(ROOT / sweep_file), profile)
    per_trial = {}
    for t in (p.trials or []):
        m = t.config.multi
        per_trial[t.key] = len(set(range(0, m.steps + 1, m.report_every)) | {m.steps})
    return p.n_trials, sum(per_trial.values())


@pytest.fixture(scope="module")
def vste_results(tmp_path_factory, shared_ray):
    out = tmp_path_factory.mktemp("results")
    res = run_sweep(ROOT / "sweeps" / "vste_window.py", "--smoke", "--results", out, ray=shared_ray)
    assert res.returncode == 0, res.stderr[-3000:]
    return out / "vste_window", res


def test_smoke_sweep_writes_expected_parquet(vste_results):
    folder, res = vste_results
    n_trials, n_rows = expected_rows("sweeps/vste_window.py")
    assert f"all {n_trials} trials finished" in res.stdout
    df = pd.read_parquet(folder)
    assert len(df) == n_rows
    assert df.trial_key.nunique() == n_trials
    assert not df.duplicated(["trial_key", "step"]).any()
    family = get_family("probe")
    for col in [*PROVENANCE, *family.metrics, "cfg.model.kind", "cfg.estimator.name", "cfg.multi.lr", "cfg.seed"]:
        assert col in df.columns, col
    assert (df["max_abs_delta"] <= df["cfg.budget.epsilon"]).all()
    assert set(df["cfg.model.kind"]) == {"fp", "binary"}
    assert (df.seed == df["cfg.seed"]).all() and df.git_sha.str.len().min() >= 7
    assert set(df.device) == {"cpu"} and df.host.notna().all() and df["ver.torch"].notna().all()
    final = df.sort_values("step").groupby("trial_key").tail(1)
    assert final.scan_loss.notna().all() and df.loc[~df.index.isin(final.index), "scan_loss"].isna().all()
    assert all(len(a) == len(b) for a, b in zip(final.scan_lr, final.scan_loss))
    status = pq.read_table(folder / "_trials").to_pandas()
    assert set(status.status) == {"TERMINATED"} and status.trial_key.nunique() == n_trials
    recorded = read_plan(folder)
    assert recorded["profile"] == "smoke" and recorded["seeds"] == sorted(set(df.seed))
    assert set(df["cfg.estimator.name"]) == set(recorded["axes"]["estimator.name"])
    # one progress line per update, not Ray's wall of logs
    assert all(line.startswith("trials ") for line in res.stderr.strip().splitlines()), res.stderr[-2000:]


def test_report_writes_plots_and_summary(vste_results):
    folder, _ = vste_results
    res = run_script("analysis/report.py", folder, timeout=120)
    assert res.returncode == 0, res.stderr
    for name in ("report.md", "improvement_vs_step.png", "estimator_comparison.png", "lr_scan.png"):
        assert (folder / "_report" / name).stat().st_size > 1000, name
    assert len(pd.read_parquet(folder)) == expected_rows("sweeps/vste_window.py")[1]
    text = (folder / "_report" / "report.md").read_text()
    assert "vSTE vs nSTE" in text and "(n=2)" in text


@pytest.mark.slow
def test_resume_finishes_only_what_is_missing(vste_results, tmp_path, shared_ray):
    folder, _ = vste_results
    copy = tmp_path / "res" / "vste_window"
    shutil.copytree(folder, copy, ignore=shutil.ignore_patterns("_ray", "_report", "_lock"))
    before = pd.read_parquet(copy)
    # simulate a run cut short: drop the status of three trials and the last data rows of one of them
    status_files = sorted((copy / "_trials").glob("*.parquet"))
    st = pq.read_table(status_files[0]).to_pandas()
    lost = list(st.trial_key[:3])
    for f in status_files:
        t = pq.read_table(f).to_pandas()
        t = t[~t.trial_key.isin(lost)]
        f.unlink()
        if len(t):
            t.to_parquet(f)
    parts = sorted(copy.glob("part-*.parquet"))
    kept = before[~((before.trial_key == lost[0]) & (before.step == before.step.max()))]
    for p in parts:
        p.unlink()
    kept.to_parquet(copy / "part-cut-00000.parquet")
    (copy / PLAN_FILE).unlink()  # a folder from before plans were recorded
    res = run_sweep(ROOT / "sweeps" / "vste_window.py", "--smoke", "--results", tmp_path / "res", "--resume",
                    ray=shared_ray)
    assert res.returncode == 0, res.stderr[-3000:]
    assert [r["resumed"] for r in read_plan(copy)["runs"]] == [True]  # the resume recorded the plan
    after = pd.read_parquet(copy)
    assert len(after) == len(before)
    assert not after.duplicated(["trial_key", "step"]).any()
    assert "(1 rows written this run)" in res.stdout  # only the lost final row was missing
    # a second resume has nothing left to do
    res = run_sweep(ROOT / "sweeps" / "vste_window.py", "--smoke", "--results", tmp_path / "res", "--resume",
                    ray=shared_ray)
    assert res.returncode == 0 and "(0 rows written this run)" in res.stdout
    assert len(pd.read_parquet(copy)) == len(before)
    assert [r["resumed"] for r in read_plan(copy)["runs"]] == [True, True]


@pytest.mark.slow
def test_optuna_smoke_sweep_and_report(tmp_path, shared_ray):
    res = run_sweep(ROOT / "sweeps" / "tune_multistep.py", "--smoke", "--results", tmp_path, ray=shared_ray)
    assert res.returncode == 0, res.stderr[-3000:]
    p = plan(load_sweep(ROOT / "sweeps" / "tune_multistep.py"), "smoke")
    df = pd.read_parquet(tmp_path / "tune_multistep")
    assert df.trial_key.nunique() == p.n_trials
    assert set(df.study) == {s.key for s in p.studies}
    lrs = df.groupby(["study", "trial_key"])["cfg.multi.lr"].first()
    assert lrs.between(1e-4, 5e-2).all()
    assert (lrs.groupby(level="study").nunique() == p.studies[0].num_samples).all()
    adam = df[df["cfg.multi.optimizer"] == "adam"]
    assert adam["cfg.multi.beta1"].between(0.5, 0.99).all() and adam["cfg.multi.beta1"].nunique() > 1
    sgd = df[df["cfg.multi.optimizer"] == "sgd"]
    assert (sgd["cfg.multi.momentum"] == 0.9).all()  # not searched for plain SGD: the default
    rep = run_script("analysis/report.py", tmp_path / "tune_multistep", timeout=120)
    assert rep.returncode == 0, rep.stderr
    assert (tmp_path / "tune_multistep" / "_report" / "report.md").exists()


def _sweep_file(tmp_path, root):
    f = tmp_path / "mnist_probe.py"
    f.write_text(f'''"""MNIST probe for the failure tests."""
from lowbit_core.sweep import Sweep, grid

SWEEP = Sweep(name="mnist_probe", family="probe", metric="loss",
              base={{"data.name": "mnist", "data.root": {str(root)!r}, "data.batch_size": 4, "model.hidden": (8,),
                     "model.pretrain_steps": 2, "multi.steps": 2, "scan.lr_step": 0.05}},
              space={{"model.kind": grid("fp", "binary")}})
''')
    return f


def test_missing_data_is_bad_input_before_ray(tmp_path):
    res = run_sweep(_sweep_file(tmp_path, tmp_path / "nowhere"), "--results", tmp_path / "res", timeout=60)
    assert res.returncode == 2 and res.stderr.startswith("error: MNIST not found")
    assert len(res.stderr.strip().splitlines()) == 1 and not (tmp_path / "res").exists()


@pytest.mark.slow
def test_failing_trials_exit_1_with_summary_and_status(tmp_path, shared_ray):
    raw = tmp_path / "mnist" / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for name in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
                 "t10k-labels-idx1-ubyte"):
        (raw / name).write_bytes(b"not an idx file")
    res = run_sweep(_sweep_file(tmp_path, tmp_path / "mnist"), "--results", tmp_path / "res", ray=shared_ray)
    assert res.returncode == 1, res.stderr[-2000:]
    assert "2 of 2 trials failed" in res.stderr and "Traceback" not in res.stderr
    status = pq.read_table(tmp_path / "res" / "mnist_probe" / "_trials").to_pandas()
    assert list(status.status) == ["ERROR", "ERROR"] and status.error.str.len().min() > 0


@pytest.mark.slow
def test_relative_data_root_is_the_drivers(tmp_path, shared_ray):
    """Tune runs each trial in its own folder: a relative data.root must still mean the folder the
    command was started from (and the trial key keeps the path as written)."""
    from test_data import _fake_mnist

    _fake_mnist(tmp_path / "mnist")
    res = run_sweep(_sweep_file(tmp_path, "mnist"), "--results", "res", cwd=tmp_path, timeout=300, ray=shared_ray)
    assert res.returncode == 0, res.stderr[-2000:]
    df = pd.read_parquet(tmp_path / "res" / "mnist_probe")
    assert set(df["cfg.data.root"]) == {"mnist"} and df["loss"].notna().all()


def test_absolute_paths_resolve_only_relative_roots():
    from lowbit_core.families import get_family
    from lowbit_core.probes.config import ProbeConfig
    from lowbit_core.config import with_overrides
    from lowbit_core.trainables import absolute_paths

    fam = get_family("probe")
    rel = with_overrides(ProbeConfig(), {"data.root": "data/mnist"})
    assert absolute_paths(fam, rel, "/drv").data.root == "/drv/data/mnist"
    assert absolute_paths(fam, rel, None) is rel
    absolute = with_overrides(ProbeConfig(), {"data.root": "/x/y"})
    assert absolute_paths(fam, absolute, "/drv").data.root == "/x/y"
