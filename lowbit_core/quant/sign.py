"""Sign binarization with a threshold and an optional per-channel weight scale.

Forward: ``b = sign(x - tau)`` in {-1, +1} (sign(0) = +1), optionally times a scale ``alpha``.
Backward: the chosen estimator of :mod:`lowbit_core.quant.estimators` (``identity``, ``value_clip``,
``window``, ``approx_sign``, ``ede``) evaluated at the *shifted* input ``x - tau``, so e.g. the window
estimator passes ``g * 1{|x - tau| <= t}``. The threshold ``tau`` is a fixed float (not learned).

Weight scales (:data:`WEIGHT_SCALES`), per output channel (dim 0 of a Linear or Conv weight):

- ``none``: ``alpha = 1``.
- ``mean_abs``: ``alpha_c = mean(|W_c|)`` over the channel's fan-in (Rastegari et al., "XNOR-Net",
  ECCV 2016). The scale is an ordinary differentiable function of ``W``: gradient flows through it
  as autograd gives it, ``d alpha_c / d W_ci = sign(W_ci) / n_c`` (torch's abs has derivative 0 at
  0), *in addition to* the estimator's gradient through ``sign``. It is computed from ``W``, not from
  ``W - tau``.
"""
from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from lowbit_core.quant.estimator_registry import Relative, get, resolve
from lowbit_core.quant.estimators import sign_ste

Threshold = float | Relative


def is_zero(threshold: Threshold) -> bool:
    """Whether a threshold is 0 (absolute or relative): no shift."""
    return (threshold.value if isinstance(threshold, Relative) else threshold) == 0.0


def shifted_input(x: torch.Tensor, threshold: Threshold = 0.0) -> torch.Tensor:
    """``x - tau`` with ``tau`` the threshold resolved on ``x`` (``x`` itself for a zero threshold)."""
    return x if is_zero(threshold) else x - resolve(threshold, x)


def binarize(x: torch.Tensor, estimator: str = "identity", param=None, threshold: Threshold = 0.0) -> torch.Tensor:
    """Forward ``sign(x - tau)``; backward ``estimator(g, x - tau, param)``.

    ``param=None`` takes the estimator's default; relative ``param`` / ``threshold`` are measured on
    the unshifted ``x`` (a value clip's on the upstream gradient, in the backward)."""
    p = get(estimator).absolute(param, x=x)
    return sign_ste(shifted_input(x, threshold), estimator, p)


def no_scale(w: torch.Tensor) -> torch.Tensor:
    """Scale option ``none``: the constant 1 (no gradient)."""
    return torch.ones((), dtype=w.dtype, device=w.device)


def mean_abs_scale(w: torch.Tensor) -> torch.Tensor:
    """XNOR-Net scale: ``mean|W_c|`` per output channel (dim 0), shaped to broadcast against ``w``."""
    if w.dim() < 2:
        return w.abs().mean()
    return w.abs().mean(dim=tuple(range(1, w.dim())), keepdim=True)


WEIGHT_SCALES: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {"none": no_scale, "mean_abs": mean_abs_scale}


def get_weight_scale(name: str) -> Callable[[torch.Tensor], torch.Tensor]:
    try:
        return WEIGHT_SCALES[name]
    except KeyError:
        raise KeyError(f"unknown weight scale {name!r}; valid: {', '.join(WEIGHT_SCALES)}") from None


def binarize_weight(w: torch.Tensor, estimator: str = "identity", param=None, threshold: Threshold = 0.0,
                    scale: str = "none") -> torch.Tensor:
    """``scale(w) * sign(w - threshold)`` with the estimator's backward through sign and autograd's
    through the scale (see the module docstring)."""
    scale_of = get_weight_scale(scale)
    b = binarize(w, estimator, param, threshold)
    return b if scale == "none" else scale_of(w) * b


class SignQuantizer(nn.Module):
    """Module form of :func:`binarize_weight` (weights) or :func:`binarize` (activations: ``scale``
    must be ``none``). ``param`` may be changed between steps (e.g. EDE's ``(t, k)`` per epoch via
    :meth:`set_epoch`)."""

    def __init__(self, estimator: str = "identity", param=None, threshold: Threshold = 0.0, scale: str = "none"):
        super().__init__()
        entry = get(estimator)
        get_weight_scale(scale)
        if isinstance(param, Relative):
            entry.absolute(param)  # an estimator whose parameter cannot be relative fails here, not at the first step
        self.estimator, self.param, self.scale = estimator, param, scale
        self.threshold = threshold if isinstance(threshold, Relative) else float(threshold)

    def set_epoch(self, epoch: float, total: float) -> None:
        """For a scheduled estimator (EDE): set ``param = schedule(epoch, total)``; no-op otherwise."""
        schedule = get(self.estimator).schedule
        if schedule is not None:
            self.param = schedule(epoch, total)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return binarize_weight(x, self.estimator, self.param, self.threshold, self.scale)

    def extra_repr(self) -> str:
        return f"estimator={self.estimator}, param={self.param}, threshold={self.threshold}, scale={self.scale}"


__all__ = ["binarize", "binarize_weight", "shifted_input", "is_zero", "mean_abs_scale", "no_scale", "WEIGHT_SCALES",
           "get_weight_scale", "SignQuantizer", "Threshold"]
