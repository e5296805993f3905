"""One contract, every registered family: the built-ins and a plug-in family (the README's
``noisy_quadratic``, loaded from a folder outside the checkout).

For each: the sweep plans (every trial key is the key of its canonical config), the dry run exits 0,
a tiny in-process run reports only declared metrics with a step (and an epoch where the family
declares ``epoch_key``), its rows written through the results writer come back with the schema
declared before the run, and the report (the family's own, or the generic one) is written from them.
Resume: a family that checkpoints, started again from the first state it reported, gives the
uninterrupted run's later rows; any other family, rerun from its seed, gives the same rows; and
re-adding a written (trial, step) row is refused by the writer. Resume through Ray (kill, then
``--resume``) is tested in tests/test_faults.py, test_train_resume.py and test_optuna_resume.py (slow).
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from lowbit_core.config import flatten, with_overrides
from lowbit_core.families import family_names, get_family
from lowbit_core.results import ResultsWriter, results_schema, write_plan
from lowbit_core.sweep import config_key, describe_plan, load_sweep, plan
from lowbit_core.training.checkpoint import load_state, save_state
from test_extending import user_folder as plugin_folder  # noqa: F401 -- the fixture: the README's files

REPO = Path(__file__).resolve().parents[1]
SMALL = {
    "probe": ("vste_window", {}),
    "train": ("cifar_sanity", {"train.epochs": 2, "data.n_train": 128, "data.n_test": 64, "train.steps_per_epoch": 2}),
    "sr": ("sr_lowbit", {"train.epochs": 2}),
    "gradstats": ("resnet_vste_window", {}),
}
"""Built-in family -> (a shipped sweep of it, overrides that make its smoke trial tiny)."""


def sweep_file(name: str, plugin_folder: Path) -> tuple[Path, str, dict]:
    if name in SMALL:
        sweep, overrides = SMALL[name]
        return REPO / "sweeps" / f"{sweep}.py", "smoke", overrides
    return plugin_folder / "quadratic_sweep.py", "default", {}


def test_every_builtin_family_is_covered():
    assert set(SMALL) <= set(family_names())


@pytest.mark.parametrize("name", [*SMALL, "noisy_quadratic"])
def test_family_contract(name, plugin_folder, tmp_path, monkeypatch, capsys):
    from lowbit_sweeps.analysis.report import main as report_main
    from lowbit_sweeps.launch.sweep import main as sweep_main

    path, profile, overrides = sweep_file(name, plugin_folder)
    monkeypatch.chdir(plugin_folder if name not in SMALL else REPO)
    s = load_sweep(path)
    family = get_family(s.family)
    assert family.name == name
    p = plan(s, profile)
    assert p.n_trials >= 1
    for t in p.trials:
        assert config_key(family.canonicalize(t.config)) == t.key

    args = [str(path), "--dry-run"] + (["--profile", profile] if profile != "default" else [])
    assert sweep_main(args) == 0
    capsys.readouterr()

    trial = p.trials[0]
    cfg = with_overrides(trial.config, overrides) if overrides else trial.config
    rows: list[dict] = []
    saved: list[Path] = []

    def report(metrics, state=None, point=None):
        rows.append(dict(metrics))
        if state is not None and not saved:  # the first checkpoint, written as the trainable writes it
            saved.append(save_state(state, tmp_path / "checkpoint"))

    run = family.run_batch if trial.points else family.run
    if trial.points:
        run([c for _, c in trial.points][:1], lambda m, point: report(m), torch.device("cpu"))
    else:
        run(cfg, report, torch.device("cpu"))
    assert rows and all("step" in r and set(r) <= set(family.metrics) | {"step"} for r in rows)
    if family.epoch_key:
        assert all("epoch" in r for r in rows)

    # resume: a family that checkpoints continues from the first state it reported, and the rows after
    # it equal the uninterrupted run's; any other family reruns a trial from its seed: the same rows
    if not trial.points:
        again: list[dict] = []
        if family.checkpoints:
            assert saved, f"family {name} declares checkpoints but reported no state"
            start = load_state(saved[0].parent)
            family.run(cfg, lambda m, state=None: again.append(dict(m)), torch.device("cpu"), start_state=start)
            done = next(i for i, r in enumerate(rows) if r["step"] == again[0]["step"])
            assert done >= 1 and again[0]["step"] > rows[0]["step"]
            expected = rows[done:]
        else:
            family.run(cfg, lambda m, state=None: again.append(dict(m)), torch.device("cpu"))
            expected = rows
        assert [r["step"] for r in again] == [r["step"] for r in expected]
        for got, want in zip(again, expected):
            assert got.keys() == want.keys()
            for k in want:
                if k.endswith("_s"):  # wall-clock measurements (epoch_time_s, images_per_s) differ run to run
                    continue
                if k == "resumed_from_epoch":  # train and sr record where a resumed trial started
                    assert got[k] == rows[done - 1]["epoch"] and want[k] == 0
                    continue
                if isinstance(want[k], str):
                    assert got[k] == want[k], (k, got["step"])
                else:
                    assert np.allclose(np.asarray(got[k], float), np.asarray(want[k], float), rtol=1e-5,
                                       atol=1e-6, equal_nan=True), (k, got["step"], got[k], want[k])

    folder = tmp_path / s.name
    writer = ResultsWriter(folder, results_schema(family.config_cls, family.metrics), "run0")
    key = config_key(cfg)
    cols = {f"cfg.{k}": v for k, v in flatten(cfg).items()}
    for r in rows:
        assert writer.add({**{k: v for k, v in r.items() if k in family.metrics}, **cols, "sweep": s.name,
                           "family": family.name, "run_id": "run0", "trial_id": "t0", "trial_key": key,
                           "study": "", "step": int(r["step"]), "seed": cols.get("cfg.seed")})
    assert not writer.add({**cols, "trial_key": key, "step": int(rows[-1]["step"]), "sweep": s.name})
    writer.close()
    back = pd.read_parquet(folder)
    assert len(back) == len(rows) and set(family.metrics) <= set(back.columns)
    write_plan(folder, describe_plan(p))
    assert report_main([str(folder)]) == 0
    assert (folder / "_report" / "report.md").is_file()
    if name == "noisy_quadratic":
        assert "generic" in (folder / "_report" / "report.md").read_text()
