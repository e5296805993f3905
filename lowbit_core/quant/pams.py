"""PAMS k-bit quantizers (Li, Yan, Chen, Liu, Wang, Gu, Zhang, Lu; "PAMS: Quantized Super-Resolution
via Parameterized Max Scale", ECCV 2020), as in the authors' code (github.com/colorjam/PAMS,
``model/quant_ops.py``: ``quant_weight``, ``pams_quant_act``).

Symmetric k-bit grids (k >= 2) with ``q = 2^(k-1) - 1`` positive levels and a straight-through round
(``round_ste``: forward ``torch.round``, backward identity):

- **Weights** (:class:`PAMSWeight`), per layer: ``m = max|W| + 1e-8`` (detached),
  ``W_q = round_ste(W q / m) m / q``. Backward: ``dL/dW = dL/dW_q`` (the identity; m is a constant).
- **Activations** (:class:`PAMSAct`) with a learned max scale ``alpha`` (one scalar parameter,
  initialised to 10): ``x_c = clip(x, -alpha, alpha)``, ``x_q = round_ste(x_c q / alpha) alpha / q``.
  Autograd then gives ``dx_q/dx = 1{|x| <= alpha}`` and ``dx_q/dalpha = (round(v) - v) / q +
  sign(x) 1{|x| > alpha}`` with ``v = x_c q / alpha``. PAMS trains alpha with its own learning rate
  (1e-2 in the authors' ``main.py``; the training loop's ``quant.act_clip_lr``).
- **Calibration** (the code's ``ema_epoch``; :func:`set_pams_calibration`): in train mode during the
  first calibration epoch, every step sets ``M = mean_n max_{c,h,w} |x_n|`` (the batch mean of each
  sample's max) and ``alpha <- M``; in later calibration epochs ``M <- d M + (1 - d) m_t`` with
  ``d = 0.9997``. While calibrating, ``x`` is not clipped (it is still rounded on the grid of the
  current alpha), exactly as in the authors' ``forward``. In eval mode, and after calibration, the
  clipped form above is used.

PAMS's structured knowledge transfer (a feature loss against an FP teacher) is a training loss, not a
quantizer, and is not part of this module.
"""
from __future__ import annotations

import torch
from torch import nn

from lowbit_core.quant.kbit import _check_bits, clip_inclusive, round_ste

ALPHA_INIT = 10.0
EMA_DECAY = 0.9997
MAX_EPS = 1e-8
OFF, FIRST, EMA = 0, 1, 2


def pams_levels(bits: int) -> float:
    """``q = 2^(k-1) - 1``, the positive levels of the symmetric k-bit grid (k >= 2)."""
    if _check_bits(bits) < 2:
        raise ValueError(f"PAMS needs bits >= 2 (q = 2^(k-1) - 1 is 0 at 1 bit), got {bits}")
    return float(2 ** (bits - 1) - 1)


def pams_weight(w: torch.Tensor, bits: int) -> torch.Tensor:
    """``round_ste(W q / m) m / q`` with ``m = max|W| + 1e-8`` detached (module docstring)."""
    q = pams_levels(bits)
    m = w.detach().abs().max() + MAX_EPS
    return round_ste(w * (q / m)) * (m / q)


def pams_act(x: torch.Tensor, alpha: torch.Tensor, bits: int, clip: bool = True) -> torch.Tensor:
    """``round_ste(x_c q / alpha) alpha / q`` with ``x_c = clip(x, -alpha, alpha)`` (or ``x`` when
    ``clip`` is False, PAMS's calibration forward); gradients to ``x`` and ``alpha`` by autograd."""
    q = pams_levels(bits)
    a = alpha.clamp_min(MAX_EPS)
    xc = clip_inclusive(x, -a, a) if clip else x
    return round_ste(xc * q / a) * a / q


class PAMSWeight(nn.Module):
    """Module form of :func:`pams_weight`."""

    def __init__(self, bits: int):
        super().__init__()
        pams_levels(bits)
        self.bits = bits

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        return pams_weight(w, self.bits)

    def extra_repr(self) -> str:
        return f"bits={self.bits}"


class PAMSAct(nn.Module):
    """Module form of :func:`pams_act` with the learned ``alpha`` and PAMS's calibration (module
    docstring); ``calibrating`` is set by :func:`set_pams_calibration` (0 off, 1 first epoch, 2 EMA)."""

    def __init__(self, bits: int, alpha: float = ALPHA_INIT, decay: float = EMA_DECAY):
        super().__init__()
        pams_levels(bits)
        self.bits, self.decay = bits, decay
        self.alpha = nn.Parameter(torch.tensor(float(alpha)))
        self.register_buffer("max_val", torch.tensor(1.0))
        self.calibrating = OFF

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training and self.calibrating != OFF:
            with torch.no_grad():
                m = x.detach().abs().flatten(1).amax(1).mean() if x.dim() > 1 else x.detach().abs().max()
                self.max_val.copy_(m if self.calibrating == FIRST else
                                   self.decay * self.max_val + (1 - self.decay) * m)
                self.alpha.copy_(self.max_val)
            return pams_act(x, self.alpha, self.bits, clip=False)
        return pams_act(x, self.alpha, self.bits)

    def extra_repr(self) -> str:
        return f"bits={self.bits}"


def set_pams_calibration(model: nn.Module, epoch: int, ema_epochs: int) -> int:
    """Put every :class:`PAMSAct` of ``model`` in calibration for epoch ``epoch`` (0-based, within
    the quantized phase) of ``ema_epochs``: first epoch ``M = m_t``, later ones the EMA, then off.
    Returns how many quantizers were set."""
    mode = OFF if epoch >= ema_epochs else (FIRST if epoch == 0 else EMA)
    n = 0
    for m in model.modules():
        if isinstance(m, PAMSAct):
            m.calibrating = mode
            n += 1
    return n


def pams_quantizer(spec) -> nn.Module:
    """The registry's builder (:data:`lowbit_core.quant.registry.QUANTIZERS` ``"pams"``): a
    :class:`PAMSWeight` for ``spec.role == "weight"``, a :class:`PAMSAct` for activations."""
    return PAMSWeight(spec.bits) if spec.role == "weight" else PAMSAct(spec.bits)


__all__ = ["ALPHA_INIT", "EMA_DECAY", "pams_levels", "pams_weight", "pams_act", "PAMSWeight", "PAMSAct",
           "set_pams_calibration", "pams_quantizer"]
