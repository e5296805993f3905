"""loss_evals / grad_evals: every forward pass on the probe batch is counted where the loss is
computed, the same way for every method; fwd_equiv = loss_evals + 2 grad_evals (a backward pass costs
two forward passes), and budget.fwd_equiv_per_weight stops each method at that cap."""
import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from lowbit_core.config import ConfigError, from_dict, with_overrides
from lowbit_core.probes import dg, methods
from lowbit_core.probes.config import METHODS, ProbeConfig
from lowbit_core.probes.evals import BACKWARD_COST, EvalCounter, fwd_equiv
from lowbit_core.probes.gradient import batch_loss_fn
from lowbit_core.probes.run import run_probe, run_probe_batch
from lowbit_core.probes.setup import scan_grid, setup
from test_probe_heldout import CPU, TINY
from test_probe_tiny import one_thread, tiny  # noqa: F401 (one_thread: fixture)


def rows_of(**over):
    cfg = with_overrides(ProbeConfig(), {**TINY, **over})
    rows = []
    run_probe(cfg, rows.append, CPU)
    return cfg, rows


def test_counter_counts_values_and_backward_passes():
    c = EvalCounter()
    x = torch.ones(3, requires_grad=True)
    losses = c.count((x * 2).sum().view(1).repeat(4))
    assert c.snapshot() == (4, 0)
    losses.sum().backward()
    assert c.snapshot() == (4, 4)
    c.count(torch.ones(2))  # no graph: no backward to count
    c.add(5)
    assert c.snapshot() == (11, 4)


def test_loss_function_counts_each_call_and_gradient():
    view, w0, _ = tiny(0)
    c = EvalCounter()
    f = batch_loss_fn(view.model, 0, w0, view.x, view.y, c)
    d = torch.zeros_like(w0).requires_grad_(True)
    torch.autograd.grad(f(d), d)
    with torch.no_grad():
        f(d)
    assert c.snapshot() == (2, 1)


@pytest.mark.parametrize("kind", ["fp", "binary"])
def test_multistep_ste_costs_one_forward_and_one_backward_per_iteration(kind):
    _, rows = rows_of(**{"model.kind": kind})
    assert [(r["step"], r["loss_evals"], r["grad_evals"], r["fwd_equiv"]) for r in rows] == [
        (0, 1, 0, 1), (2, 3, 2, 7), (4, 5, 4, 13)]  # step k: k + 1 forward, k backward, 3k + 1 equivalents


def test_single_step_cost_is_the_gradient_plus_the_scan_points():
    cfg, rows = rows_of(**{"model.kind": "fp"})
    assert rows[0]["single_loss_evals"] == 1 + len(scan_grid(cfg))  # FP: every scan point is a new loss
    assert rows[0]["single_grad_evals"] == 1  # the one gradient at w0
    assert rows[0]["single_fwd_equiv"] == 1 + len(scan_grid(cfg)) + 2


def test_binary_scan_evaluates_only_distinct_points():
    """Between sign flips the binary scan's point does not change and is not evaluated again."""
    cfg, rows = rows_of(**{"model.kind": "binary"})
    s = setup(cfg, CPU)
    changes = sum(1 for a, b in zip(s.single.losses, s.single.losses[1:]) if a != b)
    assert changes + 2 <= rows[0]["single_loss_evals"] <= 1 + len(scan_grid(cfg))


def test_dg_step_costs_every_reachable_candidate_and_the_prefixes():
    """Single-step DG on a binary layer: one loss per reachable flip, one per prefix size tried, the
    current loss three times (computed again by the objectives, their baseline and the prefix
    comparison: counted as computed) and the new point's loss."""
    view, w0, eps = tiny(1)
    pts = []
    for p in dg.multistep_dg(view, w0, eps, 1):
        pts.append((p, view.counter.forward))
    assert pts[0][1] == 1
    change, _ = dg.best_moves(view, w0, torch.zeros_like(w0), dg.candidates(view, w0, torch.zeros_like(w0), eps, eps))
    improving = int((change < 0).sum())
    n_flips = int(torch.isfinite(change).sum())
    prefixes = len(dg._prefix_sizes(improving, 32))
    assert pts[1][1] - pts[0][1] == n_flips + 3 + prefixes + 1


def test_admm_from_the_ste_checkpoint_carries_the_scan_cost():
    _, a = rows_of(**{"method": "admm", "admm.start": "ste"})
    _, b = rows_of(**{"method": "admm", "admm.start": "w0"})
    assert a[0]["loss_evals"] == a[0]["single_loss_evals"] + 1 and b[0]["loss_evals"] == 1
    assert a[-1]["loss_evals"] - a[0]["loss_evals"] == b[-1]["loss_evals"] - b[0]["loss_evals"] == 4 * 3


def test_population_methods_count_their_individuals():
    _, ga = rows_of(**{"method": "ga"})
    _, es = rows_of(**{"method": "es"})
    assert [r["loss_evals"] for r in ga] == [6, 6 + 2 * 4, 6 + 3 * 4]  # population 6, elite 2
    assert [r["loss_evals"] for r in es] == [1, 1 + 2 * 4, 1 + 3 * 4] and all(r["grad_evals"] == 0 for r in es)


@pytest.mark.parametrize("method", METHODS)
def test_the_cap_stops_every_method_before_it_is_exceeded(method):
    per_weight = 0.8
    over = {"method": method, "budget.fwd_equiv_per_weight": per_weight, "multi.steps": 10**6, "dg.steps": 40,
            "dg.cdg_max_moves": 10**6, "dg.cdg_refresh": 3, "dg.cdg_shortlist": 4, "admm.iterations": 10**6,
            "ga.generations": 10**6, "es.generations": 10**6, "admm.start": "w0"}
    cfg, rows = rows_of(**over)
    cap = math.ceil(per_weight * rows[0]["layer_weights"])
    assert rows[0]["layer_weights"] == 6 * 5
    assert all(r["fwd_equiv"] <= cap for r in rows[1:])
    # an uncapped run of the same method goes past the cap right after the last capped point
    free = with_overrides(cfg, {"budget.fwd_equiv_per_weight": 0.0})
    s = setup(free, CPU)
    base = s.counter.snapshot()
    after = None
    for p in methods.points(free, s, CPU):
        if p.step == rows[-1]["step"] + 1:
            after = fwd_equiv(s.counter.forward - base[0], s.counter.backward - base[1])
            break
    assert after is None or after > cap  # None: the method had stopped on its own (CDG, DG)


def test_cap_must_not_be_negative():
    with pytest.raises(ConfigError, match="budget.fwd_equiv_per_weight"):
        with_overrides(ProbeConfig(), {"budget.fwd_equiv_per_weight": -1.0})


# ---- forward-pass equivalents ------------------------------------------------------------------

def test_fwd_equiv_counts_a_backward_pass_as_two_forward_passes():
    assert BACKWARD_COST == 2
    assert fwd_equiv(0, 0) == 0 and fwd_equiv(5, 0) == 5 and fwd_equiv(4, 3) == 10
    c = EvalCounter()
    x = torch.ones(2, requires_grad=True)
    torch.autograd.grad(c.count((x * x).sum()), x)  # one forward, one backward
    c.add(4)
    assert c.snapshot() == (5, 1) and c.fwd_equiv() == 7


@pytest.mark.parametrize("per_weight", [1.0, 2.5, 4.0])
def test_multistep_ste_under_a_cap_of_c_takes_a_third_of_c_steps(per_weight):
    """Step k has cost 3k + 1 (k + 1 losses, k backward passes): under a cap C the last step is
    (C - 1) // 3. Counting forward passes only, it was C - 1."""
    _, rows = rows_of(**{"budget.fwd_equiv_per_weight": per_weight, "multi.steps": 10**6, "multi.report_every": 1})
    cap = math.ceil(per_weight * 30)
    last = rows[-1]
    assert last["step"] == (cap - 1) // 3
    assert last["fwd_equiv"] == 3 * last["step"] + 1 <= cap < 3 * (last["step"] + 1) + 1
    assert (last["loss_evals"], last["grad_evals"]) == (last["step"] + 1, last["step"])


def test_folded_multistep_ste_obeys_the_same_cap():
    cfg = with_overrides(ProbeConfig(), {**TINY, "model.kind": "fp", "budget.fwd_equiv_per_weight": 2.0,
                                         "multi.steps": 10**6, "multi.report_every": 5})
    cfgs = [with_overrides(cfg, {"multi.lr": lr}) for lr in (1e-3, 3e-3)]
    got: dict[int, list] = {0: [], 1: []}
    run_probe_batch(cfgs, lambda row, point: got[point].append(row), CPU)
    cap = 60
    for rows in got.values():
        assert rows[-1]["step"] == (cap - 1) // 3 and rows[-1]["fwd_equiv"] == 3 * rows[-1]["step"] + 1 <= cap
        assert [r["fwd_equiv"] for r in rows] == [r["loss_evals"] + 2 * r["grad_evals"] for r in rows]


def test_gradient_free_method_spends_about_c_forward_passes():
    """GA (population 6, elite 2: 6 losses at the start, 4 per generation, no backward pass) under a
    cap C ends with fwd_equiv = loss_evals within one generation of C."""
    _, rows = rows_of(**{"method": "ga", "budget.fwd_equiv_per_weight": 2.5, "ga.generations": 10**6})
    cap = math.ceil(2.5 * 30)
    last = rows[-1]
    assert last["grad_evals"] == 0 and last["fwd_equiv"] == last["loss_evals"] == 6 + 4 * last["step"]
    assert cap - 4 < last["fwd_equiv"] <= cap


@pytest.mark.parametrize("method", METHODS)
def test_every_method_reports_fwd_equiv_as_forward_plus_twice_backward(method):
    _, rows = rows_of(method=method)
    assert [r["fwd_equiv"] for r in rows] == [r["loss_evals"] + 2 * r["grad_evals"] for r in rows]
    assert rows[0]["single_fwd_equiv"] == rows[0]["single_loss_evals"] + 2 * rows[0]["single_grad_evals"]
    if method in ("ste", "admm"):
        assert rows[-1]["grad_evals"] > 0  # the gradient methods pay for their backward passes
    else:
        assert all(r["grad_evals"] == 0 for r in rows)


def test_admm_from_the_ste_checkpoint_carries_the_scan_cost_in_equivalents():
    _, rows = rows_of(**{"method": "admm", "admm.start": "ste"})
    r = rows[0]
    assert r["fwd_equiv"] == r["single_fwd_equiv"] + 1 and r["grad_evals"] == r["single_grad_evals"] == 1


@settings(max_examples=30, deadline=None)
@given(method=st.sampled_from(METHODS), per_weight=st.floats(0.5, 4.0), kind=st.sampled_from(["fp", "binary"]))
def test_property_no_row_exceeds_the_cap(method, per_weight, kind):
    over = {"method": method, "model.kind": kind, "budget.fwd_equiv_per_weight": per_weight, "multi.steps": 10**6,
            "dg.steps": 40, "dg.cdg_max_moves": 10**6, "admm.iterations": 10**6, "ga.generations": 10**6,
            "es.generations": 10**6, "admm.start": "w0"}
    _, rows = rows_of(**over)
    cap = math.ceil(per_weight * 30)
    assert rows[-1]["fwd_equiv"] <= cap and all(r["fwd_equiv"] <= cap for r in rows)


def test_the_old_key_is_refused_naming_the_new_one():
    for build in (lambda: with_overrides(ProbeConfig(), {"budget.evals_per_weight": 2.5}),
                  lambda: from_dict(ProbeConfig, {"budget": {"evals_per_weight": 2.5}})):
        with pytest.raises(ConfigError) as exc:
            build()
        msg = str(exc.value)
        assert "\n" not in msg and "budget.evals_per_weight was renamed budget.fwd_equiv_per_weight" in msg
