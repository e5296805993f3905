"""ADMM (lowbit_core/probes/admm.py): the projection onto the reachable set against brute force, the
update rules on closed-form cases, the brute-force optimum of tiny binary layers, its cost."""
import pytest
import torch
from hypothesis import given, settings, strategies as st

from lowbit_core.probes import admm
from lowbit_core.probes.budget import box_bound
from lowbit_core.probes.flips import flips_delta, reachable
from lowbit_core.quant.estimators import sign
from test_probe_tiny import all_patterns, brute_optimum, one_thread, tiny  # noqa: F401 (one_thread: fixture)


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 50), reach_q=st.floats(0.1, 0.9), scale=st.floats(0.1, 3.0))
def test_binary_projection_is_the_nearest_reachable_pattern(seed, reach_q, scale):
    view, w0, eps = tiny(seed, reach_q=reach_q)
    c = admm.ReachableSet(view, w0, eps)
    u = scale * torch.randn(w0.shape, generator=torch.Generator().manual_seed(seed))
    candidates = sign(w0)[None] * torch.where(all_patterns(w0, eps), -1.0, 1.0)  # every point of C
    dist = ((candidates - u[None]) ** 2).flatten(1).sum(1)
    nearest = candidates[int(torch.argmin(dist))]
    assert torch.equal(c.project(u), nearest)
    assert float(((c.project(u) - u) ** 2).sum()) == pytest.approx(float(dist.min()), rel=1e-6)


def test_projection_keeps_unreachable_signs_and_maps_into_the_box():
    view, w0, eps = tiny(0)
    c = admm.ReachableSet(view, w0, eps)
    g = c.project(-10 * sign(w0))  # pushes every weight to flip
    free = reachable(w0, eps)
    assert torch.equal(g[~free], sign(w0)[~free]) and torch.equal(g[free], -sign(w0)[free])
    delta = c.delta(g)
    assert float(delta.abs().max()) <= box_bound(eps)
    assert torch.equal(sign(w0 + delta), g)  # the latent change realizes the pattern
    assert torch.equal(c.unit(delta), g)


def test_fp_projection_is_the_clip_to_the_box():
    view, w0, eps = tiny(0, kind="fp")
    c = admm.ReachableSet(view, w0, eps)
    u = torch.tensor([[-3.0, -1.0, -0.2, 0.0], [0.5, 1.0, 1.5, 7.0], [0.999, -1.001, 2.0, -0.5]])
    assert torch.equal(c.project(u), u.clamp(-1, 1))
    assert float(c.delta(c.project(u)).abs().max()) <= box_bound(eps)
    torch.testing.assert_close(c.weight(c.project(u)), w0 + eps * u.clamp(-1, 1))


def test_continuous_start_is_the_rescaled_latent_weight():
    view, w0, eps = tiny(1)
    c = admm.ReachableSet(view, w0, eps)
    v0 = c.continuous(torch.zeros_like(w0))
    torch.testing.assert_close(v0, w0 / w0.abs().mean())
    assert float(v0.abs().mean()) == pytest.approx(1.0, rel=1e-6)
    assert torch.equal(sign(v0), sign(w0))  # its projection with a free scale is the binary layer


def test_zero_iterations_is_the_start_and_costs_one_evaluation():
    view, w0, eps = tiny(2)
    pts = list(admm.search(view, w0, eps, torch.zeros_like(w0), 0))
    assert len(pts) == 1 and pts[0].coords_moved == 0 and view.counter.forward == 1
    assert pts[0].loss == pytest.approx(view.loss(w0), abs=0)


@pytest.mark.parametrize("inner", [1, 2])
def test_cost_per_iteration(inner):
    view, w0, eps = tiny(3)
    counts = []
    for _ in admm.search(view, w0, eps, torch.zeros_like(w0), 5, inner_steps=inner):
        counts.append(view.counter.snapshot())
    # the start: 1 evaluation; then 2 * inner gradients + 1 evaluation per iteration, the first
    # gradient (at V_0) computed once and reused
    assert counts[0] == (1, 0)
    assert counts[1] == (1 + 2 * inner + 1, 2 * inner)
    assert all(b[0] - a[0] == 2 * inner + 1 and b[1] - a[1] == 2 * inner for a, b in zip(counts[1:], counts[2:]))


def test_first_iteration_follows_the_stated_update():
    """One iteration by hand: extragradient step with a = min(lr, 1/rho)/g_max, kappa = min(lr rho, 1),
    projection of V + lam, then the dual update rescaled by 1/growth."""
    view, w0, eps = tiny(4)
    rho, growth, lr = 0.5, 1.2, 0.3
    c = admm.ReachableSet(view, w0, eps)
    g0, v0 = c.unit(torch.zeros_like(w0)), c.continuous(torch.zeros_like(w0))

    def grad(v):
        v = v.detach().requires_grad_(True)
        loss = torch.nn.functional.cross_entropy(_net(view.model, view.x, c.weight(v)), view.y)
        return torch.autograd.grad(loss, v)[0]

    gmax = float(grad(v0).abs().max())
    a, kappa = min(lr, 1 / rho) / gmax, min(lr * rho, 1.0)
    v_bar = v0 - a * grad(v0) - kappa * (v0 - g0)
    v1 = v0 - a * grad(v_bar) - kappa * (v_bar - g0)
    g1 = c.project(v1)
    pts = list(admm.search(view, w0, eps, torch.zeros_like(w0), 1, rho, growth, lr))
    assert torch.equal(sign(w0 + pts[1].delta), g1)
    assert pts[1].loss == pytest.approx(view.loss(w0 + c.delta(g1)), abs=1e-7)


def _net(model, x, w_eff):
    """The MLP's logits with a real-valued first-layer weight ``w_eff``, the other layers binary."""
    z = x @ w_eff.T + model.layers[0].bias
    for i, layer in enumerate(model.layers[1:], start=1):
        z = torch.relu(z) @ model.effective_weight(i, layer.weight).T + layer.bias
    return z


@pytest.mark.parametrize("seed", [1, 2, 5, 6])
def test_admm_reaches_the_brute_force_optimum_of_a_tiny_layer(seed):
    """Brute force over every reachable sign pattern (256 or 512) gives the optimum; ADMM from w0,
    with the module's defaults, reaches it and never reports a point outside the box."""
    view, w0, eps = tiny(seed)
    opt, pattern = brute_optimum(view, w0, eps)
    assert int(pattern.sum()) >= 2 and view.loss(w0) > opt + 1e-3  # the start is not the optimum
    pts = list(admm.search(view, w0, eps, torch.zeros_like(w0), 300))
    assert pts[-1].best_loss == pytest.approx(opt, abs=1e-6)
    assert all(p.max_abs_delta <= box_bound(eps) for p in pts)


def test_admm_is_a_local_method_but_often_global_on_tiny_layers():
    """No global guarantee on a non-convex set: over 20 random tiny layers ADMM (defaults, 300
    iterations) reaches the brute-force optimum in at least 7, and is never worse than its start."""
    hits = 0
    for seed in range(20):
        view, w0, eps = tiny(seed)
        opt, _ = brute_optimum(view, w0, eps)
        pts = list(admm.search(view, w0, eps, torch.zeros_like(w0), 300))
        assert pts[-1].best_loss <= pts[0].loss
        hits += abs(pts[-1].best_loss - opt) < 1e-6
    assert hits >= 7


def test_start_from_the_ste_checkpoint():
    view, w0, eps = tiny(7)
    start = flips_delta(w0, eps, reachable(w0, eps) & (torch.arange(w0.numel()).view(w0.shape) % 2 == 0))
    pts = list(admm.search(view, w0, eps, start, 3))
    assert pts[0].loss == pytest.approx(view.loss(w0 + start), abs=0)
    assert torch.equal(sign(w0 + pts[0].delta), sign(w0 + start))
