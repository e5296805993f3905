"""CIFAR ResNets: parameter counts, option-A shortcut, every latent weight gets a gradient (FP, binary,
k-bit), FP weights load into quantized models, init schemes, a CUDA forward when available."""
import pytest
import torch
from torch.nn import functional as F

from lowbit_core.models.resnet import (BasicBlock, _ShortcutA, build_resnet, count_params, inner_convs,
                                       load_fp_weights, resnet18, resnet20)
from lowbit_core.quant.layers import QuantConv2d, QuantSpec
from lowbit_core.families.train.init import init_weights, perturb

SPECS = {
    "fp": None,
    "binary": QuantSpec(weight="sign", weight_scale="mean_abs", act="sign", act_estimator="approx_sign"),
    "binary_window": QuantSpec(weight="sign", weight_estimator="window", weight_param=1.0, act="sign",
                               act_estimator="window", act_param=1.0),
    "dorefa2": QuantSpec(weight="dorefa", act="dorefa", bits=2),
    "lsq2": QuantSpec(weight="lsq", act="lsq", bits=2),
    "dsq1": QuantSpec(weight="dsq", act="dsq", bits=1),
    "dsq2_sched": QuantSpec(weight="dsq", act="dsq", bits=2, dsq_learn_alpha=False),
}


def test_resnet20_has_0_27m_parameters_and_resnet18_11_2m():
    assert count_params(resnet20(10)) == 269_722  # He et al. 2016, Table 6: 0.27M
    assert count_params(resnet18(10)) == 11_173_962
    # quantizers add only their scalars (DSQ: l, u, alpha per quantizer; 2 quantizers x 18 convs)
    assert count_params(resnet20(10, SPECS["dsq1"])) == 269_722 + 18 * 2 * 3
    assert count_params(resnet20(10, SPECS["binary"])) == 269_722


def test_option_a_shortcut_subsamples_and_zero_pads():
    x = torch.randn(2, 4, 6, 6)
    y = _ShortcutA(2)(x)
    assert y.shape == (2, 8, 3, 3)
    torch.testing.assert_close(y[:, 2:6], x[:, :, ::2, ::2])
    assert (y[:, :2] == 0).all() and (y[:, 6:] == 0).all()


def test_first_conv_classifier_and_resnet18_downsample_stay_fp():
    m = resnet18(10, SPECS["binary"], width=4)
    quantized = set(inner_convs(m))
    assert len(quantized) == 16 and all(isinstance(c, QuantConv2d) for c in quantized)
    assert m.conv1 not in quantized and type(m.conv1) is torch.nn.Conv2d and type(m.fc) is torch.nn.Linear
    assert type(m.layers[2].shortcut[0]) is torch.nn.Conv2d
    assert len(list(inner_convs(resnet20(10, width=4)))) == 18


@pytest.mark.parametrize("arch", ["resnet20", "resnet18"])
@pytest.mark.parametrize("kind", list(SPECS))
@pytest.mark.parametrize("block", ["basic", "bireal"])
def test_every_parameter_gets_a_gradient(arch, kind, block):
    torch.manual_seed(0)
    m = build_resnet(arch, 5, SPECS[kind], width=4, block=block)
    x, y = torch.randn(8, 3, 16, 16), torch.randint(0, 5, (8,))
    F.cross_entropy(m(x), y).backward()
    for name, p in m.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, name
    m.eval()
    with torch.no_grad():
        assert m(x).shape == (8, 5)


def test_nonlin_auto_uses_hardtanh_only_for_sign_activations():
    assert isinstance(resnet20(10, SPECS["binary"], width=4).act, torch.nn.Hardtanh)
    assert isinstance(resnet20(10, SPECS["dsq1"], width=4).act, torch.nn.ReLU)
    assert isinstance(resnet20(10, None, width=4, nonlin="hardtanh").act, torch.nn.Hardtanh)
    with pytest.raises(KeyError, match="valid: auto, relu, hardtanh"):
        resnet20(10, None, nonlin="gelu")
    with pytest.raises(KeyError, match="valid: resnet20, resnet18"):
        build_resnet("resnet50", 10)


def test_fp_weights_load_into_quantized_model():
    torch.manual_seed(0)
    fp = resnet20(10, None, width=4)
    for kind in ("binary", "dsq1", "lsq2"):
        q = resnet20(10, SPECS[kind], width=4)
        missing = load_fp_weights(q, fp.state_dict())
        assert all(".weight_quantizer." in k or ".act_quantizer." in k for k in missing)
        for (n1, p1), (n2, p2) in zip(fp.state_dict().items(), ((k, v) for k, v in q.state_dict().items()
                                                              if k in fp.state_dict())):
            assert n1 == n2 and torch.equal(p1, p2)
    with pytest.raises(KeyError, match="lacks model weights"):
        load_fp_weights(resnet20(10, SPECS["binary"], width=4), {"fc.weight": fp.fc.weight})


def test_init_schemes():
    g = torch.Generator().manual_seed(0)
    m = resnet20(10, SPECS["binary"], width=16)
    init_weights(m, "orthogonal", g)
    w = m.layers[4].conv1.weight.flatten(1)  # (32, 288): orthonormal rows
    torch.testing.assert_close(w @ w.T, torch.eye(32), atol=1e-5, rtol=0)
    init_weights(m, "kaiming", g)
    w = m.layers[8].conv2.weight.detach()  # fan_in = 64 * 9
    assert abs(float(w.std()) / (2 / (64 * 9)) ** 0.5 - 1) < 0.05
    init_weights(m, "xavier", g)
    assert abs(float(w.std()) / (2 / (64 * 9 + 64 * 9)) ** 0.5 - 1) < 0.05
    a = resnet20(10, width=4)
    b = resnet20(10, width=4)
    init_weights(a, "xavier", torch.Generator().manual_seed(3))
    init_weights(b, "xavier", torch.Generator().manual_seed(3))
    weights = [(n, p) for n, p in a.named_parameters() if n.endswith("weight") and p.ndim > 1]
    assert all(torch.equal(p, b.get_parameter(n)) for n, p in weights) and len(weights) == 20
    with pytest.raises(KeyError, match="valid: default, xavier, kaiming, orthogonal"):
        init_weights(m, "lecun")


def test_perturb_moves_inner_convs_by_relative_amplitude():
    torch.manual_seed(0)
    m = resnet20(10, SPECS["binary"], width=16)
    before = {k: v.clone() for k, v in m.state_dict().items()}
    assert perturb(m, 0.1, torch.Generator().manual_seed(0)) == 18
    after = m.state_dict()
    inner = {n + ".weight" for n, mod in m.named_modules() if isinstance(mod, QuantConv2d)}
    for k in before:
        if k in inner:
            delta = after[k] - before[k]
            ratio = float(delta.pow(2).mean().sqrt() / before[k].pow(2).mean().sqrt())
            assert 0.08 < ratio < 0.12, k
        else:
            assert torch.equal(before[k], after[k]), k
    assert perturb(m, 0.0) == 0


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_forward_on_cuda():
    torch.manual_seed(0)
    x = torch.randn(4, 3, 32, 32)
    for kind in ("fp", "binary", "dsq1"):
        m = resnet20(10, SPECS[kind], width=8)
        m(x[:2])  # lazy inits (DSQ bounds) on the CPU first, so both devices see one model
        m.eval()
        ref = m(x)
        out = m.cuda()(x.cuda())
        assert out.device.type == "cuda"
        torch.testing.assert_close(out.cpu(), ref, atol=1e-3, rtol=1e-3)


def test_blocks_reject_unknown_names():
    with pytest.raises(KeyError, match="valid: basic, bireal"):
        BasicBlock(4, 4, 1, QuantSpec(), "A", "dense", "relu")


def test_relative_windows_and_thresholds_equal_absolute_ones_computed_by_hand_per_layer():
    """t * std(W_l) and tau * std(W_l) per layer (weights), t * mean|x_l| and tau * mean|x_l| of the
    batch's input (activations): the same gradients as absolute windows and thresholds set by hand."""
    import numpy as np

    from lowbit_core.quant.estimator_registry import Relative
    from lowbit_core.quant.sign import SignQuantizer

    spec = QuantSpec(weight="sign", weight_estimator="window", weight_param=Relative(0.8, "std"),
                     weight_threshold=Relative(0.2, "std"), weight_scale="mean_abs", act="sign",
                     act_estimator="window", act_param=Relative(1.5, "mean_abs"),
                     act_threshold=Relative(0.1, "mean_abs"))
    torch.manual_seed(0)
    rel = resnet20(10, spec, width=4).double()
    ref = resnet20(10, spec, width=4).double()
    ref.load_state_dict(rel.state_dict())
    x, y = torch.randn(16, 3, 16, 16, dtype=torch.float64), torch.randint(0, 10, (16,))
    inputs = {}
    for i, conv in enumerate(inner_convs(rel)):
        conv.act_quantizer.register_forward_pre_hook(lambda m, a, i=i: inputs.__setitem__(i, a[0].detach().numpy()))
    F.cross_entropy(rel(x), y).backward()
    windows, outside = [], []
    for i, conv in enumerate(inner_convs(ref)):  # absolute numbers by hand, layer by layer
        w, a = conv.weight.detach().numpy(), inputs[i]
        t, tau = 0.8 * np.std(w), 0.2 * np.std(w)
        conv.weight_quantizer = SignQuantizer("window", t, tau, "mean_abs")
        conv.act_quantizer = SignQuantizer("window", 1.5 * np.abs(a).mean(), 0.1 * np.abs(a).mean())
        windows.append(t)
        outside.append(float((np.abs(w - tau) > t).mean()))
    F.cross_entropy(ref(x), y).backward()
    for (name, p), q in zip(rel.named_parameters(), ref.parameters()):
        assert torch.equal(p.grad, q.grad), name
    assert len(set(np.round(windows, 6))) == 18  # every layer had its own window
    assert min(outside) > 0.2  # each window cut weights (the comparison is not vacuous)
