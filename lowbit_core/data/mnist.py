"""MNIST from torchvision's on-disk format (never downloaded here).

``torchvision.datasets.MNIST(root, download=False)`` reads ``<root>/MNIST/raw/``: the four IDX files
``train-images-idx3-ubyte`` etc., gunzipped (torchvision does not read the ``.gz`` files itself). Pixels are scaled to [0, 1] and standardized
with the usual MNIST mean 0.1307 and std 0.3081, then flattened to 784 features.
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

MEAN, STD = 0.1307, 0.3081
TRAIN_IMAGES = 60_000
RAW_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


class DataMissingError(FileNotFoundError):
    """A data set is not on disk; the message says where to put it."""


def mnist_missing(root: str | Path) -> str | None:
    """None when the MNIST IDX files are under ``root``, else a one-line message saying where to put them."""
    raw = Path(root) / "MNIST" / "raw"
    missing = [f for f in RAW_FILES if not (raw / f).exists()]
    if not missing:
        return None
    if all((raw / (f + ".gz")).exists() for f in missing):
        return f"MNIST in {raw}/ is still gzipped; run `gunzip -k {raw}/*.gz` (torchvision reads the unpacked IDX files)"
    return (
        f"MNIST not found: {raw}/ lacks {', '.join(missing)}; put the four unpacked IDX files there, "
        f"or set data.root to the folder that holds MNIST/raw/"
    )


def mnist_too_small(batch_size: int) -> str | None:
    """None when MNIST's training images hold a probe batch and a disjoint held-out batch of
    ``batch_size`` each, else a one-line message naming the key and the valid range."""
    if 2 * batch_size <= TRAIN_IMAGES:
        return None
    return (f"data.batch_size={batch_size} is too large for MNIST: the probe batch and its disjoint held-out "
            f"batch need 2 * batch_size <= {TRAIN_IMAGES}; valid: 1..{TRAIN_IMAGES // 2}")


def load_mnist(root: str | Path, train: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """``(x float32 [N, 784] standardized, y int64 [N])`` from ``<root>/MNIST/raw``."""
    from torchvision.datasets import MNIST

    message = mnist_missing(root)
    if message:
        raise DataMissingError(message)
    ds = MNIST(str(root), train=train, download=False)
    x = (ds.data.reshape(len(ds.data), -1).float() / 255.0 - MEAN) / STD
    return x, ds.targets.long()
