"""A metric reported as something its declared column cannot hold (issue 27 §1).

A plug-in family that reported ``loss.detach().numpy()`` (a 0-d array) or a string for a declared
float metric used to crash the driver in the Parquet writer: a long traceback, no failure summary,
the other trials never ran and the buffered rows of finished ones were lost. Now:

- the trial converts what it reports to the declared types (:mod:`lowbit_core.metric_values`):
  numpy scalars, 0-d arrays and 0-d tensors are numbers; anything else fails that trial with one
  line naming the metric, its declared type and the value's type;
- the driver's writer never loses another trial's rows over one bad row: ``add`` refuses it, a part
  whose table cannot be built is written row by row without it, and the row's trial is failed with
  a one-line reason (:class:`launch.callbacks.TrialEnds`).

Fast tests cover both sides without Ray; the slow one runs a plug-in family through the real CLI on
the grid, Optuna and ASHA paths.
"""
from __future__ import annotations

import io
import pickle
import textwrap
from datetime import datetime, timezone
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
import torch

from conftest import run_sweep
from lowbit_core.families import Family
from lowbit_core.metric_values import MetricTypeError, coerce_metric, coerce_metrics
from lowbit_core.results import ResultsWriter, data_parts, finished_trials, latest_status, results_schema
from lowbit_core.trainables import checked_metrics


# ---------------------------------------------------------------- coercion in the trial
@pytest.mark.parametrize("declared, value, expected", [
    ("float", np.asarray(0.25, dtype=np.float32), 0.25),           # loss.detach().numpy()
    ("float", np.asarray(0.1), 0.1),
    ("float", np.float32(0.1), float(np.float32(0.1))),
    ("float", np.float64(0.1), 0.1),
    ("float", torch.tensor(0.5), 0.5),                             # loss.detach()
    ("float", torch.tensor(0.5, requires_grad=True) * 2, 1.0),     # a 0-d tensor with a graph
    ("float", 3, 3.0),
    ("float", True, 1.0),
    ("int", np.int64(7), 7),
    ("int", np.asarray(7), 7),
    ("int", torch.tensor(7), 7),
    ("int", 7.0, 7),
    ("str", np.str_("fp"), "fp"),
    ("list[float]", np.arange(3, dtype=np.float32), [0.0, 1.0, 2.0]),
    ("list[float]", torch.arange(3.0), [0.0, 1.0, 2.0]),
    ("list[float]", (1, None, np.float32(0.5)), [1.0, None, 0.5]),
    ("float", None, None),
])
def test_numbers_in_any_form_become_python_values_of_the_declared_type(declared, value, expected):
    got = coerce_metric("m", declared, value)
    assert got == expected and type(got) is type(expected)
    if isinstance(got, list):
        assert all(x is None or type(x) is float for x in got)


def test_non_finite_floats_stay_floats():
    """NaN and inf pass as floats: the driver's NonFiniteStopper stops such a trial."""
    assert np.isnan(coerce_metric("loss", "float", np.asarray(np.nan, dtype=np.float32)))
    assert coerce_metric("loss", "float", torch.tensor(float("inf"))) == float("inf")


@pytest.mark.parametrize("declared, value, message", [
    ("float", "abc", "metric 'loss' must be a float (declared), got str 'abc'"),
    ("float", [0.5], "metric 'loss' must be a float (declared), got list [0.5]"),
    ("float", np.arange(3.0), "metric 'loss' must be a float (declared), got numpy.ndarray of shape (3,) (float64)"),
    ("float", torch.ones(1), "metric 'loss' must be a float (declared), got torch.Tensor of shape (1,) (torch.float32)"),
    ("float", {"a": 1}, "metric 'loss' must be a float (declared), got dict {'a': 1}"),
    ("int", 2.5, "metric 'loss' must be an int (declared), got float 2.5"),
    ("int", float("nan"), "metric 'loss' must be an int (declared), got float nan"),
    ("str", 3, "metric 'loss' must be a str (declared), got int 3"),
    ("list[float]", 0.5, "metric 'loss' must be a list[float] (declared), got float 0.5"),
    ("list[float]", [[1.0]], "metric 'loss' must be a list[float] (declared), got list [[1.0]]"),
    ("list[float]", ["a"], "metric 'loss' must be a list[float] (declared), got list ['a']"),
    ("list[float]", np.zeros((2, 2)), "metric 'loss' must be a list[float] (declared), got numpy.ndarray of shape (2, 2) (float64)"),
])
def test_anything_else_is_refused_in_one_line_naming_the_metric_and_the_type(declared, value, message):
    with pytest.raises(MetricTypeError) as info:
        coerce_metric("loss", declared, value)
    assert str(info.value) == message
    assert info.value.name == "loss" and info.value.declared == declared
    again = pickle.loads(pickle.dumps(info.value))  # it travels from the trial to the driver
    assert str(again) == message and again.name == "loss"


def test_a_long_value_is_cut_to_one_short_line():
    with pytest.raises(MetricTypeError) as info:
        coerce_metric("loss", "float", "line one\nline two " + "x" * 500)
    text = str(info.value)
    assert "\n" not in text and len(text) < 140 and text.endswith("...")


def test_coerce_metrics_leaves_undeclared_keys_and_makes_step_an_int():
    out = coerce_metrics({"loss": "float"}, {"loss": np.asarray(1.5), "step": np.int64(3), "_key": "k"})
    assert out == {"loss": 1.5, "step": 3, "_key": "k"} and type(out["step"]) is int


def _family(run=None) -> Family:
    from dataclasses import dataclass

    @dataclass(frozen=True)
    class Cfg:
        seed: int = 0

    return Family("bad_metric_unit", Cfg, run or (lambda cfg, report, device: None),
                  {"epoch": "int", "loss": "float"}, path_keys=())


def test_the_trials_report_wrapper_names_the_family_and_the_reporting_line():
    fam = _family()
    assert checked_metrics(fam, {"step": 1, "epoch": np.int64(1), "loss": np.asarray(0.5)}) == \
        {"step": 1, "epoch": 1, "loss": 0.5}
    with pytest.raises(MetricTypeError) as info:
        checked_metrics(fam, {"step": 1, "epoch": 1, "loss": "abc"})  # this line is named
    text = str(info.value)
    assert text.startswith("metric 'loss' must be a float (declared), got str 'abc' (family bad_metric_unit, "
                           "reported at test_bad_metric.py:")
    assert "in test_the_trials_report_wrapper_names_the_family_and_the_reporting_line)" in text
    assert "\n" not in text
    with pytest.raises(KeyError, match="undeclared metrics"):
        checked_metrics(fam, {"step": 1, "acc": 0.5})


# ---------------------------------------------------------------- the driver's writer
def _row(trial: str, step: int, loss, fam: Family) -> dict:
    return {"sweep": "s", "family": fam.name, "run_id": "run1", "trial_id": f"id-{trial}", "trial_key": trial,
            "study": "", "step": step, "seed": 0, "time": datetime.now(timezone.utc), "epoch": step, "loss": loss,
            "cfg.seed": 0}


def _status(trial: str, step: int) -> dict:
    return {"trial_key": trial, "trial_id": f"id-{trial}", "run_id": "run1", "study": "", "status": "TERMINATED",
            "error": "", "time": datetime.now(timezone.utc), "step": step}


def _writer(tmp_path, fam: Family) -> ResultsWriter:
    return ResultsWriter(tmp_path, results_schema(fam.config_cls, fam.metrics), "run1", flush_rows=10_000,
                         flush_seconds=3600)


def test_add_refuses_a_row_that_does_not_fit_and_keeps_the_others(tmp_path):
    fam = _family()
    w = _writer(tmp_path, fam)
    assert w.add(_row("a", 1, 0.5, fam))
    assert not w.add(_row("b", 1, np.asarray([0.5, 0.6]), fam))   # a 1-d array in a float column
    assert w.add(_row("b", 2, np.float32(0.25), fam))               # Arrow takes a numpy scalar
    assert w.add(_row("c", 1, 0.125, fam))
    w.close()
    assert [(r.trial_id, r.trial_key, r.step) for r in w.rejected] == [("id-b", "b", 1)]
    assert w.rejected[0].reason == ("results row of step 1 not written: column 'loss' (double) cannot hold "
                                    "numpy.ndarray of shape (2,) (float64)")
    df = pd.read_parquet(tmp_path)
    assert sorted(zip(df.trial_key, df.step)) == [("a", 1), ("b", 2), ("c", 1)]
    assert w.rows_of("b") == 1 and w.rows_written == 3


def test_a_part_that_cannot_be_built_is_written_row_by_row_without_the_bad_row(tmp_path, monkeypatch):
    """Defence in depth: a bad row that got into the buffer (here past a disabled ``add`` check)
    costs only itself. Every other row is written, the bad row's trial is reported in ``rejected``,
    its buffered TERMINATED status becomes ERROR with the reason and counts the rows it has."""
    fam = _family()
    w = _writer(tmp_path, fam)
    with monkeypatch.context() as m:
        m.setattr(w, "row_problem", lambda row: None)
        for step in (1, 2, 3):
            for trial in ("a", "b", "c", "d"):
                value = "abc" if (trial, step) == ("c", 2) else np.float32(0.1 * step) if trial == "d" else 0.1 * step
                assert w.add(_row(trial, step, value, fam))
        for trial in ("a", "b", "c", "d"):
            w.trial_ended(_status(trial, 3))
    w.flush()  # the writer's own check is back for the fallback
    assert [(r.trial_key, r.step) for r in w.rejected] == [("c", 2)]
    assert "column 'loss' (double) cannot hold str 'abc'" in w.rejected[0].reason
    df = pd.read_parquet(tmp_path)
    assert len(df) == 11 and w.rows_written == 11
    assert df.groupby("trial_key").size().to_dict() == {"a": 3, "b": 3, "c": 2, "d": 3}
    status = latest_status(tmp_path)
    assert {k: r["status"] for k, r in status.items()} == {"a": "TERMINATED", "b": "TERMINATED", "c": "ERROR",
                                                             "d": "TERMINATED"}
    assert status["c"]["rows"] == 2 and "step 2 not written: column 'loss'" in status["c"]["error"]
    assert finished_trials(tmp_path) == {"a", "b", "d"}
    assert len(data_parts(tmp_path)) == 1 and pq.read_table(data_parts(tmp_path)[0]).num_rows == 11
    assert ("c", 2) not in w.seen and w.rows_of("c") == 2


def test_the_callback_fails_only_the_trial_whose_row_was_refused(tmp_path):
    """A value the trial did not convert reaches the driver: the row is refused, its trial is stopped
    and ends as ERROR with the one-line reason (status row and progress summary), the other trial's
    rows and status are written."""
    from lowbit_sweeps.launch.callbacks import NonFiniteStopper, ParquetCallback, Progress, ProgressCallback, TrialEnds
    from lowbit_core.families import get_family
    from lowbit_core.sweep import Sweep, grid, plan

    fam = get_family("probe")
    sweep = Sweep(name="tiny_bad", family="probe", metric="loss", base={"model.hidden": (8,)},
                  space={"model.kind": grid("fp", "binary")}, seeds=(0,))
    writer = ResultsWriter(tmp_path, results_schema(fam.config_cls, fam.metrics), "run1", flush_seconds=3600)
    stopper = NonFiniteStopper(["loss"])
    ends = TrialEnds(fam, stopper)
    cb = ParquetCallback(writer, fam, sweep.name, {"git_sha": "abc"}, ends)
    progress = Progress(total=2, metric="loss", mode="min")
    pcb = ProgressCallback(progress, fam, ends, stream=io.StringIO())
    good, bad = [SimpleNamespace(trial_id=f"t{i}", config={"base": t.ray_base, "study": ""}, last_result={})
                 for i, t in enumerate(plan(sweep).trials)]
    for step in (0, 1, 2):
        for trial in (good, bad):
            result = {"loss": "abc" if (trial is bad and step == 1) else np.asarray(0.5 / (step + 1)), "step": step}
            if trial is bad and step == 2:
                assert stopper(bad.trial_id, result)  # stopped at its next result
                continue
            trial.last_result = result
            cb.on_trial_result(step, [], trial, result)
    for trial in (good, bad):
        cb.on_trial_complete(0, [], trial)
        pcb.on_trial_complete(0, [], trial)
    cb.on_experiment_end([])
    df = pd.read_parquet(tmp_path)
    keys = dict(df[["trial_id", "trial_key"]].drop_duplicates().itertuples(index=False))
    assert df.groupby("trial_id").size().to_dict() == {good.trial_id: 3, bad.trial_id: 1}
    assert df["loss"].dtype == np.float64  # the 0-d arrays the fake trials reported are numbers
    status = latest_status(tmp_path)
    assert status[keys[good.trial_id]]["status"] == "TERMINATED"
    row = status[keys[bad.trial_id]]
    assert row["status"] == "ERROR" and row["rows"] == 1
    assert row["error"] == "results row of step 1 not written: column 'loss' (double) cannot hold str 'abc'"
    assert progress.failed == 1 and progress.done == 1 and progress.failures[0][1] == row["error"]


# ---------------------------------------------------------------- through the real CLI
PLUGIN = '''
import os
from dataclasses import dataclass

import numpy as np

from lowbit_core.families import Family, register_family

MARKS = {marks!r}


@dataclass(frozen=True)
class BadConfig:
    x: float = 0.5
    epochs: int = {epochs}
    seed: int = 0


def first_to_get_here() -> bool:
    try:
        os.close(os.open(os.path.join(MARKS, "string"), os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        return True
    except FileExistsError:
        return False


def run_bad(cfg, report, device):
    """Reports loss.detach().numpy() (a 0-d array) and a numpy scalar; the first trial to reach epoch 2
    reports its loss as a string there."""
    for epoch in range(1, cfg.epochs + 1):
        loss = (cfg.x - 0.3) ** 2 + 0.1 / epoch
        value = np.asarray(loss, dtype=np.float32)
        if epoch == 2 and first_to_get_here():
            value = "abc"
        report({{"step": epoch, "epoch": epoch, "loss": value, "val_loss": np.float32(loss)}})


register_family(Family("bad_metric", BadConfig, run_bad, {{"epoch": "int", "loss": "float", "val_loss": "float"}},
                       epoch_key="epochs", path_keys=()))
'''

EPOCHS = 3
SPACES = {
    "grid": ('space={"x": grid(0.1, 0.2, 0.4, 0.5, 0.7)}', 5),
    "optuna": ('space={"x": Uniform(0.0, 1.0)}, search=Optuna(num_samples=5)', 5),
    "asha": ('space={"x": grid(0.1, 0.2, 0.4, 0.5, 0.7)}, scheduler=ASHA(grace_period=1, reduction_factor=2)', 5),
}


@pytest.mark.slow
@pytest.mark.parametrize("path", sorted(SPACES))
def test_a_plugin_reporting_a_string_fails_one_trial_and_loses_no_row(path, tmp_path, shared_ray):
    marks = tmp_path / "marks"
    marks.mkdir()
    (tmp_path / "bad_plugin.py").write_text(PLUGIN.format(marks=str(marks), epochs=EPOCHS))
    space, n_trials = SPACES[path]
    (tmp_path / "bad_sweep.py").write_text(textwrap.dedent(f'''
        import bad_plugin  # noqa: F401

        from lowbit_core.sweep import ASHA, Optuna, Sweep, Uniform, grid

        SWEEP = Sweep(name="bad_{path}", family="bad_metric", {space}, metric="val_loss", mode="min", seeds=(0,))
    '''))
    results = tmp_path / "results"
    proc = run_sweep(tmp_path / "bad_sweep.py", "--results", results, ray=shared_ray, cwd=tmp_path, timeout=240)
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr and "Traceback" not in proc.stdout, proc.stderr[-3000:]
    summary = [ln for ln in (proc.stdout + proc.stderr).splitlines() if "MetricTypeError" in ln]
    assert len(summary) == 1, proc.stdout + proc.stderr
    assert ("metric 'loss' must be a float (declared), got str 'abc' (family bad_metric, reported at "
            "bad_plugin.py:") in summary[0]
    assert "1 of 5 trials failed" in proc.stdout + proc.stderr

    folder = results / f"bad_{path}"
    status = latest_status(folder)
    assert len(status) == n_trials
    failed = [k for k, r in status.items() if r["status"] == "ERROR"]
    assert len(failed) == 1 and "metric 'loss' must be a float" in status[failed[0]]["error"]
    assert all(r["status"] in ("TERMINATED", "STOPPED_EARLY") for k, r in status.items() if k not in failed)

    df = pd.read_parquet(folder)
    per_trial = df.groupby("trial_key").size().to_dict()
    assert per_trial.get(failed[0], 0) == 1  # its epoch 1, reported before the string
    for key, row in status.items():
        if key in failed:
            continue
        assert per_trial[key] == row["rows"] == row["step"]  # every reported epoch is on disk
        if row["status"] == "TERMINATED":
            assert per_trial[key] == EPOCHS
    if path != "asha":
        assert len(df) == (n_trials - 1) * EPOCHS + 1
    assert df["loss"].dtype == np.float64 and df["loss"].notna().all()
