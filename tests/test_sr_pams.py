"""PAMS quantizers (lowbit_core/quant/pams.py) against the closed forms of Li et al. (ECCV 2020) and the
authors' code: grids, straight-through gradients, the learned scale's gradient, the calibration."""
import pytest
import torch

from lowbit_core.quant.layers import QuantSpec
from lowbit_core.quant.pams import (ALPHA_INIT, EMA_DECAY, PAMSAct, PAMSWeight, pams_act, pams_levels, pams_weight,
                                    set_pams_calibration)
from lowbit_core.quant.registry import make_quantizer


def test_levels_and_bits_check():
    assert [pams_levels(k) for k in (2, 3, 4, 8)] == [1.0, 3.0, 7.0, 127.0]
    with pytest.raises(ValueError, match="bits >= 2"):
        pams_levels(1)
    with pytest.raises(ValueError, match="bits >= 2"):
        QuantSpec(weight="pams", bits=1)
    assert isinstance(make_quantizer({"name": "pams", "bits": 4}), PAMSWeight)
    assert isinstance(make_quantizer({"name": "pams", "role": "act", "bits": 4}), PAMSAct)


def test_weight_grid_and_straight_through_gradient():
    w = torch.tensor([-2.0, -0.9, -0.2, 0.0, 0.3, 1.1, 2.0], requires_grad=True)
    wq = pams_weight(w, 3)       # q = 3, m = 2 (+1e-8): grid m/3 * {-3..3}
    m = 2.0 + 1e-8
    want = torch.round(w.detach() * 3 / m) * m / 3
    torch.testing.assert_close(wq, want)
    assert len(torch.unique(wq.detach())) <= 7
    (wq * torch.arange(7.0)).sum().backward()
    torch.testing.assert_close(w.grad, torch.arange(7.0))        # identity: m is detached


def test_act_forward_clip_and_gradients_match_the_closed_form():
    x = torch.tensor([-5.0, -1.3, -0.4, 0.0, 0.26, 0.9, 1.0, 3.0], requires_grad=True)
    alpha = torch.tensor(1.0, requires_grad=True)
    q = pams_levels(4)                                              # 7
    y = pams_act(x, alpha, 4)
    xc = x.detach().clamp(-1, 1)
    torch.testing.assert_close(y, torch.round(xc * q) / q)
    g = torch.linspace(0.5, 1.2, 8)
    (y * g).sum().backward()
    inside = (x.detach().abs() <= 1).float()
    torch.testing.assert_close(x.grad, g * inside)                  # 1{|x| <= alpha}, edges inside
    v = xc * q
    d_alpha = torch.where(x.detach().abs() > 1, torch.sign(x.detach()), (torch.round(v) - v) / q)
    torch.testing.assert_close(alpha.grad, (g * d_alpha).sum())


def test_calibration_follows_the_authors_code():
    torch.manual_seed(0)
    act = PAMSAct(4)
    assert float(act.alpha.detach()) == ALPHA_INIT
    x1, x2 = torch.randn(4, 3, 5, 5) * 7, torch.randn(4, 3, 5, 5) * 2
    stat = [float(x.abs().flatten(1).amax(1).mean()) for x in (x1, x2)]
    act.train()
    assert set_pams_calibration(act, 0, 2) == 1                    # first calibration epoch: M = m_t
    y = act(x1)
    assert float(act.alpha.detach()) == pytest.approx(stat[0])
    torch.testing.assert_close(y, torch.round(x1 * 7 / stat[0]) * stat[0] / 7)   # not clipped
    act(x2)
    assert float(act.alpha.detach()) == pytest.approx(stat[1])
    set_pams_calibration(act, 1, 2)                                 # later calibration epochs: EMA
    act(x1)
    assert float(act.alpha.detach()) == pytest.approx(EMA_DECAY * stat[1] + (1 - EMA_DECAY) * stat[0])
    set_pams_calibration(act, 2, 2)                                 # done: clip with the learned alpha
    a = float(act.alpha.detach())
    assert act(x1).abs().max() <= a + 1e-5 and float(act.alpha.detach()) == a
    act.eval()
    set_pams_calibration(act, 0, 2)                                 # eval never calibrates
    act(x2 * 100)
    assert float(act.alpha.detach()) == a
    sd = act.state_dict()
    assert set(sd) == {"alpha", "max_val"}
