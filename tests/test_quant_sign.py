"""ApproxSign, EDE, threshold and XNOR scale against closed forms (larq-style gradient tests).

Tolerances: exact equality where the closed form is exact in float32 (dyadic points); 1e-6 against
float64 finite differences; 1e-12 for the EDE schedule's endpoints.
"""
import math

import pytest
import torch

from lowbit_core.quant.estimators import (DEFAULT_PARAMS, ESTIMATORS, approx_sign_grad, approx_sign_surrogate,
                                          ede_grad, ede_schedule, ede_surrogate, sign, sign_ste)
from lowbit_core.quant.sign import (SignQuantizer, binarize, binarize_weight, get_weight_scale, mean_abs_scale)


def grad_of(fn, x, g=None):
    x = x.clone().requires_grad_(True)
    g = torch.ones_like(x) if g is None else g
    (fn(x) * g).sum().backward()
    return x.grad


# ---- ApproxSign (Bi-Real Net) -------------------------------------------------------------------

X = torch.tensor([-2.0, -1.0, -0.75, -0.5, -0.25, 0.0, 0.25, 0.5, 0.75, 1.0, 1.5])


def test_approx_sign_grad_closed_form_with_exact_zeros_at_and_beyond_edges():
    g = torch.tensor([1.0, 2.0, -1.0, 1.0, 3.0, 1.0, -2.0, 1.0, 1.0, 5.0, 1.0])
    got = grad_of(lambda x: sign_ste(x, "approx_sign"), X, g)
    expected = g * torch.tensor([0.0, 0.0, 0.5, 1.0, 1.5, 2.0, 1.5, 1.0, 0.5, 0.0, 0.0])
    assert torch.equal(got, expected)
    assert got[0].item() == 0.0 and got[1].item() == 0.0 and got[-2].item() == 0.0  # |x| = 1 and beyond


def test_approx_sign_derivative_is_2_minus_2_abs_x():
    x = torch.linspace(-0.999, 0.999, 201, dtype=torch.float64)
    assert torch.allclose(grad_of(lambda v: sign_ste(v, "approx_sign"), x), 2 - 2 * x.abs(), atol=1e-12)


def test_approx_sign_surrogate_values_and_its_autograd_equals_the_estimator():
    assert approx_sign_surrogate(X).tolist() == [-1.0, -1.0, -0.9375, -0.75, -0.4375, 0.0, 0.4375, 0.75, 0.9375,
                                                 1.0, 1.0]
    x = torch.linspace(-1.5, 1.5, 61, dtype=torch.float64)
    assert torch.allclose(grad_of(approx_sign_surrogate, x), approx_sign_grad(torch.ones_like(x), x), atol=1e-12)
    xs = torch.tensor([-1.3, -0.6, -0.1, 0.2, 0.7, 1.2], dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(approx_sign_surrogate, (xs,))


# ---- EDE (IR-Net) -------------------------------------------------------------------------------

def test_ede_schedule_endpoints_and_midpoint():
    t0, k0 = ede_schedule(0, 100)
    t1, k1 = ede_schedule(100, 100)
    assert math.isclose(t0, 0.1, rel_tol=1e-12) and math.isclose(k0, 10.0, rel_tol=1e-12)
    assert math.isclose(t1, 10.0, rel_tol=1e-12) and k1 == 1.0
    tm, km = ede_schedule(50, 100)
    assert math.isclose(tm, 1.0, rel_tol=1e-12) and km == 1.0
    ts = [ede_schedule(e, 10)[0] for e in range(11)]
    assert all(a < b for a, b in zip(ts, ts[1:]))
    assert ede_schedule(150, 100) == ede_schedule(100, 100)  # held at the end
    with pytest.raises(ValueError):
        ede_schedule(0, 0)


@pytest.mark.parametrize("epoch", [0, 3, 5, 8, 10])
def test_ede_gradient_matches_finite_differences_of_k_tanh_tx(epoch):
    t, k = ede_schedule(epoch, 10)
    x = torch.tensor([-3.0, -1.0, -0.3, 0.0, 0.05, 0.4, 1.0, 2.5], dtype=torch.float64)
    h = 1e-6
    fd = (ede_surrogate(x + h, t, k) - ede_surrogate(x - h, t, k)) / (2 * h)
    got = grad_of(lambda v: sign_ste(v, "ede", (t, k)), x)
    assert torch.allclose(got, fd, atol=1e-6, rtol=1e-6)
    assert got[3].item() == pytest.approx(k * t, rel=1e-12)  # at x = 0: k t


def test_ede_param_forms_and_gradcheck_of_surrogate():
    x = torch.tensor([-0.7, 0.0, 0.2], dtype=torch.float64)
    g = torch.ones_like(x)
    assert torch.equal(ede_grad(g, x, 0.5), ede_grad(g, x, (0.5, 2.0)))  # float t -> k = max(1/t, 1)
    assert torch.equal(ede_grad(g, x, None), ede_grad(g, x, ede_schedule(0, 1)))  # None: schedule start
    xs = torch.randn(7, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda v: ede_surrogate(v, 2.0, 0.5), (xs,))


def test_new_estimators_registered_after_the_original_three():
    assert list(ESTIMATORS) == ["identity", "value_clip", "window", "approx_sign", "ede"]
    assert set(DEFAULT_PARAMS) == set(ESTIMATORS)


def test_forward_stays_sign_for_new_estimators():
    for name in ("approx_sign", "ede"):
        assert torch.equal(sign_ste(X, name, None), sign(X))


# ---- threshold ----------------------------------------------------------------------------------

def test_threshold_shifts_the_flip_point():
    tau = 0.25
    below = torch.nextafter(torch.tensor(tau), torch.tensor(-1.0)).item()
    x = torch.tensor([-1.0, 0.0, 0.2, below, tau, 0.3, 1.0])
    assert binarize(x, threshold=tau).tolist() == [-1, -1, -1, -1, 1, 1, 1]
    assert binarize(x).tolist() == [-1, 1, 1, 1, 1, 1, 1]


def test_estimator_sees_shifted_input_window_edges():
    tau, t = 0.25, 0.5  # window on x - tau: |x - 0.25| <= 0.5  <=>  -0.25 <= x <= 0.75
    x = torch.tensor([-0.5, -0.25, 0.0, 0.75, 0.875])
    got = grad_of(lambda v: binarize(v, "window", t, threshold=tau), x)
    assert got.tolist() == [0.0, 1.0, 1.0, 1.0, 0.0]
    got = grad_of(lambda v: binarize(v, "approx_sign", threshold=tau), x)
    assert torch.equal(got, (2 - 2 * (x - tau).abs()).clamp_min(0))


def test_binarize_uses_estimator_default_param():
    x = torch.tensor([-1.5, -1.0, 0.5, 1.0, 1.25])
    assert grad_of(lambda v: binarize(v, "window"), x).tolist() == [0.0, 1.0, 1.0, 1.0, 0.0]  # t = 1.0


# ---- XNOR scale ---------------------------------------------------------------------------------

def test_mean_abs_scale_per_output_channel_values():
    w = torch.tensor([[1.0, -3.0, 0.0, 2.0], [-0.5, 0.5, 0.5, -0.5], [0.0, 0.0, 0.0, 4.0]])
    assert mean_abs_scale(w).flatten().tolist() == [1.5, 0.5, 1.0]
    out = binarize_weight(w, scale="mean_abs")
    assert torch.equal(out, torch.tensor([1.5, 0.5, 1.0])[:, None] * sign(w))
    conv = torch.randn(4, 3, 3, 3)
    s = mean_abs_scale(conv)
    assert s.shape == (4, 1, 1, 1)
    assert torch.allclose(s.flatten(), torch.stack([conv[c].abs().mean() for c in range(4)]), atol=0, rtol=1e-6)
    assert torch.equal(binarize_weight(conv, scale="none"), sign(conv))


def test_gradient_flows_through_the_scale_as_autograd_gives_it():
    w = torch.randn(3, 5, dtype=torch.float64)
    g = torch.randn(3, 5, dtype=torch.float64)
    got = grad_of(lambda v: binarize_weight(v, "identity", scale="mean_abs"), w, g)
    alpha = w.abs().mean(1, keepdim=True)
    # d/dW [alpha_c * sign(W)] . g = g * alpha_c (identity STE) + sign(W)/n * sum_j g_cj sign(W_cj)
    expected = g * alpha + torch.sign(w) / 5 * (g * sign(w)).sum(1, keepdim=True)
    assert torch.allclose(got, expected, atol=1e-12)


def test_sign_quantizer_module_and_scale_registry():
    q = SignQuantizer("ede", scale="mean_abs")
    q.set_epoch(10, 10)
    assert q.param == ede_schedule(10, 10)
    SignQuantizer("window").set_epoch(3, 10)  # no-op for other estimators
    with pytest.raises(KeyError, match="valid: none, mean_abs"):
        get_weight_scale("l2")
    with pytest.raises(KeyError, match="valid: identity, value_clip, window, approx_sign, ede"):
        SignQuantizer("tanh")
