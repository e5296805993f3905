"""Every probe method stays inside the budget box: a property test over methods, model kinds, box
radii and seeds, on every point a method evaluates and every point it reports."""
import pytest
import torch
from hypothesis import given, settings, strategies as st

from lowbit_core.config import with_overrides
from lowbit_core.probes import admm, dg, evolution_strategy, genetic, multistep
from lowbit_core.probes.budget import box_bound
from lowbit_core.probes.config import METHODS, ProbeConfig
from lowbit_core.probes.gradient import batch_loss_fn
from lowbit_core.probes.run import run_probe
from test_probe_tiny import one_thread, tiny  # noqa: F401 (one_thread: fixture)


HALF_ULP = torch.finfo(torch.float32).eps / 2


def spy_on(view, w0, seen: list):
    """Record max |delta| of every latent point the view evaluates (points and populations). The box
    holds delta = w - w0 as the probes store it (lowbit_core/probes/budget.py); a point passed as
    w = w0 + delta is float32-rounded, so its exact distance from w0 (float64) is checked up to that
    rounding, half an ulp of w."""
    loss, deltas = view.loss, view.losses_of_deltas

    def spy_loss(w):
        exact = (w.double() - w0.double()).abs() - HALF_ULP * w.double().abs()
        seen.append(float(exact.max()))
        return loss(w)

    def spy_deltas(w0_, d):
        seen.append(float(d.abs().max()))
        return deltas(w0_, d)

    view.loss, view.losses_of_deltas = spy_loss, spy_deltas


def searches(view, w0, eps, seed):
    model = view.model
    loss_fn = batch_loss_fn(model, 0, w0, view.x, view.y)
    start = torch.zeros_like(w0)
    return {
        "ste": multistep.search(loss_fn, start, eps, "adam", 0.5 * eps, 6),
        "dg": dg.multistep_dg(view, w0, eps, 2),
        "cdg": dg.cdg(view, w0, eps, 4),
        "admm": admm.search(view, w0, eps, start, 8, lr=1.0),
        "ga": genetic.search(view, w0, eps, torch.Generator().manual_seed(seed), 4, population=6, init_rate=0.5,
                             mutations=4.0),
        "es": evolution_strategy.search(view, w0, eps, seed, 4, population=6, sigma0=2.0),
    }


@settings(max_examples=30, deadline=None)
@given(kind=st.sampled_from(["fp", "binary"]), method=st.sampled_from(METHODS), reach_q=st.floats(0.05, 0.95),
       scale=st.floats(0.1, 2.0), seed=st.integers(0, 5))
def test_every_method_stays_in_the_box(kind, method, reach_q, scale, seed):
    view, w0, eps = tiny(seed, kind, reach_q)
    eps *= scale
    seen = []
    spy_on(view, w0, seen)
    points = list(searches(view, w0, eps, seed)[method])
    b = box_bound(eps)
    assert all(float(p.delta.abs().max()) <= b and p.max_abs_delta <= b for p in points)
    assert max(seen, default=0.0) <= b


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("kind", ["fp", "binary"])
def test_run_probe_rows_stay_in_the_box(method, kind):
    cfg = with_overrides(ProbeConfig(), {
        "model.hidden": (6, 5), "model.pretrain_steps": 5, "data.batch_size": 64, "data.n_features": 5,
        "data.n_classes": 3, "scan.lr_step": 0.02, "budget.epsilon": 0.05, "model.kind": kind, "method": method,
        "multi.steps": 5, "dg.steps": 2, "dg.cdg_max_moves": 3, "admm.iterations": 5, "ga.generations": 3,
        "ga.population": 6, "es.generations": 3, "es.population": 4})
    rows = []
    run_probe(cfg, rows.append, torch.device("cpu"))
    assert rows and all(r["max_abs_delta"] <= cfg.budget.epsilon for r in rows)
