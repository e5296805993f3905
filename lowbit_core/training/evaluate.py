"""Classification evaluation: mean cross-entropy and accuracy of a model on a set of images, in eval
mode (BN running statistics, quantizers' eval forward), without augmentation. Used by the ``train``
family every epoch and by ``gradstats`` at each measurement.
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from lowbit_core.data.augment import batches
from lowbit_core.data.cifar import normalize


@torch.no_grad()
def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int, stats: str) -> tuple[float, float]:
    """``(sum_i CE(model(x_i), y_i) / n, #{argmax model(x_i) = y_i} / n)`` over the ``n`` uint8 images
    ``x`` (normalized with the data set's ``stats``) and labels ``y``, in batches of ``batch_size``
    (the last one short); leaves the model in eval mode."""
    model.eval()
    loss = torch.zeros((), device=x.device)
    correct = torch.zeros((), device=x.device)
    for xb, yb in batches(x, y, batch_size, shuffle=False, drop_last=False):
        logits = model(normalize(xb, stats))
        loss += F.cross_entropy(logits, yb, reduction="sum")
        correct += (logits.argmax(1) == yb).sum()
    n = len(y)
    return float(loss) / n, float(correct) / n


__all__ = ["evaluate"]
