"""Verdicts as data in the train, sr, gradstats and generic reports (issue 25): each writes its verdicts
as records to ``_report/verdicts.json`` and renders its findings from them; the train report's reference
is declared (the plan's baseline, the canonical default, the plan's axis order), never the value with
the best test accuracy; the SR report says a part "costs the most PSNR" only where the record against
the runner-up is decided; and no findings line carries a direction word without a rendered interval."""
from __future__ import annotations

import json
import re

import pandas as pd
import pytest

import test_sr_report as sr_fake
from lowbit_sweeps.analysis import generic
from lowbit_sweeps.analysis.common.plan import SweepPlan
from lowbit_sweeps.analysis.gradstats.report import GradStatsAnalysis
from lowbit_sweeps.analysis.gradstats.report import write_report as write_gradstats
from lowbit_sweeps.analysis.sr.report import SRAnalysis
from lowbit_sweeps.analysis.sr.report import write_report as write_sr
from lowbit_sweeps.analysis.train.report import TrainAnalysis
from lowbit_sweeps.analysis.train.report import write_report as write_train
from test_gradstats_report import rows_of as gradstats_rows
from test_report_train import fake_bits_width_rows, fake_dsq_rows, fake_train_rows

FIELDS = ("question", "comparison", "metric", "baseline", "n", "lo", "hi", "p_holm", "k", "margin", "decision", "cells")
DIRECTION = re.compile(r"\b(higher|lower|better|worse|differ|costs the most|resolved|beats)\b", re.IGNORECASE)
DESCRIPTIVE = {
    # the question the gradstats answer opens with: a heading, its answers follow on their own lines
    r"^\*\*Do vSTE and nSTE differ on ResNet\?\*\*": "the question asked, not an answer",
}


def plan(**kw) -> SweepPlan:
    return SweepPlan.from_dict({"name": "fake", "profile": "default", **kw})


def records(out) -> list[dict]:
    doc = json.loads((out / "verdicts.json").read_text())
    assert doc["records"], "no records written"
    for r in doc["records"]:
        assert set(FIELDS) <= set(r), set(FIELDS) - set(r)
        assert r["decision"] in ("higher", "lower", "equivalent", "undecided", "identical", "no verdict")
        assert isinstance(r["cells"], list)
    return doc["records"]


def findings(md: str) -> list[str]:
    body = md.split("## Findings", 1)[1].split("\n## ", 1)[0]
    return [line for line in body.splitlines() if line.strip()]


def assert_backed(md: str) -> None:
    """Every findings line with a direction word carries a rendered record ('[' of an interval, or
    'n = ' of a count of records such as '0 of 3 settings differ (n = 2, Holm over K = 12)') or is one
    of the listed descriptive lines."""
    for line in findings(md):
        text = line.lstrip("- ").strip()
        if not DIRECTION.search(text) or any(re.search(p, text) for p in DESCRIPTIVE):
            continue
        assert "[" in text or "n = " in text, f"direction word without an interval: {text}"


# ---- each report writes its records ---------------------------------------------------------------

def test_train_report_writes_records_of_the_plans_question(tmp_path):
    p = plan(family="train", metric="test_acc", mode="max",
             axes={"train.mixup_alpha": [0.0, 1.0], "train.pretrain_epochs": [0, 2]},
             questions=[{"id": "pretrain-vs-scratch-mixup", "margin": 0.01}])
    paths = write_train(fake_train_rows(), None, tmp_path, p)
    assert tmp_path / "verdicts.json" in paths
    recs = records(tmp_path)
    assert {r["question"] for r in recs} == {"pretrain-vs-scratch-mixup"}
    pooled = next(r for r in recs if r["comparison"] == "train.mixup_alpha=1 vs 0 (pooled)")
    assert pooled["decision"] == "lower" and pooled["n"] == 3 and pooled["k"] == 10 and pooled["margin"] == 0.01
    assert pooled["baseline"] == "train.mixup_alpha=0 (the first value of the plan's axis)"
    # the cells are both arms' settings of the plan's axes
    assert {(c["train.pretrain_epochs"], c["train.mixup_alpha"]) for c in pooled["cells"]} == \
        {(0, 0.0), (0, 1.0), (2, 0.0), (2, 1.0)}


def test_train_question_follows_the_comparison_when_the_plan_names_several():
    p = plan(family="train", questions=[{"id": "pretrain-vs-scratch-mixup"}, {"id": "bits-vs-width"}])
    a = TrainAnalysis(fake_train_rows(), plan=p)
    assert {q for q, *_ in (k.split("|") for k in a.rec.raw)} == {"pretrain-vs-scratch-mixup"}
    bw = TrainAnalysis(fake_bits_width_rows(), plan=p)
    assert {k.split("|")[0] for k in bw.rec.raw} == {"bits-vs-width"}
    none = TrainAnalysis(fake_train_rows(), plan=plan(family="train", questions=[]))
    assert {k.split("|")[0] for k in none.rec.raw} == {"other"}  # a sweep that answers no question


def test_sr_report_writes_records_of_sr_parts(tmp_path):
    df, status = sr_fake.fake_sweep()
    write_sr(df, status, tmp_path)
    recs = records(tmp_path)
    parts = [r for r in recs if r["question"] == "sr-parts"]
    assert len(parts) == 14 and {r["k"] for r in parts if r["decision"] != "identical"} == {14}
    assert {r["margin"] for r in parts} == {0.1}
    assert {r["question"] for r in recs if r["comparison"].startswith("FP vs bicubic")} == {None}


def test_gradstats_report_writes_records_of_vste_resnet(tmp_path):
    write_gradstats(gradstats_rows(), None, tmp_path)
    recs = records(tmp_path)
    vste = [r for r in recs if r["question"] == "vste-resnet"]
    assert vste and all("the registry's reference estimator" in r["baseline"] for r in vste)
    floor = [r for r in recs if r["comparison"].startswith("log10 SNR (w) above the noise floor")]
    assert len(floor) == 4 and {r["question"] for r in floor} == {None}


def generic_rows() -> pd.DataFrame:
    rows = []
    for est, effect in (("identity", 0.0), ("window", -0.3)):
        for seed in (0, 1, 2):
            for step in (1, 2):
                rows.append({"sweep": "mine", "family": "nosuch", "trial_key": f"{est}-{seed}", "step": step,
                             "seed": seed, "loss": 1.0 + effect + 0.05 * seed * (1 + (est == "window")) - 0.1 * step,
                             "cfg.estimator.name": est, "cfg.seed": seed})
    return pd.DataFrame(rows)


def test_generic_report_records_the_plans_first_question_with_registered_labels(tmp_path):
    from lowbit_core.quant import estimator_registry

    p = plan(family="nosuch", metric="loss", mode="min", axes={"estimator.name": ["identity", "window"]},
             baseline={"estimator.name": "identity"}, questions=[{"id": "vste-vs-nste", "margin": 0.01}])
    generic.write(generic_rows(), None, tmp_path, p)
    (rec,) = records(tmp_path)
    assert rec["question"] == "vste-vs-nste" and rec["decision"] == "lower" and rec["n"] == 3
    window = estimator_registry.get("window").describe()
    assert window in rec["comparison"] and rec["baseline"].startswith("estimator.name=identity")
    md = (tmp_path / "report.md").read_text()
    assert f"estimator.name = window ({window}) − identity" in md
    assert_backed(md)
    generic.write(generic_rows(), None, tmp_path / "q", plan(family="nosuch", metric="loss", mode="min",
                                                              baseline={"estimator.name": "identity"}))
    assert records(tmp_path / "q")[0]["question"] is None  # no question: "other comparisons"


# ---- the train reference is declared, never the best group ----------------------------------------

def test_train_reference_is_the_plans_baseline_not_the_best_group():
    """mixup_alpha = 0 has the higher test accuracy (mixup costs 2 points); the plan declares 1.0."""
    df = fake_train_rows()
    final = df[df["epoch"] == df["epoch"].max()]
    good = final.groupby("cfg.train.mixup_alpha")["test_acc"].mean()
    assert good.idxmax() == 0.0
    a = TrainAnalysis(df, plan=plan(family="train", baseline={"train.mixup_alpha": 1.0}))
    c = a.comparisons[a.comparisons["axis"] == "cfg.train.mixup_alpha"]
    assert set(c["reference"]) == {1.0} and set(c["reference_rule"]) == {"the plan's baseline"}
    assert any("mixup_alpha=0 − mixup_alpha=1 (reference declared: the plan's baseline;" in x for x in a.findings)


@pytest.mark.parametrize("kw, ref, rule", [
    ({"canonical_defaults": {"train.mixup_alpha": 1.0}}, 1.0, "the family's canonical default"),
    ({"axes": {"train.mixup_alpha": [1.0, 0.0]}}, 1.0, "the first value of the plan's axis"),
    ({"baseline": {"train.mixup_alpha": 0.0}, "canonical_defaults": {"train.mixup_alpha": 1.0}}, 0.0,
     "the plan's baseline"),
])
def test_train_reference_rules_in_order(kw, ref, rule):
    a = TrainAnalysis(fake_train_rows(), plan=plan(family="train", **kw))
    c = a.comparisons[a.comparisons["axis"] == "cfg.train.mixup_alpha"]
    assert set(c["reference"]) == {ref} and set(c["reference_rule"]) == {rule}
    assert f"mixup_alpha = {ref:g} ({rule})" in a.markdown([])


def test_quantizer_reference_from_the_plans_canonical_defaults():
    """DoReFa 2-bit has the highest mean; the canonical defaults name the t=1 window."""
    defaults = {"model.kind": "binary", "quant.weight_estimator": "window", "quant.weight_param": 1.0}
    a = TrainAnalysis(fake_dsq_rows(), plan=plan(family="train", canonical_defaults=defaults))
    assert set(a.comparisons["reference"]) == {"binary (w: window t=1)"}
    assert set(a.comparisons["reference_rule"]) == {"the family's canonical defaults"}
    assert not any("best" in line for line in a.findings)


# ---- SR: "costs the most" only where the record is decided ----------------------------------------

def test_sr_claims_the_costliest_part_only_where_the_record_is_decided(monkeypatch):
    df, status = sr_fake.fake_sweep()
    md = SRAnalysis(df, status).markdown([])
    assert "costs the most" not in md.replace("no single part shown to cost the most", "")
    assert "no single part shown to cost the most PSNR (the lowest mean, tail" in md
    # tail now exactly 0.8 dB below body in both seeds at 4 bits: t infinite, decided even after Holm
    monkeypatch.setitem(sr_fake.COST, (4, "tail"), (-1.0, -1.1))
    df, status = sr_fake.fake_sweep()
    md = SRAnalysis(df, status).markdown([])
    line = next(x for x in findings(md) if "Set5 x2, 4 bits" in x)
    assert "quantizing **tail** costs the most PSNR; against the next (body)" in line and ": costlier" in line
    assert "1 bit: no single part shown to cost the most PSNR" in md


# ---- no direction word without a rendered interval -------------------------------------------------

@pytest.mark.parametrize("make", [
    lambda: TrainAnalysis(fake_train_rows()).markdown([]),
    lambda: TrainAnalysis(fake_dsq_rows()).markdown([]),
    lambda: TrainAnalysis(fake_bits_width_rows()).markdown([]),
    lambda: SRAnalysis(*sr_fake.fake_sweep()).markdown([]),
    lambda: GradStatsAnalysis(gradstats_rows()).markdown([]),
], ids=["train", "train-dsq", "train-bits-width", "sr", "gradstats"])
def test_direction_words_carry_an_interval(make):
    assert_backed(make())
