"""Counting the work every probe method does on the fixed batch: forward and backward passes.

``loss_evals`` (a metric of every probe row) is the number of loss values computed on the fixed
batch since the method started: one per point whose loss was evaluated, however it was computed
(a full forward pass, a batched population, or the first layer's exact structured shortcuts of
:mod:`lowbit_core.probes.structure`, which replace one forward pass each). ``grad_evals`` counts the
backward passes through such a loss (a gradient step costs one forward and one backward pass).
The held-out batch is not counted: it measures the methods and is used by none.

The counts are taken where the losses are computed (:meth:`EvalCounter.count` is called by the
loss functions of :func:`lowbit_core.probes.gradient.batch_loss_fn` and by
:class:`lowbit_core.probes.structure.FirstLayerView`), so no method reports its own cost.
"""
from __future__ import annotations

import torch


class EvalCounter:
    """Running totals of loss evaluations (``forward``) and backward passes (``backward``)."""

    def __init__(self):
        self.forward = 0
        self.backward = 0

    def add(self, n: int) -> None:
        """``n`` more loss values computed (without a graph to differentiate)."""
        self.forward += int(n)

    def count(self, losses: torch.Tensor) -> torch.Tensor:
        """Count the ``losses.numel()`` values of ``losses`` as evaluations, and, when ``losses``
        requires grad, each backward pass through them (one per value); returns ``losses``."""
        n = losses.numel()
        self.forward += n
        if losses.requires_grad:
            losses.register_hook(lambda grad: self._backward(n))
        return losses

    def _backward(self, n: int) -> None:
        self.backward += n

    def snapshot(self) -> tuple[int, int]:
        return self.forward, self.backward
