"""The book's page: markdown organized by question, and the same page as self-contained HTML.

Layout of ``book.md``: a header (the folder, how many sweeps), an index of the questions with their
status, one ``## <question id>`` section per question (the question and its margin, then per bearing
sweep: its state, scale, overrides, when and with which code, its verdict records and the key
figure), ``## Other comparisons`` (records that name no question: a plug-in sweep's), ``## Not
settled`` with one ``### <question id>`` entry per unsettled question (why, the ``--settle`` run that
would settle it, the seeds it expects to need, its estimate), and the sweeps that bear on no
question. A question's section and its not-settled entry depend only on the sweeps that bear on it
(and its cached estimate), so a new sweep changes only its questions' parts.

Status rules, on the verdict records (``_report/verdicts.json``) of the question: a question is
**settled** when it has records from a bearing sweep at a scale that is not reduced
(:func:`analysis.book.evidence.reduced_by`) and every one of them is decided (higher, lower,
equivalent within the margin, or identical); otherwise it is not settled, because no sweep bears on
it, only reduced-scale sweeps do, no record names it, or some comparisons are undecided.
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


DECIDED = ("higher", "lower", "equivalent", "identical")


def _full(q: dict, evidence: list[Evidence]) -> list[Evidence]:
    return [e for e in _bearing(q["id"], evidence) if not e.smoke and not e.error]


def status(q: dict, evidence: list[Evidence]) -> tuple[bool, str]:
    """(settled, the reason in words) of question ``q`` (module docstring)."""
    bearing = _bearing(q["id"], evidence)
    if not bearing:
        return False, "no sweep bears on it"
    full = _full(q, evidence)
    if not full:
        if any(e.smoke for e in bearing):
            why = "; ".join(f"{e.name}: {', '.join(e.reduced)}" for e in bearing if e.reduced)
            return False, "only reduced-scale evidence" + (f" ({why})" if why else "")
        return False, "its sweeps' reports failed"
    recs = [(e, r) for e in full for r in e.records_on(q["id"])]
    if not recs:
        return False, "no verdict record on it in its sweeps' reports"
    open_ = [r for _, r in recs if r.get("decision") not in DECIDED]
    n = max((int(r.get("n") or 0) for _, r in recs), default=0)
    if open_:
        return False, f"{len(open_)} of {len(recs)} comparisons undecided at n <= {n}"
    counts = {}
    for _, r in recs:
        counts[r["decision"]] = counts.get(r["decision"], 0) + 1
    words = ", ".join(f"{v} {k}" for k, v in counts.items())
    sweeps = ", ".join(dict.fromkeys(f"{e.name} ({e.profile})" for e, _ in recs))
    return True, f"{len(recs)} comparisons decided: {words}; n <= {n}; by {sweeps}"


def record_line(r: dict) -> str:
    """One record as text: comparison, metric against baseline, interval, n, p_Holm, K, margin, decision."""
    def num(x):
        return "–" if x is None else f"{x:+.4g}"

    unit = f" {r['unit']}" if r.get("unit") and r.get("unit") != "fraction" else ""
    margin = f", margin ±{r['margin']:.3g}" if r.get("margin") else ""
    holm = f", p_Holm = {r['p_holm']:.2g} (K = {r['k']}, α = {r['alpha']:.2g})" if r.get("p_holm") is not None else ""
    check = f"; sign-flip test {r['cross_check']}" if r.get("cross_check") else ""
    return (f"{r['comparison']} — {r['metric']} vs {r['baseline']}: {num(r.get('mean'))} "
            f"[{num(r.get('lo'))}, {num(r.get('hi'))}]{unit}, n = {r.get('n')}{holm}{margin}: "
            f"**{r.get('decision')}**{check}")


def _scale_line(e: Evidence) -> str:
    parts = [f"profile `{e.profile}`"] + [f"{k} {v}" for k, v in e.scale.items()]
    if e.overrides:
        parts.append("overrides " + ", ".join(f"`{k}={v}`" for k, v in e.overrides.items()))
    if e.reduced:
        parts.append("**reduced scale**: " + ", ".join(e.reduced))
    parts.append(f"seeds {', '.join(map(str, e.seeds))} (n = {len(e.seeds)})" if e.seeds else "seeds –")
    if e.settle:
        added = [s for r in e.settle for s in r["seeds"]]
        parts.append(f"`--settle` added seeds {min(added)}–{max(added)} in {len(e.settle)} round(s) to the cells of "
                     f"undecided comparisons (up to n = {len(e.seeds) + len(added)} per cell)")
    parts.append(f"{e.trials} trials")
    return "; ".join(parts)


def _when_line(e: Evidence) -> str:
    runs = ", ".join(e.run_times) or "–"
    code = ", ".join(f"`{c}`" for c in e.code) or "unknown"
    dirty = " (uncommitted changes: dirty)" if e.dirty else " (clean)"
    return f"created {e.created}; runs {runs}; code {code}{dirty}"


def _rel(path: Path, book_dir: Path) -> str:
    return Path(os.path.relpath(path, book_dir)).as_posix()


def sweep_block(e: Evidence, book_dir: Path, qid: str | None = None) -> list[str]:
    recs = e.records_on(qid) if qid is not None else e.other_records()
    state = ("report failed" if e.error else "reduced scale" if e.smoke else
             "every comparison decided" if recs and all(r.get("decision") in DECIDED for r in recs) else
             "undecided comparisons" if recs else "no verdict record")
    out = [f"### Sweep `{e.name}` ({e.family}): {state}", "",
           f"- **scale**: {_scale_line(e)}", f"- **when, code**: {_when_line(e)}",
           f"- **report**: [{_rel(e.folder / '_report' / 'report.md', book_dir)}]"
           f"({_rel(e.folder / '_report' / 'report.md', book_dir)})"]
    if e.error:
        return out + [f"- **error**: {e.error}", ""]
    if not recs:
        out += ["- **verdict records**: none on this question", ""]
    else:
        out.append(f"- **verdict records** ({len(recs)}, from `_report/verdicts.json`):")
        out += [f"  - {record_line(r)}" for r in recs[:MAX_QUOTED]]
        if len(recs) > MAX_QUOTED:
            out.append(f"  - … {len(recs) - MAX_QUOTED} more in the report's verdicts.json")
        out.append("")
    if e.figure:
        out += [f"![{e.name}: {e.figure.stem}]({_rel(e.figure, book_dir)})", ""]
    return out


def question_section(q: dict, evidence: list[Evidence], book_dir: Path) -> list[str]:
    settled, why = status(q, evidence)
    margin = (f"**Smallest effect that matters**: ±{q['margin']:g} {q.get('unit') or ''} — {q.get('why') or ''}"
              if q.get("margin") else "**Smallest effect that matters**: none declared (only directions decide)")
    out = [f"## {q['id']}", "", f"**Question.** {q['text']}", "", margin.rstrip(" —"), "",
           f"**Status: {'settled' if settled else 'not settled'}** — {why}.", ""]
    for e in _bearing(q["id"], evidence):
        out += sweep_block(e, book_dir, q["id"])
    return out


def seeds_needed(q: dict, evidence: list[Evidence]) -> str:
    """The seeds per cell the undecided comparisons of ``q`` expect to need: 80% power for a direction
    at the observed effect size d = mean/std, at alpha/K (an upper bound under Holm)."""
    from lowbit_sweeps.analysis.common.stats import seeds_for_power

    need = []
    for e in _full(q, evidence):
        for r in e.records_on(q["id"]):
            if r.get("decision") in DECIDED or not r.get("std") or r.get("mean") is None:
                continue
            n = seeds_for_power(r["mean"] / r["std"], (r.get("alpha") or 0.05) / max(1, int(r.get("k") or 1)))
            need.append(n)
    if not need:
        return ""
    known = [n for n in need if n is not None]
    worst = f"{max(known)}" if known else "more than 100000"
    return (f"expected seeds per cell: {min(known) if known else worst}–{worst} for 80% power at the observed effects "
            f"(α/K); an effect inside the margin is decided as equivalent, often sooner")


def not_settled_entry(q: dict, why: str, proposals: list, estimates: dict, need: str = "") -> list[str]:
    out = [f"### {q['id']}", "", f"{q['text']}", "", f"- **why**: {why}"]
    if need:
        out.append(f"- **{need}**")
    if not proposals:
        out.append("- **run that would settle it**: no sweep bears on it; write one "
                   "(`Sweep(questions=(...))` naming it)")
    for p in proposals:
        out += [f"- **run that would settle it**: `{p.command}`", f"  - {estimate_text(estimates.get(p.cache_key))}"]
    return out + [""]


def markdown(root: Path, questions: list[dict], evidence: list[Evidence], proposals: dict, estimates: dict,
             book_dir: Path) -> str:
    """The whole page (module docstring)."""
    out = ["# Findings book", "",
           f"Built from {len(evidence)} sweep folder(s) under `{root}`. Per question: its smallest effect that "
           "matters, then each bearing sweep's verdict records (read from its report's `verdicts.json`: the paired "
           "95% interval, n, the Holm-adjusted p over the question's comparisons, the decision), the scale, time "
           "and code version they rest on; then the questions not settled, with the `--settle` run that would "
           "settle each and its estimated cost. Verdicts assume normal paired differences over seeds; from n = 8 "
           "each record also carries a sign-flip test. Rules: `analysis/book/page.py`.", "", "## Index", ""]
    for q in questions:
        settled, why = status(q, evidence)
        out.append(f"- [{q['id']}](#{q['id']}): {'settled' if settled else 'not settled'} ({why})")
    out.append("")
    for q in questions:
        out += question_section(q, evidence, book_dir)
    other = [e for e in evidence if e.other_records()]
    if other:
        out += ["## Other comparisons", "", "Records of no question, or of a question the sweep was not planned for "
                "(they do not settle it; each question's records are one Holm family in their report).", ""]
        for e in other:
            out += sweep_block(e, book_dir, None)
    out += ["## Not settled", ""]
    for q in questions:
        settled, why = status(q, evidence)
        if not settled:
            out += not_settled_entry(q, why, proposals.get(q["id"], []), estimates, seeds_needed(q, evidence))
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
        elif head.strip() not in ("Index", "Sweeps that bear on no question", "Other comparisons"):
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
