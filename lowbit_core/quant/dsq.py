"""DSQ: Differentiable Soft Quantization (Gong et al., ICCV 2019).

For ``k`` bits on the range ``[l, u]``: ``Delta = (u - l) / (2^k - 1)``, intervals
``P_i = [l + i Delta, l + (i+1) Delta]`` for ``i = 0 .. 2^k - 2`` with midpoints
``m_i = l + (i + 1/2) Delta`` (the hard quantizer's decision boundaries), and

    s = 1 / (1 - alpha),   k_coef = ln(2/alpha - 1) / Delta,   phi(x) = s tanh(k_coef (x - m_i)),
    Q_S(x) = l + Delta (i + (phi(x) + 1) / 2)  for l <= x <= u;  l below, u above (x is clipped).

``s`` makes ``phi = -1, +1`` exactly at the interval's edges, so ``Q_S`` is continuous, monotone,
equals the levels at the levels, and lies in ``[l, u]``; ``alpha`` in (0, 0.5) sets the softness
(``alpha -> 0``: ``Q_S`` -> the hard quantizer away from the ``m_i``).

Forwards and gradients:

- :func:`dsq_soft` (training, default): ``Q_S`` itself; gradients wrt ``x``, ``l``, ``u`` and
  ``alpha`` are autograd's of the formula (the interval index ``i`` is piecewise constant, no
  gradient; ``x`` outside ``[l, u]`` gets 0 and the clipped value's gradient goes to the bound;
  the edges ``x = l``, ``x = u`` count as inside, see :func:`~lowbit_core.quant.kbit.clip_inclusive`).
- :func:`dsq_sign_ste` (training, the paper's Sec. 3.3 variant): value of the hard quantizer,
  ``l + Delta (i + (sgn(phi) + 1)/2)``, backward through ``phi`` (STE across sgn).
- :func:`dsq_hard` (evaluation): the ordinary uniform quantizer
  ``l + Delta floor((clip(x, l, u) - l)/Delta + 1/2)`` (ties at ``m_i`` go up), with STE through the
  rounding: ``d/dx = 1{l <= x <= u}``, autograd for ``l``, ``u``.

``alpha`` is learnable in :class:`DSQQuantizer` (kept in ``[ALPHA_MIN, ALPHA_MAX]`` by a
straight-through clamp: the value is clamped, the gradient passes, so it can come back), or
scheduled: :func:`dsq_alpha_schedule` (linear or geometric decay from ``alpha0`` to ``alpha_min``
over ``total`` steps, held after), applied with :meth:`DSQQuantizer.set_alpha`.
"""
from __future__ import annotations


import torch
from torch import nn

from lowbit_core.quant.kbit import _check_bits, _LazyInit, clip_inclusive, round_half_up_ste

ALPHA_MIN, ALPHA_MAX = 1e-6, 0.5 - 1e-6


def _t(v, like: torch.Tensor) -> torch.Tensor:
    return v if isinstance(v, torch.Tensor) else like.new_full((), float(v))


def _interval(x, lower, upper, bits):
    n = 2 ** _check_bits(bits) - 1
    lo, hi = _t(lower, x), _t(upper, x)
    delta = (hi - lo) / n
    xc = clip_inclusive(x, lo, hi)
    i = torch.floor(((xc - lo) / delta).detach()).clamp(0, n - 1)
    return lo, hi, delta, xc, i


def dsq_phi(x: torch.Tensor, lower, upper, alpha, bits: int):
    """``(phi, i, l, u, delta)`` for the clipped ``x`` (see module docstring)."""
    lo, hi, delta, xc, i = _interval(x, lower, upper, bits)
    a = _t(alpha, x)
    s = 1 / (1 - a)
    k = torch.log(2 / a - 1) / delta
    phi = s * torch.tanh(k * (xc - (lo + (i + 0.5) * delta)))
    return clip_inclusive(phi, -1.0, 1.0), i, lo, hi, delta


def dsq_soft(x: torch.Tensor, lower, upper, alpha, bits: int) -> torch.Tensor:
    """DSQ's soft quantizer ``Q_S(x)`` (module docstring); needs ``u > l`` and ``0 < alpha < 0.5``.
    ``lower``, ``upper``, ``alpha`` are floats or (learnable) scalar tensors."""
    phi, i, lo, hi, delta = dsq_phi(x, lower, upper, alpha, bits)
    return clip_inclusive(lo + delta * (i + (phi + 1) / 2), lo, hi)


def dsq_sign_ste(x: torch.Tensor, lower, upper, alpha, bits: int) -> torch.Tensor:
    """Hard value ``l + Delta (i + (sgn(phi)+1)/2)`` (sgn(0) = +1), gradient of ``Q_S`` (STE on sgn)."""
    phi, i, lo, hi, delta = dsq_phi(x, lower, upper, alpha, bits)
    hard = torch.where(phi >= 0, torch.ones_like(phi), -torch.ones_like(phi))
    phi = phi + (hard - phi).detach()
    return lo + delta * (i + (phi + 1) / 2)


def dsq_hard(x: torch.Tensor, lower, upper, bits: int) -> torch.Tensor:
    """Uniform hard quantizer on ``[l, u]`` with ``2^k`` levels, STE through the rounding."""
    lo, hi, delta, xc, _ = _interval(x, lower, upper, bits)
    return lo + delta * round_half_up_ste((xc - lo) / delta)


def dsq_alpha_schedule(step: float, total: float, alpha0: float = 0.2, alpha_min: float = 1e-3,
                       kind: str = "linear") -> float:
    """Scheduled alpha: ``linear`` ``alpha0 + (alpha_min - alpha0) f`` or ``geometric``
    ``alpha0 (alpha_min/alpha0)^f``, with ``f = clip(step/total, 0, 1)``."""
    if total <= 0:
        raise ValueError(f"dsq_alpha_schedule needs total > 0, got {total}")
    if not (0 < alpha_min <= alpha0 < 0.5):
        raise ValueError(f"need 0 < alpha_min <= alpha0 < 0.5, got alpha0={alpha0}, alpha_min={alpha_min}")
    f = min(max(step / total, 0.0), 1.0)
    if kind == "linear":
        return alpha0 + (alpha_min - alpha0) * f
    if kind == "geometric":
        return alpha0 * (alpha_min / alpha0) ** f
    raise KeyError(f"unknown alpha schedule {kind!r}; valid: linear, geometric")


TRAIN_FORWARDS = ("soft", "sign_ste")


class DSQQuantizer(_LazyInit):
    """DSQ as a module: ``train()`` mode uses :func:`dsq_soft` (or :func:`dsq_sign_ste` with
    ``train_forward="sign_ste"``), ``eval()`` mode :func:`dsq_hard`.

    ``lower``/``upper``: the initial range; if either is None both are set from the first tensor
    seen (its min and max). ``learn_bounds``/``learn_alpha``: parameters if True, buffers otherwise
    (a non-learned alpha is meant to be driven by :func:`dsq_alpha_schedule` via :meth:`set_alpha`).
    The effective upper bound is ``max(u, l + 1e-6)`` so the range never collapses."""

    def __init__(self, bits: int, lower: float | None = None, upper: float | None = None, alpha: float = 0.2,
                 learn_alpha: bool = True, learn_bounds: bool = True, train_forward: str = "soft"):
        super().__init__(initialized=lower is not None and upper is not None)
        self.bits = _check_bits(bits)
        if not 0 < alpha < 0.5:
            raise ValueError(f"DSQ alpha must be in (0, 0.5), got {alpha}")
        if train_forward not in TRAIN_FORWARDS:
            raise KeyError(f"unknown DSQ train_forward {train_forward!r}; valid: {', '.join(TRAIN_FORWARDS)}")
        if self.initialized and not upper > lower:
            raise ValueError(f"DSQ needs upper > lower, got [{lower}, {upper}]")
        self.train_forward, self.learn_alpha, self.learn_bounds = train_forward, learn_alpha, learn_bounds
        lo = torch.tensor(float(lower if lower is not None else 0.0))
        hi = torch.tensor(float(upper if upper is not None else 1.0))
        for name, value, learn in (("lower", lo, learn_bounds), ("upper", hi, learn_bounds),
                                   ("alpha", torch.tensor(float(alpha)), learn_alpha)):
            if learn:
                self.register_parameter(name, nn.Parameter(value))
            else:
                self.register_buffer(name, value)

    @torch.no_grad()
    def set_alpha(self, alpha: float) -> None:
        """Set alpha (for a schedule); clamped into ``[ALPHA_MIN, ALPHA_MAX]``."""
        self.alpha.fill_(min(max(float(alpha), ALPHA_MIN), ALPHA_MAX))

    def effective_alpha(self) -> torch.Tensor:
        a = self.alpha
        return a + (a.clamp(ALPHA_MIN, ALPHA_MAX) - a).detach()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self._needs_init():
            with torch.no_grad():
                lo, hi = x.detach().min(), x.detach().max()
                self.lower.copy_(lo)
                self.upper.copy_(torch.maximum(hi, lo + 1e-3))
            self._mark_initialized()
        lo = self.lower
        hi = torch.maximum(self.upper, lo + 1e-6)
        if not self.training:
            return dsq_hard(x, lo, hi, self.bits)
        fn = dsq_soft if self.train_forward == "soft" else dsq_sign_ste
        return fn(x, lo, hi, self.effective_alpha(), self.bits)

    def extra_repr(self) -> str:
        return (f"bits={self.bits}, train_forward={self.train_forward}, learn_alpha={self.learn_alpha}, "
                f"learn_bounds={self.learn_bounds}")
