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

Estimators are pure functions ``(g, w, param) -> dL/dw`` in :data:`ESTIMATORS`; :func:`sign_ste`
wires one into autograd.
"""
from __future__ import annotations

from typing import Callable

import torch


def sign(w: torch.Tensor) -> torch.Tensor:
    """sign(w) in {-1, +1}, with sign(0) = +1 (never 0)."""
    return torch.where(w >= 0, torch.ones_like(w), -torch.ones_like(w))


def identity_grad(g: torch.Tensor, w: torch.Tensor, param: float | None = None) -> torch.Tensor:
    """nSTE: dL/dw = g."""
    return g


def value_clip_grad(g: torch.Tensor, w: torch.Tensor, param: float = 0.5) -> torch.Tensor:
    """Value-clipped STE: dL/dw = clip(g, -c, c) with c = ``param`` > 0."""
    return g.clamp(-param, param)


def window_grad(g: torch.Tensor, w: torch.Tensor, param: float = 1.0) -> torch.Tensor:
    """Window STE: dL/dw = g * 1{|w| <= t} with t = ``param`` > 0 (edge included)."""
    return g * (w.abs() <= param).to(g.dtype)


ESTIMATORS: dict[str, Callable[..., torch.Tensor]] = {
    "identity": identity_grad,
    "value_clip": value_clip_grad,
    "window": window_grad,
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
