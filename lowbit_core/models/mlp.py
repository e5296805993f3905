"""Toy MLPs of the budget probes: full-precision and binary-weight.

``MLP(in_dim, hidden, n_classes, kind)`` is ``Linear -> ReLU -> ... -> Linear`` with float biases.

- ``kind="fp"``: ordinary float weights; gradients are exact.
- ``kind="binary"``: every layer (the first and last included) uses ``sign(W) / sqrt(fan_in)``, where
  ``W`` is the float *latent* weight and sign(0) = +1. The scale ``1/sqrt(fan_in)`` is a fixed
  constant (not learned, not a function of ``W``) that keeps pre-activations at unit scale for unit
  inputs; it does not enter the gradient except as that constant. Gradients reach ``W`` through the
  chosen sign estimator (:mod:`lowbit_core.quant.estimators`).

``forward(x, override={i: W})`` evaluates the net with layer ``i``'s latent weight replaced by ``W``,
which is what the probes use to move one layer inside its budget.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from lowbit_core.quant.estimators import sign, sign_ste


class MLP(nn.Module):
    def __init__(self, in_dim: int, hidden: tuple[int, ...], n_classes: int, kind: str = "fp",
                 estimator: str = "identity", estimator_param: float | None = None):
        super().__init__()
        if kind not in ("fp", "binary"):
            raise KeyError(f"unknown MLP kind {kind!r}; valid: fp, binary")
        self.kind = kind
        self.estimator, self.estimator_param = estimator, estimator_param
        dims = (in_dim, *hidden, n_classes)
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(dims[:-1], dims[1:]))

    def effective_weight(self, i: int, latent: torch.Tensor) -> torch.Tensor:
        """The weight layer ``i`` computes with, given its latent weight."""
        if self.kind == "fp":
            return latent
        scale = 1.0 / math.sqrt(latent.shape[-1])  # fan_in; also for a batch of weights (S, out, in)
        if torch.is_grad_enabled() and latent.requires_grad:
            return sign_ste(latent, self.estimator, self.estimator_param) * scale
        return sign(latent) * scale

    def forward(self, x: torch.Tensor, override: dict[int, torch.Tensor] | None = None) -> torch.Tensor:
        override = override or {}
        last = len(self.layers) - 1
        for i, layer in enumerate(self.layers):
            w = override.get(i, layer.weight)
            x = nn.functional.linear(x, self.effective_weight(i, w), layer.bias)
            if i < last:
                x = torch.relu(x)
        return x
