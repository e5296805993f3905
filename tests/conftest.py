import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
RAY = Path(sys.executable).with_name("ray")


@dataclass(frozen=True)
class SharedRay:
    """A Ray head this test session started (``ray start --head``): its address and the environment a
    driver needs to join it (token auth, Ray 2.60's default for ``ray start``)."""
    address: str
    env: dict


def run_script(script: str, *args, cwd=ROOT, timeout=300, env=None) -> subprocess.CompletedProcess:
    """``python <ROOT>/<script> ARGS`` in a subprocess, without an inherited RAY_ADDRESS."""
    full_env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    full_env.update(env or {})
    return subprocess.run([sys.executable, str(ROOT / script), *map(str, args)], cwd=cwd, capture_output=True,
                          text=True, timeout=timeout, env=full_env, stdin=subprocess.DEVNULL)


def run_sweep(*args, ray: SharedRay | None = None, env=None, **kw) -> subprocess.CompletedProcess:
    """``launch/sweep.py ARGS``: with ``ray`` (the :func:`shared_ray` fixture) the sweep joins that
    cluster (``launch/sweep.py --address HOST:PORT ARGS``) instead of starting Ray of its own."""
    if ray is not None:
        args = ("--address", ray.address, *args)
        env = {**ray.env, **(env or {})}
    return run_script("launch/sweep.py", *args, env=env, **kw)


def free_ports(n: int = 1) -> list[int]:
    """``n`` distinct ports free now, below the kernel's ephemeral range and above Ray's worker ports
    (10002-19999). A port the kernel hands out for binding to port 0 or for an outgoing connection (Ray
    and its workers open many) can be taken again by another process before a daemon binds it; CI saw
    slurmctld fail with "Address already in use" that way. Ports outside that range are taken only by
    whoever names them."""
    try:
        low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        low = 32768
    candidates = list(range(20000, max(low, 20000 + 4 * n)))
    secrets.SystemRandom().shuffle(candidates)
    ports = []
    for port in candidates:
        with socket.socket() as s:
            try:
                s.bind(("0.0.0.0", port))
            except OSError:
                continue
        ports.append(port)
        if len(ports) == n:
            return ports
    raise RuntimeError(f"fewer than {n} free ports in 20000..{low - 1}")


def _session_pids(sid: int) -> list[int]:
    pids = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            stat = (d / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()  # after "pid (comm) ": state ppid pgrp session ...
        if int(fields[3]) == sid and fields[0] != "Z":
            pids.append(int(d.name))
    return pids


@pytest.fixture(scope="session")
def shared_ray(tmp_path_factory):
    """One Ray cluster for the tests whose sweeps do not test Ray's own start-up or its loss: a
    ``ray start --head --block`` (all CPUs, no dashboard, a fresh auth token) in its own session,
    started once per test process (each xdist worker has its own) and stopped at the end by SIGTERM,
    then by pid. A sweep joining it skips Ray's start and stop (~10 s on 2 cores). Tests that kill or
    interrupt a driver, or inject faults through the nodes' environment, start their own Ray."""
    temp = Path(tempfile.mkdtemp(prefix="lbs", dir="/tmp"))  # short: Ray's socket paths live below it
    log = tmp_path_factory.mktemp("shared_ray") / "head.log"
    port, *more = free_ports(7)  # distinct free ports: two heads (xdist workers) coexist
    names = ("--ray-client-server-port", "--dashboard-port", "--dashboard-agent-listen-port",
             "--dashboard-agent-grpc-port", "--metrics-export-port", "--runtime-env-agent-port")
    fixed = dict(zip(names, map(str, more)))
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    env.update(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=secrets.token_hex(32), RAY_USAGE_STATS_ENABLED="0")
    proc = subprocess.Popen([str(RAY), "start", "--block", "--head", "--port", str(port), "--include-dashboard=false",
                             "--dashboard-host", "127.0.0.1", "--node-ip-address", "127.0.0.1",
                             "--num-cpus", str(os.cpu_count()), "--temp-dir", str(temp), "--disable-usage-stats",
                             *(x for kv in fixed.items() for x in kv)],
                            env=env, stdin=subprocess.DEVNULL, stdout=open(log, "w"), stderr=subprocess.STDOUT,
                            start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while "Ray runtime started" not in log.read_text():
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"ray start --head did not come up (exit {proc.poll()}):\n{log.read_text()[-3000:]}")
            time.sleep(0.2)
        driver_env = {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": env["RAY_AUTH_TOKEN"],
                      "RAY_USAGE_STATS_ENABLED": "0"}
        yield SharedRay(f"127.0.0.1:{port}", driver_env)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)  # `ray start --block` stops its processes
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        for pid in _session_pids(proc.pid):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        shutil.rmtree(temp, ignore_errors=True)
