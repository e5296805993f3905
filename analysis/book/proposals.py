"""The run that would settle a question, and what it would cost.

- **Candidates**: the shipped sweep files (``sweeps/*.py`` beside the packages) whose ``questions``
  name the question, and every other folder that bears on it (a plug-in sweep: its recorded command).
- **The run**: ``--settle`` at the sweep's best non-reduced profile so far (``default`` when it ran
  only at a reduced scale or not at all), which adds seeds only where a comparison is undecided.
- **Estimate**: ``launch/sweep.py FILE --profile P --estimate`` in a subprocess (the analysis never
  imports torch), on 1 device, at most :data:`ESTIMATE_TIMEOUT_S`; its ``estimate-json`` line, or its
  error line (e.g. the data set is not on this machine), is cached in
  ``RESULTS_DIR/_book/estimates.json`` under the file's sha256 and the profile, so re-building the
  book does not time it again (delete the file to re-time). The estimate is of the first round.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SWEEPS_DIR = ROOT / "sweeps"
ESTIMATE_TIMEOUT_S = 120
CACHE = "estimates.json"


@dataclass(frozen=True)
class Proposal:
    sweep: str
    file: str
    profile: str
    command: str
    args: tuple[str, ...]
    sha256: str

    @property
    def cache_key(self) -> str:
        return f"{self.file}|{' '.join(self.args)}|{self.sha256[:16]}"


def shipped_sweeps() -> list[tuple[Path, object]]:
    """(file, Sweep) of every shipped sweep file that loads."""
    from lowbit_core.config import ConfigError
    from lowbit_core.sweep import load_sweep

    out = []
    for path in sorted(SWEEPS_DIR.glob("*.py")) if SWEEPS_DIR.is_dir() else []:
        try:
            out.append((path, load_sweep(path)))
        except ConfigError:
            continue
    return out


def question_ids(sweep) -> list[str]:
    from lowbit_core.questions import resolve

    return [q.id for q in resolve(sweep.questions)]


def settle_profile(run_profiles: list[str], reduced: list[bool]) -> str:
    """The profile the ``--settle`` run continues: the best non-reduced one that ran, else ``default``."""
    ran = [p for p, r in zip(run_profiles, reduced) if not r]
    return "full" if "full" in ran else (ran[0] if ran else "default")


def proposals_for(qid: str, evidence: list, sweeps: list[tuple[Path, object]]) -> list[Proposal]:
    """The runs that would settle question ``qid`` (module docstring)."""
    from lowbit_core.sweep import sweep_file_sha256

    out, names = [], set()
    for path, sweep in sweeps:
        if qid not in question_ids(sweep):
            continue
        mine = [e for e in evidence if e.name == sweep.name]
        profile = settle_profile([e.profile for e in mine], [e.smoke for e in mine])
        rel = f"sweeps/{path.name}"
        args = (rel, "--profile", profile, "--settle")
        out.append(Proposal(sweep.name, rel, profile, "lowbit-sweep " + " ".join(args), args, sweep_file_sha256(path)))
        names.add(sweep.name)
    for e in evidence:  # a plug-in sweep that bears on it: its own recorded command
        if e.name in names or not any(q.get("id") == qid for q in e.questions):
            continue
        words = [w for w in e.command.split() if w not in ("--resume", "--extend", "--settle")]
        if len(words) >= 2:
            cmd = " ".join(["lowbit-sweep", *words[1:], "--settle"])
            out.append(Proposal(e.name, words[1], e.profile, cmd, tuple(words[1:]), ""))
            names.add(e.name)
    return out


def run_estimate(p: Proposal) -> dict:
    """The estimate of a proposal, timed now: the ``estimate-json`` dict, or ``{"error": line}``."""
    cmd = [sys.executable, str(ROOT / "launch" / "sweep.py"), *[a for a in p.args if a not in ("--extend", "--settle")],
           "--estimate", "--devices", "1"]
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    try:
        proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=ESTIMATE_TIMEOUT_S, env=env,
                              stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        return {"error": f"the estimate took longer than {ESTIMATE_TIMEOUT_S} s"}
    for line in proc.stdout.splitlines():
        if line.startswith("estimate-json: "):
            return json.loads(line.removeprefix("estimate-json: "))
    lines = (proc.stderr or proc.stdout).strip().splitlines()
    return {"error": lines[-1] if lines else f"exit status {proc.returncode}"}


class EstimateCache:
    """``_book/estimates.json``: proposal cache key -> estimate dict."""

    def __init__(self, book_dir: Path, enabled: bool = True, estimator=run_estimate):
        self.path = book_dir / CACHE
        self.enabled, self.estimator = enabled, estimator
        self.data = json.loads(self.path.read_text(encoding="utf-8")) if self.path.is_file() else {}

    def get(self, p: Proposal) -> dict | None:
        """The cached estimate (None: not timed yet)."""
        return self.data.get(p.cache_key)

    def time(self, p: Proposal) -> dict:
        """Time ``p`` now and cache it (an interrupted build keeps what it timed)."""
        self.data[p.cache_key] = self.estimator(p)
        self.save()
        return self.data[p.cache_key]

    def save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.write_text(json.dumps(self.data, indent=1, sort_keys=True) + "\n", encoding="utf-8")


def estimate_text(est: dict | None) -> str:
    """One line of an estimate dict (or why there is none)."""
    if est is None:
        return "estimate: not timed yet (the book times it after writing the page; --no-estimates skips it)"
    if "error" in est:
        return f"estimate: could not be timed here: {est['error']}"
    return (f"estimate: {est['trials']} trials, {est['trial_hours']:.3g} trial-hours, {est['device_hours']:.3g} "
            f"device-hours ({est['device_share']:g} {est['device_unit']} per trial), wall {est['wall_s'] / 60:.1f} min on "
            f"{est['devices']} device(s), `sbatch --time={est['sbatch_time']}` (+{est['margin']:.0%}); timed on "
            f"{est['device']}")
