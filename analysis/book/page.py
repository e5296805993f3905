"""The book's page: markdown organized by question, and the same page as self-contained HTML.

Layout of ``book.md``: a header (the folder, how many sweeps), an index of the questions with their
status, one ``## <question id>`` section per question (the question, then per bearing sweep: its
state, scale, when and with which code, the verdict lines it quotes from the sweep's report and the
key figure; whether the bearing sweeps disagree), ``## Not settled`` with one ``### <question id>``
entry per unsettled question (why, the run that would settle it, its estimate), and the sweeps
that bear on no question. A question's section and its not-settled entry depend only on the sweeps
that bear on it (and its cached estimate), so a new sweep changes only its questions' parts.

Status rules, on the findings lines about the question (those matching its ``findings`` pattern): a
question is **settled** when a bearing sweep at a non-smoke profile has a decisive verdict line
among them (:mod:`analysis.book.evidence`); otherwise it is not settled, because no sweep bears on
it, or only smoke-scale sweeps do, or no verdict line at its n is decisive. Bearing sweeps
**disagree** when, at non-smoke scale, one has a decisive verdict line and another none (the book
does not compare the directions of different sweeps' findings: their metrics differ).
"""
from __future__ import annotations

import base64
import html
import os
import re
from pathlib import Path

from lowbit_sweeps.analysis.book.evidence import Evidence
from lowbit_sweeps.analysis.book.proposals import estimate_text

MAX_QUOTED = 12


def _bearing(qid: str, evidence: list[Evidence]) -> list[Evidence]:
    return [e for e in evidence if any(q.get("id") == qid for q in e.questions)]


def status(q: dict, evidence: list[Evidence]) -> tuple[bool, str]:
    """(settled, the reason in words) of question ``q`` (``{"id", "text", "findings"}``; module docstring)."""
    pat = q.get("findings") or ""
    bearing = _bearing(q["id"], evidence)
    if not bearing:
        return False, "no sweep bears on it"
    full = [e for e in bearing if not e.smoke and not e.error]
    if not full:
        return False, "only smoke-scale evidence" if any(e.smoke for e in bearing) else "its sweeps' reports failed"
    decided = [e for e in full if e.decisive(pat)]
    if decided:
        return True, "settled by " + ", ".join(f"{e.name} ({e.profile})" for e in decided)
    n = max(e.max_n(pat) for e in full)
    return False, (f"no decisive verdict at n = {n}" if n else
                   "no verdict line (no paired interval) on it in its sweeps' findings")


def _scale_line(e: Evidence) -> str:
    parts = [f"profile `{e.profile}`"] + [f"{k} {v}" for k, v in e.scale.items()]
    parts.append(f"seeds {', '.join(map(str, e.seeds))} (n = {len(e.seeds)})" if e.seeds else "seeds –")
    parts.append(f"{e.trials} trials")
    return "; ".join(parts)


def _when_line(e: Evidence) -> str:
    runs = ", ".join(e.run_times) or "–"
    code = ", ".join(f"`{c}`" for c in e.code) or "unknown"
    dirty = " (uncommitted changes: dirty)" if e.dirty else " (clean)"
    return f"created {e.created}; runs {runs}; code {code}{dirty}"


def _rel(path: Path, book_dir: Path) -> str:
    return Path(os.path.relpath(path, book_dir)).as_posix()


def sweep_block(e: Evidence, book_dir: Path, pattern: str = "") -> list[str]:
    words = {"decisive": "a decisive verdict", "smoke": "smoke-scale only", "no verdict": "no decisive verdict",
             "error": "report failed"}
    out = [f"### Sweep `{e.name}` ({e.family}): {words[e.state(pattern)]}", "",
           f"- **scale**: {_scale_line(e)}", f"- **when, code**: {_when_line(e)}",
           f"- **report**: [{_rel(e.folder / '_report' / 'report.md', book_dir)}]"
           f"({_rel(e.folder / '_report' / 'report.md', book_dir)})"]
    if e.error:
        return out + [f"- **error**: {e.error}", ""]
    verdicts, lines = e.verdict_lines(pattern), e.on(pattern)
    quoted = verdicts or lines
    label = "verdict lines (interval, n)" if verdicts else "findings (no paired interval among them)"
    if not quoted:
        out += [f"- **findings**: none of its {len(e.findings)} findings lines is about this question "
                f"(pattern `{pattern}`)", ""]
        return out + ([f"![{e.name}: {e.figure.stem}]({_rel(e.figure, book_dir)})", ""] if e.figure else [])
    out.append(f"- **{label}**" + (f" (lines matching `{pattern}`)" if pattern else "") + ":")
    out += [f"  - {ln.strip()}" for ln in quoted[:MAX_QUOTED]]
    if len(quoted) > MAX_QUOTED:
        out.append(f"  - … {len(quoted) - MAX_QUOTED} more in the report")
    out.append("")
    if e.figure:
        out += [f"![{e.name}: {e.figure.stem}]({_rel(e.figure, book_dir)})", ""]
    return out


def question_section(q: dict, evidence: list[Evidence], book_dir: Path) -> list[str]:
    settled, why = status(q, evidence)
    pat = q.get("findings") or ""
    out = [f"## {q['id']}", "", f"**Question.** {q['text']}", "",
           f"**Status: {'settled' if settled else 'not settled'}** — {why}.", ""]
    bearing = _bearing(q["id"], evidence)
    full = [e for e in bearing if not e.smoke and not e.error]
    if len({bool(e.decisive(pat)) for e in full}) > 1:
        yes = ", ".join(e.name for e in full if e.decisive(pat))
        no = ", ".join(e.name for e in full if not e.decisive(pat))
        out += [f"**Sweeps disagree**: {yes} reach a decisive verdict, {no} do not.", ""]
    for e in bearing:
        out += sweep_block(e, book_dir, pat)
    return out


def not_settled_entry(q: dict, why: str, proposals: list, estimates: dict) -> list[str]:
    out = [f"### {q['id']}", "", f"{q['text']}", "", f"- **why**: {why}"]
    if not proposals:
        out.append("- **run that would settle it**: no shipped sweep bears on it; write one "
                   "(`Sweep(questions=(...))` naming it)")
    for p in proposals:
        out += [f"- **run that would settle it**: `{p.command}`", f"  - {estimate_text(estimates.get(p.cache_key))}"]
    return out + [""]


def markdown(root: Path, questions: list[dict], evidence: list[Evidence], proposals: dict, estimates: dict,
             book_dir: Path) -> str:
    """The whole page (module docstring)."""
    out = ["# Findings book", "",
           f"Built from {len(evidence)} sweep folder(s) under `{root}`. Per question: each bearing sweep's "
           "verdict lines (the paired 95% interval and n, quoted from the sweep's own report), the scale, "
           "time and code version they rest on; then the questions not settled, with the run that would "
           "settle each and its estimated cost. Rules: `analysis/book/page.py`.", "", "## Index", ""]
    for q in questions:
        settled, why = status(q, evidence)
        out.append(f"- [{q['id']}](#{q['id']}): {'settled' if settled else 'not settled'} ({why})")
    out.append("")
    for q in questions:
        out += question_section(q, evidence, book_dir)
    out += ["## Not settled", ""]
    for q in questions:
        settled, why = status(q, evidence)
        if not settled:
            out += not_settled_entry(q, why, proposals.get(q["id"], []), estimates)
    loose = [e for e in evidence if not e.questions]
    if loose:
        out += ["## Sweeps that bear on no question", ""]
        out += [f"- `{e.name}` ({e.family}, profile `{e.profile}`): {_scale_line(e)}" for e in loose] + [""]
    return "\n".join(out)


def question_parts(md: str) -> dict[str, str]:
    """Each question's section and not-settled entry, by id (``"<id>"`` and ``"not-settled:<id>"``)."""
    parts: dict[str, str] = {}
    top = re.split(r"(?m)^## ", md)
    for chunk in top[1:]:
        head, _, body = chunk.partition("\n")
        if head.strip() == "Not settled":
            for sub in re.split(r"(?m)^### ", body)[1:]:
                sid, _, sbody = sub.partition("\n")
                parts["not-settled:" + sid.strip()] = sbody
        elif head.strip() not in ("Index", "Sweeps that bear on no question"):
            parts[head.strip()] = body
    return parts


# ---------------------------------------------------------------- HTML
def _inline(text: str) -> str:
    t = html.escape(text, quote=False)
    t = re.sub(r"`([^`]+)`", r"<code>\1</code>", t)
    t = re.sub(r"\*\*([^*]+)\*\*", r"<strong>\1</strong>", t)
    return re.sub(r"\[([^\]]+)\]\(([^)]+)\)", r'<a href="\2">\1</a>', t)


def _img(alt: str, src: str, book_dir: Path) -> str:
    path = (book_dir / src).resolve()
    data = base64.b64encode(path.read_bytes()).decode("ascii") if path.is_file() else ""
    return f'<p><img alt="{html.escape(alt)}" src="data:image/png;base64,{data}" style="max-width:100%"></p>'


def to_html(md: str, book_dir: Path) -> str:
    """The markdown this module writes as one self-contained HTML page (figures inlined as base64 PNG)."""
    out = ['<!doctype html><html><head><meta charset="utf-8"><title>Findings book</title>'
           "<style>body{font-family:sans-serif;max-width:60em;margin:auto;line-height:1.4}"
           "code{background:#f3f3f3}</style></head><body>"]
    depth = 0

    def close_to(d: int) -> None:
        nonlocal depth
        while depth > d:
            out.append("</ul>")
            depth -= 1

    for line in md.split("\n"):
        m = re.match(r"^(#{1,3}) (.*)$", line)
        if m:
            close_to(0)
            level, text = len(m.group(1)), m.group(2)
            anchor = f' id="{html.escape(text)}"' if level == 2 else ""
            out.append(f"<h{level}{anchor}>{_inline(text)}</h{level}>")
            continue
        img = re.match(r"^!\[([^\]]*)\]\(([^)]+)\)$", line)
        if img:
            close_to(0)
            out.append(_img(img.group(1), img.group(2), book_dir))
            continue
        bullet = re.match(r"^( *)- (.*)$", line)
        if bullet:
            d = len(bullet.group(1)) // 2 + 1
            while depth < d:
                out.append("<ul>")
                depth += 1
            close_to(d)
            out.append(f"<li>{_inline(bullet.group(2))}</li>")
            continue
        close_to(0)
        if line.strip():
            out.append(f"<p>{_inline(line)}</p>")
    close_to(0)
    return "\n".join(out + ["</body></html>", ""])
