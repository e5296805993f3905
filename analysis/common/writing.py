"""Writing a report: the header facts every report shows, the findings and figures sections, the
report folder, and :class:`FamilyReport` (what a family's report package gives ``report.py``)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pandas as pd

from lowbit_sweeps.analysis.common.groups import distinct_values, seed_column

REPORT_NAME = "report.md"


@dataclass(frozen=True)
class FamilyReport:
    """One family's report. ``write(df, status, out_dir, plan)`` writes it and returns the paths;
    ``detects(df)`` says whether rows without a plan belong to the family (the fallback for folders
    from before plans); ``warnings(df)`` are lines for stderr."""

    name: str
    write: Callable[..., list[Path]]
    detects: Callable[[pd.DataFrame], bool]
    warnings: Callable[[pd.DataFrame], list[str]] = lambda df: []


def joined(df: pd.DataFrame, col: str) -> str:
    """The distinct values of ``col`` joined by ', ' ('–' when there are none)."""
    return ", ".join(distinct_values(df, col)) or "–"


def title(df: pd.DataFrame) -> list[str]:
    return [f"# Sweep report: {', '.join(distinct_values(df, 'sweep')) or '(unnamed sweep)'}", ""]


def seeds_fact(df: pd.DataFrame) -> tuple[str, str]:
    seed = seed_column(df)
    return ("seeds", f"{df[seed].nunique()} ({', '.join(distinct_values(df, seed))})" if seed else "–")


def provenance_facts(df: pd.DataFrame) -> list[tuple[str, str]]:
    """Runs, git SHA, package version and devices of the rows."""
    return [("runs", joined(df, "run_id")), ("git sha", joined(df, "git_sha")),
            ("lowbit_sweeps version", joined(df, "ver.lowbit_sweeps")), ("devices", joined(df, "device"))]


def time_facts(df: pd.DataFrame) -> list[tuple[str, str]]:
    if "time" in df.columns and df["time"].notna().any():
        return [("time", f"{df['time'].min()} … {df['time'].max()}")]
    return []


def fact_lines(facts: list[tuple[str, str]]) -> list[str]:
    return [f"- **{k}**: {v}" for k, v in facts]


def findings_section(lines: list[str]) -> list[str]:
    """'## Findings' with one bullet per line; lines starting with two spaces are nested bullets."""
    out = ["## Findings", ""]
    for line in lines:
        out.append(("  - " + line.strip()) if line.startswith("  ") else f"- {line}")
    return out + [""]


def figures_section(paths: list[Path], titles: dict[str, str]) -> list[str]:
    """'## Figures' with one titled image per path (title from ``titles`` by file stem)."""
    if not paths:
        return []
    out = ["## Figures", ""]
    for p in paths:
        out += [f"### {titles.get(p.stem, p.stem)}", "", f"![{p.stem}]({p.name})", ""]
    return out


def write_analysis(analysis, out_dir: str | Path) -> list[Path]:
    """Write ``analysis``'s figures and report.md (``make_figures(dir)``, ``markdown(paths)``) into
    ``out_dir``; return the paths."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = analysis.make_figures(out_dir)
    report = out_dir / REPORT_NAME
    report.write_text(analysis.markdown(paths), encoding="utf-8")
    return [report, *paths]
