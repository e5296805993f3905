"""The project as a user installs it: a built wheel, installed without ``-e``, used from a folder outside
the checkout (issue #17). The wheel puts only ``lowbit_core`` and ``lowbit_sweeps`` at the top of
site-packages (the checkout's ``launch``, ``analysis`` and ``sweeps`` folders land under
``lowbit_sweeps``); the shipped sweeps run by name; and the README's "Extending" folder -- a user's
estimator, model and family in a module next to the sweep files -- runs end to end: the probe and
training sweeps use the user's estimator and model and their reports label them, the user's family is
stopped early by ASHA and gets the generic report. Building and installing takes ~15 s, a real sweep
minutes: all slow."""
from __future__ import annotations

import json
import os
import subprocess
from importlib import metadata
from pathlib import Path

import pandas as pd
import pytest

from installed_wheel import REPO, wheel_install
from test_extending import readme_files

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    return wheel_install(tmp_path_factory.mktemp("wheel"))


class UserFolder(type(Path())):
    commit: str = ""


@pytest.fixture(scope="module")
def user_folder(tmp_path_factory):
    """The README's "Extending" files in a git repository of their own (one commit)."""
    folder = UserFolder(tmp_path_factory.mktemp("user_project"))
    for name, text in readme_files().items():
        (folder / name).write_text(text, encoding="utf-8")
    git = dict(cwd=folder, capture_output=True, text=True, check=True)
    env = {**os.environ, "GIT_AUTHOR_NAME": "u", "GIT_AUTHOR_EMAIL": "u@example.org", "GIT_COMMITTER_NAME": "u",
           "GIT_COMMITTER_EMAIL": "u@example.org"}
    subprocess.run(["git", "init", "-q"], **git)
    subprocess.run(["git", "add", "."], **git)
    subprocess.run(["git", "commit", "-q", "-m", "my research code"], env=env, **git)
    folder.commit = subprocess.run(["git", "rev-parse", "HEAD"], **git).stdout.strip()
    return folder


def _packages(folder: str) -> set[str]:
    """The checkout's packages under ``folder`` (every directory holding an ``__init__.py``)."""
    return {str(p.parent.relative_to(REPO)) for p in (REPO / folder).rglob("__init__.py")
            if "__pycache__" not in p.parts}


def test_the_wheel_installs_everything_under_the_projects_names(installed):
    version = metadata.version("lowbit-sweeps")
    assert installed.top_level() == {"lowbit_core", "lowbit_sweeps", f"lowbit_sweeps-{version}.dist-info"}
    files = installed.files()
    for folder in ("launch", "analysis"):
        for package in _packages(folder):
            assert f"lowbit_sweeps/{package}/__init__.py" in files, package
    shipped = {p.name for p in (REPO / "sweeps").glob("*.py")}
    assert shipped and {f"lowbit_sweeps/sweeps/{name}" for name in shipped} <= files
    assert {f"lowbit_core/{p.relative_to(REPO / 'lowbit_core')}" for p in (REPO / "lowbit_core").rglob("*.py")
            if "__pycache__" not in p.parts} <= files


def test_the_installed_copy_is_what_runs_and_nothing_named_launch_or_analysis(installed, tmp_path):
    code = ("import importlib.util as u, lowbit_core, lowbit_sweeps.launch.sweep as s, lowbit_core.shipped as sh; "
            "print(lowbit_core.__file__); print(s.__file__); print(sh.sweeps_dir()); "
            "print(u.find_spec('launch'), u.find_spec('analysis'), u.find_spec('sweeps'))")
    r = installed.run("python", "-c", code, cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    core, cli, sweeps, specs = r.stdout.splitlines()
    for path in (core, cli, sweeps):
        assert Path(path).is_relative_to(installed.target), path
    assert specs == "None None None"


def test_shipped_sweeps_run_by_name_from_an_empty_folder(installed, tmp_path):
    r = installed.run("lowbit-sweep", "--version", cwd=tmp_path)
    assert r.returncode == 0 and r.stdout.strip() == f"lowbit-sweeps {metadata.version('lowbit-sweeps')}"
    r = installed.run("lowbit-sweep", "--help", cwd=tmp_path)
    assert r.returncode == 0 and "vste_window" in r.stdout and str(REPO) not in r.stdout
    r = installed.run("lowbit-sweep", "vste_window", "--smoke", "--dry-run", "--results", tmp_path / "res",
                      cwd=tmp_path)
    assert r.returncode == 0 and "12 trials" in r.stdout, r.stderr[-2000:]
    assert not (tmp_path / "res").exists()
    r = installed.run("lowbit-sweep", "vste_windw", cwd=tmp_path)
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1 and "vste_window" in r.stderr
    # the SLURM batch script and its node helper ship in the package, byte-identical to the checkout's
    # (test_slurm.py runs the script's no-checkout path on a real SLURM)
    r = installed.run("lowbit-sweep", "--slurm-script", cwd=tmp_path)
    script = Path(r.stdout.strip())
    assert r.returncode == 0 and script.is_relative_to(installed.target), r.stdout + r.stderr
    for name in ("ray_sweep.sbatch", "ray_node.sh"):
        assert (script.parent / name).read_bytes() == (REPO / "launch" / "slurm" / name).read_bytes(), name


def test_user_sweeps_run_end_to_end_from_the_wheel(installed, user_folder):
    """The three README sweeps through the wheel's CLI from the user's folder: the probe and training
    sweeps use the user's estimator and model and their reports label them; the user's family is
    stopped early by ASHA and gets the generic report."""
    for sweep in ("quadratic_sweep.py", "tanh_probe.py", "vgg_train.py"):
        r = installed.run("lowbit-sweep", sweep, "--max-concurrent", "2", cwd=user_folder)
        assert r.returncode == 0, r.stderr[-2000:]
    quad = pd.read_parquet(user_folder / "results" / "quadratic")
    status = pd.concat([pd.read_parquet(p) for p in (user_folder / "results" / "quadratic" / "_trials").glob("*.parquet")])
    assert (status["status"] == "STOPPED_EARLY").any()
    assert quad.groupby("trial_key")["step"].apply(lambda s: s.is_unique).all()
    plan_rec = json.loads((user_folder / "results" / "quadratic" / "_sweep.json").read_text())
    assert "my_plugins" in plan_rec["plugins"]
    for name, label in (("quadratic", "generic"), ("tanh_probe", "tanh_ste"), ("vgg_train", "tanh_ste")):
        r = installed.run("lowbit-report", f"results/{name}", cwd=user_folder)
        assert r.returncode == 0, r.stderr[-2000:]
        text = (user_folder / "results" / name / "_report" / "report.md").read_text()
        assert label in text, (name, text[:2000])
    vgg = pd.read_parquet(user_folder / "results" / "vgg_train")
    assert set(vgg["cfg.model.arch"]) == {"vgg_small"} and vgg["macs"].notna().all()
    # the rows name the package version and the commit of the user's repository that made them
    assert set(quad["ver.lowbit_sweeps"]) == {metadata.version("lowbit-sweeps")}
    assert set(quad["git_sha"]) == set(vgg["git_sha"]) == {user_folder.commit}
