"""The one registry of per-tensor quantizers: a name -> a factory ``factory(spec) -> nn.Module``
whose module maps a tensor to its quantized form, ``q(x) -> x_q``.

Every quantizer, built-in or a researcher's own, enters through :func:`register_quantizer` (as
estimators enter through :func:`~lowbit_core.quant.estimator_registry.register_estimator`): the
config fields that name a k-bit quantizer (``quant.kbit`` of the ``train``, ``gradstats`` and ``sr``
families) are :data:`KBitName`, checked against :data:`QUANTIZERS` as it is when the config is built,
and :class:`~lowbit_core.quant.layers.QuantSpec` / :func:`make_quantizer` build any registered name.
An unknown name is an error listing the built-in and the registered ones; a taken name cannot be
registered again (:class:`lowbit_core.registry.Registry`). A plug-in, in a module next to the sweep
file (larq takes any callable as a quantizer; this is the same with a name)::

    @register_quantizer("ternary", paper="Li et al. 2016, arXiv:1605.04711 (TWN)")
    def ternary(spec):                       # spec: a QuantizerSpec (role, bits, ...)
        return Ternary(delta=0.7)            # any nn.Module q(x) -> x_q, with its own backward

The built-ins:

- ``none``: identity (full precision).
- ``sign``: :class:`~lowbit_core.quant.sign.SignQuantizer`: ``sign(x - threshold)``, backward via
  ``estimator`` (:data:`~lowbit_core.quant.estimator_registry.REGISTRY`) with ``param``; weights may
  take ``scale="mean_abs"`` (XNOR-Net).
- ``dorefa``: :class:`~lowbit_core.quant.kbit.DoReFaWeight` for ``role="weight"``,
  :class:`~lowbit_core.quant.kbit.DoReFaAct` for ``role="act"`` (Zhou et al. 2016).
- ``lsq``: :class:`~lowbit_core.quant.kbit.LSQQuantizer` (signed by default for weights, unsigned
  for activations; ``signed`` overrides; Esser et al., ICLR 2020).
- ``dsq``: :class:`~lowbit_core.quant.dsq.DSQQuantizer` (``alpha``, ``learn_alpha``, ``lower``,
  ``upper``, ``learn_bounds``, ``train_forward``; Gong et al., ICCV 2019).
- ``pams``: :class:`~lowbit_core.quant.pams.PAMSWeight` (max-scaled symmetric k-bit weights) for
  ``role="weight"``, :class:`~lowbit_core.quant.pams.PAMSAct` (learned max scale) for ``role="act"``
  (Li et al., ECCV 2020); ``bits >= 2``.

Importing this module does not import torch (like the estimator registry): a built-in's factory and
check import its module when they run, so configs and reports can name quantizers without it.
"""
from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Annotated, Any, Callable

from lowbit_core.quant import estimator_registry
from lowbit_core.registry import OneOf, Registry

ROLES = ("weight", "act")


def _valid(kind: str, value, valid) -> None:
    if value not in valid:
        raise KeyError(f"unknown {kind} {value!r}; valid: {', '.join(valid)}")


@dataclass(frozen=True)
class QuantizerEntry:
    """One quantizer: ``factory(spec) -> nn.Module``; ``check(spec)`` raises on a spec it cannot build
    (``KeyError`` for an unknown name, ``ValueError`` otherwise; ``None``: every spec is fine);
    ``kbit``: whether ``quant.kbit`` may name it (``none`` and ``sign`` are chosen by the precision,
    ``model.kind`` / ``quant.bits``, instead); ``signed_act``: whether its activation form honours
    ``spec.signed`` (represents negative activations when asked; the ``sr`` family's k-bit
    activations are signed); ``paper``: where it comes from; ``label``: how reports name it ('':
    its name)."""

    name: str
    factory: Callable[["QuantizerSpec"], Any]
    paper: str = ""
    check: Callable[["QuantizerSpec"], None] | None = None
    kbit: bool = True
    signed_act: bool = True
    label: str = ""


QUANTIZERS: Registry[QuantizerEntry] = Registry("quantizer")
"""Every quantizer, built-in and plug-in, by name (:func:`register_quantizer` adds one)."""


@dataclass(frozen=True)
class QuantizerSpec:
    """How to quantize one tensor. Fields other than ``name`` and ``role`` apply only to the
    quantizers named in their comment (a plug-in reads the ones it needs, usually ``role`` and
    ``bits``) and are ignored by the others."""

    name: str = "none"             # a key of QUANTIZERS
    role: str = "weight"           # weight | act
    bits: int = 2                  # dorefa, lsq, dsq, pams, plug-ins
    estimator: str = estimator_registry.REFERENCE  # sign: a key of the estimator registry
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
        entry = QUANTIZERS.get(self.name)
        _valid("role", self.role, ROLES)
        if entry.check is not None:
            entry.check(self)

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


def register_quantizer(name: str, *, paper: str = "", check: Callable[[QuantizerSpec], None] | None = None,
                       kbit: bool = True, signed_act: bool = True, label: str = ""):
    """Decorator registering ``factory(spec: QuantizerSpec) -> nn.Module`` as quantizer ``name``: the
    module maps a weight (``spec.role == "weight"``) or an input activation (``"act"``) to its
    quantized value, ``q(x) -> x_q``, and carries its own backward (e.g. an STE). ``check(spec)``:
    refuse a spec the factory cannot build (called whenever a spec of this name is made, so a bad
    one fails when the layer's :class:`~lowbit_core.quant.layers.QuantSpec` is built); ``kbit``:
    whether the families' ``quant.kbit`` may name it (k-bit models then quantize every inner layer's
    weights, and with ``quant.act="quant"`` its input activations, with it at ``quant.bits``); ``signed_act``: whether an activation spec with ``signed=True`` is
    honoured (False: the ``sr`` family, whose activations are signed, refuses it); ``label``: the
    reports' name for it (default: ``name``).
    A name already taken (a built-in's included) is a ``ValueError``."""
    def deco(factory):
        QUANTIZERS.add(name, QuantizerEntry(name, factory, paper, check, kbit, signed_act, label),
                       getattr(factory, "__module__", ""))
        return factory
    return deco


@dataclass(frozen=True)
class KBitOf(OneOf):
    """:class:`~lowbit_core.registry.OneOf` restricted to the entries a k-bit model may name
    (``kbit=True``: every registered quantizer but ``none`` and ``sign``), and with ``signed_act`` to
    those whose activations may be signed."""

    signed_act: bool = False

    def choices(self) -> tuple[str, ...]:
        return tuple(n for n, e in self.registry.items() if e.kbit and (e.signed_act or not self.signed_act))

    def __hash__(self) -> int:
        return hash((id(self.registry), "kbit", self.signed_act))


QuantizerName = Annotated[str, OneOf(QUANTIZERS)]
"""Config type of any quantizer choice, checked against the registry when the config is built."""
KBitName = Annotated[str, KBitOf(QUANTIZERS)]
"""Config type of ``quant.kbit``: a registered quantizer with ``kbit=True``, checked live."""
SignedKBitName = Annotated[str, KBitOf(QUANTIZERS, signed_act=True)]
"""``quant.kbit`` where activations are signed (``sr``): ``kbit=True`` and ``signed_act=True``."""


# --- the built-ins (each imports its module only when used) ---------------------------------------

def _check_sign(s: QuantizerSpec) -> None:
    from lowbit_core.quant.sign import WEIGHT_SCALES

    estimator_registry.get(s.estimator)
    _valid("weight scale", s.scale, WEIGHT_SCALES)
    if s.scale != "none" and s.role != "weight":
        raise ValueError(f"scale {s.scale!r} applies to weights only; activations take scale='none'")


def _check_bits(s: QuantizerSpec) -> None:
    from lowbit_core.quant.kbit import _check_bits

    _check_bits(s.bits)


def _check_dorefa(s: QuantizerSpec) -> None:
    _check_bits(s)
    if s.role == "act" and s.signed:
        raise ValueError("dorefa activations are unsigned (clipped to [0, 1]); signed=True needs another quantizer")


def _check_lsq(s: QuantizerSpec) -> None:
    from lowbit_core.quant.kbit import lsq_levels

    lsq_levels(s.bits, s.is_signed)


def _check_dsq(s: QuantizerSpec) -> None:
    from lowbit_core.quant.dsq import TRAIN_FORWARDS

    _check_bits(s)
    if not 0 < s.alpha < 0.5:
        raise ValueError(f"dsq alpha must be in (0, 0.5), got {s.alpha}")
    _valid("dsq train_forward", s.train_forward, TRAIN_FORWARDS)


def _check_pams(s: QuantizerSpec) -> None:
    from lowbit_core.quant.pams import pams_levels

    pams_levels(s.bits)


@register_quantizer("none", paper="full precision", kbit=False, label="FP")
def identity_quantizer(s: QuantizerSpec):
    from torch import nn

    return nn.Identity()


@register_quantizer("sign", paper="Courbariaux et al. 2016 (BinaryConnect); Rastegari et al. 2016, ECCV (XNOR-Net scale)",
                    check=_check_sign, kbit=False, label="sign")
def sign_quantizer(s: QuantizerSpec):
    from lowbit_core.quant.sign import SignQuantizer

    return SignQuantizer(s.estimator, s.param, s.threshold, s.scale)


@register_quantizer("dorefa", paper="Zhou et al. 2016, arXiv:1606.06160 (DoReFa-Net)", check=_check_dorefa,
                    signed_act=False, label="DoReFa")
def dorefa_quantizer(s: QuantizerSpec):
    from lowbit_core.quant.kbit import DoReFaAct, DoReFaWeight

    return DoReFaWeight(s.bits) if s.role == "weight" else DoReFaAct(s.bits)


@register_quantizer("lsq", paper="Esser et al. 2020, ICLR (LSQ)", check=_check_lsq, label="LSQ")
def lsq_quantizer(s: QuantizerSpec):
    from lowbit_core.quant.kbit import LSQQuantizer

    return LSQQuantizer(s.bits, signed=s.is_signed, role=s.role)


@register_quantizer("dsq", paper="Gong et al. 2019, ICCV (DSQ)", check=_check_dsq, label="DSQ")
def dsq_quantizer(s: QuantizerSpec):
    from lowbit_core.quant.dsq import DSQQuantizer

    return DSQQuantizer(s.bits, s.lower, s.upper, s.alpha, s.learn_alpha, s.learn_bounds, s.train_forward)


@register_quantizer("pams", paper="Li et al. 2020, ECCV (PAMS)", check=_check_pams, label="PAMS")
def pams_quantizer(s: QuantizerSpec):
    from lowbit_core.quant.pams import pams_quantizer as build

    return build(s)


BUILTIN: tuple[str, ...] = QUANTIZERS.names()
"""The library's own quantizers."""


def label(name) -> str:
    """Report label of quantizer ``name`` (its entry's ``label``; an unregistered name is shown as is)."""
    entry = QUANTIZERS.get(str(name), None)
    return (entry.label or entry.name) if entry else str(name)


def kbit_problem(build: Callable[[], Any], kbit: str, bits: int) -> str | None:
    """A family's preflight check of its k-bit setting: ``build()`` makes the layers' quantizer specs
    (running each quantizer's ``check``, a plug-in's included); a refusal is one line naming
    ``quant.kbit`` and ``quant.bits``, else None."""
    try:
        build()
    except (KeyError, ValueError) as exc:
        return f"quant.kbit={kbit!r} with quant.bits={bits}: {exc.args[0] if exc.args else exc}"
    return None


def make_quantizer(spec: QuantizerSpec | dict | str):
    """Build the quantizer module for ``spec`` (a :class:`QuantizerSpec`, a dict of its fields, or
    just a name). Unknown names or keys raise ``KeyError`` listing the valid ones."""
    if isinstance(spec, str):
        spec = QuantizerSpec(name=spec)
    elif isinstance(spec, dict):
        spec = QuantizerSpec.from_dict(spec)
    elif not isinstance(spec, QuantizerSpec):
        raise TypeError(f"make_quantizer takes a QuantizerSpec, dict or name, got {type(spec).__name__}")
    return QUANTIZERS.get(spec.name).factory(spec)


__all__ = ["QuantizerSpec", "QuantizerEntry", "QUANTIZERS", "BUILTIN", "make_quantizer", "register_quantizer", "label", "kbit_problem",
           "QuantizerName", "KBitName", "SignedKBitName", "KBitOf", "ROLES"]
