"""QuantLinear / QuantConv2d and the quantizer registry: every parameter gets a gradient (timm-style
backward test), forwards equal their closed forms, errors list the valid names."""
import pytest
import torch
from torch import nn
from torch.nn import functional as F

from lowbit_core.quant.dsq import dsq_hard
from lowbit_core.quant.estimators import ede_schedule, sign
from lowbit_core.quant.kbit import DoReFaAct, DoReFaWeight, LSQQuantizer, dorefa_act
from lowbit_core.quant.layers import QuantConv2d, QuantLinear, QuantSpec, set_dsq_alpha, set_ede_epoch
from lowbit_core.quant.registry import QUANTIZERS, QuantizerSpec, make_quantizer
from lowbit_core.quant.sign import SignQuantizer

NAMES = list(QUANTIZERS)
SPECS = [
    dict(weight="sign", weight_estimator="window", weight_param=1.0, weight_scale="mean_abs", act="sign",
         act_estimator="approx_sign"),
    dict(weight="sign", weight_estimator="ede", act="none", weight_threshold=0.01),
    dict(weight="dorefa", act="dorefa", bits=2),
    dict(weight="lsq", act="lsq", bits=3),
    dict(weight="dsq", act="dsq", bits=2),
    dict(weight="dsq", act="lsq", weight_bits=3, act_bits=4, dsq_train_forward="sign_ste"),
    dict(weight="lsq", act="dsq", bits=2, act_signed=True),
]


def check_all_grads(m, x):
    out = m(x)
    (out ** 2).sum().backward()
    for name, p in m.named_parameters():
        assert p.grad is not None, name
        assert torch.isfinite(p.grad).all(), name
    assert m.weight.grad.abs().sum() > 0
    return out


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: f"{s['weight']}-{s['act']}")
def test_quant_linear_forward_backward_every_parameter_gets_a_gradient(spec):
    torch.manual_seed(0)
    m = QuantLinear(6, 4, spec=spec)
    out = check_all_grads(m, torch.randn(5, 6))
    assert out.shape == (5, 4)


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: f"{s['weight']}-{s['act']}")
def test_quant_conv2d_forward_backward_every_parameter_gets_a_gradient(spec):
    torch.manual_seed(0)
    m = QuantConv2d(3, 4, 3, stride=2, padding=1, spec=QuantSpec.from_dict(spec))
    x = torch.randn(2, 3, 6, 6, requires_grad=True)
    out = check_all_grads(m, x)
    assert out.shape == (2, 4, 3, 3)
    if spec["act"] != "dsq":  # DSQ acts may clip some of x, but some always pass
        assert x.grad is not None


def test_full_precision_default_is_the_plain_layer():
    torch.manual_seed(0)
    m = QuantLinear(3, 2)
    ref = nn.Linear(3, 2)
    ref.load_state_dict(m.state_dict())
    x = torch.randn(4, 3)
    assert torch.equal(m(x), ref(x))
    c = QuantConv2d(2, 3, 3, spec=None)
    xc = torch.randn(1, 2, 5, 5)
    assert torch.equal(c(xc), F.conv2d(xc, c.weight, c.bias))


def test_forward_closed_forms():
    torch.manual_seed(0)
    m = QuantLinear(5, 3, spec=QuantSpec(weight="sign", weight_scale="mean_abs", act="dorefa", bits=2))
    x = torch.randn(4, 5)
    w = m.weight.detach()
    expected = F.linear(dorefa_act(x, 2), w.abs().mean(1, keepdim=True) * sign(w), m.bias)
    assert torch.allclose(m(x), expected, atol=1e-6)
    c = QuantConv2d(2, 3, 3, padding=1, bias=False, spec=QuantSpec(weight="sign", act="sign", act_threshold=0.5))
    xc = torch.randn(1, 2, 4, 4)
    assert torch.equal(c(xc), F.conv2d(sign(xc - 0.5), sign(c.weight.detach()), padding=1))


def test_dsq_layer_eval_gives_hard_forward():
    torch.manual_seed(0)
    m = QuantLinear(4, 3, spec=QuantSpec(weight="dsq", bits=2))
    m(torch.randn(2, 4))  # lazy init of the bounds
    m.eval()
    wq = m.quantized_weight()
    lo, hi = m.weight_quantizer.lower.detach(), m.weight_quantizer.upper.detach()
    assert torch.equal(wq, dsq_hard(m.weight.detach(), lo, hi, 2))
    assert len(torch.unique(wq)) <= 4


def test_spec_builds_the_named_quantizers():
    s = QuantSpec(weight="dorefa", act="dorefa", weight_bits=1, act_bits=3)
    assert isinstance(make_quantizer(s.weight_quantizer()), DoReFaWeight)
    a = make_quantizer(s.act_quantizer())
    assert isinstance(a, DoReFaAct) and a.bits == 3
    q = make_quantizer({"name": "lsq", "role": "act", "bits": 2})
    assert isinstance(q, LSQQuantizer) and not q.signed
    assert isinstance(make_quantizer("none"), nn.Identity)
    sq = make_quantizer(QuantizerSpec(name="sign", estimator="value_clip", param=0.5, scale="mean_abs"))
    assert isinstance(sq, SignQuantizer) and sq.scale == "mean_abs"


def test_registry_errors_list_valid_names():
    with pytest.raises(KeyError, match="valid: none, sign, dorefa, lsq, dsq"):
        make_quantizer("ternary")
    with pytest.raises(KeyError, match="valid: none, sign, dorefa, lsq, dsq"):
        QuantSpec(act="relu6")
    with pytest.raises(KeyError, match="valid: identity, value_clip, window, approx_sign, ede"):
        QuantSpec(weight="sign", weight_estimator="swish")
    with pytest.raises(KeyError, match="valid: none, mean_abs"):
        QuantSpec(weight="sign", weight_scale="l1")
    with pytest.raises(KeyError, match=r"'bitz'.*valid: weight, weight_estimator"):
        QuantSpec.from_dict({"weight": "sign", "bitz": 2})
    with pytest.raises(KeyError, match=r"valid: name, role, bits"):
        make_quantizer({"nam": "sign"})
    with pytest.raises(KeyError, match="valid: weight, act"):
        QuantizerSpec(name="sign", role="bias")
    with pytest.raises(ValueError, match="weights only"):
        QuantizerSpec(name="sign", role="act", scale="mean_abs")
    with pytest.raises(ValueError, match="bits >= 2"):
        QuantSpec(weight="lsq", bits=1)
    with pytest.raises(TypeError):
        QuantLinear(2, 2, spec="sign")


def test_schedule_helpers_reach_every_layer():
    model = nn.Sequential(
        QuantConv2d(1, 2, 3, spec=QuantSpec(weight="sign", weight_estimator="ede", act="sign", act_estimator="ede")),
        QuantLinear(2, 2, spec=QuantSpec(weight="dsq", dsq_learn_alpha=False)),
        QuantLinear(2, 2, spec=QuantSpec(weight="dsq")))
    assert set_ede_epoch(model, 5, 10) == 2
    assert model[0].weight_quantizer.param == ede_schedule(5, 10)
    assert set_dsq_alpha(model, 0.01) == 1  # the learned alpha is left alone
    assert model[1].weight_quantizer.alpha.item() == pytest.approx(0.01)
    assert model[2].weight_quantizer.alpha.item() == pytest.approx(0.2)


def test_state_dict_round_trip_keeps_learned_quantizer_state():
    torch.manual_seed(0)
    spec = QuantSpec(weight="lsq", act="dsq", bits=2)
    a = QuantLinear(4, 3, spec=spec)
    x = torch.randn(8, 4)
    a(x)
    b = QuantLinear(4, 3, spec=spec)
    b.load_state_dict(a.state_dict())
    assert torch.equal(a(x), b(x))
    assert torch.equal(a(5 * x), b(5 * x))  # b does not re-initialise on new data


def test_float64_layer_and_dtype_follow_the_layer():
    m = QuantLinear(3, 2, spec=QuantSpec(weight="lsq", act="dsq"), dtype=torch.float64)
    assert m.weight_quantizer.step.dtype == torch.float64 and m.act_quantizer.lower.dtype == torch.float64
    assert m(torch.randn(2, 3, dtype=torch.float64)).dtype == torch.float64


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("spec", SPECS, ids=lambda s: f"{s['weight']}-{s['act']}")
def test_layers_on_cuda(spec):
    torch.manual_seed(0)
    m = QuantConv2d(3, 4, 3, padding=1, spec=spec).cuda()
    out = check_all_grads(m, torch.randn(2, 3, 5, 5, device="cuda"))
    assert out.is_cuda
    m2 = QuantLinear(6, 4, spec=spec, device="cuda")
    check_all_grads(m2, torch.randn(3, 6, device="cuda"))
