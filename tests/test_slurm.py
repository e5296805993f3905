"""launch/slurm/ray_sweep.sbatch on a real single-node SLURM: this test writes its own slurm.conf
(non-default ports, state, logs and a private munge socket in a temp dir), starts munged, slurmctld
and slurmd, submits two smoke sweeps at once (one CPU each, so they share the node: per-job ports,
temp dirs and tokens), waits, checks their Parquet results and that each job stopped its Ray, and
stops the daemons by their pid files. It installs nothing: .ci/run installs Debian's slurm-wlm and
munge; where they are missing (or not root) it is skipped with the reason."""
from __future__ import annotations

import json
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import pytest

from conftest import ROOT, free_ports
from lowbit_core.sweep import load_sweep, plan

BINARIES = ("munged", "slurmctld", "slurmd", "sbatch", "scontrol", "sinfo", "scancel")
MISSING = [b for b in BINARIES if shutil.which(b) is None and not Path("/usr/sbin", b).exists()]
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(bool(MISSING), reason=f"SLURM/munge not installed (missing: {', '.join(MISSING)}); "
                                             "`apt-get install slurm-wlm munge` (.ci/run does) to run this test"),
    pytest.mark.skipif(os.geteuid() != 0, reason="the single-node SLURM test runs its daemons as root"),
]
SCRIPT = ROOT / "launch" / "slurm" / "ray_sweep.sbatch"
SMOKE = ROOT / "sweeps" / "vste_window.py"


def _bin(name: str) -> str:
    return shutil.which(name) or str(Path("/usr/sbin", name))


def stop_by_pidfile(pidfile: Path, timeout: float = 15.0) -> None:
    try:
        pid = int(pidfile.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return
    for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 5.0)):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.1)


class Slurm:
    """munged + slurmctld + slurmd for this machine, everything under one temp dir."""

    def __init__(self):
        self.dir = Path(tempfile.mkdtemp(prefix="lbs", dir="/tmp"))  # short: unix socket paths
        self.dir.chmod(0o700)
        self.conf = self.dir / "slurm.conf"
        self.env = {**os.environ, "SLURM_CONF": str(self.conf)}
        for k in [k for k in self.env if k.startswith(("SLURM_", "RAY_")) and k != "SLURM_CONF"]:
            del self.env[k]
        self.first_job = random.randint(1000, 900_000)
        self.pidfiles = [self.dir / "slurmd.pid", self.dir / "slurmctld.pid", self.dir / "munged.pid"]

    def log(self, name: str) -> str:
        try:
            return (self.dir / name).read_text()[-3000:]
        except OSError:
            return ""

    def start(self):
        d = self.dir
        key = d / "munge.key"
        key.write_bytes(os.urandom(1024))
        key.chmod(0o400)
        munge = subprocess.run([_bin("munged"), "--force", f"--socket={d}/munge.sock", f"--key-file={key}",
                                f"--pid-file={d}/munged.pid", f"--log-file={d}/munged.log",
                                f"--seed-file={d}/munged.seed"], capture_output=True, text=True, timeout=30)
        if munge.returncode != 0:
            pytest.fail(f"munged failed: {munge.stderr}{self.log('munged.log')}")
        host = socket.gethostname().split(".")[0]
        ctld_port, slurmd_port = free_ports(2)
        cpus = os.cpu_count() or 2
        (d / "state").mkdir()
        (d / "spool").mkdir()
        self.conf.write_text(f"""\
ClusterName=lowbittest
SlurmctldHost={host}
SlurmUser=root
SlurmdUser=root
SlurmctldPort={ctld_port}
SlurmdPort={slurmd_port}
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={d}/munge.sock
StateSaveLocation={d}/state
SlurmdSpoolDir={d}/spool
SlurmctldPidFile={d}/slurmctld.pid
SlurmdPidFile={d}/slurmd.pid
SlurmctldLogFile={d}/slurmctld.log
SlurmdLogFile={d}/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SwitchType=switch/none
MpiDefault=none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
ReturnToService=2
SlurmdParameters=config_overrides
FirstJobId={self.first_job}
MinJobAge=600
KillWait=10
NodeName={host} CPUs={cpus} RealMemory=1000 State=UNKNOWN
PartitionName=lowbit Nodes={host} Default=YES MaxTime=INFINITE State=UP
""")
        for daemon in ("slurmctld", "slurmd"):
            r = subprocess.run([_bin(daemon), "-f", str(self.conf)], env=self.env, capture_output=True, text=True,
                               timeout=60)
            if r.returncode != 0:
                pytest.fail(f"{daemon} failed: {r.stderr}{self.log(daemon + '.log')}")
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            r = subprocess.run([_bin("sinfo"), "-h", "-o", "%t"], env=self.env, capture_output=True, text=True)
            if r.stdout.strip() == "idle":
                return
            time.sleep(0.5)
        pytest.fail(f"the SLURM node did not become idle: {r.stdout} {r.stderr}\n{self.log('slurmctld.log')}"
                    f"\n{self.log('slurmd.log')}")

    def sbatch(self, *args, env=None, cwd=ROOT) -> str:
        r = subprocess.run([_bin("sbatch"), "--parsable", *map(str, args)], cwd=cwd, env={**self.env, **(env or {})},
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stderr
        return r.stdout.strip().split(";")[0]

    def wait(self, *job_ids: str, timeout: float = 400) -> list[dict[str, str]]:
        deadline = time.monotonic() + timeout
        while True:
            info = [self.job(j) for j in job_ids]
            if all(i.get("JobState") not in ("PENDING", "RUNNING", "CONFIGURING", "COMPLETING", None) for i in info):
                return info
            if time.monotonic() > deadline:
                pytest.fail(f"SLURM jobs did not finish: {info}")
            time.sleep(1)

    def job(self, job_id: str) -> dict[str, str]:
        r = subprocess.run([_bin("scontrol"), "show", "job", "-o", job_id], env=self.env, capture_output=True,
                           text=True)
        return dict(re.findall(r"(\w+)=(\S*)", r.stdout))

    def stop(self):
        subprocess.run([_bin("scancel"), "--user=root"], env=self.env, capture_output=True, timeout=30)
        for pidfile in self.pidfiles:
            stop_by_pidfile(pidfile)
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture(scope="module")
def slurm():
    s = Slurm()
    try:
        s.start()
        yield s
    finally:
        s.stop()


def smoke_rows() -> tuple[int, int]:
    p = plan(load_sweep(SMOKE), "smoke")
    rows = 0
    for t in p.trials:
        m = t.config.multi
        rows += len(set(range(0, m.steps + 1, m.report_every)) | {m.steps})
    return p.n_trials, rows


def test_two_sbatch_sweeps_share_the_node(slurm, tmp_path):
    """Job ``a`` is submitted from the checkout with a sweep file; job ``b`` as after a ``pip install``:
    from a folder outside the checkout, with the script ``lowbit-sweep --slurm-script`` prints and the
    shipped sweep's name, so the script runs the installed package's CLI (``python -m``)."""
    t0 = time.monotonic()
    n_trials, n_rows = smoke_rows()
    env = {"LOWBIT_PYTHON": sys.executable}
    script = subprocess.run([sys.executable, "-m", "lowbit_sweeps.launch.sweep", "--slurm-script"], cwd=tmp_path,
                            capture_output=True, text=True, timeout=120).stdout.strip()
    assert Path(script).read_bytes() == SCRIPT.read_bytes()
    (tmp_path / "elsewhere").mkdir()
    jobs = {"a": slurm.sbatch("--cpus-per-task=1", f"--output={tmp_path}/a-%j.out", SCRIPT, SMOKE.relative_to(ROOT),
                              "--smoke", "--results", tmp_path / "a", env=env),
            "b": slurm.sbatch("--cpus-per-task=1", f"--output={tmp_path}/b-%j.out", script, "vste_window", "--smoke",
                              "--results", "../b", env=env, cwd=tmp_path / "elsewhere")}
    info = dict(zip(jobs, slurm.wait(*jobs.values())))
    wall = time.monotonic() - t0
    outs = {name: "\n".join(p.read_text() for p in tmp_path.glob(f"{name}-*.out")) for name in jobs}
    print(f"\nSLURM test: two sbatch smoke sweeps, submitted to finished in {wall:.1f} s")
    for name in jobs:
        assert info[name].get("JobState") == "COMPLETED" and info[name].get("ExitCode") == "0:0", \
            f"job {name}: {info[name]}\n{outs[name][-4000:]}\n{slurm.log('slurmd.log')}"
    # they ran at the same time, on the same node, with their own ports and temp dirs
    assert info["a"]["NodeList"] == info["b"]["NodeList"]
    starts = {n: info[n]["StartTime"] for n in jobs}
    ends = {n: info[n]["EndTime"] for n in jobs}
    if (os.cpu_count() or 1) >= 2:  # one CPU each
        assert starts["a"] < ends["b"] and starts["b"] < ends["a"], (starts, ends)
    bases = set()
    for name, job_id in jobs.items():
        out = outs[name]
        m = re.search(r"ports (\d+)\.\., temp (\S+)", out)
        assert m and "Ray head at" in out and f"all {n_trials} trials finished" in out, out[-4000:]
        driver = {"a": f"driver {sys.executable} {ROOT}/launch/sweep.py",
                  "b": f"driver {sys.executable} -m lowbit_sweeps.launch.sweep"}[name]
        assert driver in out, out[-4000:]
        bases.add(int(m.group(1)))
        assert m.group(2) == f"/tmp/ray-{job_id}" and not Path(m.group(2)).exists()  # removed at the end
        df = pd.read_parquet(tmp_path / name / "vste_window")
        assert len(df) == n_rows and not df.duplicated(["trial_key", "step"]).any()
        assert df.trial_key.nunique() == n_trials and df.node_id.nunique() == 1
    assert len(bases) == 2
    assert not ray_processes_of(*jobs.values())


def ray_processes_of(*job_ids: str) -> list[tuple[str, str]]:
    """Processes whose command line names one of these jobs' Ray temp dirs (raylet, gcs_server, ...)."""
    left = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if any(f"/tmp/ray-{j}/" in cmd for j in job_ids):
            left.append((pid, cmd[:200]))
    return left


def test_signal_before_the_time_limit_then_resume(slurm, tmp_path):
    """What `#SBATCH --signal=B:TERM@120` does before a time limit: SIGTERM to the batch script. The
    driver flushes what was reported and exits 130, Ray is stopped; `sbatch ... --resume` finishes."""
    n_trials, n_rows = smoke_rows()
    marks = tmp_path / "marks"
    marks.mkdir()
    slow = {"LOWBIT_PYTHON": sys.executable, "LOWBIT_FLUSH_SECONDS": "600",
            "LOWBIT_FAULT_INJECT": json.dumps({"dir": str(marks), "rules": [{"action": "mark"},
                                                                            {"action": "sleep", "seconds": 0.4}]})}
    args = [SCRIPT, SMOKE.relative_to(ROOT), "--smoke", "--results", tmp_path / "res"]
    job = slurm.sbatch("--cpus-per-task=2", f"--output={tmp_path}/first.out", *args, env=slow)
    deadline = time.monotonic() + 180
    while len(list(marks.glob("mark-*"))) < 4 and time.monotonic() < deadline:
        assert slurm.job(job).get("JobState") in ("PENDING", "CONFIGURING", "RUNNING"), slurm.job(job)
        time.sleep(0.2)
    r = subprocess.run([_bin("scancel"), "--batch", "--signal=TERM", job], env=slurm.env, capture_output=True,
                       text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    (info,) = slurm.wait(job)
    out = (tmp_path / "first.out").read_text()
    assert "signal received" in out and "interrupted: " in out, out[-4000:]
    written = int(re.search(r"\((\d+) rows written this run\)", out).group(1))
    df = pd.read_parquet(tmp_path / "res" / "vste_window")
    assert 0 < written == len(df) < n_rows  # flushed on the signal (nothing was flushed before: 600 s)
    assert not Path(f"/tmp/ray-{job}").exists() and not ray_processes_of(job)
    job2 = slurm.sbatch("--cpus-per-task=2", f"--output={tmp_path}/second.out", *args, "--resume",
                        env={"LOWBIT_PYTHON": sys.executable})
    (info2,) = slurm.wait(job2)
    out2 = (tmp_path / "second.out").read_text()
    assert info2.get("JobState") == "COMPLETED", out2[-4000:]
    df = pd.read_parquet(tmp_path / "res" / "vste_window")
    assert len(df) == n_rows and not df.duplicated(["trial_key", "step"]).any()
    assert f"all {n_trials} trials finished" in out2 and f"({n_rows - written} rows written this run)" in out2
