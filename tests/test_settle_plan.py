"""``--settle`` without Ray: a round's seeds run only at its cells, the plan records the rounds and
``--extend`` accepts them as a widening (and nothing else); the CLI's settle options are checked in
one line before Ray starts; a run whose overrides shrink the declared scale is reduced (the book
cannot settle on it), the smoke-sized repro of issue 25 included."""
from __future__ import annotations

import json

import pytest

from conftest import run_sweep
from lowbit_core.config import ConfigError, flatten
from lowbit_core.sweep import Sweep, describe_plan, grid, plan
from lowbit_sweeps.analysis.book.evidence import reduced_by
from lowbit_sweeps.launch.plan_record import widening

SWEEP = Sweep(name="tiny_settle", family="probe", metric="loss",
              base={"model.hidden": (8,), "model.pretrain_steps": 5, "scan.lr_step": 0.05, "multi.steps": 2},
              space={"model.kind": grid("fp", "binary"), "multi.optimizer": grid("sgd", "adam")}, seeds=(0, 1),
              questions=("multistep-vs-single",))


def points(p) -> set[tuple]:
    return {(flatten(t.config)["seed"], flatten(t.config)["model.kind"], flatten(t.config)["multi.optimizer"])
            for t in p.trials}


def test_a_round_adds_its_seeds_at_its_cells_only():
    base = plan(SWEEP)
    assert len(base.trials) == 8
    rounds = ({"seeds": [2, 3], "cells": [{"model.kind": "binary", "multi.optimizer": "adam"}]},
              {"seeds": [4], "cells": [{"model.kind": "fp"}]})
    p = plan(SWEEP, settle=rounds)
    added = points(p) - points(base)
    assert added == {(2, "binary", "adam"), (3, "binary", "adam"), (4, "fp", "sgd"), (4, "fp", "adam")}
    assert points(base) <= points(p)
    # the base trials keep their keys: the earlier rows stay theirs
    assert {t.key for t in base.trials} <= {t.key for t in p.trials}
    assert describe_plan(p)["settle"] == [dict(r) for r in rounds]
    assert "settle" not in describe_plan(base)


def test_extend_accepts_new_rounds_and_refuses_a_changed_one():
    one = json.loads(json.dumps(describe_plan(plan(SWEEP, settle=({"seeds": [2], "cells": [{"model.kind": "fp"}]},)))))
    two_rounds = ({"seeds": [2], "cells": [{"model.kind": "fp"}]}, {"seeds": [3], "cells": [{"model.kind": "fp"}]})
    two = json.loads(json.dumps(describe_plan(plan(SWEEP, settle=two_rounds))))
    added, other = widening(one, two)
    assert other == [] and added == {"settle": [{"seeds": [3], "cells": [{"model.kind": "fp"}]}]}
    base = json.loads(json.dumps(describe_plan(plan(SWEEP))))
    assert widening(base, one) == ({"settle": one["settle"]}, [])
    changed = json.loads(json.dumps(describe_plan(plan(SWEEP, settle=({"seeds": [2], "cells": [{"model.kind": "binary"}]},)))))
    assert widening(one, changed)[1] == ["settle"]


def test_settle_refuses_an_optuna_sweep():
    from lowbit_core.sweep import LogUniform, Optuna

    s = Sweep(name="o", family="probe", metric="loss", base={"model.hidden": (8,)},
              space={"multi.lr": LogUniform(1e-3, 1e-1)}, search=Optuna(num_samples=2), seeds=(0, 1))
    with pytest.raises(ConfigError, match="--settle adds seeds to grid cells"):
        plan(s, settle=({"seeds": [2], "cells": [{}]},))


@pytest.mark.parametrize("args, message", [
    (["--max-seeds", "8"], "--max-seeds, --budget and --margin go with --settle"),
    (["--settle", "--max-seeds", "1"], "--max-seeds must be >= 2"),
    (["--settle", "--margin", "nope=0.1"], "--margin: the sweep bears on no question 'nope'; valid: multistep-vs-single"),
    (["--settle", "--margin", "multistep-vs-single=-1"], "the margin must be a positive number"),
])
def test_settle_options_are_one_line_before_ray(tmp_path, args, message):
    sweep_file = tmp_path / "tiny_settle.py"
    sweep_file.write_text('from lowbit_core.sweep import Sweep, grid\n'
                          'SWEEP = Sweep(name="tiny_settle", family="probe", metric="loss", base={"model.hidden": (8,)},\n'
                          '              space={"model.kind": grid("fp", "binary")}, seeds=(0, 1),\n'
                          '              questions=("multistep-vs-single",))\n')
    res = run_sweep(sweep_file, "--results", tmp_path / "res", *args)
    assert res.returncode == 2, res.stderr
    assert res.stderr.strip().count("\n") == 0 and message in res.stderr, res.stderr
    assert not (tmp_path / "res").exists()


def test_smoke_sized_overrides_reduce_the_scale():
    """Issue 25's repro: multistep_ste at the default profile with smoke-sized --set values."""
    from lowbit_core.sweep import load_sweep
    from conftest import ROOT

    sweep = load_sweep(ROOT / "sweeps" / "multistep_ste.py")
    from lowbit_core.families import get_family
    from lowbit_core.sweep import parse_set

    overrides, seeds = parse_set(get_family("probe"), ["model.hidden=[32,32]", "multi.steps=20", "scan.lr_step=0.01",
                                                       "seeds=[0,1]"])
    record = json.loads(json.dumps(describe_plan(plan(sweep, "default", overrides, seeds))))
    why = reduced_by(record)
    assert any(w.startswith("model.hidden") for w in why) and any(w.startswith("multi.steps") for w in why)
    assert any(w.startswith("scan.lr_step") for w in why)
    assert reduced_by(json.loads(json.dumps(describe_plan(plan(sweep, "default"))))) == []
    assert reduced_by({**record, "overrides": {"multi.steps": 400}}) == []  # larger is not reduced
    assert reduced_by({"profile": "smoke"}) == ["profile smoke"]


def test_a_settle_run_keeps_its_cap_and_margins(tmp_path):
    """Alpha is spent over the recorded cap: another --max-seeds (or --margin) on the same folder is
    one line, exit 2, before Ray (the state is read first)."""
    from lowbit_sweeps.analysis.common.sequential import write_state

    sweep_file = tmp_path / "tiny_settle.py"
    sweep_file.write_text('from lowbit_core.sweep import Sweep, grid\n'
                          'SWEEP = Sweep(name="tiny_settle", family="probe", metric="loss", base={"model.hidden": (8,)},\n'
                          '              space={"model.kind": grid("fp", "binary")}, seeds=(0, 1),\n'
                          '              questions=("multistep-vs-single",))\n')
    folder = tmp_path / "res" / "tiny_settle"
    folder.mkdir(parents=True)
    write_state(folder, {"alpha": 0.05, "rho": 1.0, "max_seeds": 16, "schedule": [2, 3, 5, 8, 12, 16], "rounds": [],
                         "looks": [], "margins": {}, "questions": ["multistep-vs-single"]})
    res = run_sweep(sweep_file, "--results", tmp_path / "res", "--settle", "--max-seeds", "32")
    assert res.returncode == 2 and "differs from the settle run recorded" in res.stderr and "ray" not in res.stderr.lower()
    res = run_sweep(sweep_file, "--results", tmp_path / "res", "--settle", "--margin", "multistep-vs-single=0.5")
    assert res.returncode == 2 and "a settle run keeps its margins" in res.stderr
