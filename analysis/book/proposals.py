"""The run that would settle a question, and what it would cost.

- **Candidates**: the shipped sweep files (``sweeps/*.py`` beside the packages) whose ``questions``
  name the question; a plug-in question (recorded only in a folder's plan) gets its folder's
  recorded command instead.
- **Profile**: one step above the best scale the sweep has run at: nothing or smoke -> ``default``
  (laptop-sized); ``default`` (or another named profile) -> ``full`` (the seed's scale) where the
  sweep has it; already ``full`` -> ``full`` with twice the seeds (``--extend --set seeds=[...]``).
- **Estimate**: ``launch/sweep.py FILE --profile P --estimate`` in a subprocess (the analysis never
  imports torch), on 1 device; its ``estimate-json`` line, or its error line (e.g. the data set is
  not on this machine), is cached in ``RESULTS_DIR/_book/estimates.json`` under the file's sha256 and
  the profile, so re-building the book does not time it again (delete the file to re-time).
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
ESTIMATE_TIMEOUT_S = 600
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


def next_profile(sweep, run_profiles: list[str], seeds: int) -> tuple[str, list[str]]:
    """(profile, extra CLI words) one step above ``run_profiles`` (module docstring)."""
    ran = set(run_profiles) - {"smoke"}
    if not ran:
        return "default", []
    if "full" in ran:
        n = max(2 * seeds, 2)
        return "full", ["--extend", "--set", "seeds=[" + ",".join(map(str, range(n))) + "]"]
    return ("full", []) if "full" in sweep.profiles else ("default", ["--extend", "--set",
                                                                      "seeds=[" + ",".join(map(str, range(max(2 * seeds, 2)))) + "]"])


def proposals_for(qid: str, evidence: list, sweeps: list[tuple[Path, object]]) -> list[Proposal]:
    """The runs that would settle question ``qid`` (module docstring)."""
    from lowbit_core.sweep import sweep_file_sha256

    out = []
    for path, sweep in sweeps:
        if qid not in question_ids(sweep):
            continue
        mine = [e for e in evidence if e.name == sweep.name]
        profile, extra = next_profile(sweep, [e.profile for e in mine], max((len(e.seeds) for e in mine), default=0))
        rel = f"sweeps/{path.name}"
        args = (rel, "--profile", profile, *extra)
        out.append(Proposal(sweep.name, rel, profile, "lowbit-sweep " + " ".join(args), args, sweep_file_sha256(path)))
    return out


def run_estimate(p: Proposal) -> dict:
    """The estimate of a proposal, timed now: the ``estimate-json`` dict, or ``{"error": line}``."""
    cmd = [sys.executable, str(ROOT / "launch" / "sweep.py"), *[a for a in p.args if a not in ("--extend",)],
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
        if p.cache_key not in self.data and self.enabled:
            self.data[p.cache_key] = self.estimator(p)
            self.save()  # an interrupted build keeps what it timed
        return self.data.get(p.cache_key)

    def save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.write_text(json.dumps(self.data, indent=1, sort_keys=True) + "\n", encoding="utf-8")


def estimate_text(est: dict | None) -> str:
    """One line of an estimate dict (or why there is none)."""
    if est is None:
        return "estimate: not timed (book built with estimates off)"
    if "error" in est:
        return f"estimate: could not be timed here: {est['error']}"
    return (f"estimate: {est['trials']} trials, {est['trial_hours']:.3g} trial-hours, {est['device_hours']:.3g} "
            f"device-hours ({est['device_share']:g} {est['device_unit']} per trial), wall {est['wall_s'] / 60:.1f} min on "
            f"{est['devices']} device(s), `sbatch --time={est['sbatch_time']}` (+{est['margin']:.0%}); timed on "
            f"{est['device']}")
