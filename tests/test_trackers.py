"""Experiment trackers (``--log mlflow|tensorboard|wandb``, launch/trackers.py) through the real CLI:
one run of a two-trial probe sweep logs to all three at once (offline defaults, under the results
folder); each tracker is read back with its own reader -- MLflow's client on the SQLite store,
TensorBoard's event reader, the W&B offline run's transaction log -- and compared with the Parquet
rows: one tracker run per trial, named and tagged with the trial key and sweep, the config, and every
numeric metric at every step. Also: a missing package or an unknown tracker is one line naming what to
install (exit 2, nothing written), and the W&B mode follows the login.
"""
from __future__ import annotations

import json
import math
import os
import struct
import subprocess
import sys

import pandas as pd
import pytest

from conftest import ROOT, run_sweep
from lowbit_sweeps.launch.trackers import TRACKERS, check_trackers, view_result, wandb_mode
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
def logged(tmp_path_factory, shared_ray):
    """(sweep folder, Parquet rows) of one run with --log mlflow --log tensorboard --log wandb."""
    tmp = tmp_path_factory.mktemp("trackers")
    sweep_file = tmp / "tiny_track.py"
    sweep_file.write_text(SWEEP_TEXT)
    env = {"MLFLOW_TRACKING_URI": "", "WANDB_MODE": "", "WANDB_API_KEY": "", "NETRC": str(tmp / "no-netrc")}
    res = run_sweep(sweep_file, "--results", tmp / "res", "--log", "mlflow", "--log", "tensorboard",
                    "--log", "wandb", env=env, timeout=600, ray=shared_ray)
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
    """Read back as the README says, with MLflow's own client on the SQLite file (no opt-in variable:
    MLflow 3 reads file stores only with MLFLOW_ALLOW_FILE_STORE=true)."""
    from mlflow import MlflowClient

    from lowbit_sweeps.launch.trackers import mlflow_default_uri

    folder, rows = logged
    monkeypatch.delenv("MLFLOW_ALLOW_FILE_STORE", raising=False)
    uri = f"sqlite:///{(folder / '_mlflow.db').resolve()}"
    assert mlflow_default_uri(folder) == uri and (folder / "_mlflow.db").is_file()
    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name("tiny_track")
    assert exp.artifact_location == (folder / "_mlflow_artifacts").resolve().as_uri()
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
    assert {p.name for p in folder.iterdir() if not p.name.startswith("part-")} >= {"_mlflow.db", "_tensorboard",
                                                                                   "_wandb"}


@pytest.mark.parametrize("name", list(TRACKERS))
def test_missing_package_is_one_line_naming_the_extra(name, tmp_path):
    module = TRACKERS[name].module
    code = (f"import sys; sys.modules[{module!r}] = None; sys.path.insert(0, {str(ROOT)!r}); "
            "from lowbit_sweeps.launch.sweep import main; sys.exit(main(sys.argv[1:]))")
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


# ---------------------------------------------------------------- a tracker never takes the sweep down
class FailingLogger:
    """A Ray logger callback stand-in whose ``log_trial_result`` raises from call ``fail_at`` on
    (a tracking server that died mid-run); records every call it gets."""

    def __init__(self, fail_at: int):
        self.fail_at, self.calls = fail_at, []

    def setup(self, **info):
        self.calls.append("setup")

    def log_trial_start(self, trial):
        self.calls.append("start")

    def log_trial_result(self, iteration, trial, result):
        self.calls.append("result")
        if self.calls.count("result") >= self.fail_at:
            raise ConnectionError("HTTPConnectionPool(host='127.0.0.1', port=5000): Max retries exceeded\nmore text")

    def log_trial_end(self, trial, failed=False):
        self.calls.append("end")

    def on_experiment_end(self, trials, **info):
        self.calls.append("experiment_end")


def test_a_tracker_that_raises_is_one_warning_and_is_dropped(tmp_path):
    import io

    from lowbit_sweeps.launch.trackers import TrackerForwarder

    logger, stream = FailingLogger(fail_at=3), io.StringIO()
    fwd = TrackerForwarder(logger, lambda key: tmp_path, "s", "run1", METRICS, name="mlflow", stream=stream)
    trial = type("T", (), {"trial_id": "t0"})()
    fwd.setup()
    for step in range(6):
        fwd.row_added(trial, "k", {"step": step, "loss": 1.0, "cfg.seed": 0})
    fwd.trial_ended(trial, failed=False)
    fwd.experiment_ended([trial])
    # the third result raised: nothing after it reached the logger, nothing was raised to the caller
    assert logger.calls == ["setup", "start", "result", "result", "result"]
    assert fwd.dropped
    assert stream.getvalue() == (
        "warning: --log mlflow: logging a result failed (ConnectionError: HTTPConnectionPool(host='127.0.0.1', "
        "port=5000): Max retries exceeded); no more logging to mlflow in this run, the sweep goes on (Parquet "
        "keeps every row)\n")


def test_every_parquet_row_is_kept_when_a_tracker_fails_after_n_results(tmp_path, capsys):
    """Through the Parquet callback with a real writer: 2 trials x 4 steps, the tracker raises at its
    3rd result; every row and both statuses are on disk, and the other tracker got everything."""
    from test_driver_faults import fake_trials, make_callback, report

    from lowbit_sweeps.launch.trackers import TrackerForwarder
    from lowbit_core.results import latest_status

    bad, good = FailingLogger(fail_at=3), FailingLogger(fail_at=10 ** 9)
    listeners = [TrackerForwarder(lg, lambda key: tmp_path, "tiny_driver", "run1", METRICS, name=n)
                 for lg, n in ((bad, "mlflow"), (good, "tensorboard"))]
    cb, writer = make_callback(tmp_path / "res", listeners)
    cb.setup()
    trials = fake_trials()
    for trial in trials:
        cb.on_trial_start(0, [], trial)
        for step in range(4):
            report(cb, trial, step)
        cb.on_trial_complete(4, [], trial)
    cb.on_experiment_end(trials)
    writer.close()
    rows = pd.read_parquet(tmp_path / "res")
    assert len(rows) == 8 and sorted(rows.groupby("trial_key").step.apply(sorted).tolist()) == [[0, 1, 2, 3]] * 2
    assert {r["status"] for r in latest_status(tmp_path / "res").values()} == {"TERMINATED"}
    assert bad.calls.count("result") == 3 and "end" not in bad.calls
    assert good.calls.count("result") == 8 and good.calls.count("end") == 2 and good.calls[-1] == "experiment_end"
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("warning: --log mlflow: logging a result failed (ConnectionError")


def closed_port() -> int:
    """A local TCP port nothing listens on (outside the ephemeral range, so no other process is handed it)."""
    from conftest import free_ports

    return free_ports()[0]


def cli_in_process(argv, capsys) -> tuple[int, str, str]:
    from lowbit_sweeps.launch.sweep import main

    code = main([str(a) for a in argv])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_a_dead_mlflow_server_is_one_line_before_ray_starts(tmp_path, monkeypatch, capsys):
    import time

    sweep_file = tmp_path / "tiny_track.py"
    sweep_file.write_text(SWEEP_TEXT)
    port = closed_port()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://127.0.0.1:{port}")
    t0 = time.monotonic()
    code, out, err = cli_in_process([sweep_file, "--results", tmp_path / "res", "--log", "mlflow"], capsys)
    took = time.monotonic() - t0
    assert code == 2, err
    assert err.strip() == (f"error: --log mlflow: no MLflow server answers at MLFLOW_TRACKING_URI=http://127.0.0.1:"
                           f"{port} (Connection refused, 3 s timeout); start it, or unset MLFLOW_TRACKING_URI to log "
                           "to <results>/<sweep>/_mlflow.db")
    assert not (tmp_path / "res").exists() and took < 30
    assert "ray" not in sys.modules or not sys.modules["ray"].is_initialized()


def test_a_server_that_does_not_answer_in_time_is_refused(tmp_path):
    """A listener that accepts and never answers: the check gives up after its timeout."""
    import socket
    import time

    from lowbit_sweeps.launch.trackers import check_reachable

    with socket.socket() as srv:
        srv.bind(("127.0.0.1", 0))
        srv.listen()
        uri = f"http://127.0.0.1:{srv.getsockname()[1]}"
        t0 = time.monotonic()
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("MLFLOW_TRACKING_URI", uri)
            with pytest.raises(ConfigError, match=f"no MLflow server answers at MLFLOW_TRACKING_URI={uri} "
                                                  r"\(timed out, 0.5 s timeout\)"):
                check_reachable(["mlflow"], timeout=0.5)
        assert time.monotonic() - t0 < 5


def test_wandb_online_without_a_key_is_one_line_before_ray_starts(tmp_path, monkeypatch, capsys):
    sweep_file = tmp_path / "tiny_track.py"
    sweep_file.write_text(SWEEP_TEXT)
    monkeypatch.setenv("WANDB_MODE", "online")
    monkeypatch.setenv("WANDB_API_KEY", "")
    monkeypatch.setenv("NETRC", str(tmp_path / "no-netrc"))
    code, out, err = cli_in_process([sweep_file, "--results", tmp_path / "res", "--log", "wandb"], capsys)
    assert code == 2, err
    assert err.strip() == ("error: --log wandb: WANDB_MODE=online needs a W&B API key, and none is set "
                           "($WANDB_API_KEY or `wandb login`); log in, or set WANDB_MODE=offline to keep offline "
                           "runs under the results folder")
    assert not (tmp_path / "res").exists()  # in particular no _sweep.json


def test_wandb_online_with_a_key_but_no_server_is_refused(monkeypatch):
    from lowbit_sweeps.launch.trackers import check_reachable

    port = closed_port()
    monkeypatch.setenv("WANDB_MODE", "online")
    monkeypatch.setenv("WANDB_API_KEY", "k" * 40)
    monkeypatch.setenv("WANDB_BASE_URL", f"http://127.0.0.1:{port}")
    with pytest.raises(ConfigError, match=f"the W&B server http://127.0.0.1:{port} does not answer "
                                          r"\(Connection refused, 3 s timeout\)"):
        check_reachable(["wandb"])
    monkeypatch.setenv("WANDB_MODE", "offline")
    check_reachable(["wandb"])  # offline: nothing to reach


class FlakyMLflow:
    """A local HTTP server that answers ``GET /health`` (so the check before Ray passes) and fails
    every MLflow API request with HTTP 500: a tracking server that broke right after the check."""

    def __enter__(self):
        import http.server
        import threading

        class Handler(http.server.BaseHTTPRequestHandler):
            def _answer(self):
                ok = self.path.rstrip("/").endswith("/health")
                self.send_response(200 if ok else 500)
                self.end_headers()
                self.wfile.write(b"OK" if ok else b"internal error")

            do_GET = do_POST = do_PATCH = do_DELETE = _answer

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()


@pytest.mark.slow
def test_an_mlflow_server_failing_after_the_check_is_one_warning_and_the_sweep_completes(tmp_path, shared_ray):
    sweep_file = tmp_path / "tiny_track.py"
    sweep_file.write_text(SWEEP_TEXT)
    with FlakyMLflow() as uri:
        res = run_sweep(sweep_file, "--results", tmp_path / "res", "--log", "mlflow",
                        env={"MLFLOW_TRACKING_URI": uri}, timeout=600, ray=shared_ray)
    assert res.returncode == 0, res.stderr[-3000:]
    warnings = [ln for ln in res.stderr.splitlines() if ln.startswith("warning: ")]
    assert len(warnings) == 1 and warnings[0].startswith("warning: --log mlflow: setup failed ("), res.stderr[-3000:]
    assert "Traceback" not in res.stderr
    rows = pd.read_parquet(tmp_path / "res" / "tiny_track")
    assert len(rows) == 8 and not rows.duplicated(["trial_key", "step"]).any()
    assert "all 2 trials finished" in res.stdout


@pytest.mark.parametrize("uri, allow", [("", None), ("sqlite:////tmp/x.db", None), ("file:///tmp/mlruns", "true"),
                                        ("/tmp/mlruns", "true"), ("http://127.0.0.1:5000", None)])
def test_a_file_store_uri_is_opted_in_and_the_default_needs_nothing(monkeypatch, uri, allow):
    """MLflow 3 refuses to open a file store without MLFLOW_ALLOW_FILE_STORE=true: a file:// URI or a
    plain path the user set gets it (unless set); the default SQLite store and other URIs do not."""
    from lowbit_sweeps.launch.trackers import MLFLOW_HTTP_DEFAULTS, prepare_environment

    for key in ("MLFLOW_ALLOW_FILE_STORE", "MLFLOW_TRACKING_URI", *MLFLOW_HTTP_DEFAULTS):
        monkeypatch.setenv(key, "")
        monkeypatch.delenv(key)
    if uri:
        monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    prepare_environment(["mlflow"])
    assert os.environ.get("MLFLOW_ALLOW_FILE_STORE") == allow
    assert ("MLFLOW_HTTP_REQUEST_TIMEOUT" in os.environ) == bool(uri)
