"""Several multi-step STE searches as one batched computation (random starts, lr values).

``search_batch`` runs S searches that differ only in their start ``delta0[s]`` and step size
``lr[s]`` on the same model, batch and budget, as one tensor program: the first layer's latent
weights are a (S, H, D) batch, the first-layer pre-activations (S, B, H), the rest of the network
is shared. The optimizers are written out elementwise so each start keeps its own state, with the
same update rules as torch's (the tests compare against :func:`lowbit_core.probes.multistep.search`
run once per start):

- SGD: ``delta -= lr * g``;  SGD with momentum (dampening 0): ``buf = mu * buf + g``, ``delta -= lr * buf``;
- Adam (Kingma & Ba 2015): ``m = b1 m + (1-b1) g``, ``v = b2 v + (1-b2) g^2``,
  ``delta -= lr / (1-b1^t) * m / (sqrt(v)/sqrt(1-b2^t) + 1e-8)``;

with g the per-start normalized gradient (``max``: g / max|g| over that start's coordinates), and
``delta`` clipped back into the box after every step.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import torch

from lowbit_core.models.mlp import MLP
from lowbit_core.probes.budget import project
from lowbit_core.probes.structure import FirstLayerView

ADAM_EPS = 1e-8


@dataclass(frozen=True)
class BatchPoint:
    """Per-start values after ``step`` updates (tensors of shape (S,)); ``delta`` (S, H, D): each
    start's current point."""

    step: int
    loss: torch.Tensor
    best_loss: torch.Tensor
    max_abs_delta: torch.Tensor
    coords_moved: torch.Tensor
    delta: torch.Tensor


def _normalize(g: torch.Tensor, how: str) -> torch.Tensor:
    if how == "none":
        return g
    scale = g.abs().amax(dim=(1, 2), keepdim=True)
    return torch.where(scale > 0, g / torch.where(scale > 0, scale, 1), torch.zeros_like(g))


def search_batch(model: MLP, view: FirstLayerView, w0: torch.Tensor, delta0: torch.Tensor, epsilon: float,
                 optimizer: str, lr: torch.Tensor, steps: int, momentum: float = 0.9, betas=(0.9, 0.999),
                 grad_normalize: str = "max") -> Iterator[BatchPoint]:
    """Yield per-start points after 0..``steps`` updates; ``delta0`` (S, H, D), ``lr`` (S,)."""
    if optimizer not in ("sgd", "sgdm", "adam"):
        raise KeyError(f"unknown optimizer {optimizer!r}; valid: sgd, sgdm, adam")
    if grad_normalize not in ("max", "none"):
        raise KeyError(f"unknown normalization {grad_normalize!r}; valid: max, none")
    lr = lr.to(w0.dtype).view(-1, 1, 1)
    delta = project(delta0.detach().clone(), epsilon)
    eff0 = model.effective_weight(0, w0)
    buf = m = v = None
    b1, b2 = betas
    best = torch.full((delta.shape[0],), float("inf"), device=w0.device)
    reach = torch.zeros(delta.shape[0], device=w0.device)
    for k in range(steps + 1):
        d = delta.clone().requires_grad_(True)
        eff = model.effective_weight(0, w0 + d)
        z = torch.matmul(view.x, eff.transpose(1, 2)) + view.biases[0]  # (S, B, H)
        losses = view.loss_from(z, 0)
        loss = losses.detach()
        best = torch.minimum(best, loss)
        reach = torch.maximum(reach, delta.abs().amax(dim=(1, 2)))
        moved = (eff.detach() != eff0).sum(dim=(1, 2))
        yield BatchPoint(k, loss, best.clone(), reach.clone(), moved, delta.detach().clone())
        if k == steps:
            return
        (g,) = torch.autograd.grad(losses.sum(), d)
        g = _normalize(g, grad_normalize)
        with torch.no_grad():
            if optimizer == "sgd":
                delta -= lr * g
            elif optimizer == "sgdm":
                buf = g.clone() if buf is None else momentum * buf + g
                delta -= lr * buf
            else:
                m = (1 - b1) * g if m is None else b1 * m + (1 - b1) * g
                v = (1 - b2) * g * g if v is None else b2 * v + (1 - b2) * g * g
                t = k + 1
                denom = v.sqrt() / (1 - b2**t) ** 0.5 + ADAM_EPS
                delta -= (lr / (1 - b1**t)) * m / denom
            delta = project(delta, epsilon)
