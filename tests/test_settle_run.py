"""``--settle`` end to end through the real CLI (slow): a tiny vSTE-vs-nSTE probe sweep settles in
rounds; every round's seeds run only at the cells of comparisons that were undecided at the look
before; the looks' alphas add up to at most 0.05; no (trial, step) row is duplicated or lost; a
decided comparison keeps its decision; the same command again adds nothing (the net of a killed run)."""
from __future__ import annotations

import json

import pandas as pd
import pytest

from conftest import run_sweep

SWEEP_TEXT = '''"""Tiny vSTE vs nSTE probe for the settle test."""
from lowbit_core.sweep import Sweep, grid

SWEEP = Sweep(name="tiny_vste", family="probe", metric="single_best_loss", questions=("vste-vs-nste",),
              base={"model.kind": "binary", "model.hidden": (16,), "model.pretrain_steps": 20, "scan.lr_step": 0.02,
                    "multi.steps": 2, "data.batch_size": 256},
              space={"estimator.name": grid("identity", "value_clip", "window"), "estimator.clip": grid(0.5, 1e-3),
                     "estimator.window": grid(1.0, 0.05)},
              seeds=(0, 1, 2))
'''


@pytest.mark.slow
def test_settle_adds_seeds_only_where_undecided_and_keeps_rows_exactly_once(tmp_path, shared_ray):
    sweep_file = tmp_path / "tiny_vste.py"
    sweep_file.write_text(SWEEP_TEXT)
    res = run_sweep(sweep_file, "--results", tmp_path / "res", "--settle", "--max-seeds", "5", ray=shared_ray)
    assert res.returncode == 0, res.stderr[-2000:]
    folder = tmp_path / "res" / "tiny_vste"
    state = json.loads((folder / "_settle.json").read_text())
    assert state["schedule"] == [3, 5]
    assert sum(look["alpha"] for look in state["looks"]) <= 0.05 + 1e-12
    assert "look 0 (n = 3 seeds" in res.stdout and "settle:" in res.stdout
    df = pd.read_parquet(folder)
    assert not df.duplicated(["trial_key", "step"]).any()
    keys = ["estimator.name", "estimator.clip", "estimator.window"]
    final = df.sort_values("step").groupby("trial_key").tail(1)
    for r, rnd in enumerate(state["rounds"]):
        # the cells undecided at look r are the ones this round gave seeds, and only those ran them
        open_cells = [c for rec in json_records(state, r, decided=False, folder=folder) for c in rec["cells"]]
        ran = final[final["cfg.seed"].isin(rnd["seeds"])]
        assert len(ran) == len(rnd["cells"]) * len(rnd["seeds"])
        for _, row in ran.iterrows():
            cell = {k: row[f"cfg.{k}"] for k in keys}
            assert any(all(c.get(k) == v for k, v in cell.items() if k in c) for c in rnd["cells"])
        assert all(c in rnd["cells"] for c in open_cells)
    # a decision made at a look is kept at the later looks
    last = json.loads((folder / "_report" / "verdicts.json").read_text())["records"]
    for look_no, look in enumerate(state["looks"]):
        for cid, rec in look["decided"].items():
            now = next(x for x in last if x["id"] == cid)
            assert now["decision"] == rec["decision"] and now["look"] == look_no
    rows = len(df)
    again = run_sweep(sweep_file, "--results", tmp_path / "res", "--settle", "--max-seeds", "5", ray=shared_ray)
    assert again.returncode == 0, again.stderr[-2000:]
    assert len(pd.read_parquet(folder)) == rows and "0 rows written this run" in again.stdout


def json_records(state: dict, look: int, decided: bool, folder) -> list[dict]:
    """The comparisons of the sweep's question that were (un)decided at ``look``: those decided at or
    before it are in the state; the rest are the final report's records not decided by then."""
    done = {cid for lk in state["looks"][:look + 1] for cid in lk["decided"]}
    records = json.loads((folder / "_report" / "verdicts.json").read_text())["records"]
    mine = [x for x in records if x["question"] == "vste-vs-nste"]
    return [x for x in mine if (x["id"] in done) == decided]
