"""The L-infinity budget box ``|w - w0|_inf <= epsilon`` around the start weights.

Probes optimize the change ``delta = w - w0`` directly and clamp it, so ``max|delta|`` as measured
never exceeds epsilon: the clamp bound is the largest float32 value <= epsilon (float32(0.1) is
0.1000000015 > 0.1, which a clamp to it would let through).
"""
from __future__ import annotations

import numpy as np
import torch


def box_bound(epsilon: float) -> float:
    """Largest float32 number that is <= ``epsilon``."""
    b = np.float32(epsilon)
    if float(b) > epsilon:
        b = np.nextafter(b, np.float32(0))
    return float(b)


def project(delta: torch.Tensor, epsilon: float) -> torch.Tensor:
    """Clip every coordinate of ``delta`` into [-epsilon, epsilon] (Euclidean projection onto the box)."""
    b = box_bound(epsilon)
    return delta.clamp(-b, b)


def random_start(shape, amplitude: float, epsilon: float, gen: torch.Generator, device=None) -> torch.Tensor:
    """``delta0 ~ U(-a, a)`` per coordinate with ``a = amplitude <= epsilon`` (zeros when a = 0)."""
    if amplitude > epsilon:
        raise ValueError(f"noise amplitude {amplitude} exceeds epsilon {epsilon}")
    if amplitude == 0:
        return torch.zeros(shape, device=device)
    u = torch.rand(shape, generator=gen).to(device)
    return project((2 * u - 1) * amplitude, epsilon)
