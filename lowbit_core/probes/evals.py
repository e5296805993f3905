"""Counting the work every probe method does on the fixed batch: forward and backward passes, and
their sum in forward-pass equivalents.

``loss_evals`` (a metric of every probe row) is the number of loss values computed on the fixed
batch since the method started: one per point whose loss was evaluated, however it was computed
(a full forward pass, a batched population, or the first layer's exact structured shortcuts of
:mod:`lowbit_core.probes.structure`, which replace one forward pass each). ``grad_evals`` counts the
backward passes through such a loss (a gradient step costs one forward and one backward pass).
The held-out batch is not counted: it measures the methods and is used by none.

Cost in forward-pass equivalents: ``fwd_equiv = loss_evals + BACKWARD_COST * grad_evals`` with
``BACKWARD_COST = 2``, the usual convention that a backward pass costs about two forward passes (it
computes the gradients with respect to both the activations and the weights, each about the forward
pass's multiply-adds): Kaplan et al. 2020, "Scaling Laws for Neural Language Models", section 2.1,
training compute C ~ 6N per token = 2N forward + 4N backward. Methods are compared, and capped
(``budget.fwd_equiv_per_weight``, :mod:`lowbit_core.probes.run`), on ``fwd_equiv``: a gradient step
costs 3, a loss evaluation without a gradient 1.

The counts are taken where the losses are computed (:meth:`EvalCounter.count` is called by the
loss functions of :func:`lowbit_core.probes.gradient.batch_loss_fn` and by
:class:`lowbit_core.probes.structure.FirstLayerView`), so no method reports its own cost.
"""
from __future__ import annotations

import torch

BACKWARD_COST = 2
"""Forward-pass equivalents of one backward pass (Kaplan et al. 2020: 4N backward vs 2N forward)."""


def fwd_equiv(loss_evals: int, grad_evals: int) -> int:
    """``loss_evals + BACKWARD_COST * grad_evals``: the cost in forward-pass equivalents."""
    return int(loss_evals) + BACKWARD_COST * int(grad_evals)


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

    def fwd_equiv(self) -> int:
        """The totals in forward-pass equivalents (:func:`fwd_equiv`)."""
        return fwd_equiv(self.forward, self.backward)
