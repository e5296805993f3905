"""lowbit_core.cost against hand counts and independent references: a small conv net with every kind of
layer (FP, sign, LSQ, DoReFa-BWN, DSQ, grouped, plain), FP ResNet-20 (40.55 M MACs), binary ResNet-20
(FP stem and classifier, 18 binary convs), FP MACs equal to fvcore's conv + linear counts, the
ImageNet ResNet-18 binarized as Bi-Real Net against its published figures, and the train family's
cost columns."""
from __future__ import annotations

import math
import warnings

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from lowbit_core.cost import COST_METRICS, HOROWITZ, EnergyModel, model_cost, ops, read_layers, si
from lowbit_core.cost.columns import OTHER_LAYER
from lowbit_core.cost.energy import HOROWITZ_45NM
from lowbit_core.cost.family import describe_cost, with_cost
from lowbit_core.models.resnet import build_resnet, count_params
from lowbit_core.quant.layers import QuantConv2d, QuantLinear, QuantSpec

BINARY = QuantSpec(weight="sign", weight_scale="mean_abs", act="sign", act_estimator="approx_sign")
LSQ_W2A4 = QuantSpec(weight="lsq", act="lsq", weight_bits=2, act_bits=4)
BWN = QuantSpec(weight="dorefa", bits=1)                      # DoReFa 1-bit weights (sign(w) E|w|), FP input
DSQ3 = QuantSpec(weight="dsq", act="dsq", bits=3)


class SmallNet(nn.Module):
    """Input 1x3x8x8. Every counted layer with its hand count (out elements x fan-in):

    stem   Conv2d 3->4 3x3 s1 p1 +bias  out 4x8x8 = 256 x 27 = 6912 MACs, FP     (108 + 4) x 32 = 3584 bit
    bn     BatchNorm2d(4)               weight, bias, running mean, var: 16 x 32     =  512 bit
    c1     sign 4->8 3x3 s2 p1          out 8x4x4 = 128 x 36 = 4608 MACs, 1x1   288 x 1 + 8 scales x 32 = 544 bit
    c2     LSQ w2/a4 8->8 1x1 groups 2  128 x 4  =  512 MACs, 2x4 -> 4096 BOPs  32 x 2 + 2 steps x 32 = 128 bit
    c3     DoReFa w1, FP act 8->8 3x3   128 x 72 = 9216 MACs, 1x32 -> 294912    576 x 1 + 1 scale x 32 = 608 bit
    fc1    DSQ w3/a3 linear 8->5 +bias  5 x 8 = 40 MACs, 3x3 -> 360 BOPs        40 x 3 + (5 + 6) x 32 = 472 bit
    fc2    Linear 5->3 +bias            3 x 5 = 15 MACs, FP                     18 x 32 = 576 bit
    """

    def __init__(self, quantized: bool = True):
        super().__init__()
        q = (lambda spec: spec) if quantized else (lambda spec: None)
        self.stem = nn.Conv2d(3, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.c1 = QuantConv2d(4, 8, 3, stride=2, padding=1, bias=False, spec=q(BINARY))
        self.c2 = QuantConv2d(8, 8, 1, groups=2, bias=False, spec=q(LSQ_W2A4))
        self.c3 = QuantConv2d(8, 8, 3, padding=1, bias=False, spec=q(BWN))
        self.fc1 = QuantLinear(8, 5, spec=q(DSQ3))
        self.fc2 = nn.Linear(5, 3)

    def forward(self, x):
        x = F.hardtanh(self.bn(self.stem(x)))
        x = self.c3(self.c2(self.c1(x)))
        return self.fc2(self.fc1(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1)))


SMALL_MACS = {"stem": 6912, "c1": 4608, "c2": 512, "c3": 9216, "fc1": 40, "fc2": 15}
SMALL_BITS = {"stem": (32, 32), "c1": (1, 1), "c2": (2, 4), "c3": (1, 32), "fc1": (3, 3), "fc2": (32, 32)}
SMALL_PARAM_BITS = {"stem": 3584, "c1": 544, "c2": 128, "c3": 608, "fc1": 472, "fc2": 576}
SMALL_SHAPE = (1, 3, 8, 8)


def test_energy_model_derived_from_horowitz():
    assert HOROWITZ.fp_mac_pj == pytest.approx(3.7 + 0.9)
    assert HOROWITZ.bop_pj == pytest.approx(0.2 / 64)
    assert HOROWITZ.weight_bit_pj == pytest.approx(1300 / 64)
    assert HOROWITZ.act_bit_pj == pytest.approx(20 / 64)
    assert HOROWITZ.lowbit_mac_pj(8, 8) == pytest.approx(0.2)      # vs Horowitz's 0.2 + 0.03 pJ int8 mult + add
    assert HOROWITZ.lowbit_mac_pj(1, 32) == pytest.approx(HOROWITZ_45NM["int32_add"])
    with pytest.raises(KeyError, match="lacks fp32_add"):
        EnergyModel.from_table({k: v for k, v in HOROWITZ_45NM.items() if k != "fp32_add"})


def test_small_net_hand_counts():
    c = model_cost(SmallNet(), SMALL_SHAPE)
    assert [r.name for r in c.layers] == list(SMALL_MACS)
    assert {r.name: r.macs for r in c.layers} == SMALL_MACS
    assert {r.name: (r.w_bits, r.a_bits) for r in c.layers} == SMALL_BITS
    assert {r.name: r.param_bits for r in c.layers} == SMALL_PARAM_BITS
    assert [r.op for r in c.layers] == ["conv 3x3 s1", "conv 3x3 s2", "conv 1x1 s1 g2", "conv 3x3 s1", "linear",
                                        "linear"]
    assert c.fp_macs == 6912 + 15
    assert c.lowbit_macs == 4608 + 512 + 9216 + 40
    assert c.macs_by_bits == {(1, 1): 4608, (2, 4): 512, (1, 32): 9216, (3, 3): 40}
    assert c.bops == 4608 + 512 * 8 + 9216 * 32 + 40 * 9 == 303976
    assert c.ops == pytest.approx(303976 / 64 + 6927) == 11676.625
    assert c.other_param_bits == 16 * 32                            # the BN layer
    assert c.param_bits == sum(SMALL_PARAM_BITS.values()) + 512 == 6424
    assert c.params == count_params(SmallNet())
    assert c.peak_act_elems == 4 * 8 * 8                            # the stem's output beats the 3x8x8 input
    # energy, by hand for the stem: 6912 FP MACs x 4.6 pJ + 3584 bit x 1300/64 pJ + (192 + 256) x 32 bit x 20/64 pJ
    stem = c.layers[0]
    assert stem.energy_pj == pytest.approx(6912 * 4.6 + 3584 * 1300 / 64 + (192 + 256) * 32 * 20 / 64) == 109075.2
    c1 = c.layers[1]  # input 4x8x8 read at 1 bit, output 8x4x4 written at 32
    assert c1.energy_pj == pytest.approx(4608 * 0.2 / 64 + 544 * 1300 / 64 + (256 * 1 + 128 * 32) * 20 / 64)
    assert c.energy_uj == pytest.approx((sum(r.energy_pj for r in c.layers) + 512 * 1300 / 64) * 1e-6)


def test_small_net_fp_counts():
    c = model_cost(SmallNet(quantized=False), SMALL_SHAPE)
    assert c.fp_macs == c.macs == sum(SMALL_MACS.values()) and c.bops == 0 and c.lowbit_macs == 0
    assert c.ops == c.fp_macs and c.macs_by_bits == {}
    assert c.param_bits == 32 * (c.params + 8)                      # + BN's running mean and var


def test_metrics_and_layer_table_agree_with_totals():
    c = model_cost(SmallNet(), SMALL_SHAPE)
    m = c.metrics()
    assert set(m) == set(COST_METRICS)
    assert (m["fp_macs"], m["bops"], m["param_bits"], m["ops"]) == (c.fp_macs, c.bops, c.param_bits, c.ops)
    rows = read_layers(m["cost_layers"])
    assert [r["layer"] for r in rows] == [*SMALL_MACS, OTHER_LAYER]
    assert sum(r["macs"] for r in rows) == c.macs and sum(r["bops"] for r in rows) == c.bops
    assert sum(r["param_bits"] for r in rows) == c.param_bits
    assert sum(r["ops"] for r in rows) == pytest.approx(c.ops)
    assert sum(r["energy_uj"] for r in rows) == pytest.approx(c.energy_uj)
    assert rows[1]["out"] == "8x4x4" and rows[1]["w_bits"] == 1


def test_model_is_not_run_or_changed():
    net = SmallNet().train()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    model_cost(net, SMALL_SHAPE)
    assert net.training and all(torch.equal(before[k], v) for k, v in net.state_dict().items())
    assert not bool(net.c2.weight_quantizer.initialized)            # LSQ's lazy init untouched


def test_reused_layer_counts_macs_per_call_and_weights_once():
    class Twice(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = QuantConv2d(2, 2, 3, padding=1, bias=False, spec=BINARY)
            self.unused = nn.Linear(4, 4, bias=False)

        def forward(self, x):
            return self.conv(self.conv(x))

    c = model_cost(Twice(), (1, 2, 5, 5))
    assert [r.name for r in c.layers] == ["conv", "conv#2"] and [r.macs for r in c.layers] == [2 * 25 * 18] * 2
    assert [r.param_bits for r in c.layers] == [36 + 2 * 32, 0]
    assert c.other_param_bits == 16 * 32                            # the unused layer is stored all the same


def test_bad_input():
    with pytest.raises(ValueError, match="batch of 1"):
        model_cost(SmallNet(), (3, 8, 8))
    with pytest.raises(TypeError, match="ConvTranspose2d"):
        model_cost(nn.Sequential(nn.ConvTranspose2d(2, 2, 3)), (1, 2, 4, 4))


# ---- ResNets ------------------------------------------------------------------------------------

def test_fp_resnet20_option_a():
    m = build_resnet("resnet20", 10, None)
    c = model_cost(m, (1, 3, 32, 32))
    assert c.macs == c.fp_macs == 40_551_040 and round(c.macs / 1e6, 2) == 40.55
    assert c.bops == 0 and c.ops == c.macs
    assert c.params == count_params(m) == 269_722
    bn_channels = 16 + 3 * 2 * (16 + 32 + 64)
    assert c.param_bits == 32 * (269_722 + 2 * bn_channels)
    assert c.peak_act_elems == 16 * 32 * 32
    assert len(c.layers) == 1 + 18 + 1                              # option A: the shortcuts have no layers


def test_binary_resnet20_fp_stem_and_classifier():
    c = model_cost(build_resnet("resnet20", 10, BINARY), (1, 3, 32, 32))
    stem, fc = 16 * 32 * 32 * 3 * 9, 64 * 10
    assert c.fp_macs == stem + fc == 443_008
    inner = [r for r in c.layers if not r.is_fp]
    assert len(inner) == 18 and {(r.w_bits, r.a_bits) for r in inner} == {(1, 1)}
    assert c.bops == c.lowbit_macs == 40_551_040 - 443_008
    assert c.ops == pytest.approx((40_551_040 - 443_008) / 64 + 443_008)
    inner_weights = sum(r.macs // (r.out_shape[2] * r.out_shape[3]) for r in inner)  # 3x3 convs: fan-in x out channels
    scales = 6 * (16 + 32 + 64)
    fp_numbers = 432 + 650 + 2 * 2 * (16 + 3 * 2 * (16 + 32 + 64))   # stem, fc, BN (weight, bias, running stats)
    assert c.param_bits == inner_weights + 32 * (scales + fp_numbers)
    fp = model_cost(build_resnet("resnet20", 10, None), (1, 3, 32, 32))
    assert fp.param_bits / c.param_bits > 20 and fp.energy_uj / c.energy_uj > 20


def test_kbit_resnet18_bits_scale_bops():
    def cost(bits):
        return model_cost(build_resnet("resnet18", 10, QuantSpec(weight="dorefa", act="dorefa", bits=bits), width=16),
                          (1, 3, 32, 32))

    two, four = cost(2), cost(4)
    assert two.macs_by_bits == {(2, 2): two.lowbit_macs} and four.bops == 4 * two.bops
    # FP: stem, the three 1x1 option-B shortcut convs, the classifier (widths 16 .. 128)
    assert two.fp_macs == 16 * 32 * 32 * 27 + (32 * 16 * 16 * 16 + 64 * 8 * 8 * 32 + 128 * 4 * 4 * 64) + 1280


def fvcore_macs(model: nn.Module, shape) -> int:
    """fvcore's count of the conv and linear operators (its 'flops' are MACs), an independent walk
    over the traced graph."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # fvcore's import and tracer warn about torch.jit
        from fvcore.nn import FlopCountAnalysis

        fca = FlopCountAnalysis(model.eval(), torch.randn(shape))
        fca.unsupported_ops_warnings(False).uncalled_modules_warnings(False).tracer_warnings("none")
        by_op = fca.by_operator()
    return by_op.get("conv", 0) + by_op.get("linear", 0)


@pytest.mark.parametrize("make, shape", [
    (lambda: build_resnet("resnet20", 10, None), (1, 3, 32, 32)),
    (lambda: build_resnet("resnet20", 100, None, width=24, block="bireal"), (1, 3, 32, 32)),
    (lambda: build_resnet("resnet18", 10, None), (1, 3, 32, 32)),
    (lambda: SmallNet(quantized=False), SMALL_SHAPE),
])
def test_fp_macs_equal_fvcore(make, shape):
    model = make()
    assert model_cost(model, shape).fp_macs == fvcore_macs(model, shape)


def bireal_imagenet_resnet18() -> nn.Module:
    """torchvision's ImageNet ResNet-18 with every 3x3 conv inside a basic block binarized (sign weights
    with the mean-|W| scale, sign activations); the 7x7 stem, the 1x1 downsample convs and the
    classifier stay FP, as in Bi-Real Net."""
    import torchvision

    net = torchvision.models.resnet18()
    for block in (b for layer in (net.layer1, net.layer2, net.layer3, net.layer4) for b in layer):
        for name in ("conv1", "conv2"):
            old = getattr(block, name)
            setattr(block, name, QuantConv2d(old.in_channels, old.out_channels, 3, stride=old.stride, padding=1,
                                             bias=False, spec=BINARY))
    return net


@pytest.mark.slow
def test_imagenet_resnet18_matches_fvcore_and_bi_real_net():
    """~12 s: fvcore traces the 224 x 224 network."""
    import torchvision

    shape = (1, 3, 224, 224)
    fp = model_cost(torchvision.models.resnet18(), shape)
    assert fp.macs == fvcore_macs(torchvision.models.resnet18(), shape) == 1_814_073_344  # "1.8 x 10^9 FLOPs"
    c = model_cost(bireal_imagenet_resnet18(), shape)
    # Bi-Real Net (Liu et al., ECCV 2018), ResNet-18: BOPs 1.68e9, FLOPs 1.39e8, OPs 1.63e8
    assert c.bops == pytest.approx(1.68e9, rel=0.01)
    assert c.fp_macs == pytest.approx(1.39e8, rel=0.015)
    assert c.ops == pytest.approx(1.63e8, rel=0.01)
    assert c.fp_macs == 112 * 112 * 64 * 3 * 49 + 3 * (28 * 28 * 128 * 64) + 512 * 1000


# ---- columns and family glue --------------------------------------------------------------------

def test_ops_rule_and_si():
    assert ops(6400, 100) == 200
    assert si(40.55e6) == "40.55M" and si(2.2e6, "bit") == "2.2 Mbit" and si(12, "bit") == "12 bit"
    assert si(math.nan) == "–" and si(1_069_696) == "1.07M"


def test_with_cost_adds_the_columns_to_every_report():
    seen = []

    def run(cfg, report, device=None, start_state=None):
        report({"step": 1, "loss": 1.0})
        report({"step": 2, "loss": 0.5}, state={"epoch": 2})
        return {"step": 2}

    cost = model_cost(SmallNet(), SMALL_SHAPE)
    costed = with_cost(run, lambda cfg: cost)
    out = costed(None, lambda m, **kw: seen.append((m, kw)), "cpu", start_state=None)
    assert [m["step"] for m, _ in seen] == [1, 2] and seen[1][1] == {"state": {"epoch": 2}}
    assert all(m["bops"] == cost.bops and m["cost_layers"] == cost.metrics()["cost_layers"] for m, _ in seen)
    assert out["ops"] == cost.ops and costed.__name__ == "run"
    assert describe_cost(lambda cfg: cost)(None) == {"OPs": "11.68k", "size": "6.424 kbit (0.000803 MB)"}


def test_pams_layer_and_edsr_without_bn():
    """PAMS (k-bit, max-scaled): weights at k bits + one max|W| scale; the activation quantizer's alpha
    and calibration max at 32. An EDSR-style net (PixelShuffle: no MACs) counts only its convs."""
    pams = QuantConv2d(4, 4, 3, padding=1, spec=QuantSpec(weight="pams", act="pams", bits=3))
    c = model_cost(nn.Sequential(pams, nn.PixelShuffle(2)), (1, 4, 6, 6))
    (r,) = c.layers
    assert (r.w_bits, r.a_bits, r.macs) == (3, 3, 4 * 36 * 36) and r.bops == 9 * r.macs
    assert r.param_bits == 144 * 3 + 32 * (4 + 1 + 2)            # weights, bias, max|W|, alpha + max_val
    assert c.peak_act_elems == 4 * 6 * 6 and c.other_param_bits == 0
