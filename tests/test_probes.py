"""Budget probes: the box is never exceeded, the lr scan equals brute force, closed-form steps."""
import dataclasses

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings, strategies as st

from lowbit_core.config import with_overrides
from lowbit_core.data.probe_batches import ProbeData
from lowbit_core.models.mlp import MLP
from lowbit_core.probes import lr_scan, multistep
from lowbit_core.probes.budget import box_bound, random_start
from lowbit_core.probes.config import ProbeConfig
from lowbit_core.probes.gradient import batch_loss_fn, compare_to_identity, gradient_at, normalize
from lowbit_core.probes.run import run_probe

TINY = {"model.hidden": (8,), "model.pretrain_steps": 5, "data.batch_size": 64, "data.n_features": 6,
        "data.n_classes": 3, "data.teacher_hidden": 4, "scan.lr_step": 0.01}


def tiny_problem(kind="binary", estimator="identity", param=None, seed=0, dtype=torch.float32):
    torch.manual_seed(seed)
    model = MLP(6, (8,), 3, kind=kind, estimator=estimator, estimator_param=param).to(dtype)
    model.requires_grad_(False)
    x = torch.randn(64, 6, generator=torch.Generator().manual_seed(seed), dtype=dtype)
    y = torch.randint(0, 3, (64,), generator=torch.Generator().manual_seed(seed + 1))
    w0 = model.layers[0].weight.clone()
    return model, x, y, w0, batch_loss_fn(model, 0, w0, x, y)


def test_lr_grid_of_the_seed_has_ten_thousand_points():
    g = lr_scan.lr_grid(1e-5, 1e-1, 1e-5)
    assert len(g) == 10_000 and g[0] == 1e-5 and abs(g[-1] - 1e-1) < 1e-12


def test_box_bound_is_float32_and_not_above_epsilon():
    for eps in (0.1, 0.3, 1e-3, 0.5):
        b = box_bound(eps)
        assert b <= eps and np.float32(b) == b and eps - b < 1e-7 * max(1, eps)


@pytest.mark.parametrize("kind", ["fp", "binary"])
def test_scan_equals_brute_force_forward_passes(kind):
    model, x, y, w0, loss_fn = tiny_problem(kind)
    _, g = gradient_at(loss_fn, torch.zeros_like(w0))
    d = normalize(g, "max")
    lrs = lr_scan.lr_grid(1e-3, 0.2, 1e-3)  # lr > eps exercises the projection
    res = lr_scan.scan(loss_fn, d, lrs, 0.1)
    brute = []
    for lr in lrs:  # independent: rebuild a model with the moved weights and run it whole
        m = MLP(6, (8,), 3, kind=kind)
        m.load_state_dict(model.state_dict())
        with torch.no_grad():
            m.layers[0].weight.copy_(w0 + torch.clamp(-lr * d, -0.1, 0.1))
            brute.append(F.cross_entropy(m(x), y).item())
    brute = np.array(brute)
    np.testing.assert_allclose(res.losses, brute, rtol=1e-6, atol=1e-7)
    assert res.best_lr == lrs[int(np.argmin(brute))]


def test_fp_gradient_matches_finite_differences():
    model, x, y, w0, loss_fn = tiny_problem("fp", dtype=torch.float64)
    _, g = gradient_at(loss_fn, torch.zeros_like(w0))
    h = 1e-6
    for i, j in [(0, 0), (3, 2), (7, 5)]:
        e = torch.zeros_like(w0)
        e[i, j] = h
        fd = (loss_fn(e).item() - loss_fn(-e).item()) / (2 * h)
        assert abs(fd - g[i, j].item()) < 1e-7


def test_normalizations():
    g = torch.tensor([[3.0, -4.0], [0.0, 1.0]])
    assert torch.equal(normalize(g, "max"), g / 4)
    torch.testing.assert_close(normalize(g, "l2"), g / g.norm())
    assert torch.equal(normalize(g, "sign"), torch.sign(g))
    assert torch.equal(normalize(torch.zeros(2), "max"), torch.zeros(2))


def test_compare_to_identity():
    a = torch.tensor([1.0, 0.0, 2.0])
    assert compare_to_identity(a, a) == (1.0, 0.0)
    cos, frac = compare_to_identity(torch.tensor([1.0, 0.0, 0.0]), a)
    assert abs(cos - 1 / 5**0.5) < 1e-12 and abs(frac - 1 / 3) < 1e-12


def test_zero_steps_is_the_start():
    model, x, y, w0, loss_fn = tiny_problem()
    delta0 = random_start(w0.shape, 0.05, 0.1, torch.Generator().manual_seed(3))
    points = list(multistep.search(loss_fn, delta0, 0.1, "adam", 0.01, steps=0))
    assert len(points) == 1
    assert points[0].loss == pytest.approx(loss_fn(delta0).item(), rel=0, abs=0)
    assert points[0].max_abs_delta == float(delta0.abs().max())


def test_first_sgd_step_is_projected_normalized_gradient():
    model, x, y, w0, loss_fn = tiny_problem("fp")
    lr = 0.3  # large: the projection binds on the largest coordinates
    _, g = gradient_at(loss_fn, torch.zeros_like(w0))
    expected = torch.clamp(-lr * g / g.abs().max(), -box_bound(0.1), box_bound(0.1))
    p = list(multistep.search(loss_fn, torch.zeros_like(w0), 0.1, "sgd", lr, steps=1))[1]
    assert p.loss == pytest.approx(loss_fn(expected).item(), rel=1e-6)
    assert p.max_abs_delta == pytest.approx(box_bound(0.1))


def test_first_adam_step_moves_every_coordinate_by_lr():
    # Adam's first step is lr * g / (|g| + eps_adam) = lr * sign(g) up to eps_adam
    model, x, y, w0, loss_fn = tiny_problem("fp", dtype=torch.float64)
    lr = 0.01
    delta = torch.zeros_like(w0).requires_grad_(True)
    opt = multistep.make_optimizer("adam", [delta], lr)
    _, g = gradient_at(loss_fn, torch.zeros_like(w0))
    delta.grad = normalize(g, "max")
    opt.step()
    nz = g != 0
    torch.testing.assert_close(delta.detach()[nz], -lr * torch.sign(g[nz]), rtol=1e-5, atol=1e-9)


@settings(max_examples=25, deadline=None)
@given(
    kind=st.sampled_from(["fp", "binary"]),
    optimizer=st.sampled_from(["sgd", "sgdm", "adam"]),
    eps=st.floats(1e-3, 0.5),
    lr=st.floats(1e-4, 1.0),
    noise_frac=st.floats(0.0, 1.0),
    steps=st.integers(0, 8),
    normalize_how=st.sampled_from(["max", "none"]),
    seed=st.integers(0, 3),
)
def test_box_is_never_exceeded(kind, optimizer, eps, lr, noise_frac, steps, normalize_how, seed):
    model, x, y, w0, loss_fn = tiny_problem(kind, seed=seed)
    delta0 = random_start(w0.shape, noise_frac * eps, eps, torch.Generator().manual_seed(seed))
    assert float(delta0.abs().max()) <= eps
    track = []
    real = loss_fn

    def spy(delta):
        track.append(float(delta.detach().abs().max()))
        return real(delta)

    for p in multistep.search(spy, delta0, eps, optimizer, lr, steps, grad_normalize=normalize_how):
        assert p.max_abs_delta <= eps
    assert max(track) <= eps
    lrs = np.array([lr, 2 * lr, 10 * lr])
    _, g = gradient_at(loss_fn, torch.zeros_like(w0))
    res = lr_scan.scan(spy, normalize(g, "max"), lrs, eps)
    assert float(res.best_delta.abs().max()) <= eps and max(track) <= eps


def test_run_probe_reports_consistent_metrics():
    rows = []
    cfg = with_overrides(ProbeConfig(), {**TINY, "multi.steps": 6, "multi.report_every": 4, "multi.noise": 0.05})
    last = run_probe(cfg, rows.append, torch.device("cpu"))
    assert [r["step"] for r in rows] == [0, 4, 6]
    for r in rows:
        assert r["max_abs_delta"] <= cfg.budget.epsilon
        assert r["rel_improvement"] == pytest.approx((r["single_best_loss"] - r["loss"]) / r["single_best_loss"])
        assert r["rel_improvement_best"] == pytest.approx((r["single_best_loss"] - r["best_loss"]) / r["single_best_loss"])
    assert "scan_loss" in last and "scan_loss" not in rows[0]
    assert min(last["scan_loss"]) == last["single_best_loss"]
    assert len(last["scan_lr"]) == len(lr_scan.lr_grid(cfg.scan.lr_min, cfg.scan.lr_max, cfg.scan.lr_step))
    assert rows[1]["best_loss"] <= rows[0]["best_loss"]


def test_same_seed_same_start_and_batch_across_estimators():
    base = with_overrides(ProbeConfig(), {**TINY, "multi.steps": 0})
    out = {}
    for est in ("identity", "window"):
        cfg = dataclasses.replace(base, estimator=dataclasses.replace(base.estimator, name=est, window=0.01))
        out[est] = run_probe(cfg, lambda r: None, torch.device("cpu"))
    assert out["identity"]["start_loss"] == out["window"]["start_loss"]
    assert out["identity"]["grad_cos_identity"] == 1.0 and out["identity"]["grad_clipped_frac"] == 0.0
    assert out["window"]["grad_clipped_frac"] > 0


def test_fp_model_ignores_the_estimator():
    base = with_overrides(ProbeConfig(), {**TINY, "model.kind": "fp", "multi.steps": 3})
    a = run_probe(base, lambda r: None, torch.device("cpu"))
    b = run_probe(with_overrides(base, {"estimator.name": "window", "estimator.window": 1e-3}), lambda r: None,
                  torch.device("cpu"))
    assert a == b


def test_probe_data_sizes_model():
    d = ProbeData("teacher", n_features=7, n_classes=4, teacher_hidden=3)
    assert (d.in_dim, d.n_classes) == (7, 4)
    with pytest.raises(KeyError, match="valid: teacher, mnist"):
        ProbeData("cifar")


def test_cached_start_equals_fresh_pretraining():
    from lowbit_core.probes import start as run_mod

    cfg = with_overrides(ProbeConfig(), {**TINY, "multi.steps": 2})
    run_mod._START_CACHE.clear()
    first = run_probe(cfg, lambda r: None, torch.device("cpu"))
    assert len(run_mod._START_CACHE) == 1
    second = run_probe(cfg, lambda r: None, torch.device("cpu"))  # from the cache
    run_mod._START_CACHE.clear()
    third = run_probe(cfg, lambda r: None, torch.device("cpu"))  # pretrained again
    assert first == second == third
