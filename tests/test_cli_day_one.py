"""A first day's mistakes and questions (issue 27), through the CLI: a mistyped
``$MLFLOW_TRACKING_URI`` scheme and a negative seed are one line before Ray starts (exit 2, nothing
written); the schemes taken are the ones MLflow's own store registry takes; an Optuna sweep's studies
are named after the sweep and the study (and the run), and every Optuna trial carries its trial key,
so a dashboard's trials join the Parquet rows."""
from __future__ import annotations

import json
import time

import pandas as pd
import pytest

from conftest import ROOT, run_sweep

SWEEP_TEXT = '''"""Tiny probe sweep for the day-one tests: 2 trials of 2 steps."""
from lowbit_core.sweep import Sweep, grid

SWEEP = Sweep(name="tiny_day_one", family="probe", metric="loss",
              base={"model.hidden": (8,), "model.pretrain_steps": 5, "scan.lr_step": 0.05, "multi.steps": 2},
              space={"model.kind": grid("fp", "binary")}, seeds=(0,))
'''


@pytest.fixture
def sweep_file(tmp_path):
    path = tmp_path / "tiny_day_one.py"
    path.write_text(SWEEP_TEXT)
    return path


def refused(res, tmp_path) -> str:
    """The one stderr line of a run refused before Ray: exit 2, no traceback, no results folder."""
    assert res.returncode == 2, res.stderr[-3000:]
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), res.stderr[-3000:]
    assert not (tmp_path / "res").exists()
    return lines[0]


# ---------------------------------------------------------------- a mistyped tracking URI
def test_a_mistyped_tracking_uri_scheme_is_one_line_before_ray(sweep_file, tmp_path):
    t0 = time.monotonic()
    res = run_sweep(sweep_file, "--results", tmp_path / "res", "--log", "mlflow",
                    env={"MLFLOW_TRACKING_URI": "htp://localhost:5000"}, timeout=120)
    line = refused(res, tmp_path)
    assert line == ("error: --log mlflow: MLFLOW_TRACKING_URI=htp://localhost:5000 has a scheme MLflow does not take "
                    "('htp'); valid: http://, https://, file://, sqlite:///, postgresql://, mysql://, mssql:// (a "
                    "database optionally +driver, e.g. postgresql+psycopg2://), databricks, or a plain path; unset it "
                    "to log to <results>/<sweep>/_mlflow.db")
    assert "Ray" not in res.stdout and time.monotonic() - t0 < 60


def test_without_log_mlflow_the_variable_is_not_checked(sweep_file, tmp_path):
    res = run_sweep(sweep_file, "--results", tmp_path / "res", "--dry-run", env={"MLFLOW_TRACKING_URI": "htp://x"},
                    timeout=120)
    assert res.returncode == 0, res.stderr[-3000:]


URIS = ["htp://localhost:5000", "http://127.0.0.1:5000", "HTTPS://mlflow.example.org", "file:///tmp/mlruns",
        "/tmp/mlruns", "mlruns", "C:\\mlruns", "sqlite:///tmp/mlflow.db", "sqlite+pysqlite:///tmp/mlflow.db",
        "postgresql://u@h/db", "postgresql+psycopg2://u@h/db", "postgres://u@h/db", "mysql+pymysql://u@h/db",
        "mssql+pyodbc://u@h/db", "sqlitex:///tmp/x.db", "databricks", "databricks://profile", "databricks-uc",
        "s3://bucket/mlruns", "foo+bar://x", "mlflow://x", "hhtps://h"]


@pytest.mark.parametrize("uri", URIS)
def test_the_schemes_taken_are_the_ones_mlflow_takes(uri):
    """MLflow's own tracking-store registry is the reference: what it builds a store for is taken,
    what it refuses is refused (nothing is contacted: building the builder only)."""
    pytest.importorskip("mlflow")
    from mlflow.tracking._tracking_service.utils import _tracking_store_registry

    from lowbit_sweeps.launch.trackers import mlflow_uri_problem

    try:
        _tracking_store_registry.get_store_builder(uri)
        mlflow_takes = True
    except Exception:  # noqa: BLE001 -- UnsupportedModelRegistryStoreURIException, MlflowException
        mlflow_takes = False
    assert (mlflow_uri_problem(uri) is None) == mlflow_takes


# ---------------------------------------------------------------- negative seeds
@pytest.mark.parametrize("seeds", ["[-1]", "[0,1,-2]"])
def test_a_negative_seed_is_one_line_before_ray(sweep_file, tmp_path, seeds):
    res = run_sweep(sweep_file, "--results", tmp_path / "res", "--set", f"seeds={seeds}", timeout=120)
    line = refused(res, tmp_path)
    assert line == (f"error: seeds must be ints >= 0, got {seeds.replace(',', ', ')}: torch.manual_seed takes a "
                    "negative seed but numpy.random.default_rng does not; valid: e.g. seeds=[0,1,2]")


def test_a_sweep_file_with_a_negative_seed_is_refused_too(tmp_path):
    path = tmp_path / "tiny_day_one.py"
    path.write_text(SWEEP_TEXT.replace("seeds=(0,)", "seeds=(0, -3)"))
    res = run_sweep(path, "--results", tmp_path / "res", "--dry-run", timeout=120)
    assert refused(res, tmp_path).startswith("error: seeds must be ints >= 0, got [0, -3]: ")


# ---------------------------------------------------------------- Optuna: study names and trial keys
def test_the_searcher_records_each_asked_trials_key(tmp_path):
    """KeyedOptunaSearch, driven as Ray Tune drives it: every trial it asks carries its trial key in
    the journal (read back by a fresh storage), an enqueued replay keeps the key it was enqueued with,
    and the study is named <sweep>/<study key>/<run id>."""
    import optuna
    from ray import tune
    from ray.tune.search.optuna import OptunaSearch

    from lowbit_sweeps.launch.optuna_state import (Continuation, Known, KeyedOptunaSearch, TrialSeededTPE,
                                                   journal_path, new_study, open_journal, study_name)

    def key_of(params):
        return f"key-{params['train.lr']:.8g}"

    space = OptunaSearch.convert_search_space({"train.lr": tune.loguniform(1e-4, 1e-2)})
    name = study_name("tiny", "abc123", "20260101T000000-a1b2c3")
    assert name == "tiny/abc123/20260101T000000-a1b2c3"
    storage = open_journal(tmp_path, "abc123", "r1")
    replay = Known("replayed-key", {"train.lr": 0.005})
    sampler = TrialSeededTPE(7)
    new_study(storage, name, "maximize", space, Continuation([], [replay], 3), sampler)
    searcher = KeyedOptunaSearch(space=space, metric="val_acc", mode="max", sampler=sampler, study_name=name,
                                 storage=storage, key_of=key_of)
    for i in range(3):
        assert searcher.suggest(f"t{i}") is not None
        searcher.on_trial_complete(f"t{i}", {"val_acc": 0.1 * i, "training_iteration": 1})
    fresh = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(
        str(journal_path(tmp_path, "abc123"))))
    [summary] = fresh.get_all_studies()
    assert summary.study_name == name
    trials = fresh.get_all_trials(fresh.get_study_id_from_name(name))
    assert len(trials) == 3 and all(t.state.name == "COMPLETE" for t in trials)
    assert trials[0].user_attrs["trial_key"] == "replayed-key" and trials[0].params == {"train.lr": 0.005}
    for t in trials[1:]:
        assert t.user_attrs["trial_key"] == key_of(t.params)
    searcher.save(str(tmp_path / "searcher.pkl"))  # Ray's experiment checkpoint: key_of is not pickled
    assert searcher._key_of is key_of


@pytest.mark.slow
def test_optuna_studies_are_named_after_the_sweep_and_join_the_parquet_rows(tmp_path, shared_ray):
    """train_search --smoke (one study of 4 samples), then --resume (nothing left to run: a new study
    of the finished trials): each journal study is train_search/<study key>/<run id>, and every Optuna
    trial's trial_key user attribute is a trial key of the Parquet rows, all of them."""
    import optuna

    from lowbit_sweeps.launch.optuna_state import JOURNAL_DIR

    args = [ROOT / "sweeps" / "train_search.py", "--smoke", "--max-concurrent", "1", "--results", tmp_path / "res"]
    for extra in ([], ["--resume"]):
        res = run_sweep(*args, *extra, timeout=600, ray=shared_ray)
        assert res.returncode == 0, res.stderr[-3000:]
    folder = tmp_path / "res" / "train_search"
    rows = pd.read_parquet(folder, columns=["trial_key", "study", "run_id"])
    runs = [r["run_id"] for r in json.loads((folder / "_sweep.json").read_text())["runs"]]
    [study_key] = set(rows.study)
    [journal] = (folder / JOURNAL_DIR).glob("*.log")
    assert journal.stem == study_key
    storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(journal)))
    names = [s.study_name for s in sorted(storage.get_all_studies(), key=lambda s: s._study_id)]
    assert names == [f"train_search/{study_key}/{run}" for run in runs]
    for name in names:
        trials = storage.get_all_trials(storage.get_study_id_from_name(name))
        keys = [t.user_attrs.get("trial_key") for t in trials]
        assert len(keys) == 4 and set(keys) == set(rows.trial_key), name
