"""Synthetic teacher-student classification: the embedded default task (no download).

Inputs ``x ~ N(0, I_d)``; a fixed random teacher MLP ``d -> h -> C`` with tanh hidden units,
``W1 ~ N(0, 1/d)``, ``W2 ~ N(0, 1/h)``, labels ``y = argmax(teacher(x))``. The teacher is drawn from
``seed`` alone, so every trial with the same data config sees the same task; which inputs a trial
sees is set by the generator it passes to :meth:`TeacherTask.sample`.
"""
from __future__ import annotations

import torch


class TeacherTask:
    def __init__(self, n_features: int = 64, n_classes: int = 10, hidden: int = 32, seed: int = 0):
        gen = torch.Generator().manual_seed(10_007 + seed)
        self.n_features, self.n_classes = n_features, n_classes
        self.w1 = torch.randn(hidden, n_features, generator=gen) / n_features**0.5
        self.w2 = torch.randn(n_classes, hidden, generator=gen) / hidden**0.5

    def labels(self, x: torch.Tensor) -> torch.Tensor:
        return (torch.tanh(x @ self.w1.T) @ self.w2.T).argmax(dim=1)

    def sample(self, n: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """``n`` fresh examples ``(x float32 [n, d], y int64 [n])``."""
        x = torch.randn(n, self.n_features, generator=generator)
        return x, self.labels(x)
