"""``--show`` prints a shipped sweep as a sweep file that plans the same trials (same keys, same
resources), so "a sweep like vste_window" can be written from the CLI alone; ``--dry-run`` names the
common config."""
from __future__ import annotations

import re

import pytest

from conftest import run_sweep


def trial_keys(dry_run_stdout: str) -> list[str]:
    return re.findall(r"(?m)^([0-9a-f]{12})\s", dry_run_stdout)


@pytest.mark.parametrize("name, extra", [("vste_window", []), ("multistep_ste", ["--set", "multi.steps=50"])])
def test_show_prints_a_sweep_file_with_the_same_trials(tmp_path, name, extra):
    shown = run_sweep(name, "--show", *extra)
    assert shown.returncode == 0, shown.stderr
    copy = tmp_path / f"{name}_copy.py"
    copy.write_text(shown.stdout)
    original, again = run_sweep(name, "--dry-run", *extra), run_sweep(copy, "--dry-run")
    assert original.returncode == again.returncode == 0, again.stderr
    assert trial_keys(original.stdout) and trial_keys(original.stdout) == trial_keys(again.stdout)
    assert original.stdout.splitlines()[0].split(":", 1)[1] == again.stdout.splitlines()[0].split(":", 1)[1]
    assert "common config (differs from the family defaults): " in original.stdout
