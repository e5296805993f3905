"""Sign flips of a binary layer inside the budget box: which are reachable and where they land.

A binary weight computes with sign(w) (sign(0) = +1). From the latent point u = w0 + delta, the
flip moves u just across zero: to exactly 0 when u < 0 (sign +1), and to the negative float32
neighbour of 0 nearest w0's grid, ``w0 + nextafter(-w0, -inf)``, when u >= 0. The flip is
reachable inside the box of radius R when that target change satisfies |delta'| <= R (in float32:
``box_bound(R)``); so only weights with |w0_ij| <= R can flip, and a flipped weight can always
flip back. DG's binary candidates, the reachable set of ADMM's projection, the genes of the
genetic algorithm and the coordinates the evolution strategy searches are all this one set.
"""
from __future__ import annotations

import torch

from lowbit_core.probes.budget import box_bound
from lowbit_core.quant.estimators import sign


def flip_target(w0: torch.Tensor, delta: torch.Tensor, radius: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(target delta' of flipping each coordinate from ``w0 + delta``, reachable mask) inside the
    box of ``radius``; the target is meaningful only where the mask is True."""
    b = box_bound(radius)
    u = w0 + delta
    # flip up: w0 + (-w0) = 0 exactly, sign +1; flip down: w0 + nextafter(-w0, -inf) = -ulp < 0
    target = torch.where(u >= 0, torch.nextafter(-w0, torch.full_like(w0, -float("inf"))), -w0)
    ok = (target.abs() <= b) & (sign(w0 + target) != sign(u))
    return target, ok


def reachable(w0: torch.Tensor, epsilon: float) -> torch.Tensor:
    """Mask of the weights whose sign can flip inside the box |w - w0| <= epsilon."""
    return flip_target(w0, torch.zeros_like(w0), epsilon)[1]


def flips_delta(w0: torch.Tensor, epsilon: float, flipped: torch.Tensor) -> torch.Tensor:
    """The delta (inside the box) whose signs are w0's with the coordinates of the bool mask
    ``flipped`` flipped; ``flipped`` may carry leading batch axes (..., H, D). Unreachable
    coordinates of ``flipped`` must be False."""
    target, ok = flip_target(w0, torch.zeros_like(w0), epsilon)
    if bool((flipped & ~ok).any()):
        raise ValueError("a flipped coordinate is not reachable inside the box")
    return torch.where(flipped, target, torch.zeros_like(target))
