"""The findings book (analysis/book): built over smoke-sized folders of four families (written without
Ray, tests/book_fixtures.py), organized by question from the reports' verdict records (never their
text); every record line carries its interval, n, p_Holm and margin, every sweep its scale and code
version; the not-settled list names --settle runs with estimates; a new sweep changes only the
questions it bears on; the status rules on hand-made records; reduced scale cannot settle."""
from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from lowbit_sweeps.analysis.book import write_book
from lowbit_sweeps.analysis.book.evidence import Evidence, findings_lines, scale_of
from lowbit_sweeps.analysis.book.page import question_parts, status
from lowbit_sweeps.analysis.report import main
from book_fixtures import four_families, probe_folder

ROOT = Path(__file__).resolve().parents[1]


def fake_estimator(calls: list):
    def estimate(p):
        calls.append(p.command)
        return {"trials": 48, "trial_hours": 0.05, "device_hours": 0.0125, "device_share": 0.25, "device_unit": "GPU",
                "wall_s": 90.0, "devices": 1, "sbatch_time": "00:02:00", "margin": 0.3, "device": "cpu"}
    return estimate


@pytest.fixture(scope="module")
def folders(tmp_path_factory) -> Path:
    """The four folders with their family reports written once (copies keep the reports' times)."""
    root = four_families(tmp_path_factory.mktemp("folders"))
    write_book(root, estimates=False)
    shutil.rmtree(root / "_book")
    return root


def copy_of(folders: Path, dest: Path) -> Path:
    return Path(shutil.copytree(folders, dest))


@pytest.fixture(scope="module")
def book(folders, tmp_path_factory):
    root = copy_of(folders, tmp_path_factory.mktemp("results") / "res")
    calls: list = []
    md_path, html_path = write_book(root, estimator=fake_estimator(calls))
    return root, md_path.read_text(encoding="utf-8"), html_path.read_text(encoding="utf-8"), calls


def bears_on(md: str, sweep: str) -> set[str]:
    return {q for q, body in question_parts(md).items() if f"### Sweep `{sweep}`" in body}


def test_book_is_written_and_organized_by_question(book):
    root, md, html, _ = book
    assert (root / "_book" / "book.md").is_file() and (root / "_book" / "book.html").is_file()
    for sweep, planned in (("fake_probe", "multistep-vs-single"), ("fake_train", "pretrain-vs-scratch-mixup"),
                           ("fake_sr", "sr-parts"), ("fake_gradstats", "vste-resnet")):
        assert bears_on(md, sweep) == {planned}, (sweep, bears_on(md, sweep))
    # the side records of a question the sweep was not planned for are other comparisons
    assert "### Sweep `fake_gradstats`" in md.split("## Other comparisons")[1].split("## Not settled")[0]


RECORD_LINE = re.compile(r"^  - .+ — .+ vs .+: [-+0-9.e]+ \[[-+0-9.e]+, [-+0-9.e]+\][^,]*, n = \d+"
                         r"(, p_Holm = [0-9.e-]+ \(K = \d+, α = [0-9.e-]+\))?(, margin ±[0-9.]+)?: \*\*(higher|lower|"
                         r"equivalent|undecided|identical|no verdict)\*\*")


def test_every_record_line_carries_interval_n_margin_and_scale(book):
    _, md, _, _ = book
    blocks = re.findall(r"- \*\*verdict records\*\* \(\d+, from `_report/verdicts.json`\):\n((?:  - .*\n)+)", md)
    quoted = [ln for b in blocks for ln in b.splitlines() if not ln.startswith("  - … ")]
    assert len(blocks) >= 4 and len(quoted) >= 10
    assert all(RECORD_LINE.match(ln) for ln in quoted), [ln for ln in quoted if not RECORD_LINE.match(ln)][:3]
    for block in re.split(r"(?m)^### Sweep ", md)[1:]:
        assert re.search(r"- \*\*scale\*\*: profile `\w+`.*seeds [\d, ]+ \(n = \d+\); \d+ trials", block)
        assert re.search(r"- \*\*when, code\*\*: created .*; runs .*; code `\w+", block)
    assert "code `def5678-dirty` (uncommitted changes: dirty)" in md      # the sr plan's code version
    assert "profile `default`; data.name synthetic; data.n_train 512; train.epochs 4" in md
    assert "**Smallest effect that matters**: ±0.1 dB — 0.1 dB Y-channel PSNR" in md


def test_status_follows_the_rules(book):
    """Each index line against the rule recomputed here from the folders' verdicts.json: settled
    exactly when the records of non-reduced bearing sweeps are all decided."""
    root, md, _, _ = book
    index = md.split("## Index")[1].split("\n## ")[0]
    assert "- [sr-parts](#sr-parts): not settled (only reduced-scale evidence (fake_sr: profile smoke))" in index
    assert "- [dg-upper-bound](#dg-upper-bound): not settled (no sweep bears on it)" in index
    planned = {"fake_probe": "multistep-vs-single", "fake_train": "pretrain-vs-scratch-mixup",
               "fake_gradstats": "vste-resnet"}
    records = [r for f in root.glob("*/_report/verdicts.json") if f.parent.parent.name in planned
               for r in json.loads(f.read_text())["records"] if r["question"] == planned[f.parent.parent.name]]
    for qid in planned.values():
        mine = [r for r in records if r["question"] == qid]
        undecided = [r for r in mine if r["decision"] not in ("higher", "lower", "equivalent", "identical")]
        line = next(ln for ln in index.splitlines() if ln.startswith(f"- [{qid}]"))
        assert mine
        if undecided:
            assert f"not settled ({len(undecided)} of {len(mine)} comparisons undecided at n <= " in line, line
        else:
            assert re.search(rf"settled \({len(mine)} comparisons decided: .*; n <= \d; by ", line), line


def test_not_settled_lists_runs_with_estimates(book):
    _, md, _, calls = book
    ns = md.split("\n## Not settled\n")[1]
    entries = re.findall(r"(?m)^### (\S+)$", ns)
    assert "dg-upper-bound" in entries and "sr-parts" in entries
    assert "`lowbit-sweep sweeps/sr_lowbit.py --profile default --settle`" in ns
    assert "`lowbit-sweep sweeps/dg_vs_ste.py --profile default --settle`" in ns
    assert "expected seeds per cell:" in ns.split("### multistep-vs-single")[1].split("### ")[0]
    # one estimate per proposed run (budget_curve bears on three questions: timed once, shown thrice)
    assert ns.count("`sbatch --time=00:02:00` (+30%)") == ns.count("- **run that would settle it**: `") > len(calls) > 0
    assert len(set(calls)) == len(calls)
    assert "48 trials, 0.05 trial-hours, 0.0125 device-hours (0.25 GPU per trial), wall 1.5 min on 1 device(s)" in ns


def test_html_is_self_contained(book):
    root, md, html, _ = book
    images = re.findall(r'src="([^"]+)"', html)
    assert images and all(src.startswith("data:image/png;base64,iVBOR") for src in images)
    assert len(images) == md.count("\n![")
    assert "<h2 id=\"sr-parts\">sr-parts</h2>" in html


def test_rerun_after_a_new_sweep_changes_only_its_questions(folders, tmp_path):
    root = copy_of(folders, tmp_path / "res")
    calls: list = []
    before = question_parts(write_book(root, estimator=fake_estimator(calls))[0].read_text(encoding="utf-8"))
    n_calls = len(calls)
    probe_folder(root, name="fake_dg", questions=("dg-upper-bound",))
    md = write_book(root, estimator=fake_estimator(calls))[0].read_text(encoding="utf-8")
    after = question_parts(md)
    changed = {k.removeprefix("not-settled:") for k in before.keys() | after.keys() if before.get(k) != after.get(k)}
    assert "dg-upper-bound" in changed and changed == bears_on(md, "fake_dg")
    assert "### Sweep `fake_dg`" in after["dg-upper-bound"]
    assert len(calls) == n_calls + 1  # only the new proposal was timed: the cached ones were not timed again


def record(qid, decision, n=3, comparison="a vs b", mean=0.1, std=0.1):
    return {"question": qid, "comparison": comparison, "metric": "m", "baseline": "b", "unit": "fraction",
            "mean": mean, "lo": mean - 0.1, "hi": mean + 0.1, "n": n, "std": std, "p": 0.01, "p_equiv": 0.5,
            "p_holm": 0.02, "k": 2, "alpha": 0.05, "margin": 0.01, "decision": decision, "cells": [{}]}


def test_status_rules_on_hand_made_evidence(tmp_path):
    def ev(name, profile, records, qid="budget-binds", reduced=()):
        return Evidence(tmp_path / name, name, "probe", profile, [{"id": qid, "text": "t"}], [0, 1, 2], {}, "c", [],
                        ["abc"], [], None, 3, records=records, reduced=list(reduced))

    q = {"id": "budget-binds", "text": "t"}
    yes, no = record("budget-binds", "higher"), record("budget-binds", "undecided", comparison="c vs b")
    same = record("budget-binds", "equivalent", comparison="d vs b")
    assert status(q, []) == (False, "no sweep bears on it")
    assert status(q, [ev("a", "smoke", [yes], reduced=["profile smoke"])]) == \
        (False, "only reduced-scale evidence (a: profile smoke)")
    shrunk = ev("a", "default", [yes], reduced=["multi.steps 20 (declared 200)"])
    assert status(q, [shrunk]) == (False, "only reduced-scale evidence (a: multi.steps 20 (declared 200))")
    assert status(q, [ev("a", "default", [yes, no])]) == (False, "1 of 2 comparisons undecided at n <= 3")
    assert status(q, [ev("a", "default", [])]) == (False, "no verdict record on it in its sweeps' reports")
    assert status(q, [ev("a", "full", [yes, same])]) == \
        (True, "2 comparisons decided: 1 higher, 1 equivalent; n <= 3; by a (full)")
    # every comparison that the question names must be decided: a decided one elsewhere settles nothing
    other = ev("b", "default", [record("vste-vs-nste", "higher"), no])
    assert status(q, [other])[0] is False
    # a record of the question from a sweep whose plan does not name it does not bear on it
    side = Evidence(tmp_path / "p", "p", "mine", "default", [], [0, 1], {}, "c", [], ["abc"], [], None, 2,
                    records=[record("budget-binds", "lower")])
    assert status(q, [side]) == (False, "no sweep bears on it")


def test_smoke_sized_overrides_cannot_settle(tmp_path):
    """Issue 25's repro: multistep_ste at the default profile with smoke-sized --set values was marked
    settled from one unadjusted line; now its reduced scale keeps the question open."""
    from lowbit_sweeps.analysis.book.evidence import reduced_by

    plan = {"profile": "default", "base": {"multi.steps": 200}, "canonical_defaults": {"model.hidden": "[256, 256]",
            "scan.lr_step": 1e-5}, "overrides": {"model.hidden": "[32, 32]", "multi.steps": 20, "scan.lr_step": 0.01}}
    why = reduced_by(plan)
    assert len(why) == 3
    e = Evidence(tmp_path, "multistep_ste", "probe", "default", [{"id": "multistep-vs-single"}], [0, 1], {}, "c", [],
                 ["abc"], [], None, 2, records=[record("multistep-vs-single", "higher", n=2)], reduced=why)
    settled, text = status({"id": "multistep-vs-single", "text": "t"}, [e])
    assert not settled and text.startswith("only reduced-scale evidence (multistep_ste: model.hidden [32, 32]")


def test_findings_and_scale_parsing():
    md = "# T\n\n## Findings\n\n- one\n  - nested\ncontinued\n- two\n\n## Figures\n\n![a](a.png)\n"
    assert findings_lines(md) == ["one", "  nested continued", "two"]
    plan = {"axes": {"data.batch_size": [1024, 8192]}, "overrides": {"train.epochs": 5}, "base": {"data.name": "npz"},
            "canonical_defaults": {"data.name": "synthetic", "train.epochs": 10, "data.n_train": 0}}
    assert scale_of(plan) == {"data.name": "npz", "data.n_train": "0", "data.batch_size": "1024 / 8192",
                              "train.epochs": "5"}


def test_cli_book_and_its_bad_input(folders, tmp_path, capsys):
    assert main(["--book", str(tmp_path / "missing")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1
    (tmp_path / "empty").mkdir()
    assert main(["--book", str(tmp_path / "empty")]) == 2
    assert "no sweep folders" in capsys.readouterr().err
    root = copy_of(folders, tmp_path / "res")
    assert main(["--book", "--no-estimates", str(root)]) == 0
    out = capsys.readouterr().out.split()
    assert out == [str(root / "_book" / "book.md"), str(root / "_book" / "book.html")]
    assert "estimate: not timed yet" in (root / "_book" / "book.md").read_text()
    assert json.loads((root / "_book" / "estimates.json").read_text()) == {}


def test_book_never_imports_torch(folders, tmp_path):
    root = copy_of(folders, tmp_path / "res")
    code = ("import sys; from lowbit_sweeps.analysis.book import write_book; "
            f"write_book({str(root)!r}, estimates=False); "
            "assert 'torch' not in sys.modules, 'torch imported'")
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-500:]


def test_sweep_questions_are_checked_and_recorded():
    from lowbit_core.config import ConfigError
    from lowbit_core.questions import BY_ID, QUESTIONS, Question
    from lowbit_core.sweep import Sweep, describe_plan, load_sweep, plan

    base = dict(name="s", family="probe", metric="single_best_loss", base={"model.hidden": (8,)})
    with pytest.raises(ConfigError, match=r"unknown question 'nope'; valid: multistep-vs-single, dg-upper-bound"):
        plan(Sweep(**base, questions=("nope",)))
    with pytest.raises(ConfigError, match="named twice"):
        plan(Sweep(**base, questions=("dg-upper-bound", "dg-upper-bound")))
    with pytest.raises(ConfigError, match="findings is not a regular expression"):
        Question("bad", "t", findings="(")
    mine = Question("my-question", "Does my estimator help?", findings="tanh")
    d = describe_plan(plan(Sweep(**base, questions=(mine, "dg-upper-bound"))))
    q = BY_ID["dg-upper-bound"]
    assert d["questions"] == [{"id": "my-question", "text": "Does my estimator help?", "findings": "tanh",
                               "margin": None, "unit": "fraction", "why": ""},
                              {"id": "dg-upper-bound", "text": q.text, "findings": q.findings, "margin": 0.01,
                               "unit": "fraction", "why": q.why}]
    with pytest.raises(ConfigError, match="margin must be a positive number"):
        Question("bad", "t", margin=0)
    named = {q for f in (ROOT / "sweeps").glob("*.py") for q in load_sweep(f).questions}
    assert named <= set(BY_ID) and {q.id for q in QUESTIONS} <= named  # every question has a shipped sweep


def test_a_plug_in_question_gets_its_own_section(folders, tmp_path):
    from lowbit_core.results import read_plan, write_plan

    root = copy_of(folders, tmp_path / "res")
    rec = read_plan(root / "fake_probe")
    rec["questions"] = [{"id": "my-question", "text": "Does my estimator help?"}]
    write_plan(root / "fake_probe", rec)
    md = write_book(root, estimates=False)[0].read_text(encoding="utf-8")
    parts = question_parts(md)
    assert "### Sweep `fake_probe`" in parts["my-question"] and "Does my estimator help?" in parts["my-question"]
    assert "### Sweep `fake_probe`" not in parts["multistep-vs-single"]
