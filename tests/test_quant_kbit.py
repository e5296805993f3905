"""DoReFa and LSQ against closed forms.

Tolerances: level membership and round trips are exact (``torch.equal``); LSQ gradients are
compared in float64 against the hand-written Eq. 3 of Esser et al. to 1e-12.
"""
import math

import pytest
import torch

from lowbit_core.quant.kbit import (LSQQuantizer, dorefa_act, dorefa_weight, lsq_grad_scale, lsq_init_step,
                                    lsq_levels, lsq_quantize, quantize_k, round_half_up_ste, round_ste)


def levels(bits, dtype=torch.float32):
    n = 2 ** bits - 1
    return torch.arange(n + 1, dtype=dtype) / n


def on_levels(y, lv):
    return bool((y[..., None] == lv).any(-1).all())


# ---- DoReFa -------------------------------------------------------------------------------------

@pytest.mark.parametrize("bits", [1, 2, 3, 4, 8])
def test_quantize_k_outputs_lie_exactly_on_levels_and_levels_round_trip(bits):
    x = torch.rand(1000)
    y = quantize_k(x, bits)
    assert on_levels(y, levels(bits))
    assert torch.equal(quantize_k(levels(bits), bits), levels(bits))
    assert (y - x).abs().max() <= 0.5 / (2 ** bits - 1) + 1e-7  # nearest level


def test_round_estimators_forward_and_identity_backward():
    x = torch.tensor([-1.5, -0.5, 0.5, 1.5, 2.5, 0.49], requires_grad=True)
    assert round_ste(x).tolist() == [-2.0, -0.0, 0.0, 2.0, 2.0, 0.0]  # ties to even
    assert round_half_up_ste(x).tolist() == [-1.0, 0.0, 1.0, 2.0, 3.0, 0.0]  # ties up
    (round_ste(x) * torch.arange(6.0)).sum().backward()
    assert x.grad.tolist() == [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]


@pytest.mark.parametrize("bits", [1, 2, 4])
def test_dorefa_act_levels_round_trip_and_gradient_mask(bits):
    x = torch.tensor([-1.0, -1e-6, 0.0, 0.2, 0.5, 0.7, 1.0, 1.0 + 1e-6, 3.0])
    y = dorefa_act(x, bits)
    assert on_levels(y, levels(bits))
    assert y[0] == 0 and y[-1] == 1
    assert torch.equal(dorefa_act(levels(bits), bits), levels(bits))
    xg = x.clone().requires_grad_(True)
    dorefa_act(xg, bits).sum().backward()
    assert xg.grad.tolist() == [0, 0, 1, 1, 1, 1, 1, 0, 0]  # edges 0 and 1 pass the gradient


def test_dorefa_weight_one_bit_is_the_bwn_branch():
    """DoReFa's reference at 1 bit: sign(w) * E|w| (sign(0) = +1), identity gradient through sign."""
    w = torch.tensor([[0.5, -0.25, 0.0], [-1.0, 0.125, -0.0]])
    e = w.abs().mean()  # 1.875 / 6
    y = dorefa_weight(w, 1)
    assert torch.allclose(y, torch.tensor([[1.0, -1.0, 1.0], [-1.0, 1.0, 1.0]]) * e, rtol=0, atol=1e-7)
    wg = w.clone().requires_grad_(True)
    g = torch.tensor([[0.3, -2.0, 1.5], [0.7, -0.1, 4.0]])
    dorefa_weight(wg, 1).backward(g)
    assert torch.allclose(wg.grad, g, rtol=1e-6, atol=0)  # dL/dw = g: E is a constant (stop-gradient)


@pytest.mark.parametrize("bits", [2, 3])
def test_dorefa_weight_levels_reference_and_extremes(bits):
    torch.manual_seed(0)
    w = torch.randn(8, 5)
    y = dorefa_weight(w, bits)
    assert on_levels(y, 2 * levels(bits) - 1)
    t = torch.tanh(w.double())
    j = torch.round((2 ** bits - 1) * (t / (2 * t.abs().max()) + 0.5)).long()  # reference level index
    assert torch.equal(y, (2 * levels(bits) - 1)[j])
    i = w.abs().argmax()
    assert y.flatten()[i].abs().item() == 1.0  # the largest |w| maps to +-1


def test_dorefa_weight_gradient_is_ste_through_round_and_autograd_elsewhere():
    w = torch.randn(4, 3, dtype=torch.float64)
    g = torch.randn(4, 3, dtype=torch.float64)
    w1 = w.clone().requires_grad_(True)
    (dorefa_weight(w1, 2) * g).sum().backward()
    w2 = w.clone().requires_grad_(True)
    t = torch.tanh(w2)
    ((t / t.abs().max()) * g).sum().backward()  # 2 * (tanh/(2 max) + 1/2) - 1 without the round
    assert torch.allclose(w1.grad, w2.grad, atol=1e-12)


# ---- LSQ ----------------------------------------------------------------------------------------

def test_lsq_levels_and_errors():
    assert lsq_levels(2, True) == (2, 1)
    assert lsq_levels(3, True) == (4, 3)
    assert lsq_levels(2, False) == (0, 3)
    assert lsq_levels(1, False) == (0, 1)
    with pytest.raises(ValueError, match="bits >= 2"):
        lsq_levels(1, True)
    with pytest.raises(ValueError):
        quantize_k(torch.zeros(1), 0)


def paper_grads(v, s, q_n, q_p, g, upstream):
    """Esser et al. Eq. 3 (and the STE for v), written out by hand."""
    r = v / s
    inside = (r > -q_n) & (r < q_p)
    ds_elem = torch.where(inside, -r + torch.round(r), torch.where(r <= -q_n, float(-q_n), float(q_p)))
    return upstream * inside, (upstream * ds_elem).sum() * g


@pytest.mark.parametrize("bits,signed", [(2, True), (3, True), (2, False), (4, False)])
def test_lsq_step_gradient_matches_the_paper(bits, signed):
    q_n, q_p = lsq_levels(bits, signed)
    s0 = 0.3
    special = torch.tensor([-q_n * s0, q_p * s0, -(q_n + 1) * s0, (q_p + 2) * s0, 0.0, 0.1, -0.05, 0.4],
                           dtype=torch.float64)
    v = torch.cat([special, torch.randn(12, dtype=torch.float64)])
    up = torch.randn_like(v)
    vv = v.clone().requires_grad_(True)
    s = torch.tensor(s0, dtype=torch.float64, requires_grad=True)
    out = lsq_quantize(vv, s, bits, signed)
    (out * up).sum().backward()
    g = 1 / math.sqrt(v.numel() * q_p)
    dv, ds = paper_grads(v, s.detach(), q_n, q_p, g, up)
    assert torch.allclose(vv.grad, dv, atol=1e-12)
    assert torch.allclose(s.grad, ds, atol=1e-12)
    # value: round(clip(v/s, -Q_N, Q_P)) * s
    assert torch.allclose(out, torch.round((v / s0).clamp(-q_n, q_p)) * s0, atol=1e-15)


def test_lsq_on_grid_points_value_is_exact_and_inner_step_gradient_is_zero():
    q_n, q_p = lsq_levels(3, True)
    s = torch.tensor(0.25, requires_grad=True)
    v = torch.arange(-q_n, q_p + 1, dtype=torch.float32) * 0.25
    out = lsq_quantize(v, s, 3, True, grad_scale=1.0)
    assert torch.equal(out, v)
    up = torch.zeros_like(v)
    up[1:-1] = 1.0  # only the strictly inside grid points
    (out * up).sum().backward()
    assert s.grad.item() == 0.0
    s.grad = None
    out = lsq_quantize(v, s, 3, True, grad_scale=1.0)
    out[0].backward()  # exact lower edge counts as outside: -Q_N
    assert s.grad.item() == -q_n


def test_lsq_per_channel_step_broadcasts_and_reduces():
    v = torch.randn(3, 6, dtype=torch.float64)
    s = torch.tensor([[0.1], [0.5], [1.0]], dtype=torch.float64, requires_grad=True)
    lsq_quantize(v, s, 2, True, grad_scale=1.0).sum().backward()
    q_n, q_p = lsq_levels(2, True)
    for c in range(3):
        _, ds = paper_grads(v[c], s[c, 0].detach(), q_n, q_p, 1.0, torch.ones(6, dtype=torch.float64))
        assert s.grad[c, 0].item() == pytest.approx(ds.item(), abs=1e-12)


def test_lsq_module_init_grad_scale_and_state_dict():
    torch.manual_seed(1)
    w = torch.randn(4, 8)
    q = LSQQuantizer(3, signed=True)
    out = q(w)
    q_n, q_p = 4, 3
    assert q.step.item() == pytest.approx(2 * w.abs().mean().item() / math.sqrt(q_p), rel=1e-6)
    assert torch.allclose(lsq_init_step(w, q_p), q.step.detach())
    out.sum().backward()
    _, ds = paper_grads(w.double(), q.step.detach().double(), q_n, q_p, lsq_grad_scale(32, q_p),
                        torch.ones(4, 8, dtype=torch.float64))
    assert q.step.grad.item() == pytest.approx(ds.item(), rel=1e-5, abs=1e-7)
    before = q.step.item()
    q(10 * w)  # no re-initialisation
    assert q.step.item() == before
    q2 = LSQQuantizer(3, signed=True)
    q2.load_state_dict(q.state_dict())
    q2(100 * w)
    assert q2.step.item() == before and bool(q2.initialized)
    # activations: unsigned, N = features per sample
    qa = LSQQuantizer(2, signed=False, role="act", step=0.5)
    x = torch.rand(5, 7, requires_grad=True)
    qa(x).sum().backward()
    _, ds = paper_grads(x.detach().double(), 0.5, 0, 3, lsq_grad_scale(7, 3), torch.ones(5, 7, dtype=torch.float64))
    assert qa.step.grad.item() == pytest.approx(ds.item(), rel=1e-5, abs=1e-7)
    assert qa.step.item() == 0.5  # an explicit step is not overwritten
