"""Verdicts as data: every comparison a report decides is a record, and its text is rendered from it.

A report computes its findings twice through one :class:`Recorder`: the first pass collects each
comparison's raw verdict (:meth:`Recorder.verdict`), :meth:`Recorder.adjust` decides them all at
once -- Holm over the comparisons of each question (directions and equivalences within the
question's margin, :func:`analysis.common.stats.holm`), at the level of the current look of a
``--settle`` run (:mod:`analysis.common.sequential`), earlier looks' decisions kept -- and the
second pass renders the text from the adjusted verdicts. :meth:`Recorder.records` are written to
``_report/verdicts.json`` (:func:`write_records`); the book and ``--settle`` read them, never the text.

A record: ``id`` (question | comparison | metric), ``question`` (None: "other comparisons", a family
of its own), ``comparison``, ``metric``, ``baseline`` (declared by the report or the plan, never
picked from the data), ``unit``, ``mean``, ``lo``, ``hi`` (the unadjusted paired-t 95% interval),
``n``, ``p``, ``p_equiv``, ``p_holm``, ``k``, ``alpha``, ``margin``, ``decision`` (higher / lower /
equivalent / undecided / identical / no verdict), ``look``, ``cells`` (the settings of both arms:
what ``--settle`` gives more seeds) and, where n >= 8, ``p_signflip`` with ``cross_check``: the exact
sign-flip permutation test of mean 0 (distribution-free) and whether it agrees with the t test.
"""
from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats as sstats

from lowbit_sweeps.analysis.common.sequential import current_look, read_state
from lowbit_sweeps.analysis.common.stats import ALPHA, Verdict, finite_values, holm, paired_verdict

VERDICTS_FILE = "verdicts.json"
OTHER = None
CROSS_CHECK_MIN_N = 8
ASSUMPTION = ("paired differences over seeds are normal (paired t, two one-sided tests); from n >= 8 each "
              "record also carries a sign-flip permutation test that assumes only symmetry")


@dataclass
class Comparison:
    """What is compared (the identity and labels of a record)."""

    question: str | None
    comparison: str
    metric: str
    baseline: str
    unit: str = ""
    cells: list = field(default_factory=list)

    @property
    def id(self) -> str:
        return f"{self.question or 'other'}|{self.comparison}|{self.metric}"


def signflip_p(diffs) -> float:
    """Two-sided p-value of mean 0 by the exact (n <= 16) or sampled sign-flip permutation test."""
    d = finite_values(diffs)
    if d.size < 2 or not d.any():
        return math.nan
    res = sstats.permutation_test((d,), np.mean, permutation_type="samples", n_resamples=100_000,
                                  alternative="two-sided", random_state=0)
    return float(res.pvalue)


def cells_of(rows: pd.DataFrame | None, axes) -> list[dict]:
    """The distinct settings (the plan's axes other than the seed) among ``rows``: the cells that feed
    a comparison, as ``{dotted key: value}``."""
    if rows is None or rows.empty:
        return []
    cols = [f"cfg.{k}" for k in axes if k != "seed" and f"cfg.{k}" in rows.columns]
    if not cols:
        return [{}]
    out = rows[cols].drop_duplicates().sort_values(cols, kind="stable")
    return [{c.removeprefix("cfg."): _plain(v) for c, v in r.items()} for r in out.to_dict("records")]


def _plain(v):
    if isinstance(v, np.generic):
        return v.item()
    return v


class Recorder:
    """Collects a report's comparisons and decides them together (module docstring).

    ``plan``: the sweep's plan (its questions' margins, the run's ``--margin`` overrides, the axes
    that name cells); ``settle``: the ``_settle.json`` state of a ``--settle`` run, if any.
    """

    def __init__(self, plan=None, settle: dict | None = None, margins: dict | None = None):
        self.plan = plan
        self.axes = dict(getattr(plan, "axes", None) or {})
        self.alpha, self.frozen = current_look(settle)
        self.look = len(settle["looks"]) - 1 if settle and settle.get("looks") else 0
        self.margins = {**_plan_margins(plan), **((settle or {}).get("margins") or {}), **(margins or {})}
        self.units = _plan_units(plan)
        self.raw: dict[str, tuple[Verdict, Comparison, np.ndarray]] = {}
        self.final: dict[str, Verdict] | None = None

    @classmethod
    def for_folder(cls, folder: str | Path | None, plan=None) -> Recorder:
        return cls(plan, read_state(folder) if folder and Path(folder).is_dir() else None)

    def margin(self, question: str | None, unit: str = "") -> float:
        """The question's margin where the comparison is in the question's unit (the first word of
        ``unit``: 'fraction', 'dB'); NaN otherwise (only a direction can decide it)."""
        m = self.margins.get(question) if question else None
        if m is None or (unit and unit.split()[0] != (self.units.get(question) or "fraction").split()[0]):
            return math.nan
        return float(m)

    def verdict(self, diffs, *, question: str | None, comparison: str, metric: str, baseline: str,
                unit: str = "", rows: pd.DataFrame | None = None) -> Verdict:
        """The verdict on paired ``diffs`` (one per seed) of this comparison: raw in the first pass,
        decided (Holm over its question's comparisons) after :meth:`adjust`."""
        what = Comparison(question, comparison, metric, baseline, unit, cells_of(rows, self.axes))
        if self.final is not None and what.id in self.final:
            return self.final[what.id]
        values = finite_values(getattr(diffs, "values", diffs) if not isinstance(diffs, np.ndarray) else diffs)
        v = paired_verdict(values, self.margin(question, unit))
        self.raw[what.id] = (v, what, values)
        return v

    def adjust(self) -> None:
        """Decide every collected comparison: Holm at the look's alpha per question; earlier looks'
        decisions kept."""
        final: dict[str, Verdict] = {}
        by_question: dict[str | None, list[str]] = {}
        for cid, (_, what, _) in self.raw.items():
            by_question.setdefault(what.question, []).append(cid)
        for cids in by_question.values():
            for cid, v in zip(cids, holm([self.raw[c][0] for c in cids], self.alpha)):
                final[cid] = v
        for cid, rec in self.frozen.items():
            if cid in final:
                final[cid] = _frozen(final[cid], rec)
        self.final = final

    def records(self) -> list[dict]:
        """One record per comparison (module docstring); after :meth:`adjust`."""
        if self.final is None:
            self.adjust()
        out = []
        for cid, (_, what, values) in self.raw.items():
            v = self.final[cid]
            rec = {**asdict(what), "id": cid, "mean": v.mean, "lo": v.lo, "hi": v.hi, "n": v.n, "std": v.std,
                   "p": v.p, "p_equiv": v.p_equiv, "p_holm": v.p_holm, "k": v.k, "alpha": v.alpha,
                   "margin": v.margin, "decision": v.decision,
                   "look": self.frozen.get(cid, {}).get("look", self.look)}
            if v.n >= CROSS_CHECK_MIN_N and v.decision not in ("identical", "no verdict"):
                rec["p_signflip"] = p_sf = signflip_p(values)
                by_t, by_sf = v.decision in ("higher", "lower"), p_sf < v.alpha / max(v.k, 1)
                rec["cross_check"] = "agrees" if by_t == by_sf else (
                    "disagrees: the sign-flip test finds " + ("no direction" if by_t else "a direction")
                    + f" at level alpha/K = {v.alpha / max(v.k, 1):.2g}")
            out.append({k: _json_num(x) for k, x in rec.items()})
        return out


def _frozen(v: Verdict, rec: dict) -> Verdict:
    """``v`` with the decision recorded at an earlier look (its numbers are those of that look)."""
    d = rec.get("decision")

    def num(key: str) -> float:
        x = rec.get(key)
        return math.nan if x is None else float(x)

    sign = 1 if d == "higher" else -1 if d == "lower" else (None if d == "no verdict" else 0)
    return replace(v, n=int(rec["n"]), mean=num("mean"), lo=num("lo"), hi=num("hi"), std=num("std"), p=num("p"),
                   p_equiv=num("p_equiv"), p_holm=num("p_holm"), k=int(rec["k"]), alpha=num("alpha"), sign=sign,
                   equivalent=d == "equivalent", identical=d == "identical")


def _json_num(x):
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return _plain(x)


def _plan_margins(plan) -> dict:
    """question id -> margin: the shipped questions' (:mod:`lowbit_core.questions`), then those the
    plan recorded with a margin (a plug-in's own questions), then the run's ``margins`` overrides."""
    from lowbit_core.questions import BY_ID

    raw = getattr(plan, "raw", None) or {}
    out = {qid: q.margin for qid, q in BY_ID.items()}
    out.update({q["id"]: q["margin"] for q in raw.get("questions") or []
                if isinstance(q, dict) and q.get("id") and "margin" in q})
    out.update(raw.get("margins") or {})
    return out


def _plan_units(plan) -> dict:
    """question id -> the unit of its margin (shipped questions, then the plan's own)."""
    from lowbit_core.questions import BY_ID

    raw = getattr(plan, "raw", None) or {}
    out = {qid: q.unit for qid, q in BY_ID.items()}
    out.update({q["id"]: q["unit"] for q in raw.get("questions") or [] if isinstance(q, dict) and q.get("unit")})
    return out


def write_records(out_dir: str | Path, records: list[dict], plan=None) -> Path:
    """``out_dir/verdicts.json``: the records with the sweep's name, profile, scale facts and the
    assumption they rest on; written atomically."""
    raw = getattr(plan, "raw", None) or {}
    doc = {"sweep": raw.get("name"), "family": raw.get("family"), "profile": raw.get("profile"),
           "overrides": raw.get("overrides") or {}, "seeds": raw.get("seeds") or [], "git_sha": raw.get("git_sha"),
           "assumption": ASSUMPTION, "records": records}
    path = Path(out_dir) / VERDICTS_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(doc, indent=1, default=str) + "\n", encoding="utf-8")
    os.replace(tmp, path)
    return path


def read_records(report_dir: str | Path) -> dict | None:
    path = Path(report_dir) / VERDICTS_FILE
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None



def write_decided(make_analysis, out_dir: str | Path, plan=None) -> list[Path]:
    """Write a report whose verdicts are records: ``make_analysis(recorder)`` builds the family's
    analysis (with ``make_figures(dir)`` and ``markdown(paths)``); the first build's markdown collects
    the comparisons, :meth:`Recorder.adjust` decides them, the second build renders them. Returns
    report.md, the figures and ``verdicts.json``."""
    from lowbit_sweeps.analysis.common.writing import write_analysis

    rec = Recorder.for_folder(Path(out_dir).parent, plan)
    make_analysis(rec).markdown([])
    rec.adjust()
    paths = write_analysis(make_analysis(rec), out_dir)
    records = rec.records()
    report = next((p for p in paths if p.name == "report.md"), None)
    if report is not None:
        with open(report, "a", encoding="utf-8") as fh:
            fh.write("\n" + "\n".join(records_section(records, rec)) + "\n")
    return paths + [write_records(out_dir, records, plan)]


def records_section(records: list[dict], rec: Recorder) -> list[str]:
    """The report's closing section: how many comparisons each question decided, the level, the
    assumption, and every record whose distribution-free cross-check disagrees."""
    out = ["## Verdict records", "",
           f"{len(records)} comparison(s) in `verdicts.json` (the text above is rendered from them). "
           f"Assumption: {ASSUMPTION}." + (f" Settle look {rec.look}: family-wise α spent at this look "
                                           f"{rec.alpha:.3g}; decisions of earlier looks kept." if rec.look or
                                           rec.alpha != ALPHA else ""), ""]
    by_q: dict = {}
    for r in records:
        by_q.setdefault(r["question"] or "other comparisons", {}).setdefault(r["decision"], 0)
        by_q[r["question"] or "other comparisons"][r["decision"]] += 1
    out += [f"- **{q}**: " + ", ".join(f"{n} {d}" for d, n in counts.items()) for q, counts in by_q.items()]
    flagged = [r for r in records if str(r.get("cross_check", "")).startswith("disagrees")]
    out += [f"- **cross-check disagrees**: {r['comparison']} ({r['metric']}): {r['cross_check']} "
            f"(sign-flip p = {r['p_signflip']:.2g}, n = {r['n']})" for r in flagged]
    return out
