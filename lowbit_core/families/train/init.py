"""Initialization schemes and periodic weight perturbation (the meeting record's two ideas against
local optima and vanishing gradients: "add perturbations" and "initialization (Xavier etc.)").
"""
from __future__ import annotations

import torch
from torch import nn

from lowbit_core.models.resnet import inner_convs

INITS = ("default", "xavier", "kaiming", "orthogonal")


def init_weights(model: nn.Module, scheme: str, generator: torch.Generator | None = None) -> None:
    """Re-initialize every conv and linear weight (latent weights included; biases and BN untouched).

    ``default``: leave PyTorch's init (kaiming-uniform with a = sqrt(5)); ``xavier``: Glorot normal
    (Glorot & Bengio 2010), std = sqrt(2 / (fan_in + fan_out)); ``kaiming``: He normal, fan_in, ReLU
    gain, std = sqrt(2 / fan_in) (He et al. 2015); ``orthogonal``: (semi-)orthogonal rows of the
    weight flattened to (out, in * k * k), gain 1 (Saxe et al. 2014). Random numbers come from
    ``generator`` (a CPU generator) when given, else from torch's global RNG.
    """
    if scheme not in INITS:
        raise KeyError(f"unknown init {scheme!r}; valid: {', '.join(INITS)}")
    if scheme == "default":
        return
    for m in model.modules():
        if not isinstance(m, (nn.Conv2d, nn.Linear)):
            continue
        w = torch.empty(m.weight.shape)  # drawn on the CPU, so a seed gives the same weights on any device
        if scheme == "xavier":
            nn.init.xavier_normal_(w, generator=generator)
        elif scheme == "kaiming":
            nn.init.kaiming_normal_(w, mode="fan_in", nonlinearity="relu", generator=generator)
        else:
            nn.init.orthogonal_(w, generator=generator)
        with torch.no_grad():
            m.weight.copy_(w)


@torch.no_grad()
def perturb(model: nn.Module, amplitude: float, generator: torch.Generator | None = None) -> int:
    """``W += amplitude * rms(W) * N(0, 1)`` on each inner conv's latent weight (per layer rms, so the
    amplitude is relative and scale-free across layers and inits). Noise is drawn on the CPU from
    ``generator`` and moved to the weight's device. Returns the number of layers perturbed."""
    n = 0
    if amplitude <= 0:
        return 0
    for conv in inner_convs(model):
        w = conv.weight
        noise = torch.randn(w.shape, generator=generator).to(w.device, w.dtype)
        w.add_(noise.mul_(amplitude * w.detach().pow(2).mean().sqrt()))
        n += 1
    return n


__all__ = ["INITS", "init_weights", "perturb"]
