"""mixup (Zhang, Cisse, Dauphin, Lopez-Paz: "mixup: Beyond Empirical Risk Minimization", ICLR 2018).

One mixing coefficient per mini-batch, as in the paper's reference code::

    lambda ~ Beta(alpha, alpha)                 (alpha <= 0: no mixup, lambda = 1)
    j      = a random permutation of the batch
    x~_i   = lambda * x_i + (1 - lambda) * x_j
    loss   = lambda * CE(f(x~), y_i) + (1 - lambda) * CE(f(x~), y_j)

The loss equals the cross-entropy against the mixed one-hot target lambda e_{y_i} + (1 - lambda) e_{y_j},
since CE is linear in the target. Pure functions; randomness only from the ``torch.Generator`` passed in.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from lowbit_core.data.augment import _gen_device

__all__ = ["sample_lambda", "mix", "mixup", "mixup_loss"]


def sample_lambda(alpha: float, generator: torch.Generator | None = None) -> float:
    """``lambda ~ Beta(alpha, alpha)``; exactly 1.0 when ``alpha <= 0`` (no mixup).

    torch's Beta sampler takes no generator, so a seed is drawn from ``generator`` (63 bits) and the
    Beta sample comes from ``numpy.random.default_rng(seed)``: reproducible from the torch generator.
    """
    if alpha <= 0:
        return 1.0
    seed = int(torch.randint(0, 2**63 - 1, (1,), generator=generator, device=_gen_device(generator)).item())
    return float(np.random.default_rng(seed).beta(alpha, alpha))


def mix(x: torch.Tensor, y: torch.Tensor, lam: float, perm: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(x~, y_a, y_b)`` with ``x~ = lam * x + (1 - lam) * x[perm]``, ``y_a = y``, ``y_b = y[perm]``.

    ``x`` must be floating point (mix normalised inputs, or uint8 cast to float: normalisation is
    affine and lambda + (1 - lambda) = 1, so mixing commutes with it).
    """
    if not x.is_floating_point():
        raise TypeError(f"mixup needs floating-point inputs, got {x.dtype}")
    perm = perm.to(x.device)
    x_mixed = torch.lerp(x[perm], x, lam)  # x[perm] + lam * (x - x[perm]) = lam x + (1 - lam) x[perm]
    return x_mixed, y, y[perm.to(y.device)]


def mixup(x: torch.Tensor, y: torch.Tensor, alpha: float, generator: torch.Generator | None = None
          ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, float]:
    """``(x~, y_a, y_b, lambda)`` for one batch: lambda from :func:`sample_lambda`, j from ``torch.randperm``.

    ``alpha <= 0`` returns ``(x, y, y, 1.0)`` with ``x`` and ``y`` themselves, unchanged, and draws
    nothing from ``generator``.
    """
    if alpha <= 0:
        return x, y, y, 1.0
    lam = sample_lambda(alpha, generator)
    perm = torch.randperm(x.shape[0], generator=generator, device=_gen_device(generator))
    return (*mix(x, y, lam, perm), lam)


def mixup_loss(logits: torch.Tensor, y_a: torch.Tensor, y_b: torch.Tensor, lam: float,
               reduction: str = "mean") -> torch.Tensor:
    """``lam * CE(logits, y_a) + (1 - lam) * CE(logits, y_b)``; with ``lam == 1`` exactly ``CE(logits, y_a)``."""
    loss_a = F.cross_entropy(logits, y_a, reduction=reduction)
    if lam == 1.0:
        return loss_a
    return lam * loss_a + (1.0 - lam) * F.cross_entropy(logits, y_b, reduction=reduction)
