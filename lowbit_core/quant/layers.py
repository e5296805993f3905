"""Quantized ``nn.Linear`` / ``nn.Conv2d`` built from a flat layer spec.

A layer computes ``op(act_q(x), weight_q(W), bias)``: the *input* activation and the float
*latent* weight ``W`` are quantized by modules from :func:`~lowbit_core.quant.registry.make_quantizer`;
the bias stays float. ``W`` keeps its usual name, shape and initialisation (the classes subclass
``nn.Linear`` / ``nn.Conv2d``), so it receives gradients through the weight quantizer's estimator.
Nothing is tied to a device: quantizer parameters and buffers move with ``.to(...)``.

A model builder writes, e.g.::

    spec = QuantSpec(weight="sign", weight_estimator="window", weight_param=1.0,
                     weight_scale="mean_abs", act="sign", act_estimator="approx_sign")
    conv = QuantConv2d(64, 64, 3, padding=1, bias=False, spec=spec)
    fc = QuantLinear(64, 10, spec=QuantSpec.from_dict({"weight": "lsq", "act": "lsq", "bits": 2}))

``spec=None`` (or ``QuantSpec()``) is a plain full-precision layer.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from lowbit_core.quant.dsq import DSQQuantizer
from lowbit_core.quant.estimator_registry import REFERENCE, Relative, get
from lowbit_core.quant.registry import QuantizerSpec, _check_keys, make_quantizer
from lowbit_core.quant.sign import SignQuantizer


@dataclass(frozen=True)
class QuantSpec:
    """Weight and input-activation quantizers of one layer, by name (see
    :data:`~lowbit_core.quant.registry.QUANTIZERS`). ``bits`` is shared unless ``weight_bits`` /
    ``act_bits`` override it; ``dsq_*`` apply to whichever side uses ``dsq``. Invalid names raise
    at construction, listing the valid ones. A sign side's parameter and threshold may be a
    :class:`~lowbit_core.quant.estimator_registry.Relative` (``t * std(W)`` of the layer's weight,
    or of the batch's input activations, at the time of the step)."""

    weight: str = "none"              # a key of QUANTIZERS (built-in or plug-in)
    weight_estimator: str = REFERENCE
    weight_param: Any = None
    weight_scale: str = "none"        # none | mean_abs
    weight_threshold: float | Relative = 0.0
    act: str = "none"                 # a key of QUANTIZERS (built-in or plug-in)
    act_estimator: str = REFERENCE
    act_param: Any = None
    act_threshold: float | Relative = 0.0
    act_signed: bool = False          # lsq activations: signed range
    bits: int = 2
    weight_bits: int | None = None
    act_bits: int | None = None
    dsq_alpha: float = 0.2
    dsq_learn_alpha: bool = True
    dsq_learn_bounds: bool = True
    dsq_train_forward: str = "soft"   # soft | sign_ste

    def __post_init__(self):
        self.weight_quantizer()
        self.act_quantizer()

    def weight_quantizer(self) -> QuantizerSpec:
        return QuantizerSpec(
            name=self.weight, role="weight", bits=self.bits if self.weight_bits is None else self.weight_bits,
            estimator=self.weight_estimator, param=self.weight_param, scale=self.weight_scale,
            threshold=self.weight_threshold, alpha=self.dsq_alpha, learn_alpha=self.dsq_learn_alpha,
            learn_bounds=self.dsq_learn_bounds, train_forward=self.dsq_train_forward)

    def act_quantizer(self) -> QuantizerSpec:
        return QuantizerSpec(
            name=self.act, role="act", bits=self.bits if self.act_bits is None else self.act_bits,
            estimator=self.act_estimator, param=self.act_param, threshold=self.act_threshold,
            signed=self.act_signed, alpha=self.dsq_alpha, learn_alpha=self.dsq_learn_alpha,
            learn_bounds=self.dsq_learn_bounds, train_forward=self.dsq_train_forward)

    @classmethod
    def from_dict(cls, d: dict) -> "QuantSpec":
        """From a config dict; unknown keys raise ``KeyError`` listing the valid ones."""
        return cls(**_check_keys(cls, d))


def as_spec(spec: QuantSpec | dict | None) -> QuantSpec:
    if spec is None:
        return QuantSpec()
    if isinstance(spec, dict):
        return QuantSpec.from_dict(spec)
    if not isinstance(spec, QuantSpec):
        raise TypeError(f"expected a QuantSpec, dict or None, got {type(spec).__name__}")
    return spec


class _Quantized:
    def _build_quantizers(self, spec, device, dtype) -> None:
        self.spec = as_spec(spec)
        to = {k: v for k, v in (("device", device), ("dtype", dtype)) if v is not None}
        self.weight_quantizer = make_quantizer(self.spec.weight_quantizer()).to(**to)
        self.act_quantizer = make_quantizer(self.spec.act_quantizer()).to(**to)

    def quantized_weight(self) -> torch.Tensor:
        """The weight the layer computes with."""
        return self.weight_quantizer(self.weight)


class QuantLinear(_Quantized, nn.Linear):
    """``linear(act_q(x), weight_q(W), b)``; ``spec``: :class:`QuantSpec`, dict, or None (float)."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True,
                 spec: QuantSpec | dict | None = None, device=None, dtype=None):
        super().__init__(in_features, out_features, bias=bias, device=device, dtype=dtype)
        self._build_quantizers(spec, device, dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(self.act_quantizer(x), self.quantized_weight(), self.bias)


class QuantConv2d(_Quantized, nn.Conv2d):
    """``conv2d(act_q(x), weight_q(W), b)`` with ``nn.Conv2d``'s arguments plus ``spec``."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, padding=0, dilation=1,
                 groups: int = 1, bias: bool = True, padding_mode: str = "zeros",
                 spec: QuantSpec | dict | None = None, device=None, dtype=None):
        super().__init__(in_channels, out_channels, kernel_size, stride=stride, padding=padding,
                         dilation=dilation, groups=groups, bias=bias, padding_mode=padding_mode,
                         device=device, dtype=dtype)
        self._build_quantizers(spec, device, dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._conv_forward(self.act_quantizer(x), self.quantized_weight(), self.bias)


def set_ede_epoch(model: nn.Module, epoch: float, total: float) -> int:
    """Set the parameter of every sign quantizer whose estimator is scheduled (EDE:
    ``(t, k) = ede_schedule(epoch, total)``); returns how many were set."""
    n = 0
    for m in model.modules():
        if isinstance(m, SignQuantizer) and get(m.estimator).schedule is not None:
            m.set_epoch(epoch, total)
            n += 1
    return n


def set_dsq_alpha(model: nn.Module, alpha: float) -> int:
    """Set alpha on every DSQ quantizer with a scheduled (non-learned) alpha; returns how many."""
    n = 0
    for m in model.modules():
        if isinstance(m, DSQQuantizer) and not m.learn_alpha:
            m.set_alpha(alpha)
            n += 1
    return n


__all__ = ["QuantSpec", "as_spec", "QuantLinear", "QuantConv2d", "set_ede_epoch", "set_dsq_alpha"]
