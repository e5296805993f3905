"""The model registry: every network a training sweep's ``model.arch`` may name, built-in or plug-in.

A model is a factory ``factory(num_classes, spec, width, block, nonlin) -> torch.nn.Module``: ``spec``
is the trial's :class:`lowbit_core.quant.layers.QuantSpec` (how weights and activations are quantized
and which estimator their gradients go through), ``width`` the base width (0 never reaches a factory:
it is replaced by the entry's ``default_width``), ``block`` and ``nonlin`` the ResNet options (a
factory may ignore them). Build the quantized layers with :class:`lowbit_core.quant.layers.QuantConv2d`
/ ``QuantLinear`` from ``spec`` and the training loop (FP pretraining then binarize, perturbation,
checkpoints) and the cost counter (:mod:`lowbit_core.cost`, which walks any module with a real
input) work with it. Register one, timm-style, in the model's own file::

    @register_model("vgg_small", default_width=32)
    def vgg_small(num_classes, spec, width, block, nonlin):
        ...

This module does not import torch: the built-ins are entered by import path and imported on first
use, so configs can check ``model.arch`` without building anything.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Annotated, Any, Callable

from lowbit_core.registry import OneOf, Registry


@dataclass(frozen=True)
class ModelEntry:
    """One model: its ``name``, its ``factory`` (a callable, or an import path ``"module:attr"``
    resolved on first use), ``default_width`` (what ``model.width=0`` means) and ``paper``."""

    name: str
    factory: Callable[..., Any] | str
    default_width: int
    paper: str = ""

    def build(self, num_classes: int, spec, width: int = 0, block: str = "basic", nonlin: str = "auto"):
        fn = self.factory
        if isinstance(fn, str):
            module, _, attr = fn.partition(":")
            fn = getattr(importlib.import_module(module), attr)
        return fn(num_classes, spec, width or self.default_width, block, nonlin)


MODELS: Registry[ModelEntry] = Registry("model")
MODELS.add("resnet20", ModelEntry("resnet20", "lowbit_core.models.resnet:resnet20", 16,
                                  "He et al. 2016, CVPR (CIFAR ResNet-20, option-A shortcuts)"), __name__)
MODELS.add("resnet18", ModelEntry("resnet18", "lowbit_core.models.resnet:resnet18", 64,
                                  "He et al. 2016, CVPR (ResNet-18, CIFAR stem)"), __name__)

ModelName = Annotated[str, OneOf(MODELS)]
"""Config type of ``model.arch``: any registered model, checked when the config is built."""


def register_model(name: str | None = None, *, default_width: int, paper: str = ""):
    """Decorator registering a model factory under ``name`` (default: the function's name)."""
    def deco(factory):
        n = name or factory.__name__
        MODELS.add(n, ModelEntry(n, factory, default_width, paper), getattr(factory, "__module__", ""))
        return factory
    return deco


def get_model(name: str) -> ModelEntry:
    """The entry ``name``; KeyError listing the registered models otherwise."""
    return MODELS.get(name)


__all__ = ["ModelEntry", "MODELS", "ModelName", "register_model", "get_model"]
