"""Registry of per-tensor quantizers: a spec (dataclass or dict) -> an ``nn.Module`` ``q(x) -> x_q``.

:data:`QUANTIZERS` (string keys; unknown names raise an error listing the valid ones):

- ``none``: identity (full precision).
- ``sign``: :class:`~lowbit_core.quant.sign.SignQuantizer`: ``sign(x - threshold)``, backward via
  ``estimator`` (:data:`~lowbit_core.quant.estimators.ESTIMATORS`) with ``param``; weights may take
  ``scale="mean_abs"`` (XNOR-Net).
- ``dorefa``: :class:`~lowbit_core.quant.kbit.DoReFaWeight` for ``role="weight"``,
  :class:`~lowbit_core.quant.kbit.DoReFaAct` for ``role="act"``.
- ``lsq``: :class:`~lowbit_core.quant.kbit.LSQQuantizer` (signed by default for weights, unsigned
  for activations; ``signed`` overrides).
- ``dsq``: :class:`~lowbit_core.quant.dsq.DSQQuantizer` (``alpha``, ``learn_alpha``, ``lower``,
  ``upper``, ``learn_bounds``, ``train_forward``).
- ``pams``: :class:`~lowbit_core.quant.pams.PAMSWeight` (max-scaled symmetric k-bit weights) for
  ``role="weight"``, :class:`~lowbit_core.quant.pams.PAMSAct` (learned max scale) for ``role="act"``
  (Li et al., ECCV 2020); ``bits >= 2``.
"""
from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, Callable

from torch import nn

from lowbit_core.quant.dsq import TRAIN_FORWARDS, DSQQuantizer
from lowbit_core.quant.estimators import ESTIMATORS
from lowbit_core.quant.kbit import DoReFaAct, DoReFaWeight, LSQQuantizer, _check_bits, lsq_levels
from lowbit_core.quant.pams import pams_levels, pams_quantizer
from lowbit_core.quant.sign import WEIGHT_SCALES, SignQuantizer

ROLES = ("weight", "act")


def _valid(kind: str, value, valid) -> None:
    if value not in valid:
        raise KeyError(f"unknown {kind} {value!r}; valid: {', '.join(valid)}")


@dataclass(frozen=True)
class QuantizerSpec:
    """How to quantize one tensor. Fields other than ``name`` and ``role`` apply only to the
    quantizers named in their comment and are ignored by the others."""

    name: str = "none"             # a key of QUANTIZERS
    role: str = "weight"           # weight | act
    bits: int = 2                  # dorefa, lsq, dsq
    estimator: str = "identity"    # sign: a key of ESTIMATORS
    param: Any = None              # sign: the estimator's parameter (None: its default)
    scale: str = "none"            # sign weights: none | mean_abs
    threshold: float = 0.0         # sign: tau in sign(x - tau)
    signed: bool | None = None     # lsq: None -> True for weights, False for activations
    alpha: float = 0.2             # dsq: initial alpha in (0, 0.5)
    learn_alpha: bool = True       # dsq
    lower: float | None = None     # dsq: None -> from the first tensor's min
    upper: float | None = None     # dsq: None -> from the first tensor's max
    learn_bounds: bool = True      # dsq
    train_forward: str = "soft"    # dsq: soft | sign_ste

    def __post_init__(self):
        _valid("quantizer", self.name, QUANTIZERS)
        _valid("role", self.role, ROLES)
        if self.name == "sign":
            _valid("estimator", self.estimator, ESTIMATORS)
            _valid("weight scale", self.scale, WEIGHT_SCALES)
            if self.scale != "none" and self.role != "weight":
                raise ValueError(f"scale {self.scale!r} applies to weights only; activations take scale='none'")
        if self.name in ("dorefa", "lsq", "dsq"):
            _check_bits(self.bits)
        if self.name == "lsq":
            lsq_levels(self.bits, self.is_signed)
        if self.name == "pams":
            pams_levels(self.bits)
        if self.name == "dsq":
            if not 0 < self.alpha < 0.5:
                raise ValueError(f"dsq alpha must be in (0, 0.5), got {self.alpha}")
            _valid("dsq train_forward", self.train_forward, TRAIN_FORWARDS)

    @property
    def is_signed(self) -> bool:
        return self.role == "weight" if self.signed is None else bool(self.signed)

    @classmethod
    def from_dict(cls, d: dict) -> "QuantizerSpec":
        return cls(**_check_keys(cls, d))


def _check_keys(cls, d: dict) -> dict:
    valid = [f.name for f in fields(cls)]
    unknown = [k for k in d if k not in valid]
    if unknown:
        raise KeyError(f"unknown {cls.__name__} key(s) {', '.join(map(repr, unknown))}; valid: {', '.join(valid)}")
    return dict(d)


def _sign(s: QuantizerSpec) -> nn.Module:
    return SignQuantizer(s.estimator, s.param, s.threshold, s.scale)


def _dorefa(s: QuantizerSpec) -> nn.Module:
    return DoReFaWeight(s.bits) if s.role == "weight" else DoReFaAct(s.bits)


def _lsq(s: QuantizerSpec) -> nn.Module:
    return LSQQuantizer(s.bits, signed=s.is_signed, role=s.role)


def _dsq(s: QuantizerSpec) -> nn.Module:
    return DSQQuantizer(s.bits, s.lower, s.upper, s.alpha, s.learn_alpha, s.learn_bounds, s.train_forward)


QUANTIZERS: dict[str, Callable[[QuantizerSpec], nn.Module]] = {
    "none": lambda s: nn.Identity(),
    "sign": _sign,
    "dorefa": _dorefa,
    "lsq": _lsq,
    "dsq": _dsq,
    "pams": pams_quantizer,
}


def make_quantizer(spec: QuantizerSpec | dict | str) -> nn.Module:
    """Build the quantizer module for ``spec`` (a :class:`QuantizerSpec`, a dict of its fields, or
    just a name). Unknown names or keys raise ``KeyError`` listing the valid ones."""
    if isinstance(spec, str):
        spec = QuantizerSpec(name=spec)
    elif isinstance(spec, dict):
        spec = QuantizerSpec.from_dict(spec)
    elif not isinstance(spec, QuantizerSpec):
        raise TypeError(f"make_quantizer takes a QuantizerSpec, dict or name, got {type(spec).__name__}")
    return QUANTIZERS[spec.name](spec)


__all__ = ["QuantizerSpec", "QUANTIZERS", "make_quantizer", "ROLES"]
