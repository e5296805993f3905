"""Single-step STE: one normalized gradient step, its length scanned over a grid of learning rates.

For each lr on the grid the probe evaluates ``L(w0 + P(-lr * d))`` where ``d`` is the normalized
estimator gradient at ``w0`` (:func:`lowbit_core.probes.gradient.normalize`) and ``P`` clips into the
budget box. With ``max`` normalization and lr <= epsilon, P never binds: lr is exactly the largest
coordinate change. The best lr is the first grid point attaining the smallest loss.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from lowbit_core.probes.budget import project
from lowbit_core.probes.gradient import LossFn


def lr_grid(lr_min: float, lr_max: float, lr_step: float) -> np.ndarray:
    """``lr_min, lr_min + lr_step, ...`` up to ``lr_max`` inclusive (1e-5..1e-1 by 1e-5 is 10^4 points)."""
    n = int(np.floor((lr_max - lr_min) / lr_step + 1e-9)) + 1
    return lr_min + lr_step * np.arange(n, dtype=np.float64)


@dataclass(frozen=True)
class ScanResult:
    lrs: np.ndarray
    losses: np.ndarray
    best_lr: float
    best_loss: float
    best_delta: torch.Tensor


def scan(loss_fn: LossFn, direction: torch.Tensor, lrs: np.ndarray, epsilon: float) -> ScanResult:
    """Loss at ``P(-lr * direction)`` for every lr in ``lrs`` (one full forward pass each: the reference
    that :func:`lowbit_core.probes.structure.scan_losses` must equal)."""
    losses = np.empty(len(lrs), dtype=np.float64)
    with torch.no_grad():
        for i, lr in enumerate(lrs):
            losses[i] = float(loss_fn(project(-float(lr) * direction, epsilon)))
    return result(lrs, losses, direction, epsilon)


def result(lrs: np.ndarray, losses: np.ndarray, direction: torch.Tensor, epsilon: float) -> ScanResult:
    """The scan's best point: the first lr attaining the smallest loss."""
    k = int(np.argmin(losses))
    best_delta = project(-float(lrs[k]) * direction, epsilon)
    return ScanResult(lrs, losses, float(lrs[k]), float(losses[k]), best_delta)
