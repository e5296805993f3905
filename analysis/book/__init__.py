"""The findings book: ``lowbit-report --book RESULTS_DIR`` (or ``python analysis/report.py --book
RESULTS_DIR``) reads every sweep folder under ``RESULTS_DIR`` and writes one page organized by the
meeting record's questions (:mod:`lowbit_core.questions`, plus any a plug-in sweep recorded):
``RESULTS_DIR/_book/book.md`` and the self-contained ``RESULTS_DIR/_book/book.html``.

- :mod:`analysis.book.evidence`: one folder's findings (from its family report), scale, provenance;
- :mod:`analysis.book.proposals`: the run that would settle a question and its ``--estimate``;
- :mod:`analysis.book.page`: the status rules, the markdown and the HTML.
"""
from __future__ import annotations

import sys
from pathlib import Path

BOOK_DIR = "_book"


def questions_of(evidence) -> list[dict]:
    """The shipped questions in their order, then plug-in questions recorded in plans (first text wins)."""
    from lowbit_core.questions import QUESTIONS

    out = [{"id": q.id, "text": q.text, "findings": q.findings, "margin": q.margin, "unit": q.unit, "why": q.why}
           for q in QUESTIONS]
    known = {q["id"] for q in out}
    for e in evidence:
        for q in e.questions:
            if q.get("id") and q["id"] not in known:
                out.append({"id": q["id"], "text": q.get("text") or q["id"], "findings": q.get("findings") or "",
                            "margin": q.get("margin"), "unit": q.get("unit") or "", "why": q.get("why") or ""})
                known.add(q["id"])
    return out


def publish(root: str | Path, out_dir: str | Path) -> list[Path]:
    """Copy a built book out of its results folder, for committing: ``book.md`` (figures copied to
    ``figures/``, links to the sweeps' reports turned into their names), the self-contained
    ``book.html``, and each sweep's verdict records as ``verdicts/<sweep>.json``. No Parquet."""
    import re
    import shutil

    from lowbit_sweeps.analysis.book.evidence import REPORT_DIR, sweep_folders
    from lowbit_sweeps.analysis.common.verdicts import VERDICTS_FILE

    root, out = Path(root), Path(out_dir)
    book = root / BOOK_DIR
    (out / "figures").mkdir(parents=True, exist_ok=True)
    (out / "verdicts").mkdir(parents=True, exist_ok=True)
    md = (book / "book.md").read_text(encoding="utf-8")

    def figure(m: re.Match) -> str:
        src = (book / m.group(2)).resolve()
        name = f"{src.parent.parent.name}-{src.name}"
        shutil.copyfile(src, out / "figures" / name)
        return f"![{m.group(1)}](figures/{name})"

    md = re.sub(r"!\[([^\]]*)\]\(([^)]+\.png)\)", figure, md)
    md = re.sub(r"\[([^\]]*report\.md)\]\([^)]*\)", lambda m: f"`{m.group(1)}` (in the results folder)", md)
    written = [out / "book.md", out / "book.html"]
    written[0].write_text(md, encoding="utf-8")
    shutil.copyfile(book / "book.html", written[1])
    for folder in sweep_folders(root):
        src = folder / REPORT_DIR / VERDICTS_FILE
        if src.is_file():
            shutil.copyfile(src, out / "verdicts" / f"{folder.name}.json")
            written.append(out / "verdicts" / f"{folder.name}.json")
    return written


def write_book(root: str | Path, estimates: bool = True, estimator=None) -> list[Path]:
    """Build the book of ``root`` (see the package docstring); return [book.md, book.html].

    ``estimates``: time the proposed runs not yet in the cache (False: use only cached ones);
    ``estimator``: replaces :func:`analysis.book.proposals.run_estimate` (tests).
    """
    from lowbit_sweeps.analysis.book.evidence import read_evidence, sweep_folders
    from lowbit_sweeps.analysis.book.page import markdown, status, to_html
    from lowbit_sweeps.analysis.book.proposals import (ESTIMATE_TIMEOUT_S, EstimateCache, proposals_for, run_estimate,
                                                       shipped_sweeps)
    from lowbit_sweeps.analysis.common.load import ResultsError

    root = Path(root)
    if not root.is_dir():
        raise ResultsError(f"{root} is not a directory")
    folders = sweep_folders(root)
    if not folders:
        raise ResultsError(f"no sweep folders (with _sweep.json or part files) under {root}")
    evidence = [read_evidence(f) for f in folders]
    book_dir = root / BOOK_DIR
    questions = questions_of(evidence)
    sweeps = shipped_sweeps()
    cache = EstimateCache(book_dir, estimates, estimator or run_estimate)
    proposals = {q["id"]: proposals_for(q["id"], evidence, sweeps) for q in questions if not status(q, evidence)[0]}
    book_dir.mkdir(parents=True, exist_ok=True)
    md_path, html_path = book_dir / "book.md", book_dir / "book.html"

    def write_page() -> None:
        estimate_of = {p.cache_key: cache.get(p) for ps in proposals.values() for p in ps}
        md = markdown(root, questions, evidence, proposals, estimate_of, book_dir)
        md_path.write_text(md, encoding="utf-8")
        html_path.write_text(to_html(md, book_dir), encoding="utf-8")

    write_page()  # at once, with the estimates already cached
    missing = list({p.cache_key: p for ps in proposals.values() for p in ps if cache.get(p) is None}.values())
    if cache.enabled and missing:
        for i, p in enumerate(missing, 1):
            print(f"book: timing {i}/{len(missing)}: {p.command} (at most {ESTIMATE_TIMEOUT_S} s)", file=sys.stderr,
                  flush=True)
            cache.time(p)
        write_page()
    cache.save()
    return [md_path, html_path]
