"""Reported metric values checked against the family's declared types, in the trial that reports them.

A family declares each metric as ``"float"``, ``"int"``, ``"str"`` or ``"list[float]"``
(:class:`lowbit_core.families.Family`), which fixes the Parquet column
(:func:`lowbit_core.results.results_schema`).
What ``run`` reports is converted here to the plain Python value of that type before it leaves the
trial, so the driver's writer gets only values Arrow converts:

- a number may come as a Python or numpy scalar, or as a 0-d array or tensor (``np.asarray(x)``,
  ``loss.detach().numpy()``, ``loss.detach()``: anything with ``.item()`` and no dimensions); a
  ``float`` metric takes bools and ints too, NaN and inf stay floats (the driver's
  ``NonFiniteStopper`` stops such a trial); an ``int`` metric takes bools, integers and integral
  floats (``3.0``), not ``2.5``, NaN or inf;
- a ``str`` metric takes a string; a ``list[float]`` metric a list, tuple, 1-d array or 1-d tensor of
  numbers (None elements stay None);
- None is a missing value (every results column is nullable).

Anything else raises :class:`MetricTypeError` (:func:`refused`), whose message is one line naming
the metric, its declared type and what was reported:
``metric 'loss' must be a float (declared), got str 'abc'``.
Raised inside the trial, it fails that trial only (the driver records its status and prints the line
in the failure summary).
"""
from __future__ import annotations

import math
import numbers
from typing import Any

DECLARED = ("float", "int", "str", "list[float]")
_ARTICLE = {"float": "a float", "int": "an int", "str": "a str", "list[float]": "a list[float]"}


class MetricTypeError(TypeError):
    """A reported value that is not of its metric's declared type; ``str()`` is one line
    (:func:`refused`). ``name``, ``declared``: the metric and its declared type."""

    name: str = ""
    declared: str = ""


def refused(name: str, declared: str, value: Any, context: str = "") -> MetricTypeError:
    """The :class:`MetricTypeError` for ``value`` reported as metric ``name`` of type ``declared``:
    ``metric 'loss' must be a float (declared), got str 'abc'`` (`` (<context>)`` appended when given).
    The value itself is not kept (the exception travels from the trial to the driver)."""
    text = f"metric {name!r} must be {_ARTICLE.get(declared, declared)} (declared), got {describe(value)}"
    err = MetricTypeError(f"{text} ({context})" if context else text)
    err.name, err.declared, err.got = name, declared, describe(value)
    return err


def type_name(value: Any) -> str:
    """``str``, ``numpy.ndarray``, ``torch.Tensor``: the value's type, with its module unless builtin."""
    tp = type(value)
    module = tp.__module__.split(".")[0]
    return tp.__qualname__ if module == "builtins" else f"{module}.{tp.__qualname__}"


def describe(value: Any, width: int = 60) -> str:
    """One line for an error message: the type, then the shape of an array or a short repr."""
    shape = getattr(value, "shape", None)
    if shape is not None:
        try:
            dims = tuple(int(d) for d in shape)
        except (TypeError, ValueError):
            dims = None
        if dims is not None and dims != ():
            dtype = getattr(value, "dtype", None)
            return f"{type_name(value)} of shape {dims}" + (f" ({dtype})" if dtype is not None else "")
    text = " ".join(repr(value).split())
    if len(text) > width:
        text = text[:width - 3] + "..."
    return f"{type_name(value)} {text}"


def _scalar(value: Any) -> Any:
    """A numpy scalar, 0-d array or 0-d tensor as its Python value; anything else unchanged."""
    if value is None or type(value) in (str, bytes, bool, int, float):
        return value  # (numpy's float64 and str_ are subclasses: they go on to .item())
    item = getattr(value, "item", None)
    if item is None or not callable(item):
        return value
    ndim = getattr(value, "ndim", None)
    if ndim is None:  # no ndim: accept a single element (size 1)
        size = getattr(value, "size", None)
        size = size() if callable(size) else size
        if size != 1:
            return value
    elif ndim != 0:
        return value
    try:
        return item()
    except (TypeError, ValueError, RuntimeError):
        return value


def _as_float(value: Any) -> float | None:
    """``value`` as a float, or None when it is not a real number (None itself is not handled here)."""
    if isinstance(value, float):
        return value
    if isinstance(value, numbers.Real) and not isinstance(value, (str, bytes)):
        try:
            return float(value)
        except (TypeError, ValueError, OverflowError):
            return None
    return None


def coerce_metric(name: str, declared: str, value: Any) -> Any:
    """``value`` as the plain Python value of the ``declared`` type of metric ``name`` (module
    docstring), or :class:`MetricTypeError`. None passes (a missing value)."""
    if value is None:
        return None
    if declared == "list[float]":
        return _coerce_list(name, value)
    v = _scalar(value)
    if declared == "float":
        out = _as_float(v)
        if out is not None:
            return out
    elif declared == "int":
        if isinstance(v, numbers.Integral):
            return int(v)
        f = _as_float(v)
        if f is not None and math.isfinite(f) and f.is_integer():
            return int(f)
    elif declared == "str":
        if isinstance(v, str):
            return str(v)
    else:
        raise ValueError(f"metric {name!r}: unknown declared type {declared!r}; valid: {', '.join(DECLARED)}")
    raise refused(name, declared, value)


def _coerce_list(name: str, value: Any) -> list:
    if isinstance(value, (str, bytes, dict)) or not hasattr(value, "__len__"):
        raise refused(name, "list[float]", value)
    ndim = getattr(value, "ndim", None)
    if ndim is not None and ndim != 1:
        raise refused(name, "list[float]", value)
    tolist = getattr(value, "tolist", None)
    items = tolist() if ndim == 1 and callable(tolist) else value
    out = []
    for x in items:
        if type(x) is float:
            out.append(x)
            continue
        if x is None:
            out.append(None)
            continue
        f = _as_float(_scalar(x))
        if f is None:
            raise refused(name, "list[float]", value)
        out.append(f)
    return out


def coerce_metrics(declared: dict[str, str], metrics: dict) -> dict:
    """A copy of a reported ``metrics`` dict with every declared metric's value coerced
    (:func:`coerce_metric`) and ``step`` as an int; other keys unchanged."""
    out = dict(metrics)
    for key, value in metrics.items():
        if key in declared:
            out[key] = coerce_metric(key, declared[key], value)
        elif key == "step":
            out[key] = coerce_metric(key, "int", value)
    return out
