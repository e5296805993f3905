"""``lowbit-sweep SWEEP --settle``: run, decide, and add seeds only where a question is undecided.

Round 0 runs the sweep (or continues its folder); after each round the family's report writes its
verdict records (:mod:`analysis.common.verdicts`), at the level that round's look spends
(:mod:`analysis.common.sequential`: alpha spending over looks at n_0 < n_1 < ... <= ``--max-seeds``
seeds per cell). The comparisons of the sweep's questions that are still undecided give their cells
(both arms) the next seeds, recorded in the plan (``settle`` rounds) and run through the same
exactly-once machinery as ``--extend``; decided ones keep their decision. It stops when every
comparison of the sweep's questions is decided, at the cap, or when the next round's estimate
would pass ``--budget`` hours. All rounds share one Ray cluster. The state is
``<results>/<sweep>/_settle.json``; a killed run continues with the same command.
"""
from __future__ import annotations

import math
import statistics
import time
from pathlib import Path

from lowbit_core.config import ConfigError

DECIDED = ("higher", "lower", "equivalent", "identical")
DEFAULT_MAX_SEEDS = 16


def parse_margins(items: list[str], question_ids) -> dict[str, float]:
    """``--margin ID=VALUE`` items as {id: value}; ConfigError (one line) for a bad item."""
    out = {}
    for item in items:
        qid, sep, value = item.partition("=")
        if not sep:
            raise ConfigError(f"--margin takes ID=VALUE, got {item!r}")
        if qid not in question_ids:
            raise ConfigError(f"--margin: the sweep bears on no question {qid!r}; valid: {', '.join(question_ids) or 'none'}")
        try:
            m = float(value)
        except ValueError:
            m = math.nan
        if not (math.isfinite(m) and m > 0):
            raise ConfigError(f"--margin {qid}: the margin must be a positive number, got {value!r}")
        out[qid] = m
    return out


def _trial_seconds(folder: Path) -> float:
    """The median wall time of a finished trial of this folder (from its rows' first and last time)."""
    import pandas as pd

    from lowbit_core.results import read_results

    try:
        df = read_results(folder, on_damaged=lambda *a: None)
    except Exception:  # noqa: BLE001 -- an estimate only
        return math.nan
    if df.empty or "time" not in df.columns:
        return math.nan
    t = pd.to_datetime(df["time"], errors="coerce", utc=True)
    span = t.groupby(df["trial_key"]).agg(lambda s: (s.max() - s.min()).total_seconds())
    return float(statistics.median(span)) if len(span) else math.nan


def _report(folder: Path) -> dict:
    """Run the family's report into ``folder/_report`` and return its verdict records document."""
    from lowbit_sweeps.analysis.common.verdicts import read_records
    from lowbit_sweeps.analysis.report import main as report_main

    import contextlib
    import io

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        status = report_main([str(folder)])
    if status != 0:
        raise ConfigError(f"the report of {folder} failed (exit {status}); run lowbit-report {folder} to see why")
    return read_records(folder / "_report") or {"records": []}


def _seeds_now(plan) -> int:
    """Seeds per cell after the plan's rounds (the base seeds plus every round's)."""
    return len(plan.seeds) + sum(len(r["seeds"]) for r in plan.settle)


def run_settle(args, make_plan, run_once) -> int:
    """The settle loop (module docstring). ``make_plan(settle_rounds)`` plans the sweep with those
    rounds; ``run_once(plan, resume, extend)`` runs it and returns the CLI's exit status."""
    from lowbit_sweeps.analysis.common.sequential import look_alpha, read_state, schedule, write_state

    plan = make_plan(())
    qids = [q["id"] for q in (plan_questions(plan))]
    if not qids:
        raise ConfigError(f"sweep {plan.sweep.name} names no question, so --settle has nothing to decide; "
                          "add Sweep(questions=(...))")
    margins = parse_margins(args.margins, qids)
    n0 = len(plan.seeds)
    n_max = args.max_seeds or DEFAULT_MAX_SEEDS
    if n0 < 2:
        raise ConfigError(f"--settle needs >= 2 seeds to start from, the plan has {n0}; add --set seeds=[0,1,2]")
    if n_max < n0:
        raise ConfigError(f"--max-seeds {n_max} is below the sweep's {n0} seeds")
    folder = Path(args.results) / plan.sweep.name
    state = read_state(folder)
    if state is None:
        state = {"alpha": 0.05, "rho": 1.0, "max_seeds": n_max, "schedule": schedule(n0, n_max), "rounds": [],
                 "looks": [], "margins": margins, "questions": qids, "started": time.time()}
    elif margins and margins != state.get("margins"):
        raise ConfigError(f"--margin differs from the settle run recorded in {folder}/_settle.json "
                          f"({state.get('margins')}); a settle run keeps its margins")
    elif args.max_seeds and args.max_seeds != state["max_seeds"]:
        raise ConfigError(f"--max-seeds {args.max_seeds} differs from the settle run recorded in {folder}/_settle.json "
                          f"({state['max_seeds']}): its alpha was spent over that cap; settle again in a new --results folder")
    budget_s = args.budget * 3600 if args.budget else math.inf
    started = time.time()
    plan = make_plan(tuple(state["rounds"]))
    while True:
        r = len(state["rounds"])
        print(f"settle round {r}: {plan.n_trials} trials, {_seeds_now(plan)} seeds per undecided cell")
        status = run_once(plan, resume=folder.exists(), extend=r > 0)
        if status != 0:
            return status
        n = state["schedule"][r]
        if len(state["looks"]) <= r:
            prev = state["schedule"][r - 1] if r else 0
            state["looks"].append({"n": n, "alpha": look_alpha(n, prev, state["max_seeds"], state["alpha"],
                                                               state["rho"]), "decided": {}})
            write_state(folder, state)
        doc = _report(folder)
        mine = [x for x in doc["records"] if x.get("question") in qids]
        look = state["looks"][r]
        look["decided"] = {x["id"]: x for x in mine if x["decision"] in DECIDED and x.get("look", r) == r}
        write_state(folder, state)
        open_ = [x for x in mine if x["decision"] not in DECIDED]
        print(f"look {r} (n = {n} seeds, alpha spent here {look['alpha']:.3g}): "
              f"{len(mine) - len(open_)} of {len(mine)} comparisons decided")
        for x in mine:
            if x["id"] in look["decided"]:
                print(f"  decided: {x['comparison']} [{x['metric']}]: {x['decision']}")
        if not mine:
            print(f"settle: the report of {plan.sweep.name} has no comparison of {', '.join(qids)}; nothing to add")
            return 0
        if not open_:
            print(f"settle: every comparison of {', '.join(qids)} is decided after {r + 1} look(s)")
            return 0
        if r + 1 >= len(state["schedule"]):
            print(f"settle: {len(open_)} comparison(s) still undecided at the cap of {state['max_seeds']} seeds "
                  "(--max-seeds raises it)")
            return 0
        add = state["schedule"][r + 1] - n
        used = sorted({int(s) for s in plan.seeds} | {int(s) for rr in state["rounds"] for s in rr["seeds"]})
        seeds = list(range(max(used) + 1, max(used) + 1 + add))
        cells = _union_cells(open_)
        nxt = make_plan((*state["rounds"], {"seeds": seeds, "cells": cells}))
        new_trials = nxt.n_trials - plan.n_trials
        per = _trial_seconds(folder)
        slots = args.max_concurrent or 2
        est = per * new_trials / max(1, slots) if math.isfinite(per) else math.nan
        print(f"settle round {r + 1}: adds seeds {seeds} to {len(cells)} cell(s) of {len(open_)} undecided "
              f"comparison(s): {new_trials} trials, ~{est / 60:.1f} min (median trial {per:.1f} s, {slots} at once)")
        if time.time() - started + (est if math.isfinite(est) else 0) > budget_s:
            print(f"settle: the next round would pass the budget of {args.budget} h; stopping with "
                  f"{len(open_)} comparison(s) undecided")
            return 0
        state["rounds"].append({"seeds": seeds, "cells": cells})
        write_state(folder, state)
        plan = nxt


def _union_cells(records: list[dict]) -> list[dict]:
    out: list[dict] = []
    for x in records:
        for c in x.get("cells") or []:
            if c not in out:
                out.append(c)
    return out


def plan_questions(plan) -> list[dict]:
    from lowbit_core.questions import describe, resolve

    return describe(resolve(plan.sweep.questions))
