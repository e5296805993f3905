"""Sign forward and STE estimators against closed-form values (larq-style gradient tests)."""
import pytest
import torch

from lowbit_core.quant.estimators import ESTIMATORS, get_estimator, sign, sign_ste

W = torch.tensor([-2.0, -0.5, -0.25, -1e-8, 0.0, 1e-8, 0.25, 0.5, 2.0])
G = torch.tensor([3.0, -0.7, 0.5, -0.5, 0.2, -0.1, 0.6, -1.0, 0.05])


def grad_through(name, param, w=W, g=G):
    w = w.clone().requires_grad_(True)
    (sign_ste(w, name, param) * g).sum().backward()
    return w.grad


def test_sign_never_zero_and_exact():
    assert sign(W).tolist() == [-1, -1, -1, -1, 1, 1, 1, 1, 1]
    assert sign(torch.tensor([-0.0])).item() == 1.0  # -0.0 >= 0


def test_identity_passes_gradient_unchanged():
    assert torch.equal(grad_through("identity", None), G)


def test_value_clip_closed_form():
    expected = torch.tensor([0.5, -0.5, 0.5, -0.5, 0.2, -0.1, 0.5, -0.5, 0.05])
    assert torch.equal(grad_through("value_clip", 0.5), expected)


def test_value_clip_is_identity_when_unclipped():
    assert torch.equal(grad_through("value_clip", float(G.abs().max())), G)


def test_window_closed_form_with_edges_inside():
    # |w| <= 0.5 keeps the gradient (edges |w| = 0.5 included), |w| > 0.5 gives exact zeros
    expected = torch.tensor([0.0, -0.7, 0.5, -0.5, 0.2, -0.1, 0.6, -1.0, 0.0])
    got = grad_through("window", 0.5)
    assert torch.equal(got, expected)
    assert got[0].item() == 0.0 and got[-1].item() == 0.0


def test_window_just_outside_edge_is_zero():
    t = 0.25
    w = torch.tensor([t, torch.nextafter(torch.tensor(t), torch.tensor(1.0)).item(), -t])
    got = grad_through("window", t, w=w, g=torch.ones(3))
    assert got.tolist() == [1.0, 0.0, 1.0]


def test_window_is_identity_when_wide():
    assert torch.equal(grad_through("window", 10.0), G)


def test_forward_is_sign_for_every_estimator():
    for name in ESTIMATORS:
        assert torch.equal(sign_ste(W, name, 0.5), sign(W))


def test_unknown_estimator_lists_valid_names():
    with pytest.raises(KeyError, match="valid: identity, value_clip, window"):
        get_estimator("bogus")
