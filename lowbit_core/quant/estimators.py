"""Backward estimators for the sign quantizer, factored apart from the forward map.

The forward map is always ``sign(w)`` with sign(0) = +1 (a binary weight is never 0). The true
derivative of sign is 0 almost everywhere, so training uses a surrogate: given the upstream gradient
``g = dL/d sign(w)``, an estimator returns the gradient credited to the latent weight ``w``.

- ``identity`` -- normal STE (nSTE; Bengio et al. 2013, "Estimating or propagating gradients through
  stochastic neurons"): ``dL/dw = g``.
- ``value_clip`` -- the meeting record's variant STE read as clipping the gradient's *values*:
  ``dL/dw = clip(g, -c, c)`` (the seed uses c = 0.5). Unclipped where ``|g| <= c``.
- ``window`` -- the other reading, a hardtanh-like window on the *input*
  (Courbariaux/Hubara et al. 2016, "Binarized Neural Networks"; DSQ's shrinking window is a
  smooth version): ``dL/dw = g * 1{|w| <= t}``; the edge ``|w| = t`` is inside the window.

- ``approx_sign`` -- ApproxSign (Liu et al., "Bi-Real Net", ECCV 2018): the derivative of the
  piecewise polynomial :func:`approx_sign_surrogate`, ``dL/dw = g * (2 - 2|w|) * 1{|w| < 1}``
  (exact zero at and beyond ``|w| = 1``; ``param`` is ignored).
- ``ede`` -- Error Decay Estimator (Qin et al., "IR-Net", CVPR 2020): the derivative of the surrogate
  ``k * tanh(t w)`` (:func:`ede_surrogate`), ``dL/dw = g * k * t * (1 - tanh^2(t w))``; ``param`` is
  ``(t, k)``, or a float ``t`` with ``k = max(1/t, 1)``, or ``None`` for the schedule's start
  (epoch 0: ``t = T_MIN``). :func:`ede_schedule` gives ``(t, k)`` for an epoch.

Estimators are pure functions ``(g, w, param) -> dL/dw`` in :data:`ESTIMATORS`; :func:`sign_ste`
wires one into autograd. :data:`DEFAULT_PARAMS` holds each estimator's parameter when none is given
(``sign_ste`` itself passes ``param`` through unchanged).
"""
from __future__ import annotations

import math
from typing import Callable

import torch


def sign(w: torch.Tensor) -> torch.Tensor:
    """sign(w) in {-1, +1}, with sign(0) = +1 (never 0).

    ``w + 0.0`` turns -0.0 into +0.0, so copysign gives +1 there; copysign is one fused kernel
    (binary/FP ResNet-20 training-step ratio about 0.6 with a torch.where of two new tensors,
    0.8-0.9 with copysign; benchmarks/train_speed.py on a loaded 2-core machine).
    """
    return torch.copysign(torch.ones_like(w), w + 0.0)


def identity_grad(g: torch.Tensor, w: torch.Tensor, param: float | None = None) -> torch.Tensor:
    """nSTE: dL/dw = g."""
    return g


def value_clip_grad(g: torch.Tensor, w: torch.Tensor, param: float = 0.5) -> torch.Tensor:
    """Value-clipped STE: dL/dw = clip(g, -c, c) with c = ``param`` > 0."""
    return g.clamp(-param, param)


def window_grad(g: torch.Tensor, w: torch.Tensor, param: float = 1.0) -> torch.Tensor:
    """Window STE: dL/dw = g * 1{|w| <= t} with t = ``param`` > 0 (edge included)."""
    return g * (w.abs() <= param).to(g.dtype)


def approx_sign_surrogate(x: torch.Tensor) -> torch.Tensor:
    """Bi-Real Net's ApproxSign polynomial: -1 for x < -1, 2x + x^2 on [-1, 0), 2x - x^2 on [0, 1),
    +1 for x >= 1. Its derivative ``2 - 2|x|`` on |x| < 1 (0 elsewhere) is :func:`approx_sign_grad`."""
    return torch.where(x.abs() >= 1, torch.sign(x), 2 * x - x * x.abs())


def approx_sign_grad(g: torch.Tensor, w: torch.Tensor, param: float | None = None) -> torch.Tensor:
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


def _ede_tk(param) -> tuple[float, float]:
    if param is None:
        return ede_schedule(0, 1)
    if isinstance(param, (tuple, list)):
        t, k = param
        return float(t), float(k)
    t = float(param)
    return t, max(1.0 / t, 1.0)


def ede_surrogate(x: torch.Tensor, t: float, k: float) -> torch.Tensor:
    """EDE's smooth stand-in for sign: ``k * tanh(t x)``; its derivative is :func:`ede_grad`."""
    return k * torch.tanh(t * x)


def ede_grad(g: torch.Tensor, w: torch.Tensor, param=None) -> torch.Tensor:
    """EDE (IR-Net, CVPR 2020): dL/dw = g * k * t * (1 - tanh^2(t w)); ``param`` = (t, k) or t."""
    t, k = _ede_tk(param)
    return g * (k * t) * (1 - torch.tanh(t * w) ** 2)


ESTIMATORS: dict[str, Callable[..., torch.Tensor]] = {
    "identity": identity_grad,
    "value_clip": value_clip_grad,
    "window": window_grad,
    "approx_sign": approx_sign_grad,
    "ede": ede_grad,
}

DEFAULT_PARAMS: dict[str, object] = {
    "identity": None, "value_clip": 0.5, "window": 1.0, "approx_sign": None, "ede": None,
}


def get_estimator(name: str) -> Callable[..., torch.Tensor]:
    try:
        return ESTIMATORS[name]
    except KeyError:
        raise KeyError(f"unknown estimator {name!r}; valid: {', '.join(ESTIMATORS)}") from None


class _SignSTE(torch.autograd.Function):
    @staticmethod
    def forward(ctx, w, name, param):
        ctx.save_for_backward(w)
        ctx.name, ctx.param = name, param
        return sign(w)

    @staticmethod
    def backward(ctx, g):
        (w,) = ctx.saved_tensors
        return ESTIMATORS[ctx.name](g, w, ctx.param), None, None


def sign_ste(w: torch.Tensor, name: str = "identity", param: float | None = None) -> torch.Tensor:
    """Forward sign(w); backward through the estimator ``name`` with its parameter."""
    get_estimator(name)
    return _SignSTE.apply(w, name, param)
