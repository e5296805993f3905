"""Training data: CIFAR-10/100, an ``.npz`` subset, or generated CIFAR-shaped images; cached per process.

Everything is uint8 ``(N, 3, 32, 32)`` images and int64 labels, moved once to the model's device,
where :mod:`lowbit_core.data.augment` crops, flips and normalises whole batches.

``synthetic`` (no download; for smoke runs and tests): each class ``c`` has a fixed low-frequency
colour template ``T_c`` (a 3x4x4 standard-normal tensor upsampled bilinearly to 32x32); an image of
class ``c`` is ``clip(128 + 48 * s * T_c + 40 * noise, 0, 255)`` with a per-image contrast
``s ~ U(0.6, 1.4)`` and i.i.d. pixel noise ``N(0, 1)``. The templates are smooth, so random crops and
flips keep the class readable: a small CNN learns it in a few hundred steps. The task is fixed
(generated from seed 0), whatever the trial's seed; train and test images are independent draws.

``n_train`` / ``n_test`` > 0 keep a fixed subset of that many images: the first n of a seed-0
permutation, in their original order (:func:`fixed_subset`). Not the first n in file order: files
sorted by class (the shared CIFAR-10 subset is) would otherwise lose whole classes.

Validation split (``val_fraction`` f > 0): of the N training images (after ``n_train``), a fixed
random subset of ``round(f N)`` (a permutation from seed 0, the same for every trial and seed, so
that all trials of a sweep select on the same images, and class-balanced in expectation even when
the files are sorted by class) becomes ``x_val`` / ``y_val``; the rest, in their original order,
stay the training set. The test set is never used for selection.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.nn import functional as F

from lowbit_core.data.cifar import load_cifar
from lowbit_core.families.train.config import TrainDataConfig

SYNTHETIC_DEFAULT = (2048, 512)


@dataclass(frozen=True)
class TrainData:
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    x_val: torch.Tensor
    y_val: torch.Tensor
    n_classes: int
    stats: str  # the name whose mean/std normalise the images (cifar.normalize)


def _permutation_mask(n_all: int, n_pick: int) -> torch.Tensor:
    """Boolean mask of the first ``n_pick`` positions of a seed-0 permutation of ``n_all``."""
    mask = torch.zeros(n_all, dtype=torch.bool)
    mask[torch.randperm(n_all, generator=torch.Generator().manual_seed(0))[:n_pick]] = True
    return mask


def fixed_subset(x: torch.Tensor, y: torch.Tensor, n: int):
    """``n`` images chosen by a seed-0 permutation, in their original order (all of them when n is 0
    or at least their number)."""
    if n <= 0 or n >= len(y):
        return x, y
    keep = _permutation_mask(len(y), n)
    return x[keep], y[keep]


def split_validation(x: torch.Tensor, y: torch.Tensor, fraction: float):
    """``(x_train, y_train, x_val, y_val)``: ``round(fraction * N)`` images chosen by a seed-0
    permutation go to validation; the training images keep their order."""
    n_val = round(fraction * len(y))
    if n_val >= len(y):
        raise ValueError(f"data.val_fraction={fraction} leaves no training images of {len(y)}")
    is_val = _permutation_mask(len(y), n_val)
    return x[~is_val], y[~is_val], x[is_val], y[is_val]


def synthetic_images(n: int, n_classes: int, generator: torch.Generator, templates: torch.Tensor):
    y = torch.randint(0, n_classes, (n,), generator=generator)
    s = torch.empty(n, 1, 1, 1).uniform_(0.6, 1.4, generator=generator)
    noise = torch.randn(n, 3, 32, 32, generator=generator)
    x = 128 + 48 * s * templates[y] + 40 * noise
    return x.round_().clamp_(0, 255).to(torch.uint8), y


def make_synthetic(n_train: int, n_test: int, n_classes: int) -> tuple[torch.Tensor, ...]:
    """``(x_train, y_train, x_test, y_test)`` of the synthetic task (module docstring)."""
    g = torch.Generator().manual_seed(0)
    coarse = torch.randn(n_classes, 3, 4, 4, generator=g)
    templates = F.interpolate(coarse, size=(32, 32), mode="bilinear", align_corners=False)
    templates = templates / templates.std(dim=(1, 2, 3), keepdim=True)
    x_tr, y_tr = synthetic_images(n_train, n_classes, g, templates)
    x_te, y_te = synthetic_images(n_test, n_classes, g, templates)
    return x_tr, y_tr, x_te, y_te


def _load(cfg: TrainDataConfig) -> TrainData:
    if cfg.name == "synthetic":
        x_tr, y_tr, x_te, y_te = make_synthetic(cfg.n_train or SYNTHETIC_DEFAULT[0], cfg.n_test or SYNTHETIC_DEFAULT[1],
                                                cfg.n_classes)
        n_classes, stats = cfg.n_classes, "cifar10"
    else:
        x_tr, y_tr, x_te, y_te, n_classes = load_cifar(cfg.name, cfg.root)
        stats = cfg.name
        x_tr, y_tr = fixed_subset(x_tr, y_tr, cfg.n_train)
        x_te, y_te = fixed_subset(x_te, y_te, cfg.n_test)
    x_tr, y_tr, x_va, y_va = split_validation(x_tr, y_tr, cfg.val_fraction)
    return TrainData(x_tr, y_tr, x_te, y_te, x_va, y_va, n_classes, stats)


_CACHE: dict = {}
_CACHE_SIZE = 2


def load_train_data(cfg: TrainDataConfig, device: torch.device | str = "cpu") -> TrainData:
    """The data set of ``cfg`` on ``device`` (cached per process: a reused Ray actor loads it once)."""
    key = (cfg.name, cfg.root, cfg.n_train, cfg.n_test, cfg.n_classes, cfg.val_fraction, str(device))
    if key not in _CACHE:
        if len(_CACHE) >= _CACHE_SIZE:
            _CACHE.pop(next(iter(_CACHE)))
        d = _load(cfg)
        _CACHE[key] = TrainData(d.x_train.to(device), d.y_train.to(device), d.x_test.to(device), d.y_test.to(device),
                                d.x_val.to(device), d.y_val.to(device), d.n_classes, d.stats)
    return _CACHE[key]


__all__ = ["TrainData", "make_synthetic", "fixed_subset", "split_validation", "load_train_data", "SYNTHETIC_DEFAULT"]
