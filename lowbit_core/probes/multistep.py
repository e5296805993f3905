"""Multi-step STE inside the budget: SGD, SGD with momentum, or Adam on ``delta = w - w0``.

Each iteration: gradient of the loss at ``w0 + delta`` through the estimator, optionally normalized
(``max``: g / max|g|, so lr is the largest raw step per iteration for SGD), one optimizer step on
``delta``, then ``delta`` clipped back into the box (the meeting record's "clip delta_w to 0.1").
Optional random start ``delta0 ~ U(-a, a)``, a <= epsilon. With ``steps = 0`` the result is the start.

Optimizers are torch's: SGD (momentum 0), SGD with ``momentum`` (heavy ball, dampening 0), Adam
(Kingma & Ba 2015) with ``betas``. Optimizer state persists across the clipping (the box is a
projection after the step, as in projected gradient descent).
"""
from __future__ import annotations

from typing import Callable, Iterator

import torch

from lowbit_core.probes.budget import project
from lowbit_core.probes.gradient import LossFn, normalize
from lowbit_core.probes.points import Point


def make_optimizer(name: str, params, lr: float, momentum: float = 0.9, betas=(0.9, 0.999)):
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr)
    if name == "sgdm":
        return torch.optim.SGD(params, lr=lr, momentum=momentum)
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, betas=betas)
    raise KeyError(f"unknown optimizer {name!r}; valid: sgd, sgdm, adam")


def search(loss_fn: LossFn, delta0: torch.Tensor, epsilon: float, optimizer: str, lr: float, steps: int,
           momentum: float = 0.9, betas=(0.9, 0.999), grad_normalize: str = "max",
           changed: Callable[[torch.Tensor], int] | None = None) -> Iterator[Point]:
    """Yield the :class:`~lowbit_core.probes.points.Point` after 0, 1, ..., ``steps`` updates
    (``coords_moved`` = ``changed(delta)``, default the coordinates with delta != 0)."""
    delta = project(delta0.detach().clone(), epsilon).requires_grad_(True)
    opt = make_optimizer(optimizer, [delta], lr, momentum, betas)
    best, reach = float("inf"), 0.0
    for k in range(steps + 1):
        value = loss_fn(delta)
        loss = float(value.detach())
        best = min(best, loss)
        reach = max(reach, float(delta.detach().abs().max()))
        current = delta.detach().clone()
        moved = changed(current) if changed else int((current != 0).sum())
        yield Point(k, loss, best, reach, moved, current)
        if k == steps:
            return
        opt.zero_grad(set_to_none=True)
        (g,) = torch.autograd.grad(value, delta)
        delta.grad = normalize(g, grad_normalize)
        opt.step()
        with torch.no_grad():
            delta.copy_(project(delta, epsilon))
