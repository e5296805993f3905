"""Experiment trackers (``--log mlflow|tensorboard|wandb``, launch/trackers.py) through the real CLI:
one run of a two-trial probe sweep logs to all three at once (offline defaults, under the results
folder); each tracker is read back with its own reader -- MLflow's client on the file store,
TensorBoard's event reader, the W&B offline run's transaction log -- and compared with the Parquet
rows: one tracker run per trial, named and tagged with the trial key and sweep, the config, and every
numeric metric at every step. Also: a missing package or an unknown tracker is one line naming what to
install (exit 2, nothing written), and the W&B mode follows the login.
"""
from __future__ import annotations

import json
import math
import struct
import subprocess
import sys

import pandas as pd
import pytest

from conftest import ROOT, run_sweep
from launch.trackers import TRACKERS, check_trackers, view_result, wandb_mode
from lowbit_core.config import ConfigError
from lowbit_core.families import get_family

SWEEP_TEXT = '''"""Tiny probe sweep for the tracker tests: 2 trials of 4 reported steps."""
from lowbit_core.sweep import Sweep, grid

SWEEP = Sweep(name="tiny_track", family="probe", metric="loss",
              base={"model.hidden": (8,), "model.pretrain_steps": 5, "scan.lr_step": 0.05, "multi.steps": 3,
                    "multi.report_every": 1},
              space={"model.kind": grid("fp", "binary")}, seeds=(0,))
'''
METRICS = get_family("probe").metrics


@pytest.fixture(scope="module")
def logged(tmp_path_factory):
    """(sweep folder, Parquet rows) of one run with --log mlflow --log tensorboard --log wandb."""
    tmp = tmp_path_factory.mktemp("trackers")
    sweep_file = tmp / "tiny_track.py"
    sweep_file.write_text(SWEEP_TEXT)
    env = {"MLFLOW_TRACKING_URI": "", "WANDB_MODE": "", "WANDB_API_KEY": "", "NETRC": str(tmp / "no-netrc")}
    res = run_sweep(sweep_file, "--results", tmp / "res", "--log", "mlflow", "--log", "tensorboard",
                    "--log", "wandb", env=env, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    folder = tmp / "res" / "tiny_track"
    return folder, pd.read_parquet(folder)


def expected(rows: pd.DataFrame) -> dict[str, dict[int, dict[str, float]]]:
    """trial key -> step -> the numeric metrics a tracker gets for that Parquet row."""
    out: dict[str, dict[int, dict[str, float]]] = {}
    for row in rows.to_dict("records"):
        clean = {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in row.items()}
        got = view_result(clean, METRICS)
        out.setdefault(row["trial_key"], {})[int(row["step"])] = {k: v for k, v in got.items()
                                                                  if k not in ("step", "training_iteration")}
    return out


def assert_same(found: dict, want: dict, rel: float = 0.0) -> None:
    assert found.keys() == want.keys()
    for key in want:
        assert found[key].keys() == want[key].keys(), key
        for step, metrics in want[key].items():
            assert set(metrics) <= set(found[key][step]), (key, step)
            for name, value in metrics.items():
                assert found[key][step][name] == pytest.approx(value, rel=rel, abs=1e-12), (key, step, name)


@pytest.mark.slow
def test_mlflow_runs_match_the_parquet_rows(logged, monkeypatch):
    from mlflow import MlflowClient

    folder, rows = logged
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # MLflow 3 reads file stores only when asked to
    client = MlflowClient(tracking_uri=(folder / "_mlflow").as_uri())
    exp = client.get_experiment_by_name("tiny_track")
    runs = client.search_runs([exp.experiment_id])
    assert len(runs) == rows.trial_key.nunique() == 2
    found = {}
    for run in runs:
        key = run.data.tags["trial_key"]
        assert run.data.tags["sweep"] == "tiny_track" and run.info.run_name == key
        assert run.data.tags["lowbit_run_id"] == rows.run_id.iloc[0] and run.info.status == "FINISHED"
        cfg = rows[rows.trial_key == key].iloc[0]
        assert run.data.params["trial_key"] == key
        assert run.data.params["model.kind"] == cfg["cfg.model.kind"]
        assert run.data.params["multi.steps"] == str(cfg["cfg.multi.steps"])
        steps: dict[int, dict] = {}
        for name in run.data.metrics:
            for m in client.get_metric_history(run.info.run_id, name):
                assert m.key not in steps.setdefault(m.step, {})  # each (step, metric) logged once
                steps[m.step][m.key] = m.value
        found[key] = steps
    assert_same(found, expected(rows))


@pytest.mark.slow
def test_tensorboard_events_match_the_parquet_rows(logged):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    folder, rows = logged
    found = {}
    for run_dir in sorted((folder / "_tensorboard").iterdir()):
        acc = EventAccumulator(str(run_dir), size_guidance={"scalars": 0})
        acc.Reload()
        steps: dict[int, dict] = {}
        for tag in acc.Tags()["scalars"]:
            for ev in acc.Scalars(tag):
                name = tag.removeprefix("ray/tune/")
                assert name not in steps.setdefault(ev.step, {})
                steps[ev.step][name] = ev.value
        found[run_dir.name] = steps  # the folder is the trial key
    assert_same(found, expected(rows), rel=1e-6)  # TensorBoard stores float32


def wandb_records(path):
    """The protobuf records of a W&B transaction log (``run-<id>.wandb``): a 7-byte header, then
    LevelDB log blocks of 32 KiB whose records are (crc32c, length, type) + data, FULL or split into
    FIRST/MIDDLE/LAST."""
    from wandb.proto import wandb_internal_pb2 as pb

    data = path.read_bytes()
    assert data[:4] == b":W&B"
    pos, block, pending, out = 7, 32768, b"", []
    while pos + 7 <= len(data):
        if block - pos % block < 7:  # a block's tail too short for a header is padding
            pos += block - pos % block
            continue
        _, length, kind = struct.unpack("<IHB", data[pos:pos + 7])
        chunk, pos = data[pos + 7:pos + 7 + length], pos + 7 + length
        if kind == 0:
            continue
        pending = chunk if kind in (1, 2) else pending + chunk
        if kind in (1, 4):
            rec = pb.Record()
            rec.ParseFromString(pending)
            out.append(rec)
    return out


@pytest.mark.slow
def test_wandb_offline_runs_match_the_parquet_rows(logged):
    folder, rows = logged
    run_dirs = sorted((folder / "_wandb" / "wandb").glob("offline-run-*"))
    assert len(run_dirs) == 2
    found = {}
    for run_dir in run_dirs:
        records = wandb_records(next(run_dir.glob("run-*.wandb")))
        run = next(r.run for r in records if r.WhichOneof("record_type") == "run")
        key = run.display_name
        assert list(run.tags) == ["tiny_track", key] and run.project == "tiny_track" and run.run_group == "tiny_track"
        config = {item.key or "/".join(item.nested_key): json.loads(item.value_json) for item in run.config.update}
        assert config["trial_key"] == key and config["sweep"] == "tiny_track"
        assert config["model.kind"] == rows[rows.trial_key == key]["cfg.model.kind"].iloc[0]
        steps: dict[int, dict] = {}
        for r in records:
            if r.WhichOneof("record_type") == "history":
                items = {i.key or "/".join(i.nested_key): json.loads(i.value_json) for i in r.history.item}
                assert r.history.step.num not in steps
                steps[r.history.step.num] = items
        found[key] = steps
    assert_same(found, expected(rows))


@pytest.mark.slow
def test_trackers_write_under_underscore_folders_only(logged):
    folder, rows = logged
    # Parquet readers skip the _ folders: the data is exactly the rows
    assert len(rows) == 8 and not rows.duplicated(["trial_key", "step"]).any()
    assert {p.name for p in folder.iterdir() if not p.name.startswith("part-")} >= {"_mlflow", "_tensorboard", "_wandb"}


@pytest.mark.parametrize("name", list(TRACKERS))
def test_missing_package_is_one_line_naming_the_extra(name, tmp_path):
    module = TRACKERS[name].module
    code = (f"import sys; sys.modules[{module!r}] = None; sys.path.insert(0, {str(ROOT)!r}); "
            "from launch.sweep import main; sys.exit(main(sys.argv[1:]))")
    res = subprocess.run([sys.executable, "-c", code, str(ROOT / "sweeps" / "vste_window.py"), "--smoke",
                          "--results", str(tmp_path / "res"), "--log", name], capture_output=True, text=True,
                         timeout=120, cwd=ROOT)
    assert res.returncode == 2, res.stderr
    assert res.stderr.strip() == (f"error: --log {name} needs the {module} package, which is not installed; "
                                  f"pip install 'lowbit-sweeps[{TRACKERS[name].extra}]'")
    assert not (tmp_path / "res").exists()


def test_unknown_tracker_and_repeats():
    with pytest.raises(ConfigError, match="--log 'neptune' is not a tracker; valid: mlflow, tensorboard, wandb"):
        check_trackers(["mlflow", "neptune"])
    assert check_trackers(["wandb", "mlflow", "wandb"]) == ["wandb", "mlflow"]


def test_wandb_is_offline_unless_logged_in(monkeypatch, tmp_path):
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.delenv("WANDB_BASE_URL", raising=False)
    monkeypatch.setenv("NETRC", str(tmp_path / "netrc"))
    assert wandb_mode() == "offline"
    (tmp_path / "netrc").write_text("machine api.wandb.ai\n  login user\n  password abc\n")
    assert wandb_mode() == "online"
    monkeypatch.setenv("WANDB_MODE", "disabled")
    assert wandb_mode() == "disabled"
    monkeypatch.delenv("WANDB_MODE")
    monkeypatch.setenv("NETRC", str(tmp_path / "none"))
    monkeypatch.setenv("WANDB_API_KEY", "k")
    assert wandb_mode() == "online"
