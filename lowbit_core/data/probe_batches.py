"""Data sources for the budget probes: fresh training batches and one fixed probe batch."""
from __future__ import annotations

import torch

from lowbit_core.data.mnist import load_mnist
from lowbit_core.data.teacher import TeacherTask


class ProbeData:
    """``sample(n, gen)`` draws a batch; ``in_dim`` and ``n_classes`` size the model."""

    def __init__(self, name: str, root: str = "data", n_features: int = 64, n_classes: int = 10,
                 teacher_hidden: int = 32, task_seed: int = 0):
        self.name = name
        if name == "teacher":
            self._task = TeacherTask(n_features, n_classes, teacher_hidden, seed=task_seed)
            self.in_dim, self.n_classes = n_features, n_classes
        elif name == "mnist":
            self._x, self._y = load_mnist(root, train=True)
            self.in_dim, self.n_classes = self._x.shape[1], 10
        else:
            raise KeyError(f"unknown data set {name!r}; valid: teacher, mnist")

    def sample(self, n: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        if self.name == "teacher":
            return self._task.sample(n, gen)
        idx = torch.randperm(len(self._x), generator=gen)[:n] if n <= len(self._x) else \
            torch.randint(len(self._x), (n,), generator=gen)
        return self._x[idx], self._y[idx]
