"""loss_evals / grad_evals: every forward pass on the probe batch is counted where the loss is
computed, the same way for every method, and budget.evals_per_weight stops each method at the cap."""
import math

import pytest
import torch

from lowbit_core.config import ConfigError, with_overrides
from lowbit_core.probes import dg, methods
from lowbit_core.probes.config import METHODS, ProbeConfig
from lowbit_core.probes.evals import EvalCounter
from lowbit_core.probes.gradient import batch_loss_fn
from lowbit_core.probes.run import run_probe
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
    assert [(r["step"], r["loss_evals"], r["grad_evals"]) for r in rows] == [(0, 1, 0), (2, 3, 2), (4, 5, 4)]


def test_single_step_cost_is_the_gradient_plus_the_scan_points():
    cfg, rows = rows_of(**{"model.kind": "fp"})
    assert rows[0]["single_loss_evals"] == 1 + len(scan_grid(cfg))  # FP: every scan point is a new loss


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
    over = {"method": method, "budget.evals_per_weight": per_weight, "multi.steps": 10**6, "dg.steps": 40,
            "dg.cdg_max_moves": 10**6, "dg.cdg_refresh": 3, "dg.cdg_shortlist": 4, "admm.iterations": 10**6,
            "ga.generations": 10**6, "es.generations": 10**6, "admm.start": "w0"}
    cfg, rows = rows_of(**over)
    cap = math.ceil(per_weight * rows[0]["layer_weights"])
    assert rows[0]["layer_weights"] == 6 * 5
    assert all(r["loss_evals"] <= cap for r in rows[1:])
    # an uncapped run of the same method goes past the cap right after the last capped point
    free = with_overrides(cfg, {"budget.evals_per_weight": 0.0})
    s = setup(free, CPU)
    base = s.counter.forward
    after = None
    for p in methods.points(free, s, CPU):
        if p.step == rows[-1]["step"] + 1:
            after = s.counter.forward - base
            break
    assert after is None or after > cap  # None: the method had stopped on its own (CDG, DG)


def test_cap_must_not_be_negative():
    with pytest.raises(ConfigError, match="budget.evals_per_weight"):
        with_overrides(ProbeConfig(), {"budget.evals_per_weight": -1.0})
