"""EDSR-baseline (lowbit_core/models/edsr.py): structure and parameter count by closed form, output shapes
at x2/x3/x4 for every precision, a gradient in every latent weight and every quantizer parameter of
every quantized variant (each part alone, and all parts), FP weights into a quantized model."""
import pytest
import torch

from lowbit_core.models.edsr import EDSR, PARTS, part_modules
from lowbit_core.models.resnet import load_fp_weights
from lowbit_core.quant.kbit import LSQQuantizer
from lowbit_core.quant.layers import QuantConv2d, QuantSpec
from lowbit_core.quant.pams import PAMSAct, PAMSWeight
from lowbit_core.quant.sign import SignQuantizer

PAMS4 = QuantSpec(weight="pams", act="pams", bits=4)
BINARY = QuantSpec(weight="sign", weight_estimator="identity", weight_scale="mean_abs", act="sign",
                   act_estimator="approx_sign")
LSQ3 = QuantSpec(weight="lsq", act="lsq", bits=3, act_signed=True)
VARIANTS = {"fp": None, "pams4": PAMS4, "binary": BINARY, "lsq3": LSQ3}


def conv_params(c_in, c_out):
    return 9 * c_in * c_out + c_out


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_edsr_baseline_parameter_count_by_closed_form(scale):
    # head 3 -> 64, 16 blocks of two 64 -> 64 convs, the body's closing conv, the upsampler
    # (64 -> 64 s^2 once for s = 2, 3; twice 64 -> 256 for 4) and the last conv 64 -> 3, all with bias
    c = 64
    up = 2 * conv_params(c, 4 * c) if scale == 4 else conv_params(c, scale * scale * c)
    want = conv_params(3, c) + 32 * conv_params(c, c) + conv_params(c, c) + up + conv_params(c, 3)
    got = sum(p.numel() for p in EDSR(scale).parameters())
    assert got == want
    assert round(got / 1e6, 2) == {2: 1.37, 3: 1.55, 4: 1.52}[scale]   # EDSR-baseline's 1.37M-1.55M


@pytest.mark.parametrize("variant", list(VARIANTS))
@pytest.mark.parametrize("scale", [2, 3, 4])
def test_output_shapes_every_scale_and_precision(scale, variant):
    spec = VARIANTS[variant]
    model = EDSR(scale, blocks=2, channels=8, specs={p: spec for p in PARTS} if spec else {})
    for h, w in ((12, 12), (9, 14)):
        y = model(torch.rand(2, 3, h, w) * 255)
        assert y.shape == (2, 3, scale * h, scale * w) and torch.isfinite(y).all()


def quantizer_params(model):
    out = []
    for name, m in model.named_modules():
        if isinstance(m, PAMSAct):
            out.append((f"{name}.alpha", m.alpha))
        elif isinstance(m, LSQQuantizer):
            out.append((f"{name}.step", m.step))
    return out


@pytest.mark.parametrize("variant", ["pams4", "binary", "lsq3"])
@pytest.mark.parametrize("parts", [(p,) for p in PARTS] + [PARTS, ("body", "skip")], ids=lambda p: "+".join(p))
def test_gradient_reaches_every_latent_weight_and_quantizer_parameter(variant, parts):
    torch.manual_seed(0)
    model = EDSR(2, blocks=2, channels=8, specs={p: VARIANTS[variant] for p in parts})
    model.train()
    x = torch.rand(2, 3, 10, 10) * 255
    loss = (model(x) - x.repeat_interleave(2, 2).repeat_interleave(2, 3)).abs().mean()
    loss.backward()
    convs = [(n, m) for n, m in model.named_modules() if isinstance(m, QuantConv2d)]
    assert len(convs) == 1 + 2 * 2 + 1 + 2            # head, block convs, body_end, upsampler + last
    for name, conv in convs:
        assert conv.weight.grad is not None and conv.weight.grad.abs().sum() > 0, name
        assert torch.isfinite(conv.weight.grad).all(), name
    quantized = [m for p in parts for m in part_modules(model, p)]
    kinds = {"pams4": (PAMSWeight, PAMSAct), "binary": (SignQuantizer,), "lsq3": (LSQQuantizer,)}[variant]
    for m in quantized:    # the part's modules really quantize (weights and/or inputs)
        qs = [q for q in m.modules() if isinstance(q, kinds)]
        assert qs, f"{type(m).__name__} of parts {parts} has no {variant} quantizer"
    for name, p in quantizer_params(model):
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs() > 0, name
    if variant != "binary":
        assert quantizer_params(model), "k-bit variants learn their scales"


def test_parts_quantize_only_their_modules():
    model = EDSR(3, blocks=2, channels=8, specs={"skip": PAMS4, "tail": BINARY})
    assert isinstance(model.head.weight_quantizer, torch.nn.Identity)
    assert all(isinstance(c.weight_quantizer, torch.nn.Identity) for c in part_modules(model, "body"))
    assert all(isinstance(s.act_quantizer, PAMSAct) for s in part_modules(model, "skip"))
    tail = part_modules(model, "tail")
    assert len(tail) == 2 and all(isinstance(c.weight_quantizer, SignQuantizer) for c in tail)
    with pytest.raises(KeyError, match="valid: head, body, body_end, skip, tail"):
        EDSR(2, specs={"neck": PAMS4})
    with pytest.raises(ValueError, match="scale must be one of"):
        EDSR(5)


def test_nonlinearity_follows_binary_activations():
    assert isinstance(EDSR(2, blocks=1, channels=4).body[0].act, torch.nn.ReLU)
    assert isinstance(EDSR(2, blocks=1, channels=4, specs={"body": BINARY}).body[0].act, torch.nn.Hardtanh)
    assert isinstance(EDSR(2, blocks=1, channels=4, specs={"body": PAMS4}).body[0].act, torch.nn.ReLU)


def test_mean_shift_is_the_div2k_mean_and_fp_weights_load_into_quantized_models():
    fp = EDSR(2, blocks=2, channels=8)
    torch.testing.assert_close(fp.rgb_mean.flatten(), 255 * torch.tensor([0.4488, 0.4371, 0.4040]))
    for spec in (PAMS4, LSQ3, BINARY):
        q = EDSR(2, blocks=2, channels=8, specs={p: spec for p in PARTS})
        missing = load_fp_weights(q, fp.state_dict())
        assert all("_quantizer." in k for k in missing)
        torch.testing.assert_close(q.body[1].conv2.weight, fp.body[1].conv2.weight)
