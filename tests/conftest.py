import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run_script(script: str, *args, cwd=ROOT, timeout=300, env=None) -> subprocess.CompletedProcess:
    """``python <ROOT>/<script> ARGS`` in a subprocess, without an inherited RAY_ADDRESS."""
    full_env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    full_env.update(env or {})
    return subprocess.run([sys.executable, str(ROOT / script), *map(str, args)], cwd=cwd, capture_output=True,
                          text=True, timeout=timeout, env=full_env, stdin=subprocess.DEVNULL)


def run_sweep(*args, **kw) -> subprocess.CompletedProcess:
    return run_script("launch/sweep.py", *args, **kw)
