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
    # the built-ins first, in this order (plug-ins registered by other tests may follow)
    assert list(ESTIMATORS)[:5] == ["identity", "value_clip", "window", "approx_sign", "ede"]
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


# ---- relative parameters and thresholds (registry units) ---------------------------------------

def test_relative_window_is_t_times_the_layers_std_computed_by_hand():
    import numpy as np

    from lowbit_core.quant.estimator_registry import Relative

    torch.manual_seed(0)
    w = 0.05 * torch.randn(64, 27)
    g = torch.randn(64, 27)
    for unit, stat in (("std", np.std(w.numpy().astype(np.float64))),
                       ("mean_abs", np.abs(w.numpy().astype(np.float64)).mean())):
        t = 0.7 * stat
        got = grad_of(lambda v: binarize(v, "window", Relative(0.7, unit)), w, g)
        assert torch.equal(got, g * (w.abs() <= t).float())  # no weight lies within 1e-7 of the edge
        assert 0 < float((got == 0).float().mean()) < 1


def test_relative_value_clip_is_c_times_the_upstream_gradients_std():
    from lowbit_core.quant.estimator_registry import Relative

    torch.manual_seed(1)
    x, g = torch.randn(200), torch.randn(200)
    c = 0.5 * float(g.double().std(correction=0))
    got = grad_of(lambda v: binarize(v, "value_clip", Relative(0.5, "std")), x, g)
    assert torch.allclose(got, g.clamp(-c, c), atol=1e-7, rtol=0)
    assert (got.abs().max() - c) < 1e-6 and (g.abs() > c).any()


def test_relative_threshold_shifts_the_sign_exactly():
    from lowbit_core.quant.estimator_registry import Relative

    below_one = torch.nextafter(torch.tensor(1.0), torch.tensor(0.0)).item()
    x = torch.tensor([-3.0, 1.0, below_one, 3.0])  # mean|x| = 2 exactly in float32, so tau = 0.5 * 2 = 1
    assert binarize(x, threshold=Relative(0.5, "mean_abs")).tolist() == [-1, 1, -1, 1]
    assert torch.equal(binarize(x, threshold=Relative(0.5, "mean_abs")), binarize(x, threshold=1.0))
    torch.manual_seed(2)
    x = torch.randn(1000)
    tau = 0.3 * float(x.double().std(correction=0))
    assert torch.equal(binarize(x, threshold=Relative(0.3, "std")), torch.where(x >= tau, 1.0, -1.0))
    # the window is measured on the unshifted input and applied to x - tau
    got = grad_of(lambda v: binarize(v, "window", Relative(0.5, "std"), threshold=Relative(0.3, "std")), x)
    t = 0.5 * float(x.double().std(correction=0))
    assert torch.equal(got, ((x - tau).abs() <= t).float())


def test_units_labels_and_errors_come_from_the_registry():
    from lowbit_core.quant import estimator_registry as reg

    assert reg.relative(0.5) == 0.5 and reg.relative(0.5, "std") == reg.Relative(0.5, "std")
    assert reg.label("window", 0.5, "std") == "window t=0.5·std" and reg.label("window", 0.5, "abs") == "window t=0.5"
    assert reg.label("identity", 0.5, "std") == "identity" and reg.label("ede", None, "std") == "ede"
    assert reg.WITH_RELATIVE == ("value_clip", "window")
    assert reg.get("window").param_axis == "input" and reg.get("value_clip").param_axis == "gradient"
    with pytest.raises(KeyError, match="valid: std, mean_abs"):
        reg.Relative(0.5, "abs")
    with pytest.raises(KeyError, match="valid: abs, std, mean_abs"):
        reg.relative(0.5, "l2")
    with pytest.raises(ValueError, match="'approx_sign' takes no relative parameter; relative parameters: value_clip, window"):
        SignQuantizer("approx_sign", reg.Relative(1.0, "std"))


def test_passes_is_where_the_estimator_gives_a_gradient():
    from lowbit_core.quant.estimator_registry import get

    x = torch.tensor([-1.5, -1.0, -0.5, 0.0, 0.99, 1.0, 2.0])
    assert get("window").passes(x, 1.0).tolist() == [False, True, True, True, True, True, False]
    assert get("approx_sign").passes(x).tolist() == [False, False, True, True, True, False, False]
    assert get("identity").passes(x).all() and get("value_clip").passes(x, 0.5).all()
