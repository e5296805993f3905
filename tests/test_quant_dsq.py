"""DSQ (Gong et al., ICCV 2019) against its closed form and the hard uniform quantizer.

"Away from the decision boundaries" means ``|x - m_i| >= 0.3 Delta``: there the soft-hard gap is
``Delta (1 - phi)/2 <= Delta e^{-0.6 ln(2/alpha)}`` roughly, about 1.7e-4 for alpha = 1e-6 and
Delta = 1 (the bound checked is 1e-3). Other tolerances: 1e-12 in float64, exact for bounds.
"""
import math

import pytest
import torch

from lowbit_core.quant.dsq import (ALPHA_MAX, DSQQuantizer, dsq_alpha_schedule, dsq_hard, dsq_phi, dsq_sign_ste,
                                   dsq_soft)

L, U, BITS = -1.0, 2.0, 2
DELTA = (U - L) / (2 ** BITS - 1)  # 1.0: levels -1, 0, 1, 2; boundaries -0.5, 0.5, 1.5
LEVELS = torch.tensor([-1.0, 0.0, 1.0, 2.0], dtype=torch.float64)
MIDS = torch.tensor([-0.5, 0.5, 1.5], dtype=torch.float64)


def grid(n=6001, lo=L - 1, hi=U + 1):
    return torch.linspace(lo, hi, n, dtype=torch.float64)


def reference_soft(x, lo, hi, alpha, bits):
    """The paper's formula written out per element in plain Python."""
    n = 2 ** bits - 1
    d = (hi - lo) / n
    out = []
    for v in x.tolist():
        if v <= lo:
            out.append(lo)
            continue
        if v >= hi:
            out.append(hi)
            continue
        i = min(int((v - lo) // d), n - 1)
        m = lo + (i + 0.5) * d
        phi = 1 / (1 - alpha) * math.tanh(math.log(2 / alpha - 1) / d * (v - m))
        out.append(lo + d * (i + (phi + 1) / 2))
    return torch.tensor(out, dtype=torch.float64)


@pytest.mark.parametrize("alpha", [0.45, 0.2, 0.05, 1e-3])
def test_soft_matches_the_closed_form(alpha):
    x = grid(601)
    assert torch.allclose(dsq_soft(x, L, U, alpha, BITS), reference_soft(x, L, U, alpha, BITS), atol=1e-12)


@pytest.mark.parametrize("alpha", [0.49, 0.2, 1e-2, 1e-6])
def test_soft_is_bounded_and_monotone(alpha):
    x = grid()
    y = dsq_soft(x, L, U, alpha, BITS)
    assert y.min().item() >= L and y.max().item() <= U
    assert torch.all(y[x <= L] == L) and torch.all(y[x >= U] == U)
    assert torch.all(y[1:] - y[:-1] >= 0)
    y32 = dsq_soft(x.float(), L, U, alpha, BITS)
    assert y32.min().item() >= L and y32.max().item() <= U


@pytest.mark.parametrize("alpha", [0.4, 0.1, 1e-4])
def test_soft_equals_hard_at_interval_edges_and_is_halfway_at_midpoints(alpha):
    # the edges of each midpoint's interval [m_i - Delta/2, m_i + Delta/2] are the levels themselves
    assert torch.allclose(dsq_soft(LEVELS, L, U, alpha, BITS), LEVELS, atol=1e-12)
    assert torch.equal(dsq_hard(LEVELS, L, U, BITS), LEVELS)
    assert torch.allclose(dsq_soft(MIDS, L, U, alpha, BITS), MIDS, atol=1e-12)  # phi(m_i) = 0
    phi, *_ = dsq_phi(LEVELS[1:3] + 1e-9, L, U, alpha, BITS)
    assert torch.allclose(phi, torch.full_like(phi, -1.0), atol=1e-6)  # s tanh(-k Delta/2) = -1


def test_soft_approaches_hard_as_alpha_goes_to_zero():
    x = grid(30001, L, U)
    r = (x - L) / DELTA
    away = ((r - r.floor()) - 0.5).abs() >= 0.3
    errs = []
    for alpha in [0.4, 0.2, 0.1, 1e-2, 1e-3, 1e-4, 1e-5, 1e-6]:
        err = (dsq_soft(x, L, U, alpha, BITS) - dsq_hard(x, L, U, BITS)).abs()[away].max().item()
        errs.append(err)
    assert all(a > b for a, b in zip(errs, errs[1:])), errs
    assert errs[-1] < 1e-3


def test_hard_is_the_uniform_quantizer_with_ste():
    x = grid(301)
    ref = L + DELTA * torch.floor((x.clamp(L, U) - L) / DELTA + 0.5)
    assert torch.equal(dsq_hard(x, L, U, BITS), ref)
    assert torch.equal(dsq_hard(MIDS, L, U, BITS), MIDS + 0.5)  # ties go up
    xg = torch.tensor([-2.0, -1.0, 0.3, 2.0, 2.5], requires_grad=True)
    dsq_hard(xg, L, U, BITS).sum().backward()
    assert xg.grad.tolist() == [0.0, 1.0, 1.0, 1.0, 0.0]  # edges inside


def test_sign_ste_variant_has_hard_value_and_soft_gradient():
    x = torch.tensor([-0.9, -0.2, 0.4, 0.7, 1.9], dtype=torch.float64)
    x1, x2 = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
    y1 = dsq_sign_ste(x1, L, U, 0.2, BITS)
    assert torch.allclose(y1, dsq_hard(x, L, U, BITS), atol=1e-12)
    y1.sum().backward()
    dsq_soft(x2, L, U, 0.2, BITS).sum().backward()
    assert torch.allclose(x1.grad, x2.grad, atol=1e-12)


def test_gradcheck_soft_in_x_bounds_and_alpha():
    # points at least 0.05 Delta from interval edges, so finite differences stay in one interval
    x = torch.tensor([-0.8, -0.4, 0.1, 0.45, 0.9, 1.3, 1.8], dtype=torch.float64, requires_grad=True)
    lo = torch.tensor(L, dtype=torch.float64, requires_grad=True)
    hi = torch.tensor(U, dtype=torch.float64, requires_grad=True)
    a = torch.tensor(0.2, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda *t: dsq_soft(*t, BITS), (x, lo, hi, a))
    xo = torch.tensor([-3.0, 3.5], dtype=torch.float64, requires_grad=True)  # outside: gradient to bounds
    assert torch.autograd.gradcheck(lambda *t: dsq_soft(*t, BITS), (xo, lo, hi, a))


def test_alpha_schedule():
    assert dsq_alpha_schedule(0, 100) == 0.2
    assert dsq_alpha_schedule(100, 100) == pytest.approx(1e-3)
    assert dsq_alpha_schedule(50, 100) == pytest.approx((0.2 + 1e-3) / 2)
    assert dsq_alpha_schedule(50, 100, kind="geometric") == pytest.approx(math.sqrt(0.2 * 1e-3))
    assert dsq_alpha_schedule(500, 100, kind="geometric") == pytest.approx(1e-3)
    with pytest.raises(KeyError, match="valid: linear, geometric"):
        dsq_alpha_schedule(0, 10, kind="cosine")


def test_module_train_soft_eval_hard_and_lazy_init():
    torch.manual_seed(0)
    x = torch.randn(64)
    q = DSQQuantizer(2)  # bounds from the first batch
    y = q(x)
    assert q.lower.item() == x.min().item() and q.upper.item() == x.max().item()
    assert torch.allclose(y, dsq_soft(x, q.lower.detach(), q.upper.detach(), 0.2, 2), atol=1e-6)
    q.eval()
    yh = q(x)
    assert torch.equal(yh, dsq_hard(x, q.lower.detach(), q.upper.detach(), 2))
    assert len(torch.unique(yh)) <= 4


def test_module_learnable_alpha_kept_in_range_but_gets_gradient():
    q = DSQQuantizer(2, lower=-1.0, upper=1.0, alpha=0.3)
    with torch.no_grad():
        q.alpha.fill_(0.9)  # an optimiser overshot
    assert q.effective_alpha().item() == pytest.approx(ALPHA_MAX)
    x = torch.tensor([-0.5, -0.2, 0.2, 0.6, 0.9])
    q(x).sum().backward()
    for p in (q.alpha, q.lower, q.upper):
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().item() > 0


def test_module_scheduled_alpha_is_a_buffer():
    q = DSQQuantizer(3, lower=0.0, upper=1.0, learn_alpha=False, learn_bounds=False)
    assert [n for n, _ in q.named_parameters()] == []
    q.set_alpha(dsq_alpha_schedule(10, 10))
    assert q.alpha.item() == pytest.approx(1e-3)
    with pytest.raises(ValueError):
        DSQQuantizer(2, alpha=0.6)
    with pytest.raises(KeyError, match="valid: soft, sign_ste"):
        DSQQuantizer(2, train_forward="hard")
