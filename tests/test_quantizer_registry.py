"""The quantizer plug-in point and the one set of quantization defaults.

A quantizer registered with ``@register_quantizer`` from a module outside the library (written to a
temporary folder, as a researcher's module next to a sweep file) is a valid ``quant.kbit`` of the
training config and the model's inner layers compute with it (closed forms on hand-made tensors);
unknown names list the valid ones in one line; a taken name is refused; every family's default sign
settings come from :mod:`lowbit_core.quant.settings`, whose ``SignQuant`` every family's ``quant`` section
extends.
"""
from __future__ import annotations

import dataclasses
import importlib
import re
import sys
from pathlib import Path

import pytest
import torch
from torch.nn import functional as F

from lowbit_core.config import ConfigError, with_overrides
from lowbit_core.families import get_family
from lowbit_core.quant import settings
from lowbit_core.quant.layers import QuantConv2d, QuantSpec
from lowbit_core.quant.registry import BUILTIN, QUANTIZERS, make_quantizer, register_quantizer

REPO = Path(__file__).resolve().parents[1]

PLUGIN = '''
import torch
from torch import nn

from lowbit_core.quant.registry import register_quantizer


class HalfGrid(nn.Module):
    """q(x) = clamp(round(x * 2^(b-1)) / 2^(b-1), lo, 1): lo = -1 for weights and signed activations,
    0 for unsigned activations; STE backward."""

    def __init__(self, bits, lo):
        super().__init__()
        self.n, self.lo = 2 ** (bits - 1), lo

    def forward(self, x):
        q = (torch.round(x * self.n) / self.n).clamp(self.lo, 1.0)
        return x + (q - x).detach()


def _check(spec):
    if spec.bits > 4:
        raise ValueError(f"halfgrid takes bits <= 4, got {spec.bits}")


@register_quantizer("halfgrid", paper="a test plug-in", check=_check, label="HalfGrid")
def halfgrid(spec):
    return HalfGrid(spec.bits, -1.0 if spec.is_signed else 0.0)
'''


@pytest.fixture(scope="module")
def plugin(tmp_path_factory):
    """The researcher's module, imported once per test process (a second import under the same name
    would be another registration of a taken name)."""
    if "user_quantizers" not in sys.modules:
        folder = tmp_path_factory.mktemp("user_project")
        (folder / "user_quantizers.py").write_text(PLUGIN, encoding="utf-8")
        sys.path.insert(0, str(folder))
        try:
            importlib.import_module("user_quantizers")
        finally:
            sys.path.remove(str(folder))
    return sys.modules["user_quantizers"]


# the hand-made tensor and its closed forms at 2 bits (x * 2, rounded half to even, / 2, clamped)
X = [-1.3, -0.26, 0.0, 0.24, 0.74, 2.0]
AS_WEIGHT = [-1.0, -0.5, 0.0, 0.0, 0.5, 1.0]
AS_ACT = [0.0, 0.0, 0.0, 0.0, 0.5, 1.0]


def test_the_plugin_is_registered_with_its_origin_and_the_builtins_come_first(plugin):
    assert BUILTIN == ("none", "sign", "dorefa", "lsq", "dsq", "pams")
    assert QUANTIZERS.names()[:len(BUILTIN)] == BUILTIN and "halfgrid" in QUANTIZERS
    assert QUANTIZERS.origin("halfgrid") == "user_quantizers"
    assert QUANTIZERS.origin("lsq") == "lowbit_core.quant.registry"
    x = torch.tensor(X)
    assert make_quantizer({"name": "halfgrid", "bits": 2})(x).tolist() == AS_WEIGHT
    assert make_quantizer({"name": "halfgrid", "role": "act", "bits": 2})(x).tolist() == AS_ACT
    assert make_quantizer({"name": "halfgrid", "role": "act", "bits": 2, "signed": True})(x).tolist() == AS_WEIGHT
    with pytest.raises(ValueError, match="halfgrid takes bits <= 4, got 5"):
        QuantSpec(weight="halfgrid", bits=5)


def test_a_training_config_takes_the_plugin_and_the_model_computes_with_it(plugin):
    train = get_family("train")
    from lowbit_core.families.train.model import build_model

    cfg = with_overrides(train.config_cls(), {"model.kind": "kbit", "quant.kbit": "halfgrid", "quant.bits": 2,
                                              "model.width": 4})
    assert cfg.quant.kbit == "halfgrid"
    assert train.canonicalize(cfg).quant.kbit == "halfgrid"  # a k-bit model keeps its quantizer in the key
    model = build_model(cfg, "kbit", 10)
    inner = [m for m in model.modules() if isinstance(m, QuantConv2d) and m.spec.weight == "halfgrid"]
    assert inner and all(type(m.weight_quantizer).__name__ == "HalfGrid" for m in inner)
    conv = inner[0]
    w = torch.tensor(X).repeat(conv.weight.numel() // len(X) + 1)[:conv.weight.numel()].view_as(conv.weight)
    with torch.no_grad():
        conv.weight.copy_(w)
    w_q = torch.tensor(AS_WEIGHT).repeat(conv.weight.numel() // len(X) + 1)[:conv.weight.numel()].view_as(w)
    assert torch.equal(conv.quantized_weight(), w_q)
    x = torch.tensor(X).repeat(conv.in_channels * 25 // len(X) + 1)[:conv.in_channels * 25].view(1, conv.in_channels, 5, 5)
    x_q = torch.tensor(AS_ACT).repeat(conv.in_channels * 25 // len(X) + 1)[:conv.in_channels * 25].view_as(x)
    expected = F.conv2d(x_q, w_q, conv.bias, conv.stride, conv.padding, conv.dilation, conv.groups)
    assert torch.allclose(conv(x), expected, atol=1e-6)
    # the plug-in's STE: dL/dW is the float conv's gradient at the quantized operands
    conv(x).square().sum().backward()
    w_ref = w_q.clone().requires_grad_(True)
    F.conv2d(x_q, w_ref, conv.bias, conv.stride, conv.padding).square().sum().backward()
    assert torch.allclose(conv.weight.grad, w_ref.grad, atol=1e-5) and w_ref.grad.abs().sum() > 0
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 10)


def test_an_unknown_quantizer_lists_the_builtin_and_registered_ones_in_one_line(plugin):
    train = get_family("train").config_cls()
    with pytest.raises(ConfigError) as err:
        with_overrides(train, {"quant.kbit": "ternary"})
    msg = str(err.value)
    assert "\n" not in msg
    assert msg == "quant.kbit='ternary' is not valid; valid: " + ", ".join(
        repr(n) for n, e in QUANTIZERS.items() if e.kbit)
    assert "'halfgrid'" in msg and "'pams'" in msg and "'sign'" not in msg and "'none'" not in msg
    # sr's activations are signed: DoReFa's are not (clipped to [0, 1]), so sr does not list it
    with pytest.raises(ConfigError, match=r"^quant.kbit='dorefa' is not valid; valid: 'lsq', 'dsq', 'pams'.*'halfgrid'"):
        with_overrides(get_family("sr").config_cls(), {"quant.kbit": "dorefa"})
    assert with_overrides(get_family("sr").config_cls(), {"quant.kbit": "halfgrid"}).quant.kbit == "halfgrid"
    with pytest.raises(ValueError, match="dorefa activations are unsigned"):
        QuantSpec(act="dorefa", act_signed=True)
    with pytest.raises(KeyError, match=r"unknown quantizer 'ternary'; valid: none, sign, dorefa, lsq, dsq, pams.*halfgrid"):
        make_quantizer("ternary")


def test_a_kbit_setting_the_quantizer_refuses_is_one_line_in_preflight(plugin):
    """The plug-in's ``check`` runs driver-side (the train family's preflight, before Ray starts); a
    binary model does not use ``quant.kbit`` and is not checked."""
    train = get_family("train")
    bad = with_overrides(train.config_cls(), {"model.kind": "kbit", "quant.kbit": "halfgrid", "quant.bits": 5})
    assert train.preflight(bad) == "quant.kbit='halfgrid' with quant.bits=5: halfgrid takes bits <= 4, got 5"
    assert train.preflight(with_overrides(bad, {"quant.bits": 4})) is None
    assert train.preflight(with_overrides(bad, {"model.kind": "binary"})) is None
    assert train.preflight(with_overrides(bad, {"quant.kbit": "pams", "quant.bits": 1})) == (
        "quant.kbit='pams' with quant.bits=1: PAMS needs bits >= 2 (q = 2^(k-1) - 1 is 0 at 1 bit), got 1")


def test_the_sr_family_runs_the_quantizers_check_in_its_preflight_too(plugin):
    """The same check in ``sr``'s preflight (before session 7 a refused setting passed it and failed
    in every trial); a binary or FP model does not use ``quant.kbit``."""
    sr = get_family("sr")
    generated = {"data.train": "generated", "data.test_sets": ("generated",), "data.val_images": 0}
    bad = with_overrides(sr.config_cls(), {**generated, "quant.kbit": "halfgrid", "quant.bits": 5})
    assert sr.preflight(bad) == "quant.kbit='halfgrid' with quant.bits=5: halfgrid takes bits <= 4, got 5"
    assert sr.preflight(with_overrides(bad, {"quant.bits": 4})) is None
    assert sr.preflight(with_overrides(bad, {"quant.bits": 1})) is None
    assert sr.preflight(with_overrides(bad, {"quant.bits": 32})) is None


def test_the_training_report_labels_quantizers_from_the_registry(plugin):
    from lowbit_sweeps.analysis.train.groups import quant_parts

    def head(kbit):
        return quant_parts({"cfg.model.kind": "kbit", "cfg.quant.kbit": kbit, "cfg.quant.bits": 2})[0]

    assert [head(k) for k in ("dorefa", "lsq", "dsq", "pams", "halfgrid", "unloaded")] == [
        "DoReFa 2-bit", "LSQ 2-bit", "DSQ 2-bit", "PAMS 2-bit", "HalfGrid 2-bit", "unloaded 2-bit"]


def test_a_taken_name_cannot_be_registered_again(plugin):
    with pytest.raises(ValueError, match=r"quantizer 'lsq' is already registered \(by lowbit_core.quant.registry\)"):
        register_quantizer("lsq")(lambda spec: None)
    with pytest.raises(ValueError, match=r"quantizer 'halfgrid' is already registered \(by user_quantizers\)"):
        register_quantizer("halfgrid")(lambda spec: None)
    assert QUANTIZERS.get("lsq").factory.__module__ == "lowbit_core.quant.registry"


def test_the_registry_module_imports_no_torch():
    import subprocess

    code = ("import sys; import lowbit_core.quant.registry as r, lowbit_core.quant.settings; "
            "assert 'torch' not in sys.modules, 'torch imported'; print(len(r.QUANTIZERS))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert out.returncode == 0 and out.stdout.strip() == "6", out.stderr


def test_every_family_takes_its_sign_defaults_from_the_one_settings_module():
    train = get_family("train").config_cls().quant
    sr = get_family("sr").config_cls().quant
    gs = get_family("gradstats").config_cls()
    assert settings.ACT.estimator == "approx_sign" and settings.WEIGHT.estimator == "identity"
    for q in (train, sr, gs.quant):
        assert (q.weight_estimator, q.act_estimator) == (settings.WEIGHT.estimator, settings.ACT.estimator)
        assert (q.weight_param, q.act_param) == (settings.WEIGHT.param, settings.ACT.param)
        assert q.weight_scale == settings.WEIGHT.scale
    for q in (train, gs.quant):
        assert (q.weight_unit, q.act_unit) == (settings.WEIGHT.unit, settings.ACT.unit)
        assert (q.threshold, q.act_threshold) == (settings.WEIGHT.threshold, settings.ACT.threshold)
    assert gs.stats.surrogate == settings.ACT.estimator
    # one shared type: every family's quant section extends it and none declares its fields again
    shared = {f.name for f in dataclasses.fields(settings.SignQuant)}
    for q in (train, sr, gs.quant):
        assert isinstance(q, settings.SignQuant)
        assert shared.isdisjoint(type(q).__dict__.get("__annotations__", {})), type(q).__name__
    for cfg in (train, sr):
        with pytest.raises(ConfigError, match=r"^quant.weight_param and quant.act_param must be >= 0"):
            dataclasses.replace(cfg, act_param=-1.0)
    # ... and no module states a sign default as a literal (a field's default "approx_sign" / "identity")
    literal = re.compile(r'^\s+\w*(estimator|surrogate)\w*: [\w.\[\], ]+ = "(approx_sign|identity)"\s*$', re.M)
    restated = [str(p.relative_to(REPO)) for p in sorted((REPO / "lowbit_core").rglob("*.py"))
                if p.name != "settings.py" and literal.search(p.read_text(encoding="utf-8"))]
    assert restated == []
