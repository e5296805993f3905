"""Folding grid axes into one batched trial: same grid points, same keys, same rows."""
from dataclasses import replace

import pandas as pd
import pytest

from conftest import run_sweep
from lowbit_core.config import ConfigError
from lowbit_core.sweep import Sweep, grid, plan

BASE = {"model.hidden": (16,), "model.pretrain_steps": 5, "data.batch_size": 128, "scan.lr_step": 0.02,
        "multi.steps": 6, "multi.report_every": 3, "multi.optimizer": "adam"}
SWEEP = Sweep(name="fold_test", family="probe", metric="loss", base=BASE,
              space={"model.kind": grid("fp", "binary"), "multi.noise": grid(0.0, 0.05, 0.1),
                     "multi.lr": grid(0.01, 0.003)}, seeds=(0, 1))


def test_fold_groups_points_and_keeps_their_keys():
    flat = plan(SWEEP)
    folded = plan(replace(SWEEP, fold=("multi.noise", "multi.lr")))
    assert len(flat.trials) == 24 and len(folded.trials) == 4
    assert sorted(k for t in folded.trials for k in t.keys) == sorted(t.key for t in flat.trials)
    assert all(len(t.points) == 6 for t in folded.trials)


def test_fold_rejects_keys_the_family_cannot_batch():
    with pytest.raises(ConfigError, match="cannot be folded"):
        plan(replace(SWEEP, fold=("model.kind",)))


def _write(tmp_path, name, fold):
    f = tmp_path / f"{name}.py"
    f.write_text(f'''"""fold test"""
from lowbit_core.sweep import Sweep, grid
SWEEP = Sweep(name="{name}", family="probe", metric="loss", base={BASE!r},
              space={{"model.kind": grid("fp", "binary"), "multi.noise": grid(0.0, 0.05, 0.1)}},
              seeds=(0,), fold={fold!r})
''')
    return f


@pytest.mark.slow
def test_folded_run_writes_the_same_rows_as_separate_trials(tmp_path, shared_ray):
    for name, fold in (("separate", ()), ("folded", ("multi.noise",))):
        res = run_sweep(_write(tmp_path, name, fold), "--results", tmp_path / "res", ray=shared_ray)
        assert res.returncode == 0, res.stderr[-2000:]
    a = pd.read_parquet(tmp_path / "res" / "separate").sort_values(["trial_key", "step"]).reset_index(drop=True)
    b = pd.read_parquet(tmp_path / "res" / "folded").sort_values(["trial_key", "step"]).reset_index(drop=True)
    assert len(a) == len(b) == 6 * 3 and list(a.trial_key) == list(b.trial_key)
    assert a.trial_id.nunique() == 6 and b.trial_id.nunique() == 2  # 2 Ray trials ran 6 grid points
    for col in ("loss", "best_loss", "single_best_loss", "rel_improvement_best", "max_abs_delta"):
        pd.testing.assert_series_equal(a[col], b[col], rtol=1e-5, check_names=False)
    assert (a.coords_moved == b.coords_moved).all()
    status = pd.read_parquet(tmp_path / "res" / "folded" / "_trials")
    assert sorted(status.trial_key) == sorted(a.trial_key.unique()) and set(status.status) == {"TERMINATED"}
