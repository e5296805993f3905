"""The compute device, chosen once per process: CUDA when present, else CPU."""
from __future__ import annotations

import functools

import torch


@functools.cache
def pick_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")
