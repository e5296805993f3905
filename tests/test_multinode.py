"""A real two-node Ray cluster on this machine (``ray start --head`` + ``ray start --address``, each
with its own CPU, per-test ports, temp dir and auth token): a smoke sweep through the CLI with
``--address`` runs trials on both nodes and writes its results once, on the driver; a plug-in
estimator that only the sweep's folder on the head holds runs in trials on both nodes, imported from
the copy Ray shipped (runtime_env py_modules), not from the head's folder; the worker node
lost mid-sweep (its Ray processes killed with SIGKILL, by pid, while a trial runs there): the trials
are retried on the surviving node and every (trial, step) row is written exactly once, equal to an
uninterrupted run; a driver without the token is refused. And the default (Ray started by the CLI):
no dashboard or Ray Client server, token auth on; every listening socket is listed."""
from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import pandas as pd
import pytest

from conftest import ROOT, free_ports, run_sweep
from lowbit_core.sweep import load_sweep, plan
from test_faults import Driver, inject_env, kill_session, session_pids, sessions, statuses, wait_for  # noqa: F401

pytestmark = pytest.mark.slow  # real Ray processes killed and restarted: minutes

RAY = Path(sys.executable).with_name("ray")
SMOKE = ROOT / "sweeps" / "vste_window.py"


def smoke_expectation() -> tuple[int, int]:
    p = plan(load_sweep(SMOKE), "smoke")
    rows = 0
    for t in p.trials:
        m = t.config.multi
        rows += len(set(range(0, m.steps + 1, m.report_every)) | {m.steps})
    return p.n_trials, rows


class RayNode:
    """``ray start --block ...`` in its own session; stopped with SIGTERM (it stops its processes),
    then anything left in that session is killed by pid."""

    def __init__(self, args: list[str], env: dict, log: Path):
        self.log = log
        self.proc = subprocess.Popen([str(RAY), "start", "--block", *args], env=env, stdin=subprocess.DEVNULL,
                                     stdout=open(log, "w"), stderr=subprocess.STDOUT, start_new_session=True)

    def wait_started(self, timeout=90.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            text = self.log.read_text()
            if "Ray runtime started" in text:
                return
            if self.proc.poll() is not None:
                pytest.fail(f"ray start exited {self.proc.returncode}:\n{text[-3000:]}")
            time.sleep(0.2)
        pytest.fail(f"ray start did not come up:\n{self.log.read_text()[-3000:]}")

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        kill_session(self.proc.pid)


@pytest.fixture
def two_nodes(tmp_path):
    """Head (1 CPU) and a second node (1 CPU) on 127.0.0.1; yields (address, env with the token, the
    nodes' temp dir, [head, worker] RayNodes). Trials write ``tmp_path/marks/mark-<key>-<step>`` with
    their worker's pid."""
    temp = Path(tempfile.mkdtemp(prefix="lbr", dir="/tmp"))  # short: Ray's socket paths live below it
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    env.update(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=secrets.token_hex(32), RAY_USAGE_STATS_ENABLED="0")
    # the nodes' workers inherit the nodes' environment: trials sleep 0.4 s per report, so that the
    # second node's first worker (a few seconds to start) gets trials before the head's has run them all;
    # the head's GCS declares a silent node dead after 3 missed health checks 1 s apart (default 5 x 3 s)
    node_env = {**env, **inject_env(tmp_path / "marks", [{"action": "sleep", "seconds": 0.4}, {"action": "mark"}]),
                "RAY_health_check_period_ms": "1000", "RAY_health_check_failure_threshold": "3"}
    port, = free_ports()
    common = ["--node-ip-address", "127.0.0.1", "--num-cpus", "1", "--temp-dir", str(temp)]
    nodes = []
    try:
        nodes.append(RayNode(["--head", "--port", str(port), "--include-dashboard=false", *common], node_env,
                             tmp_path / "head.log"))
        nodes[0].wait_started()
        nodes.append(RayNode(["--address", f"127.0.0.1:{port}", *common], node_env, tmp_path / "worker.log"))
        nodes[1].wait_started()
        yield f"127.0.0.1:{port}", env, temp, nodes
    finally:
        for node in reversed(nodes):
            node.stop()
        shutil.rmtree(temp, ignore_errors=True)


def test_smoke_sweep_on_two_nodes(two_nodes, tmp_path):
    address, env, temp, _ = two_nodes
    n_trials, n_rows = smoke_expectation()
    res = run_sweep(SMOKE, "--smoke", "--results", tmp_path / "res", "--address", address, env=env, timeout=240)
    assert res.returncode == 0, res.stderr[-3000:]
    assert f"all {n_trials} trials finished" in res.stdout
    df = pd.read_parquet(tmp_path / "res" / "vste_window")
    # every (trial, step) once; trials ran on both nodes (one CPU each, so both are needed)
    assert len(df) == n_rows and not df.duplicated(["trial_key", "step"]).any()
    assert df.node_id.notna().all() and df.node_id.nunique() == 2, df.node_id.value_counts()
    assert df.groupby("trial_key").node_id.nunique().max() == 1
    assert df.run_id.nunique() == 1 and df.node_ip.notna().all()
    # results were written by the driver only: nothing in the nodes' Ray temp dir or anywhere else
    assert not list(temp.rglob("*.parquet"))
    assert sorted(p.name for p in (tmp_path / "res").iterdir()) == ["vste_window"]


# ------------------------------------------------------------------ a plug-in only the head's folder holds
PLUGIN = '''"""A plug-in estimator for the two-node test; each process notes where it imported this module
from and, on its first call, where the estimator ran (one JSON file per process and event in LOG)."""
import json
import os
import sys

from lowbit_core.quant.estimator_registry import register_estimator

LOG = {log!r}
FOLDER = {folder!r}


def _note(event):
    import ray

    node = ray.get_runtime_context().get_node_id() if ray.is_initialized() else ""
    with open(os.path.join(LOG, f"{{event}}-{{os.getpid()}}.json"), "w") as f:
        json.dump({{"event": event, "file": __file__, "node_id": node, "sid": os.getsid(0),
                   "folder_on_path": FOLDER in sys.path}}, f)


_note("import")
_called = False


@register_estimator("tanh_slope", label="tanh STE (slope a)", paper="derivative of tanh(a w)", param="slope",
                    default=3.0, symbol="a")
def tanh_slope(g, w, param=3.0):
    """dL/dw = g * a * (1 - tanh^2(a w))."""
    global _called
    if not _called:
        _called = True
        _note("call")
    return g * param * (1 - (param * w).tanh() ** 2)
'''

PROBE = '''import slope_plugins  # noqa: F401 -- registers tanh_slope

from lowbit_core.sweep import Sweep, grid

SWEEP = Sweep(name="shipped_estimator", family="probe",
              base={"model.kind": "binary", "model.hidden": (16, 16), "model.pretrain_steps": 10,
                    "data.batch_size": 256, "scan.lr_step": 1e-2, "multi.steps": 2, "multi.report_every": 1,
                    "estimator.name": "tanh_slope"},
              space={"estimator.param": grid(2.0, 3.0)}, metric="single_best_loss", seeds=(0, 1))
'''


def test_a_plugin_estimator_in_the_sweep_folder_runs_on_both_nodes_from_the_shipped_copy(two_nodes, tmp_path):
    """The estimator lives only in the sweep's folder on the head (``tmp_path/research``; the CLI runs
    from there, as a user would, so Ray puts that folder on every worker's ``sys.path`` too): trials
    on both nodes run it, and every worker imported the module from the copy Ray shipped (its file lies
    under the nodes' runtime-env folder, byte for byte the head's file), not from the head's folder."""
    address, env, temp, (head, worker) = two_nodes
    folder, log = tmp_path / "research", tmp_path / "imports"
    folder.mkdir()
    log.mkdir()
    (folder / "slope_plugins.py").write_text(PLUGIN.format(log=str(log), folder=str(folder)))
    (folder / "shipped_probe.py").write_text(PROBE)
    res = run_sweep(folder / "shipped_probe.py", "--results", tmp_path / "res", "--address", address, env=env,
                    cwd=folder, timeout=240)
    assert res.returncode == 0, res.stderr[-3000:]
    assert "all 4 trials finished" in res.stdout, res.stdout[-3000:]
    df = pd.read_parquet(tmp_path / "res" / "shipped_estimator")
    # 4 trials x steps 0, 1, 2, each once; every row ran the plug-in; rows from both nodes
    assert len(df) == 12 and not df.duplicated(["trial_key", "step"]).any()
    assert set(df["cfg.estimator.name"]) == {"tanh_slope"} and set(df["cfg.estimator.param"]) == {2.0, 3.0}
    assert df.node_id.notna().all() and df.node_id.nunique() == 2, df.node_id.value_counts()
    plan = json.loads((tmp_path / "res" / "shipped_estimator" / "_sweep.json").read_text())
    assert plan["plugins"]["slope_plugins"]["origin"] == str(folder / "slope_plugins.py")

    notes = [json.loads(p.read_text()) for p in log.glob("*.json")]
    calls = [n for n in notes if n["event"] == "call"]
    on = {name: [n for n in calls if n["sid"] == node.proc.pid] for name, node in (("head", head), ("worker", worker))}
    print(f"\nplug-in estimator called in {len(on['head'])} head and {len(on['worker'])} worker-node processes:")
    for n in calls:
        print("  ", n["node_id"][:12], n["file"])
    # the estimator ran in trials on both nodes (the rows' two node ids), and nowhere else
    assert on["head"] and on["worker"] and len(calls) == len(on["head"]) + len(on["worker"]), notes
    assert {n["node_id"] for n in on["worker"]} | {n["node_id"] for n in on["head"]} == set(df.node_id), notes
    assert not {n["node_id"] for n in on["worker"]} & {n["node_id"] for n in on["head"]}
    worker_node = on["worker"][0]["node_id"]
    assert (df.node_id == worker_node).sum() >= 3  # a whole trial's rows came from the worker node
    source = (folder / "slope_plugins.py").read_bytes()
    for n in calls:
        imported = Path(n["file"]).resolve()
        # Ray put the head's folder on the worker's sys.path (the driver's working directory), yet the
        # module came from what Ray shipped: the nodes' runtime-env folder, the same bytes
        assert n["folder_on_path"], n
        assert not imported.is_relative_to(tmp_path), n
        assert imported.is_relative_to(temp.resolve()) and "runtime_resources" in imported.parts, n
        assert imported.name == "slope_plugins.py" and imported.read_bytes() == source
    driver = [n for n in notes if n["event"] == "import" and n["sid"] not in (head.proc.pid, worker.proc.pid)]
    assert [Path(n["file"]).resolve() for n in driver] == [(folder / "slope_plugins.py").resolve()], notes


def kill_node(node: RayNode) -> list[int]:
    """SIGKILL every process of ``node`` (its ``ray start`` and what it started: raylet, workers,
    agents), by pid; returns the pids."""
    pids = [node.proc.pid, *session_pids(node.proc.pid)]
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    return pids


def worker_marks(marks: Path, node: RayNode) -> list[tuple[str, int]]:
    """(trial key, step) of the marks written by a process of ``node`` (a trial running there)."""
    pids = set(session_pids(node.proc.pid))
    out = []
    for m in marks.glob("mark-*"):
        try:
            pid = int(m.read_text() or 0)
        except (OSError, ValueError):
            continue
        if pid in pids:
            _, key, step = m.name.rsplit("-", 2)
            out.append((key, int(step)))
    return out


def test_worker_node_lost_mid_sweep(two_nodes, tmp_path, sessions):
    address, env, _, (head, worker) = two_nodes
    n_trials, n_rows = smoke_expectation()
    ident = ["trial_key", "step"]
    res = run_sweep(SMOKE, "--smoke", "--results", tmp_path / "whole", "--address", address, env=env, timeout=240)
    assert res.returncode == 0, res.stderr[-3000:]
    whole = pd.read_parquet(tmp_path / "whole" / "vste_window").sort_values(ident).reset_index(drop=True)
    marks = tmp_path / "marks"
    for m in marks.glob("mark-*"):
        m.unlink()
    d = Driver([SMOKE, "--smoke", "--results", tmp_path / "res", "--address", address, "--retries", "3"], env)
    sessions.append(d.sid)
    # a trial on the worker node has reported a step after its first (so rows of it came from there)
    wait_for(lambda: any(step >= 1 for _, step in worker_marks(marks, worker)), "a trial running on the worker", d)
    lost_keys = {key for key, _ in worker_marks(marks, worker)}
    killed = kill_node(worker)
    rc, out, err = d.wait(timeout=400)
    assert rc == 0, err[-3000:]
    assert f"all {n_trials} trials finished" in out
    df = pd.read_parquet(tmp_path / "res" / "vste_window").sort_values(ident).reset_index(drop=True)
    print(f"\nworker node killed ({len(killed)} processes) while trials {sorted(lost_keys)} ran there; "
          f"{len(df)} rows, expected {n_rows}")
    # every (trial, step) exactly once, with the uninterrupted run's values
    assert len(df) == n_rows and not df.duplicated(ident).any()
    metrics = [c for c in ("loss", "single_best_loss", "best_loss") if c in df.columns]
    pd.testing.assert_frame_equal(df[ident + metrics], whole[ident + metrics])
    # the trial that was on the worker finished on the surviving node: its rows came from both nodes
    surviving = df[df.trial_key.isin(lost_keys)]
    assert surviving.groupby("trial_key").node_id.nunique().max() == 2, surviving[ident + ["node_id"]]
    final_nodes = set(df.sort_values("step").groupby("trial_key").node_id.last()[list(lost_keys)])
    worker_node = set(surviving.node_id) - final_nodes
    assert len(worker_node) == 1 and not final_nodes & worker_node
    st = statuses(tmp_path / "res" / "vste_window")
    assert (st.status == "TERMINATED").all() and st.trial_key.value_counts().max() == 1


def test_driver_without_the_token_is_refused(two_nodes, tmp_path):
    address, env, _, _ = two_nodes
    bad = {k: v for k, v in env.items() if not k.startswith("RAY_AUTH")}
    bad.update(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN="not-the-token", RAY_NUM_REDIS_GET_RETRIES="4")  # Ray retries 20 times, 1 s apart
    res = run_sweep(SMOKE, "--smoke", "--results", tmp_path / "res", "--address", address, env=bad, timeout=120)
    assert res.returncode == 2, res.stderr[-3000:]
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and "requires its auth token" in lines[0] and "RAY_AUTH_TOKEN" in lines[0], lines
    assert not (tmp_path / "res").exists()


# ------------------------------------------------------------------ what a local run binds
def listening_sockets(pids: list[int]) -> list[tuple[int, str, str, int]]:
    """(pid, process name, bind address, port) of every listening TCP socket of ``pids``."""
    inodes: dict[str, tuple[str, int]] = {}
    for table, v6 in (("/proc/net/tcp", False), ("/proc/net/tcp6", True)):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            f = line.split()
            if f[3] != "0A":  # LISTEN
                continue
            addr_hex, port_hex = f[1].split(":")
            raw = bytes.fromhex(addr_hex)
            if v6:
                raw = b"".join(raw[i:i + 4][::-1] for i in range(0, 16, 4))
                addr = socket.inet_ntop(socket.AF_INET6, raw)
            else:
                addr = socket.inet_ntop(socket.AF_INET, raw[::-1])
            inodes[f[9]] = (addr, int(port_hex, 16))
    out = []
    for pid in pids:
        try:
            fds = list(Path(f"/proc/{pid}/fd").iterdir())
            name = Path(f"/proc/{pid}/comm").read_text().strip()
        except OSError:
            continue
        for fd in fds:
            try:
                target = os.readlink(fd)
            except OSError:
                continue
            if target.startswith("socket:[") and target[8:-1] in inodes:
                out.append((pid, name, *inodes[target[8:-1]]))
    return out


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def test_local_ray_has_no_dashboard_or_client_server_and_uses_token_auth(tmp_path, sessions):
    marks = tmp_path / "marks"
    env = inject_env(marks, [{"action": "mark"}, {"action": "sleep", "seconds": 0.2}])
    d = Driver([SMOKE, "--smoke", "--results", tmp_path / "res"], env)
    sessions.append(d.sid)
    wait_for(lambda: len(list(marks.glob("mark-*"))) >= 2, "trials reporting", d)
    pids = [d.sid, *d.session_pids()]
    socks = listening_sockets(pids)
    cmds = {pid: cmdline(pid) for pid in pids}
    auth = {}  # C++ processes only: Python ones rename themselves (setproctitle), clobbering /proc environ
    for pid, name, *_ in socks:
        if name in ("gcs_server", "raylet"):
            environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
            auth[pid] = next((e.decode() for e in environ if e.startswith(b"RAY_AUTH_MODE=")), None)
    http = {}  # the runtime-env agent is an HTTP server on the node's address: it must want the token
    for pid, name, addr, port in socks:
        if name.startswith("ray::RuntimeEnv"):
            host = "127.0.0.1" if addr in ("0.0.0.0", "::") else addr
            try:
                urllib.request.urlopen(f"http://{host}:{port}/", timeout=10)
                http[(addr, port)] = 200
            except urllib.error.HTTPError as exc:
                http[(addr, port)] = exc.code
    rc, out, err = d.wait()
    assert rc == 0, err[-3000:]
    print("\nlistening sockets of a local run (pid, process, address, port):")
    for s in sorted(socks, key=lambda s: s[1]):
        print("  ", *s)
    assert socks, "no listening sockets found: /proc not readable?"
    # no dashboard (8265), no Ray Client server (10001); Ray still runs a headless "minimal" dashboard
    # process (usage-stats module only, no frontend): it must not listen anywhere
    assert not [s for s in socks if s[3] in (8265, 10001)], socks
    assert not [c for c in cmds.values() if "ray.util.client.server" in c]
    dash = [pid for pid, c in cmds.items() if "dashboard/dashboard.py" in c]
    assert all("--minimal" in cmds[pid] and "--disable-frontend" in cmds[pid] for pid in dash), cmds
    assert not [s for s in socks if s[0] in dash], socks
    # Ray's own gRPC ports (GCS, raylet, workers) listen on all interfaces -- Ray offers no switch for
    # that -- so token authentication must be on: in the GCS's and raylet's environment, and an HTTP
    # request without the token is refused
    assert len(auth) >= 2 and set(auth.values()) == {"RAY_AUTH_MODE=token"}, auth
    assert http and set(http.values()) == {401}, http
