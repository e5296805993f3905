"""The probe report's verdicts as data (issue 25): every comparison it decides is a record of
``_report/verdicts.json`` with its question, and every findings line that says a direction renders
the record that backs it."""
from __future__ import annotations

import json
import re

import numpy as np
import pandas as pd
import pytest

from lowbit_sweeps.analysis.common.plan import SweepPlan
from lowbit_sweeps.analysis.probe.records import decided
from lowbit_sweeps.analysis.probe.report import ProbeAnalysis, write_report
from test_report import fake_probe_rows
from test_report_dg import fake_method_rows, findings_lines

PROBE_PLAN = SweepPlan(axes={"model.kind": ["fp", "binary"], "estimator.name": ["identity", "value_clip", "window"],
                             "multi.noise": [0.0, 0.05], "seed": [0, 1, 2]})
METHOD_PLAN = SweepPlan(axes={"model.kind": ["fp", "binary"], "method": ["ste", "dg", "cdg"], "dg.steps": [1, 2, 4],
                              "multi.optimizer": ["sgd", "adam"], "budget.epsilon": [0.05, 0.1],
                              "model.hidden": ["[32, 32]", "[64, 64]"], "seed": [0, 1, 2]})
DIRECTION = ("higher", "lower", "differ", "binds", "saturated", "YES", "gains more", "gains less", "better")
INTERVAL = re.compile(r"\[[^\[\]]*, [^\[\]]*\]")
DESCRIPTIVE = {
    # the plan's declared mode of its metric, not a comparison (only where the plan names a metric)
    r"^- Sweep metric \S+ \((lower|higher) is better; from _sweep\.json\)": "the plan's mode",
}


def probe_rows() -> pd.DataFrame:
    """The fake probe sweep with a held-out gain, and value_clip's single-step loss equal to
    identity's on every seed (its comparison with identity: every difference exactly 0)."""
    df = fake_probe_rows()
    df["rel_improvement_heldout"] = 0.5 * df["rel_improvement_best"] + 0.001 * df["seed"]
    clip = df["cfg.estimator.name"] == "value_clip"
    df.loc[clip, "single_best_loss"] = 1.0 + 0.1 * df.loc[clip, "seed"]
    return df


def rescaled(df: pd.DataFrame, factor, **cfg) -> pd.DataFrame:
    """``df``'s trials with the gain over single-step STE times ``factor`` (a number or a per-row
    series), ``cfg`` columns set and the trial keys made new."""
    out = df.copy()
    sbl = out["single_best_loss"]
    for col in ("loss", "best_loss"):
        out[col] = sbl - factor * (sbl - out[col])
    out["rel_improvement_best"] = out["rel_improvement"] = (sbl - out["best_loss"]) / sbl
    tag = "-".join(f"{v}" for v in cfg.values())
    out["trial_key"] = out["trial_key"] + f"-{tag}"
    out["trial_id"] = out["trial_id"] + f"-{tag}"
    return out.assign(**cfg)


def method_rows() -> pd.DataFrame:
    """fake_method_rows plus multi-step STE (adam) (1.2 times sgd's gain, plus 1% x seed), at
    epsilon 0.1 and 0.05 (half the gain, plus 1% x seed), on a [64, 64] layer (4096 weights)."""
    base = fake_method_rows().assign(layer_weights=64 * 64)
    adam = rescaled(base[base["cfg.method"] == "ste"], 1.2 + 0.01 * base["seed"], **{"cfg.multi.optimizer": "adam"})
    full = pd.concat([base, adam], ignore_index=True)
    half = rescaled(full, 0.5 + 0.01 * full["seed"], **{"cfg.budget.epsilon": 0.05})
    half["max_abs_delta"] = 0.5 * half["max_abs_delta"]
    return pd.concat([full, half], ignore_index=True)


def layer_rows() -> pd.DataFrame:
    """method_rows at epsilon 0.1 on two layers: [64, 64] (4096 weights) and [32, 32] (1024 weights,
    the gains times 0.8 + 1% x seed)."""
    big = method_rows()[lambda d: d["cfg.budget.epsilon"] == 0.1]
    small = rescaled(big, 0.8 + 0.01 * big["seed"], **{"cfg.model.hidden": "[32, 32]"}).assign(layer_weights=32 * 32)
    return pd.concat([big, small], ignore_index=True)


def report(tmp_path_factory, name: str, df: pd.DataFrame, plan: SweepPlan):
    out = tmp_path_factory.mktemp(name) / "_report"
    write_report(df, None, out, plan)
    return (out / "report.md").read_text(), json.loads((out / "verdicts.json").read_text())["records"]


@pytest.fixture(scope="module")
def probe(tmp_path_factory):
    return report(tmp_path_factory, "probe", probe_rows(), PROBE_PLAN)


@pytest.fixture(scope="module")
def methods(tmp_path_factory):
    return report(tmp_path_factory, "methods", method_rows(), METHOD_PLAN)


@pytest.fixture(scope="module")
def layers(tmp_path_factory):
    return report(tmp_path_factory, "layers", layer_rows(), METHOD_PLAN)


def check_records(records: list[dict], question) -> list[dict]:
    mine = [r for r in records if r["question"] == question]
    assert mine, f"no records of {question}"
    for r in mine:
        assert r["n"] >= 2 and r["lo"] is not None and r["hi"] is not None, r
        assert r["decision"] in ("higher", "lower", "equivalent", "undecided", "identical"), r
        if r["decision"] != "identical":
            assert r["p_holm"] is not None and r["k"] >= 1, r
        assert r["margin"] == (0.01 if question else None), r
        assert r["cells"] and all(c for c in r["cells"]), r
    return mine


def check_directions(md: str):
    """A findings line with a direction word renders a record (its interval and n) or is a listed
    descriptive line."""
    for line in findings_lines(md):
        words = [w for w in DIRECTION if w in line]
        if not words or any(re.search(p, line) for p in DESCRIPTIVE):
            continue
        assert INTERVAL.search(line) and "n = " in line, (words, line)


# ---- the records -----------------------------------------------------------------------------

def test_probe_records(probe):
    md, records = probe
    multi = check_records(records, "multistep-vs-single")
    assert {r["comparison"] for r in multi} == {
        "multi-step STE vs single-step STE (fp)", "multi-step STE vs single-step STE (binary)",
        "binary vs FP MLP (rel_improvement_best, paired on seed)"}
    assert {r["baseline"] for r in multi} == {"single-step STE", "FP MLP"} and {r["k"] for r in multi} == {3}
    fp_binary = next(r for r in multi if r["baseline"] == "FP MLP")
    # binary's gain is 0.01 below FP's on every seed; both arms' cells
    assert fp_binary["decision"] == "lower" and fp_binary["mean"] == pytest.approx(-0.01)
    assert {c["model.kind"] for c in fp_binary["cells"]} == {"fp", "binary"}
    assert "binary − FP paired on seed: -0.01 [-0.01, -0.01], n = 3" in md and "binary gains less than FP" in md
    other = check_records(records, None)
    assert {r["comparison"] for r in other} >= {"held-out gain over single-step STE (fp)",
                                                "noise=0.05 vs noise=0 (binary)"}
    check_directions(md)


def test_estimator_setting_with_no_difference_is_identical_and_not_in_k(probe):
    md, records = probe
    vste = {r["comparison"]: r for r in check_records(records, "vste-vs-nste")}
    assert set(vste) == {"value_clip c=0.5 vs identity", "window t=0.1 vs identity"}
    clip, window = vste["value_clip c=0.5 vs identity"], vste["window t=0.1 vs identity"]
    assert clip["decision"] == "identical" and clip["mean"] == 0 and clip["baseline"] == "identity"
    assert window["k"] == 1  # the identical setting is not counted
    assert {c["estimator.name"] for c in window["cells"]} == {"window", "identity"}
    table = md.split("## vSTE vs nSTE", 1)[1].split("\n## ", 1)[0]
    assert "| identity | – | baseline |" in table and "n = 0" not in table
    assert "identical in all 3 seeds (every difference exactly 0; not counted in K)" in table
    assert "Holm-adjusted over K = 1 comparison," in table
    assert "1 identical (not in K)" in md


def test_method_records(methods):
    md, records = methods
    dg = check_records(records, "dg-upper-bound")
    refs = {"single-step STE", "multi-step STE (sgd)", "multi-step STE (adam)"}
    # every DG and CDG variant (4) against every STE reference (3), per kind (2): no picking
    assert {r["baseline"] for r in dg} == refs and len(dg) == 2 * 4 * 3 and {r["k"] for r in dg} <= {24}
    assert all(r["metric"] == "(L_method - L_ref)/L_ref of best_loss" for r in dg)
    budget = check_records(records, "budget-binds")
    vs_top = [r for r in budget if r["baseline"] == "largest epsilon"]
    # every (kind, method) but single-step STE: 2 kinds x 6 methods, one smaller epsilon each
    assert len(vs_top) == 12 and len(budget) == 12 + 24
    assert all(r["comparison"].endswith("epsilon=0.05 vs epsilon=0.1") for r in vs_top)
    assert all({c["budget.epsilon"] for c in r["cells"]} == {0.05, 0.1} for r in vs_top)
    # the gain at 0.05 is about half the gain at 0.1: where the gain is positive the budget binds there
    binary_dg4 = next(r for r in vs_top if "binary, DG S=4," in r["comparison"])
    assert binary_dg4["decision"] == "lower"
    assert "the budget binds at epsilon 0.05 (" in md
    check_directions(md)
    answers = [x for x in findings_lines(md) if "usable upper bound" in x]
    assert len(answers) == 2 and all("multi-step STE (adam) (" in x for x in answers)


def test_discrete_methods_against_each_multistep_ste(layers):
    md, records = layers
    discrete = check_records(records, "discrete-methods")
    # DG S=1, 2, 4 and CDG at 2 layer sizes against sgd and adam, per kind
    assert {r["baseline"] for r in discrete} == {"multi-step STE (sgd)", "multi-step STE (adam)"}
    assert len(discrete) == 2 * 4 * 2 * 2
    assert all(r["question"] == "discrete-methods" and "layer_weights=" in r["comparison"] for r in discrete)
    lines = [x for x in findings_lines(md) if x.startswith("- Equal compute")]
    assert any("against multi-step STE (adam)" in x for x in lines) and any("against multi-step STE (sgd)" in x for x in lines)
    check_directions(md)


def test_comparison_ids_are_stable_between_runs(tmp_path_factory, methods):
    _, records = methods
    _, again = report(tmp_path_factory, "again", method_rows(), METHOD_PLAN)
    assert [r["id"] for r in records] == [r["id"] for r in again]
    assert len({r["id"] for r in records}) == len(records)
    assert not any(re.search(r"\d\.\d{5,}", r["id"]) for r in records)  # config values, no computed floats


# ---- words from decisions only -------------------------------------------------------------------

def test_fp_and_binary_alike_only_when_equivalent():
    """Binary's gain equal to FP's up to ±0.0005 per seed: the record is equivalent (within the 1%
    margin), and the line says they gain alike, with no direction word."""
    df = fake_probe_rows()
    binary = df["cfg.model.kind"] == "binary"
    jitter = df["seed"].map({0: -0.0005, 1: 0.0005, 2: 0.0})
    df.loc[binary, "rel_improvement_best"] += 0.01 * df.loc[binary, "step"] / 20 + jitter[binary] * df.loc[binary, "step"] / 20
    md, rec = decided(lambda r: ProbeAnalysis(df, plan=PROBE_PLAN, rec=r).markdown([]))
    line = next(x for x in findings_lines(md) if x.startswith("- FP vs binary"))
    record = next(r for r in rec.records() if r["baseline"] == "FP MLP")
    assert record["decision"] == "equivalent"
    assert "FP and binary gain alike (within ±0.01" in line
    assert not any(w in line for w in DIRECTION)


def test_undecided_dg_answer_has_no_direction_word():
    """Two seeds, DG S=1 a hair below multi-step STE with noise: undecided against it, so neither
    YES nor NO."""
    gains = {"binary": {("ste", None): 0.01, ("dg", 1): 0.011}}
    df = fake_method_rows(gains)
    df = df[df["seed"] < 2]
    noise = df["seed"].map({0: 0.004, 1: -0.004}) * (df["cfg.method"] == "dg")
    df["best_loss"] = df["best_loss"] * (1 + noise)
    md, rec = decided(lambda r: ProbeAnalysis(df, rec=r).markdown([]))
    answer = next(x for x in findings_lines(md) if "usable upper bound" in x)
    assert "DG: UNDECIDED — DG S=1 (single-step): against" in answer
    assert "YES" not in answer and "NO —" not in answer
    decisions = {r["baseline"]: r["decision"] for r in rec.records() if r["question"] == "dg-upper-bound"}
    assert decisions["multi-step STE (sgd)"] == "undecided"


def test_without_a_recorder_old_callers_get_raw_verdicts():
    a = ProbeAnalysis(fake_probe_rows())
    lines = a.findings_lines()
    assert any(x.startswith("Multi-step vs single-step for fp") for x in lines)
    assert a.rec.final is None and a.rec.raw and not any("p_Holm" in x for x in lines)
    assert np.isfinite([v[0].p for v in a.rec.raw.values() if v[0].n >= 2]).all()
