"""The sign forward and its autograd wiring; the estimators themselves are declared once, in
:mod:`lowbit_core.quant.estimator_registry` (name, gradient, parameter, default, label, paper).

The forward map is always ``sign(w)`` with sign(0) = +1 (a binary weight is never 0). The true
derivative of sign is 0 almost everywhere, so training uses a surrogate: given the upstream gradient
``g = dL/d sign(w)``, an estimator returns the gradient credited to the latent weight ``w``.
:func:`sign_ste` wires one into autograd. :data:`ESTIMATORS` (name -> gradient) and
:data:`DEFAULT_PARAMS` (name -> default parameter) are views of the registry.

A :class:`~lowbit_core.quant.estimator_registry.Relative` parameter is made absolute by the
registry entry (:meth:`~lowbit_core.quant.estimator_registry.Estimator.absolute`): one measured on
the input (a window) from the tensor :func:`sign_ste` receives, in the forward; one measured on the
gradient (a value clip) from the upstream gradient ``g`` of that layer, in the backward.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Callable

import torch

from lowbit_core.quant.estimator_registry import (REGISTRY, T_MAX, T_MIN, approx_sign_grad, ede_grad,  # noqa: F401
                                                  ede_schedule, ede_tk, get, identity_grad, value_clip_grad,
                                                  window_grad)


def sign(w: torch.Tensor) -> torch.Tensor:
    """sign(w) in {-1, +1}, with sign(0) = +1 (never 0).

    ``w + 0.0`` turns -0.0 into +0.0, so copysign gives +1 there; copysign is one fused kernel
    (binary/FP ResNet-20 training-step ratio about 0.6 with a torch.where of two new tensors,
    0.8-0.9 with copysign; benchmarks/train_speed.py on a loaded 2-core machine).
    """
    return torch.copysign(torch.ones_like(w), w + 0.0)


def approx_sign_surrogate(x: torch.Tensor) -> torch.Tensor:
    """Bi-Real Net's ApproxSign polynomial: -1 for x < -1, 2x + x^2 on [-1, 0), 2x - x^2 on [0, 1),
    +1 for x >= 1. Its derivative ``2 - 2|x|`` on |x| < 1 (0 elsewhere) is :func:`approx_sign_grad`."""
    return torch.where(x.abs() >= 1, torch.sign(x), 2 * x - x * x.abs())


def ede_surrogate(x: torch.Tensor, t: float, k: float) -> torch.Tensor:
    """EDE's smooth stand-in for sign: ``k * tanh(t x)``; its derivative is :func:`ede_grad`."""
    return k * torch.tanh(t * x)


class _RegistryView(Mapping):
    """A read-only view of one field of every registered estimator, plug-ins included (never a copy
    kept in step by hand)."""

    def __init__(self, field: str):
        self._field = field

    def __getitem__(self, name: str):
        return getattr(REGISTRY[name], self._field)

    def __iter__(self):
        return iter(REGISTRY)

    def __len__(self) -> int:
        return len(REGISTRY)


ESTIMATORS: Mapping[str, Callable[..., torch.Tensor]] = _RegistryView("grad")
DEFAULT_PARAMS: Mapping[str, object] = _RegistryView("default")


def get_estimator(name: str) -> Callable[..., torch.Tensor]:
    """The gradient of estimator ``name``; unknown names raise ``KeyError`` listing the valid ones."""
    return get(name).grad


class _SignSTE(torch.autograd.Function):
    @staticmethod
    def forward(ctx, w, name, param):
        ctx.save_for_backward(w)
        ctx.name, ctx.param = name, param
        return sign(w)

    @staticmethod
    def backward(ctx, g):
        (w,) = ctx.saved_tensors
        entry = REGISTRY[ctx.name]
        return entry.grad(g, w, entry.absolute(ctx.param, g=g)), None, None


def sign_ste(w: torch.Tensor, name: str = "identity", param=None) -> torch.Tensor:
    """Forward sign(w); backward through the estimator ``name`` with its parameter (a number, EDE's
    pair, or a ``Relative``: see the module docstring)."""
    return _SignSTE.apply(w, name, get(name).absolute(param, x=w))
