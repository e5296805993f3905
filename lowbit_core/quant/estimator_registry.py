"""The one registry of backward estimators for ``sign``: name, gradient, parameter, default, label, paper.

Every other place derives from :data:`REGISTRY`: the config choices of probes and training
(:data:`EstimatorName`, checked against the registry when a config is built), the defaults, which estimators take a parameter, and the labels of the
reports. Importing this module does not import torch (the gradients use tensor methods only), so
``analysis/`` can label estimators without it.

An estimator maps the upstream gradient ``g = dL/d sign(w)`` and the latent input ``w`` to the
gradient credited to ``w``:

- ``identity`` -- normal STE (nSTE; Bengio et al. 2013): ``dL/dw = g``.
- ``value_clip`` -- the meeting record's variant STE read as clipping the gradient's values:
  ``dL/dw = clip(g, -c, c)`` (the seed uses c = 0.5).
- ``window`` -- the other reading, a hardtanh-like window on the input (Hubara et al. 2016, BNN):
  ``dL/dw = g * 1{|w| <= t}``; the edge ``|w| = t`` is inside.
- ``approx_sign`` -- ApproxSign (Liu et al., Bi-Real Net, ECCV 2018):
  ``dL/dw = g * (2 - 2|w|) * 1{|w| < 1}``; no parameter.
- ``ede`` -- Error Decay Estimator (Qin et al., IR-Net, CVPR 2020):
  ``dL/dw = g * k * t * (1 - tanh^2(t w))``; parameter ``(t, k)`` or ``t`` (``k = max(1/t, 1)``),
  ``None`` for the schedule's start (``t = T_MIN``); training sets it per epoch
  (:func:`ede_schedule`), so it is not a sweepable number.

Relative parameters and thresholds. At initialization no latent weight of a CIFAR ResNet-20 exceeds
about 0.08, so an absolute window t = 0.1 is already the identity there, and a given t means
different things in different layers. A parameter (and a binarization threshold) may therefore be
given as :class:`Relative`: ``value * unit(tensor)``, with ``unit`` one of :data:`UNITS` --
``std(x) = sqrt(mean((x - mean x)^2))`` (population std, ddof = 0) or ``mean|x|`` -- taken over the
whole tensor of one layer at the time of the step (the layer's latent weight, or the batch of its
input activations), detached. Which tensor an estimator's parameter is measured against is part of
its entry (``param_axis``): ``input`` for a window half-width (``window``: ``t * std(w)``, on the
unshifted input, like the threshold), ``gradient`` for a bound on the gradient's values
(``value_clip``: ``c * std(g)`` of the layer's upstream gradient). :meth:`Estimator.absolute` turns a
relative parameter into the number the gradient function uses; :func:`resolve` does it for a
threshold.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Annotated, Any, Callable, Literal

from lowbit_core.registry import OneOf, Registry


def identity_grad(g, w, param=None):
    """nSTE: dL/dw = g."""
    return g


def value_clip_grad(g, w, param: float = 0.5):
    """Value-clipped STE: dL/dw = clip(g, -c, c) with c = ``param`` > 0."""
    return g.clamp(-param, param)


def window_grad(g, w, param: float = 1.0):
    """Window STE: dL/dw = g * 1{|w| <= t} with t = ``param`` > 0 (edge included)."""
    return g * (w.abs() <= param).to(g.dtype)


def approx_sign_grad(g, w, param=None):
    """ApproxSign (Bi-Real Net, ECCV 2018): dL/dw = g * (2 - 2|w|) for |w| < 1, else exactly 0."""
    return g * (2 - 2 * w.abs()).clamp_min(0)


T_MIN, T_MAX = 0.1, 10.0


def ede_schedule(epoch: float, total: float, t_min: float = T_MIN, t_max: float = T_MAX) -> tuple[float, float]:
    """IR-Net's EDE schedule: ``t = T_min * 10^(e/E * log10(T_max/T_min))``, ``k = max(1/t, 1)``.

    ``t`` goes geometrically from ``t_min`` (epoch 0) to ``t_max`` (epoch ``total``); epochs past
    ``total`` are held at the end."""
    if total <= 0:
        raise ValueError(f"ede_schedule needs total > 0 epochs, got {total}")
    frac = min(max(epoch / total, 0.0), 1.0)
    t = t_min * 10 ** (frac * math.log10(t_max / t_min))
    return t, max(1.0 / t, 1.0)


def ede_tk(param) -> tuple[float, float]:
    """EDE's ``(t, k)`` from its parameter: a pair, a float ``t`` (``k = max(1/t, 1)``) or None (epoch 0)."""
    if param is None:
        return ede_schedule(0, 1)
    if isinstance(param, (tuple, list)):
        t, k = param
        return float(t), float(k)
    t = float(param)
    return t, max(1.0 / t, 1.0)


def ede_grad(g, w, param=None):
    """EDE (IR-Net, CVPR 2020): dL/dw = g * k * t * (1 - tanh^2(t w)); ``param`` = (t, k) or t."""
    t, k = ede_tk(param)
    return g * (k * t) * (1 - (t * w).tanh() ** 2)


def std_of(x):
    """Population std of a whole tensor (ddof = 0), detached: ``sqrt(mean((x - mean x)^2))``."""
    return x.detach().std(correction=0)


def mean_abs_of(x):
    """``mean|x|`` over a whole tensor, detached."""
    return x.detach().abs().mean()


ABSOLUTE = "abs"
UNITS: dict[str, Callable[[Any], Any] | None] = {ABSOLUTE: None, "std": std_of, "mean_abs": mean_abs_of}
"""Units of a parameter or threshold: ``abs`` (the number itself) or a per-layer statistic."""


@dataclass(frozen=True)
class Relative:
    """``value * UNITS[unit](tensor)``: a parameter or threshold relative to a layer's scale, the
    statistic taken at the time of the step (module docstring)."""

    value: float
    unit: str

    def __post_init__(self):
        if self.unit not in UNITS or self.unit == ABSOLUTE:
            raise KeyError(f"unknown relative unit {self.unit!r}; valid: {', '.join(u for u in UNITS if u != ABSOLUTE)}")

    def of(self, x):
        """The absolute value for tensor ``x`` (a 0-d tensor on ``x``'s device; no host sync)."""
        return self.value * UNITS[self.unit](x)

    def __str__(self) -> str:
        return f"{self.value:g}·{self.unit}"


def relative(value: float, unit: str = ABSOLUTE):
    """``value`` in ``unit``: the float itself for ``abs``, else ``Relative(value, unit)``."""
    if unit not in UNITS:
        raise KeyError(f"unknown unit {unit!r}; valid: {', '.join(UNITS)}")
    return float(value) if unit == ABSOLUTE else Relative(float(value), unit)


def resolve(value, x):
    """A threshold (or any length on the input axis) for tensor ``x``: ``value.of(x)`` if relative."""
    return value.of(x) if isinstance(value, Relative) else value


ParamAxis = Literal["input", "gradient"]


@dataclass(frozen=True)
class Estimator:
    """One backward estimator. ``param``: the name of its sweepable parameter (``None``: it has
    none), ``default`` its value when none is given, ``symbol`` how a label shows it; ``schedule``:
    ``(epoch, total) -> parameter`` for an estimator whose parameter training sets per epoch;
    ``param_axis``: what a :class:`Relative` parameter is measured against -- ``input`` (a window
    half-width on the input axis) or ``gradient`` (a bound on the gradient's values); ``None``: the
    parameter cannot be relative."""

    name: str
    grad: Callable[..., Any]
    label: str
    paper: str
    param: str | None = None
    default: float | None = None
    symbol: str = ""
    schedule: Callable[[float, float], Any] | None = None
    param_axis: ParamAxis | None = None

    def describe(self, value=None, unit=None) -> str:
        """Report label: the name, with the parameter where it acts (``window t=0.5``, relative:
        ``window t=0.5·std``); ``None``, NaN or 0 show the default; a null unit is ``abs``."""
        if self.param is None:
            return self.name
        if value is None or (isinstance(value, float) and math.isnan(value)) or float(value) == 0.0:
            value = self.default
        relative_unit = self.param_axis is not None and isinstance(unit, str) and unit not in ("", ABSOLUTE)
        return f"{self.name} {self.symbol}={float(value):g}" + (f"·{unit}" if relative_unit else "")

    def absolute(self, param, x=None, g=None):
        """The parameter in absolute units: ``None`` is the default; a :class:`Relative` one is
        measured on ``x`` (``param_axis`` ``input``: the unshifted input) or on ``g`` (``gradient``:
        the upstream gradient) when that tensor is given, and left relative otherwise."""
        if param is None:
            return self.default
        if not isinstance(param, Relative):
            return param
        if self.param_axis is None:
            relative_ok = ", ".join(n for n, e in REGISTRY.items() if e.param_axis)
            raise ValueError(f"estimator {self.name!r} takes no relative parameter; relative parameters: {relative_ok}")
        tensor = x if self.param_axis == "input" else g
        return param if tensor is None else param.of(tensor)

    def passes(self, x, param=None):
        """Where the estimator passes a gradient at (shifted) input ``x``: ``grad(1, x, param) != 0``
        (the inside of its window; everywhere for the identity and the value clip). ``param`` in
        absolute units (``None``: the default)."""
        return self.grad(x.new_ones(()).expand_as(x), x, self.absolute(param)) != 0


REGISTRY: Registry[Estimator] = Registry("estimator")
"""Every estimator, built-in and plug-in, by name (:func:`register_estimator` adds one)."""
for _e in (
    Estimator("identity", identity_grad, "nSTE", "Bengio et al. 2013, arXiv:1308.3432"),
    Estimator("value_clip", value_clip_grad, "vSTE (value clip)", "meeting record 2021-06-16",
              param="clip", default=0.5, symbol="c", param_axis="gradient"),
    Estimator("window", window_grad, "vSTE (window)", "Hubara et al. 2016, NeurIPS (BNN)",
              param="window", default=1.0, symbol="t", param_axis="input"),
    Estimator("approx_sign", approx_sign_grad, "ApproxSign", "Liu et al. 2018, ECCV (Bi-Real Net)"),
    Estimator("ede", ede_grad, "EDE", "Qin et al. 2020, CVPR (IR-Net)", schedule=ede_schedule),
):
    REGISTRY.add(_e.name, _e, __name__)

BUILTIN: tuple[str, ...] = REGISTRY.names()
"""The library's own estimators (the probe config has a named field for each of their parameters)."""
REFERENCE = "identity"
"""The estimator others are compared with (nSTE), and the one a row without an estimator column used."""

EstimatorName = Annotated[str, OneOf(REGISTRY)]
"""Config type of an estimator choice: any registered name, checked when the config is built."""


def register_estimator(name: str, *, label: str, paper: str, param: str | None = None, default: float | None = None,
                       symbol: str = "", schedule: Callable[[float, float], Any] | None = None,
                       param_axis: ParamAxis | None = None):
    """Decorator registering ``grad(g, w, param) -> dL/dw`` as estimator ``name`` (probes, training,
    gradient statistics and SR all look estimators up here). ``param``/``default``/``symbol``: its
    one sweepable parameter (set with ``estimator.param`` in probes, ``quant.weight_param`` /
    ``act_param`` in training; 0 takes ``default``); ``param_axis``: ``input`` or ``gradient`` when
    the parameter may be relative to a layer's scale. Example (a tanh-derivative STE)::

        @register_estimator("tanh_ste", label="tanh STE", paper="...", param="slope", default=3.0, symbol="a")
        def tanh_ste(g, w, param=3.0):
            return g * param * (1 - (param * w).tanh() ** 2)
    """
    def deco(grad):
        REGISTRY.add(name, Estimator(name, grad, label, paper, param, default, symbol, schedule, param_axis),
                     getattr(grad, "__module__", ""))
        return grad
    return deco


def _live(name: str):
    """Tuples derived from the registry as it is now (plug-ins included): ``NAMES``, ``WITH_PARAM``,
    ``PARAM_NAMES``, ``WITH_RELATIVE`` (module attributes computed on access, PEP 562)."""
    entries = list(REGISTRY.values())
    if name == "NAMES":
        return tuple(e.name for e in entries)
    if name == "WITH_PARAM":
        return tuple(e.name for e in entries if e.param is not None)
    if name == "PARAM_NAMES":
        return tuple(dict.fromkeys(e.param for e in entries if e.param))
    if name == "WITH_RELATIVE":
        return tuple(e.name for e in entries if e.param_axis is not None)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __getattr__(name: str):
    return _live(name)


def get(name: str) -> Estimator:
    """The registry entry ``name``; an unknown name raises ``KeyError`` listing the valid ones."""
    return REGISTRY.get(name)


def label(name, value=None, unit=None) -> str:
    """Report label of estimator ``name`` with parameter ``value`` in ``unit`` (a missing name is
    ``identity``; a missing unit ``abs``)."""
    if name is None or (isinstance(name, float) and math.isnan(name)):
        name = REFERENCE
    entry = REGISTRY.get(str(name), None)
    return entry.describe(value, unit) if entry else str(name)


__all__ = ["Estimator", "REGISTRY", "NAMES", "REFERENCE", "WITH_PARAM", "PARAM_NAMES", "get", "label", "ede_schedule", "ede_tk",
           "UNITS", "ABSOLUTE", "Relative", "relative", "resolve", "std_of", "mean_abs_of", "WITH_RELATIVE",
           "T_MIN", "T_MAX", "register_estimator", "EstimatorName", "BUILTIN", "identity_grad", "value_clip_grad", "window_grad", "approx_sign_grad", "ede_grad"]
