"""A non-editable install of this checkout, as a user gets it from ``pip install lowbit-sweeps``.

:func:`wheel_install` builds the wheel from a copy of the checkout's packaging inputs (the build writes
``build/`` and ``*.egg-info`` next to its sources, so never in the checkout itself), then installs it
with ``pip install --no-deps --target``: the dependencies are the test environment's own. Commands run
through :meth:`Installed.run` see the installed copy first on the path (``PYTHONPATH``), ahead of the
editable install this environment also holds, from a folder outside the checkout.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SOURCES = ("pyproject.toml", "setup.py", "README.md", "lowbit_core", "lowbit_sweeps", "launch", "analysis",
           "sweeps")
"""What the build reads: the packaging files and the package folders (not tests, benchmarks, .git)."""


@dataclass(frozen=True)
class Installed:
    wheel: Path
    target: Path

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "PYTHONPATH")}
        env["PYTHONPATH"] = str(self.target)
        return env

    def run(self, command: str, *args, cwd, timeout=900) -> subprocess.CompletedProcess:
        """``command`` (``lowbit-sweep``, ``lowbit-report``, or ``python``) from the installed copy."""
        exe = [sys.executable] if command == "python" else [str(self.target / "bin" / command)]
        return subprocess.run([*exe, *map(str, args)], cwd=cwd, env=self.env(), capture_output=True, text=True,
                              timeout=timeout, stdin=subprocess.DEVNULL)

    def top_level(self) -> set[str]:
        """The names the wheel puts at the top of site-packages."""
        with zipfile.ZipFile(self.wheel) as z:
            return {name.split("/")[0] for name in z.namelist()}

    def files(self) -> set[str]:
        with zipfile.ZipFile(self.wheel) as z:
            return set(z.namelist())


def wheel_install(workdir: Path) -> Installed:
    src, dist, target = workdir / "src", workdir / "dist", workdir / "site"
    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info", "build", "results")
    for name in SOURCES:
        path = REPO / name
        if path.is_dir():
            shutil.copytree(path, src / name, ignore=ignore)
        else:
            src.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, src / name)
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--quiet"]
    # --no-build-isolation: build with this environment's setuptools (CI may not reach an index twice)
    build = subprocess.run([*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", str(dist), str(src)],
                           capture_output=True, text=True, timeout=600)
    assert build.returncode == 0, build.stderr[-3000:]
    (wheel,) = dist.glob("lowbit_sweeps-*.whl")
    inst = subprocess.run([*pip, "install", "--no-deps", "--no-index", "--target", str(target), str(wheel)],
                          capture_output=True, text=True, timeout=600)
    assert inst.returncode == 0, inst.stderr[-3000:]
    return Installed(wheel, target)
