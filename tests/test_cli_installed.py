"""The installed commands (``pip install -e .``: ``[project.scripts]``): ``lowbit-sweep`` and
``lowbit-report`` work from any directory, with no ``sys.path`` edits, like the scripts."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT, run_sweep

BIN = Path(sys.executable).parent
SWEEP = str(ROOT / "sweeps" / "vste_window.py")


def installed(command: str, *args, cwd) -> subprocess.CompletedProcess:
    exe = BIN / command
    assert exe.exists(), f"{exe} missing: install the project (pip install -e '.[test]')"
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "PYTHONPATH")}
    return subprocess.run([str(exe), *map(str, args)], cwd=cwd, capture_output=True, text=True, timeout=120,
                          env=env, stdin=subprocess.DEVNULL)


@pytest.mark.parametrize("command", ["lowbit-sweep", "lowbit-report"])
def test_help(command, tmp_path):
    res = installed(command, "--help", cwd=tmp_path)
    assert res.returncode == 0 and res.stdout.startswith("usage: "), res.stderr
    assert "Traceback" not in res.stderr


def test_dry_run_behaves_like_the_script(tmp_path):
    res = installed("lowbit-sweep", SWEEP, "--smoke", "--dry-run", "--results", tmp_path / "res", cwd=tmp_path)
    script = run_sweep(SWEEP, "--smoke", "--dry-run", "--results", tmp_path / "res", timeout=120)
    assert res.returncode == script.returncode == 0, res.stderr
    assert res.stdout == script.stdout and "12 trials" in res.stdout
    assert not (tmp_path / "res").exists()


def test_bad_input_and_usage_of_the_installed_command(tmp_path):
    res = installed("lowbit-sweep", SWEEP, "--frobnicate", cwd=tmp_path)
    assert res.returncode == 2 and res.stderr.strip().splitlines() == [
        "error: unrecognized arguments: --frobnicate (see --help)"]
    res = installed("lowbit-sweep", "--help", cwd=tmp_path)
    assert res.stdout.startswith("usage: lowbit-sweep ")


def test_planning_a_probe_sweep_imports_neither_torch_nor_ray(tmp_path):
    """A dry run and a refusal of a probe sweep answer from the plan alone: the family's loop (torch,
    the search methods, cma with scipy and matplotlib) is imported where a trial runs. Before, each
    paid ~4 s of imports on this 2-core machine (now ~0.3 s); tested on what is imported, not on time."""
    code = ("import sys\nfrom lowbit_sweeps.launch.sweep import main\n"
            f"codes = [main([{SWEEP!r}, '--smoke', '--dry-run', '--results', {str(tmp_path / 'res')!r}]),\n"
            f"         main([{SWEEP!r}, '--set', 'multi.steps=ten'])]\n"
            "print(codes, sorted(m for m in ('torch', 'ray', 'cma', 'scipy', 'matplotlib') if m in sys.modules))\n")
    res = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr[-2000:]
    assert res.stdout.splitlines()[-1] == "[0, 2] []", res.stdout[-2000:]
    assert "multi.steps must be an int" in res.stderr and not (tmp_path / "res").exists()
