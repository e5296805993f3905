"""Layer gradients through an estimator, their normalization, and how an estimator changed them."""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F

from lowbit_core.probes.evals import EvalCounter

LossFn = Callable[[torch.Tensor], torch.Tensor]


def batch_loss_fn(model, layer: int, w0: torch.Tensor, x: torch.Tensor, y: torch.Tensor,
                  counter: EvalCounter | None = None) -> LossFn:
    """``delta -> mean cross-entropy`` of ``model`` on (x, y) with layer ``layer`` at ``w0 + delta``;
    each call (and each backward pass through it) is counted on ``counter`` when one is given."""

    def loss(delta: torch.Tensor) -> torch.Tensor:
        value = F.cross_entropy(model(x, override={layer: w0 + delta}), y)
        return counter.count(value) if counter is not None else value

    return loss


def gradient_at(loss_fn: LossFn, delta: torch.Tensor) -> tuple[float, torch.Tensor]:
    """(loss, d loss / d delta) at ``delta``; the estimator is whatever the model is set to use."""
    d = delta.detach().clone().requires_grad_(True)
    value = loss_fn(d)
    (g,) = torch.autograd.grad(value, d)
    return float(value.detach()), g


def normalize(g: torch.Tensor, how: str) -> torch.Tensor:
    """Direction with a known step scale.

    ``max``: g / max|g| (lr is the largest per-coordinate step); ``l2``: g / ||g||_2;
    ``sign``: sign(g) (every coordinate moves by lr); ``none``: g. A zero gradient stays zero.
    """
    if how == "none":
        return g
    if how == "sign":
        return torch.sign(g)
    scale = g.abs().max() if how == "max" else g.norm()
    if how not in ("max", "l2"):
        raise KeyError(f"unknown normalization {how!r}; valid: max, l2, sign, none")
    return g / scale if scale > 0 else torch.zeros_like(g)


def compare_to_identity(g_est: torch.Tensor, g_id: torch.Tensor) -> tuple[float, float]:
    """(cosine(g_est, g_id), fraction of coordinates where g_est != g_id). Cosine of two zeros is 1."""
    if torch.equal(g_est, g_id):
        return 1.0, 0.0
    a, b = g_est.flatten().double(), g_id.flatten().double()
    na, nb = a.norm(), b.norm()
    if na == 0 and nb == 0:
        cos = 1.0
    elif na == 0 or nb == 0:
        cos = 0.0
    else:
        cos = float(a @ b / (na * nb))
    return cos, float((g_est != g_id).double().mean())
