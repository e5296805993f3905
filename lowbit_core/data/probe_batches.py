"""Data sources for the budget probes: fresh training batches, one fixed probe batch, and a
held-out batch of the same size that no method sees."""
from __future__ import annotations

import torch

from lowbit_core.data.mnist import load_mnist
from lowbit_core.data.teacher import TeacherTask


class ProbeData:
    """``sample(n, gen)`` draws a batch; ``fixed_batches(n, gen)`` the fixed probe batch and its
    held-out twin; ``in_dim`` and ``n_classes`` size the model."""

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

    def fixed_batches(self, n: int, gen: torch.Generator) -> tuple[tuple[torch.Tensor, torch.Tensor],
                                                                     tuple[torch.Tensor, torch.Tensor]]:
        """(fixed batch, held-out batch), ``n`` examples each, from the same data and independent of
        each other. The fixed batch is what ``sample(n, gen)`` draws. Teacher: the held-out batch is
        the generator's next ``n`` fresh examples. MNIST: both come from one random permutation of the
        training images, the fixed batch its first n, the held-out batch the next n (disjoint; needs
        2n <= the number of images)."""
        if self.name == "teacher":
            return self._task.sample(n, gen), self._task.sample(n, gen)
        if 2 * n > len(self._x):
            raise ValueError(f"data.batch_size={n}: a disjoint held-out batch of the same size needs "
                             f"2 * batch_size <= {len(self._x)} {self.name} images")
        perm = torch.randperm(len(self._x), generator=gen)
        fixed, held = perm[:n], perm[n:2 * n]
        return (self._x[fixed], self._y[fixed]), (self._x[held], self._y[held])
