"""launch/slurm/ray_sweep.sbatch's refusals before it starts anything (no SLURM needed: the script
reads only SLURM_JOB_ID before them): one line, exit 2, when neither a checkout nor an installed
package can supply the driver. The runs themselves, from a checkout and from outside one, are
tests/test_slurm.py's (a real SLURM)."""
from __future__ import annotations

import os
import subprocess
import sys

from conftest import ROOT

SCRIPT = ROOT / "launch" / "slurm" / "ray_sweep.sbatch"


def _run(tmp_path, **env):
    base = {k: v for k, v in os.environ.items() if not k.startswith(("LOWBIT_", "SLURM_"))}
    return subprocess.run(["bash", str(SCRIPT), "vste_window", "--smoke"], cwd=tmp_path, capture_output=True,
                          text=True, timeout=60, env={**base, "SLURM_JOB_ID": "7", "SLURM_SUBMIT_DIR": str(tmp_path),
                                                      **env})


def test_a_lowbit_root_that_is_no_checkout_is_one_line(tmp_path):
    r = _run(tmp_path, LOWBIT_ROOT=str(tmp_path), LOWBIT_PYTHON=sys.executable)
    assert r.returncode == 2 and r.stdout == ""
    assert r.stderr.strip() == f"error: LOWBIT_ROOT={tmp_path} is not a lowbit-sweeps checkout (no launch/sweep.py)"


def test_outside_a_checkout_a_python_without_the_package_is_one_line(tmp_path):
    bare = tmp_path / "bare-python"  # this interpreter without its site-packages: no lowbit_sweeps
    bare.write_text(f'#!/bin/sh\nexec {sys.executable} -S "$@"\n')
    bare.chmod(0o755)
    r = _run(tmp_path, LOWBIT_PYTHON=str(bare))
    assert r.returncode == 2 and r.stdout == "" and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert f"{tmp_path} is not a lowbit-sweeps checkout and {bare} cannot import the installed package" in r.stderr
    assert "LOWBIT_PYTHON" in r.stderr
