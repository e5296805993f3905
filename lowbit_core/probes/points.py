"""The point a probe search yields after each of its steps (every method yields these)."""
from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Point:
    """The state after ``step`` steps of a search: ``delta`` (= w - w0 of the probed layer) is the
    point whose batch loss is ``loss``; ``best_loss`` is the lowest loss so far, ``max_abs_delta``
    the largest |delta| so far, ``coords_moved`` how many weights differ from the start in effect
    (binary: sign flips). For population methods (GA, ES) the point is the generation's best."""

    step: int
    loss: float
    best_loss: float
    max_abs_delta: float
    coords_moved: int
    delta: torch.Tensor
