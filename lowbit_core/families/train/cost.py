"""The cost of a ``train``-family trial: the model its config trains last, counted on one CIFAR image.

The model is :func:`lowbit_core.families.train.model.build_model` of the trial's ``model.kind`` (a pretrain
path's FP phase is a means to it, not what the trial delivers), on the CPU, for the data set's
number of classes, on an input of :data:`INPUT_SHAPE`. Costs are cached per model-determining
config (architecture, width, block, nonlinearity, quantization, classes), so a sweep's dry run
builds each distinct model once.
"""
from __future__ import annotations

import dataclasses
import functools

from lowbit_core.cost.count import Cost, model_cost
from lowbit_core.families.train.config import TrainConfig, TrainDataConfig
from lowbit_core.families.train.model import build_model

INPUT_SHAPE = (1, 3, 32, 32)


@functools.lru_cache(maxsize=16)
def _npz_classes(root: str) -> int:
    from lowbit_core.data.cifar import load_cifar

    return load_cifar("npz", root)[4]


def n_classes(data: TrainDataConfig) -> int:
    """The classifier's width for ``data``: CIFAR-10/100's class count, the synthetic task's
    ``n_classes``, or what the ``.npz`` file holds (read as the loader reads it)."""
    from lowbit_core.data.cifar import N_CLASSES

    if data.name == "synthetic":
        return data.n_classes
    return N_CLASSES[data.name] if data.name in N_CLASSES else _npz_classes(data.root)


@functools.lru_cache(maxsize=256)
def _cost(model_cfg: TrainConfig, classes: int) -> Cost:
    return model_cost(build_model(model_cfg, model_cfg.model.kind, classes), INPUT_SHAPE)


def train_cost(cfg: TrainConfig) -> Cost:
    """The :class:`~lowbit_core.cost.count.Cost` of the trial's final model (module docstring)."""
    model_only = TrainConfig(model=dataclasses.replace(cfg.model, init="default"), quant=cfg.quant)
    return _cost(model_only, n_classes(cfg.data))


__all__ = ["INPUT_SHAPE", "n_classes", "train_cost"]
