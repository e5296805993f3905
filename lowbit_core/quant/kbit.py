"""k-bit uniform quantizers: DoReFa (weights, activations) and LSQ (learned step size).

Rounding estimators (straight-through, Bengio et al. 2013):

- :func:`round_ste`: forward ``torch.round`` (ties to even), backward identity.
- :func:`round_half_up_ste`: forward ``floor(x + 1/2)`` (ties up, matching sign(0) = +1), backward
  identity.

DoReFa (Zhou et al., "DoReFa-Net", arXiv:1606.06160, 2016), with
``quantize_k(x) = round((2^k - 1) x) / (2^k - 1)`` on [0, 1] and STE through the round:

- weights: ``w_q = 2 quantize_k(tanh(w) / (2 max|tanh(w)|) + 1/2) - 1``, on the 2^k levels
  ``2j/(2^k - 1) - 1``. Backward: identity through the round, autograd through tanh and the
  normalisation (the max is not detached, as in the reference code, so its argmax entry gets a share).
  At k = 1 the reference takes its BWN branch instead: ``w_q = sign(w) E|w|`` with ``E|w|`` the
  layer's mean absolute weight (detached) and the identity gradient through sign, ``dL/dw = g``
  (sign(0) = +1, as everywhere in this project).
- activations: ``x_q = quantize_k(clip(x, 0, 1))``. Backward: ``g * 1{0 <= x <= 1}``, edges included
  (by :func:`clip_inclusive`, not ``torch.clamp``, whose edge gradient differs between overloads).

LSQ (Esser et al., "Learned Step Size Quantization", ICLR 2020), step ``s > 0``, integer range
``[-Q_N, Q_P]`` (signed: ``Q_N = 2^(b-1)``, ``Q_P = 2^(b-1) - 1``; unsigned: ``Q_N = 0``,
``Q_P = 2^b - 1``): forward ``v_hat = round(clip(v/s, -Q_N, Q_P)) * s``. Backward (the paper's Eq. 3
and the STE for ``v``), with ``r = v/s`` and "inside" meaning ``-Q_N < r < Q_P`` (strict, edges count
as outside as in the paper):

- ``d v_hat / d v = 1`` inside, 0 outside;
- ``d v_hat / d s = -r + round(r)`` inside, ``-Q_N`` if ``r <= -Q_N``, ``Q_P`` if ``r >= Q_P``;
  the step's summed gradient is then multiplied by the gradient scale ``g = 1/sqrt(N * Q_P)``
  (``N`` = number of weights of the layer, or features per sample for activations).

Initial step: ``s = 2 mean|v| / sqrt(Q_P)`` (:func:`lsq_init_step`), set from the first tensor seen.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from lowbit_core.quant.estimators import sign_ste


class _RoundSTE(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, half_up):
        return torch.floor(x + 0.5) if half_up else torch.round(x)

    @staticmethod
    def backward(ctx, g):
        return g, None


def round_ste(x: torch.Tensor) -> torch.Tensor:
    """Forward ``torch.round(x)`` (half to even); backward identity (STE)."""
    return _RoundSTE.apply(x, False)


def round_half_up_ste(x: torch.Tensor) -> torch.Tensor:
    """Forward ``floor(x + 1/2)``; backward identity (STE)."""
    return _RoundSTE.apply(x, True)


def clip_inclusive(x: torch.Tensor, lo, hi) -> torch.Tensor:
    """Value ``clip(x, lo, hi)``; gradient to ``x`` where ``lo <= x <= hi`` (edges included), and to
    the bound where ``x`` is outside (when ``lo``/``hi`` are tensors that require grad)."""
    lo_t = lo if isinstance(lo, torch.Tensor) else x.new_full((), float(lo))
    hi_t = hi if isinstance(hi, torch.Tensor) else x.new_full((), float(hi))
    return torch.where(x < lo_t, lo_t, torch.where(x > hi_t, hi_t, x))


def _check_bits(bits: int) -> int:
    if not isinstance(bits, int) or isinstance(bits, bool) or bits < 1:
        raise ValueError(f"bits must be an int >= 1, got {bits!r}")
    return bits


def quantize_k(x: torch.Tensor, bits: int) -> torch.Tensor:
    """DoReFa's ``quantize_k``: ``round((2^k - 1) x) / (2^k - 1)`` with STE through the round.
    Maps [0, 1] onto the 2^k levels ``j / (2^k - 1)``; the levels map to themselves exactly."""
    n = 2 ** _check_bits(bits) - 1
    return round_ste(x * n) / n


def dorefa_weight(w: torch.Tensor, bits: int) -> torch.Tensor:
    """DoReFa weights: ``2 quantize_k(tanh(w) / (2 max|tanh(w)|) + 1/2) - 1``; at 1 bit the BWN branch
    ``sign(w) E|w|`` with the identity gradient (see module docstring)."""
    if _check_bits(bits) == 1:
        scale = w.detach().abs().mean().clamp_min(torch.finfo(w.dtype).tiny)
        return sign_ste(w / scale, "identity") * scale
    t = torch.tanh(w)
    t = t / (2 * t.abs().max().clamp_min(torch.finfo(t.dtype).tiny)) + 0.5
    return 2 * quantize_k(t, bits) - 1


def dorefa_act(x: torch.Tensor, bits: int) -> torch.Tensor:
    """DoReFa activations: ``quantize_k(clip(x, 0, 1))``; backward ``g * 1{0 <= x <= 1}``."""
    return quantize_k(clip_inclusive(x, 0.0, 1.0), bits)


def lsq_levels(bits: int, signed: bool) -> tuple[int, int]:
    """``(Q_N, Q_P)``: signed ``(2^(b-1), 2^(b-1) - 1)`` (needs b >= 2), unsigned ``(0, 2^b - 1)``."""
    _check_bits(bits)
    if signed:
        if bits < 2:
            raise ValueError("signed LSQ needs bits >= 2 (Q_P = 2^(b-1) - 1 would be 0); use sign for 1 bit")
        return 2 ** (bits - 1), 2 ** (bits - 1) - 1
    return 0, 2 ** bits - 1


def lsq_grad_scale(n: int, q_p: int) -> float:
    """LSQ's step-gradient scale ``g = 1 / sqrt(N * Q_P)``."""
    return 1.0 / math.sqrt(n * q_p)


def lsq_init_step(v: torch.Tensor, q_p: int) -> torch.Tensor:
    """LSQ's initial step ``2 mean|v| / sqrt(Q_P)`` (detached)."""
    return (2 * v.detach().abs().mean() / math.sqrt(q_p))


class _LSQ(torch.autograd.Function):
    @staticmethod
    def forward(ctx, v, s, q_n, q_p, g):
        r = v / s
        q = torch.round(r.clamp(-q_n, q_p))
        inside = (r > -q_n) & (r < q_p)
        ctx.save_for_backward(r, q, inside)
        ctx.g, ctx.s_shape = g, s.shape
        return q * s

    @staticmethod
    def backward(ctx, go):
        r, q, inside = ctx.saved_tensors
        dv = go * inside.to(go.dtype)
        # inside: round(r) - r; outside q is already -Q_N or Q_P
        ds_elem = torch.where(inside, q - r, q)
        ds = (go * ds_elem).sum_to_size(ctx.s_shape) * ctx.g
        return dv, ds, None, None, None


def lsq_quantize(v: torch.Tensor, s: torch.Tensor, bits: int, signed: bool = True,
                 grad_scale: float | None = None) -> torch.Tensor:
    """LSQ forward ``round(clip(v/s, -Q_N, Q_P)) * s`` with the paper's gradients (module docstring).

    ``s`` is a positive tensor broadcastable to ``v`` (a scalar for per-tensor LSQ);
    ``grad_scale=None`` uses ``1/sqrt(v.numel() * Q_P)``."""
    q_n, q_p = lsq_levels(bits, signed)
    if grad_scale is None:
        grad_scale = lsq_grad_scale(v.numel(), q_p)
    return _LSQ.apply(v, s, q_n, q_p, grad_scale)


class _LazyInit(nn.Module):
    """Holds an ``initialized`` buffer (saved in state_dict) and checks it without a device sync per
    forward: the Python-side flag is reset whenever a state_dict is loaded."""

    def __init__(self, initialized: bool):
        super().__init__()
        self.register_buffer("initialized", torch.tensor(bool(initialized)))
        self._init_known = False

    def _needs_init(self) -> bool:
        if self._init_known:
            return False
        if bool(self.initialized):
            self._init_known = True
            return False
        return True

    def _mark_initialized(self) -> None:
        self.initialized.fill_(True)
        self._init_known = True

    def _load_from_state_dict(self, *args, **kwargs):
        self._init_known = False
        super()._load_from_state_dict(*args, **kwargs)


class DoReFaWeight(nn.Module):
    """Module form of :func:`dorefa_weight`."""

    def __init__(self, bits: int):
        super().__init__()
        self.bits = _check_bits(bits)

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        return dorefa_weight(w, self.bits)

    def extra_repr(self) -> str:
        return f"bits={self.bits}"


class DoReFaAct(DoReFaWeight):
    """Module form of :func:`dorefa_act`."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return dorefa_act(x, self.bits)


class LSQQuantizer(_LazyInit):
    """LSQ with one learned step ``s`` (a scalar parameter), initialised on the first forward by
    :func:`lsq_init_step`. ``role="weight"``: N = numel; ``role="act"``: N = features per sample
    (``x[0].numel()``)."""

    def __init__(self, bits: int, signed: bool = True, role: str = "weight", step: float | None = None):
        super().__init__(initialized=step is not None)
        if role not in ("weight", "act"):
            raise ValueError(f"unknown LSQ role {role!r}; valid: weight, act")
        self.bits, self.signed, self.role = bits, signed, role
        self.q_n, self.q_p = lsq_levels(bits, signed)
        self.step = nn.Parameter(torch.tensor(1.0 if step is None else float(step)))

    def forward(self, v: torch.Tensor) -> torch.Tensor:
        if self._needs_init():
            with torch.no_grad():
                self.step.copy_(lsq_init_step(v, self.q_p).clamp_min(1e-8))
            self._mark_initialized()
        n = v.numel() if self.role == "weight" or v.dim() < 2 else v[0].numel()
        return lsq_quantize(v, self.step, self.bits, self.signed, lsq_grad_scale(n, self.q_p))

    def extra_repr(self) -> str:
        return f"bits={self.bits}, signed={self.signed}, role={self.role}"
