"""The one set of defaults of a sign side's quantization settings, shared by every family.

A binary layer's weights and its input activations are each a *sign side*: ``sign(x - tau)`` in the
forward, and in the backward the estimator ``estimator`` (a name of
:data:`~lowbit_core.quant.estimator_registry.REGISTRY`) with its parameter ``param`` (0: the
estimator's registry default), both ``param`` and the threshold ``tau`` in ``unit`` (``abs``, or a
per-layer statistic of :data:`~lowbit_core.quant.estimator_registry.UNITS`); weights may take the
XNOR-Net scale ``mean|W|`` (Rastegari et al., ECCV 2016). The ``quant`` sections of ``train``,
``gradstats`` and ``sr`` extend one type, :class:`SignQuant` (``quant.weight_*`` / ``quant.act_*``),
whose defaults, like the ``gradstats`` surrogate's and the ``train`` units' and thresholds', come
from :data:`WEIGHT` and :data:`ACT` here, so a default is changed in one place.

The defaults: weights go through the normal STE (``identity``, the registry's reference; Bengio et
al. 2013) with the mean-|W| scale; activations through ApproxSign (``approx_sign``; Liu et al.,
Bi-Real Net, ECCV 2018), the piecewise-polynomial derivative that Bi-Real Net uses for activations.
Imports no torch.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from lowbit_core.config import ConfigError
from lowbit_core.quant.estimator_registry import ABSOLUTE, REFERENCE, EstimatorName

WeightScale = Literal["none", "mean_abs"]


@dataclass(frozen=True)
class SignSide:
    """Defaults of one sign side (module docstring): ``estimator``, ``param`` (0: its default),
    ``unit`` of ``param`` and ``threshold``, ``threshold`` tau, ``scale`` (weights: ``none`` |
    ``mean_abs``)."""

    estimator: str
    param: float = 0.0
    unit: str = ABSOLUTE
    threshold: float = 0.0
    scale: str = "none"


WEIGHT = SignSide(estimator=REFERENCE, scale="mean_abs")
"""Weights: nSTE with the XNOR-Net mean-|W| scale."""
ACT = SignSide(estimator="approx_sign")
"""Input activations: ApproxSign (also the ``gradstats`` family's default smooth surrogate)."""


@dataclass(frozen=True)
class SignQuant:
    """The sign sides' settings every family's ``quant`` section shares (``train`` and ``gradstats``:
    ``QuantConfig``; ``sr``: ``SRQuantConfig``, which extend it), one type with the defaults of
    :data:`WEIGHT` and :data:`ACT`: ``weight_estimator`` / ``act_estimator`` (registry names, checked
    when a config is built, plug-ins included), their parameters ``weight_param`` / ``act_param``
    (>= 0; 0 takes the estimator's registry default) and the weights' ``weight_scale``. A family adds
    what only it has (``train``: the units and thresholds; both: the k-bit quantizer)."""

    weight_estimator: EstimatorName = WEIGHT.estimator
    weight_param: float = WEIGHT.param
    weight_scale: WeightScale = WEIGHT.scale
    act_estimator: EstimatorName = ACT.estimator
    act_param: float = ACT.param

    def __post_init__(self):
        if self.weight_param < 0 or self.act_param < 0:
            raise ConfigError(f"quant.weight_param and quant.act_param must be >= 0 (0: the estimator's default), "
                              f"got {self.weight_param}, {self.act_param}")


__all__ = ["SignSide", "WEIGHT", "ACT", "SignQuant", "WeightScale"]
