"""One sweep folder as evidence for the book: its plan, its family report's verdict records, its
findings, its scale and its provenance.

- **Records** are the report's ``_report/verdicts.json`` (:mod:`analysis.common.verdicts`): the
  book decides from them, never from the findings text.
- **Reduced scale**: a smoke profile, or a ``--set`` override that shrinks what the sweep declares
  (its base after the profile, else the family default): a number made smaller, a list of numbers
  with an element made smaller or fewer elements, or a resolution step (a key ending in ``step``
  such as ``scan.lr_step``) made larger. A reduced run is listed but cannot settle a question.

- **Findings** come from the family's own report (:mod:`analysis.report`): the book runs it into the
  sweep's ``_report/`` folder when ``report.md`` is missing or older than the folder's data (part
  files, ``_trials/``, ``_sweep.json``), then quotes the lines of its ``## Findings`` section and
  takes the first image of its ``## Figures`` section as the key figure. Nothing is recomputed here.
- **On a question**: the findings lines that match the question's ``findings`` pattern
  (:class:`lowbit_core.questions.Question`; a report answers several things at once).
- **Verdict lines** are the findings lines that carry a paired interval, ``[lo, hi], n = N`` (a unit
  such as ``dB`` or ``%`` may follow the bracket; :func:`analysis.common.stats.paired_verdict`'s text).
  A verdict line is *decisive* when it says neither that the interval contains 0, nor "no
  verdict", nor "no direction" (after a Holm correction).
- **Scale**: the profile, the data set (``data.name``, ``data.train``; ``data.n_train`` or
  ``data.batch_size`` where the config has them), the epochs (``train.epochs``) and the seeds, each the
  plan's value: a ``--set`` override, else the sweep's base after the profile, else the family
  default; an axis over the key lists its values.
- **Provenance**: the plan's creation time and its runs' times, and the code versions -- the
  ``git_sha`` of the rows and the plan (``-dirty``: uncommitted changes to tracked files).
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from lowbit_core.results import PLAN_FILE, data_parts, read_plan, status_files

REPORT_DIR = "_report"
INTERVAL = re.compile(r"\[[^\[\]]+,\s*[^\[\]]+\][^,\[\]]{0,8},\s*n\s*=\s*(\d+)")
NOT_DECISIVE = ("interval contains 0", "intervals contain 0", "no verdict", "no direction")  # 'no direction after Holm' too
SCALE_KEYS = ("data.name", "data.train", "data.n_train", "data.batch_size", "train.epochs")
SMOKE = "smoke"


@dataclass
class Evidence:
    """What one sweep folder says (see the module docstring)."""

    folder: Path
    name: str
    family: str
    profile: str
    questions: list[dict]
    seeds: list
    scale: dict[str, str]
    created: str
    run_times: list[str]
    code: list[str]
    findings: list[str]
    figure: Path | None
    trials: int
    error: str = ""
    extra: dict = field(default_factory=dict)
    records: list[dict] = field(default_factory=list)
    overrides: dict = field(default_factory=dict)
    reduced: list[str] = field(default_factory=list)
    """Why the run's scale is below the sweep's declared one (empty: not reduced)."""
    command: str = ""
    settle: list = field(default_factory=list)
    """The ``--settle`` rounds of the plan (seeds added to the cells of undecided comparisons)."""

    def records_on(self, qid: str) -> list[dict]:
        """The records of question ``qid`` when the sweep's plan names it (a report also records side
        comparisons of questions its sweep was not planned for: those are 'other comparisons')."""
        if not any(q.get("id") == qid for q in self.questions):
            return []
        return [r for r in self.records if r.get("question") == qid]

    def other_records(self) -> list[dict]:
        """Records of no question, or of a question the sweep's plan does not name."""
        named = {q.get("id") for q in self.questions}
        return [r for r in self.records if r.get("question") not in named]

    def on(self, pattern: str = "") -> list[str]:
        """The findings lines about a question (those matching ``pattern``, case-insensitive)."""
        return [ln for ln in self.findings if not pattern or re.search(pattern, ln, re.IGNORECASE)]

    def verdict_lines(self, pattern: str = "") -> list[str]:
        return [ln for ln in self.on(pattern) if INTERVAL.search(ln)]

    def decisive(self, pattern: str = "") -> list[str]:
        return [ln for ln in self.verdict_lines(pattern) if not any(w in ln for w in NOT_DECISIVE)]

    @property
    def smoke(self) -> bool:
        return self.profile == SMOKE or bool(self.reduced)

    def max_n(self, pattern: str = "") -> int:
        return max((int(m.group(1)) for ln in self.verdict_lines(pattern) for m in INTERVAL.finditer(ln)), default=0)

    def state(self, pattern: str = "") -> str:
        """'decisive', 'smoke' (only smoke-scale), 'no verdict' (no decisive line at its n), or 'error'."""
        if self.error:
            return "error"
        if self.smoke:
            return SMOKE
        return "decisive" if self.decisive(pattern) else "no verdict"

    @property
    def dirty(self) -> bool:
        return any(c.endswith("-dirty") for c in self.code)


def sweep_folders(root: Path) -> list[Path]:
    """The sweep folders directly under ``root`` (those with a plan or part files), by name; names
    starting with ``_`` or ``.`` (the book's own folder) are not sweeps."""
    out = []
    for p in sorted(root.iterdir()) if root.is_dir() else []:
        if p.is_dir() and not p.name.startswith(("_", ".")) and ((p / PLAN_FILE).is_file() or data_parts(p)):
            out.append(p)
    return out


def _newest_input(folder: Path) -> float:
    paths = [*data_parts(folder), *status_files(folder), folder / PLAN_FILE, folder / "_settle.json"]
    return max((p.stat().st_mtime for p in paths if p.exists()), default=0.0)


def ensure_report(folder: Path) -> Path:
    """``folder/_report/report.md``, written by the family's report when missing or stale; a
    ResultsError (one line) when the report cannot be made."""
    from lowbit_sweeps.analysis.common.load import load_results, load_trial_status
    from lowbit_sweeps.analysis.common.plan import SweepPlan
    from lowbit_sweeps.analysis.common.writing import REPORT_NAME
    from lowbit_sweeps.analysis.report import family_report

    md = folder / REPORT_DIR / REPORT_NAME
    if md.is_file() and (md.parent / "verdicts.json").is_file() and md.stat().st_mtime >= _newest_input(folder):
        return md
    plan = SweepPlan.read(folder)
    df = load_results(folder, on_damaged=lambda path, reason: None, sweep=plan.name)
    status = load_trial_status(folder, on_damaged=lambda path, reason: None)
    family_report(df, plan).write(df, status, folder / REPORT_DIR, plan)
    return md


def section(md_text: str, heading: str) -> list[str]:
    """The lines of ``## heading`` in a markdown text (up to the next ``## ``), blank lines dropped."""
    out, inside = [], False
    for line in md_text.split("\n"):
        if line.startswith("## "):
            inside = line[3:].strip() == heading
            continue
        if inside and line.strip():
            out.append(line)
    return out


def findings_lines(md_text: str) -> list[str]:
    """The findings bullets as lines; a nested bullet keeps two leading spaces."""
    out = []
    for line in section(md_text, "Findings"):
        if line.startswith("  - "):
            out.append("  " + line[4:])
        elif line.startswith("- "):
            out.append(line[2:])
        elif out:
            out[-1] += " " + line.strip()
    return out


def key_figure(md_text: str, report_dir: Path) -> Path | None:
    m = re.search(r"!\[[^\]]*\]\(([^)]+\.png)\)", "\n".join(section(md_text, "Figures")))
    return report_dir / m.group(1) if m and (report_dir / m.group(1)).is_file() else None


def _value(plan: dict, key: str) -> str | None:
    axes = plan.get("axes") or {}
    if key in (plan.get("overrides") or {}):
        return str(plan["overrides"][key])
    if key in axes and isinstance(axes[key], list):
        return " / ".join(map(str, axes[key]))
    for where in ("base", "canonical_defaults"):
        if key in (plan.get(where) or {}):
            return str(plan[where][key])
    return None


def scale_of(plan: dict) -> dict[str, str]:
    """The scale facts of a plan (module docstring), key -> value text, only keys the family has."""
    return {k: v for k in SCALE_KEYS if (v := _value(plan, k)) is not None}


def _number(v):
    if isinstance(v, bool):
        return None
    if isinstance(v, (int, float)):
        return float(v)
    return None


def _numbers(v):
    if isinstance(v, str) and v.startswith("["):
        try:
            v = json.loads(v)
        except ValueError:
            return None
    if isinstance(v, list) and v and all(_number(x) is not None for x in v):
        return [float(x) for x in v]
    return None


def reduced_by(plan: dict) -> list[str]:
    """Why a plan's scale is reduced (module docstring), one phrase per reason; empty when it is not."""
    out = [f"profile {SMOKE}"] if plan.get("profile") == SMOKE else []
    declared = {**(plan.get("canonical_defaults") or {}), **(plan.get("base") or {})}
    for key, new in (plan.get("overrides") or {}).items():
        if key not in declared:
            continue
        old = declared[key]
        a, b = _number(old), _number(new)
        if a is not None and b is not None:
            if (b > a) if key.endswith("step") else (b < a):
                out.append(f"{key} {new} (declared {old})")
            continue
        la, lb = _numbers(old), _numbers(new)
        if la is not None and lb is not None and (len(lb) < len(la) or any(y < x for x, y in zip(la, lb))):
            out.append(f"{key} {new} (declared {old})")
    return out


def read_evidence(folder: Path) -> Evidence:
    """The evidence of one sweep folder; a folder whose report fails becomes an 'error' evidence."""
    from lowbit_sweeps.analysis.common.load import ResultsError, load_results
    from lowbit_sweeps.analysis.common.verdicts import read_records

    plan = read_plan(folder) or {}
    name = plan.get("name") or folder.name
    runs = plan.get("runs") or []
    ev = Evidence(folder=folder, name=name, family=plan.get("family") or "?", profile=plan.get("profile") or "?",
                  questions=list(plan.get("questions") or []), seeds=list(plan.get("seeds") or []),
                  scale=scale_of(plan), created=str(plan.get("created") or "?"),
                  run_times=[str(r.get("time")) for r in runs if r.get("time")], code=[], findings=[],
                  figure=None, trials=0, overrides=dict(plan.get("overrides") or {}), reduced=reduced_by(plan),
                  command=" ".join(map(str, plan.get("command") or [])), settle=list(plan.get("settle") or []))
    try:
        md = ensure_report(folder)
        text = md.read_text(encoding="utf-8")
        ev.findings = findings_lines(text)
        ev.figure = key_figure(text, md.parent)
        ev.records = list((read_records(md.parent) or {}).get("records") or [])
        df = load_results(folder, on_damaged=lambda path, reason: None, sweep=plan.get("name"))
        ev.trials = int(df["trial_key"].nunique()) if "trial_key" in df.columns else 0
        shas = sorted(set(df["git_sha"].dropna().astype(str))) if "git_sha" in df.columns else []
    except Exception as exc:  # noqa: BLE001 -- one folder's failing report must not sink the book
        ev.error = str(exc) if isinstance(exc, ResultsError) else f"{type(exc).__name__}: {exc}"
        shas = []
    ev.code = sorted(set(shas) | ({str(plan["git_sha"])} if plan.get("git_sha") else set()))
    return ev
