"""The one set of defaults of a sign side's quantization settings, shared by every family.

A binary layer's weights and its input activations are each a *sign side*: ``sign(x - tau)`` in the
forward, and in the backward the estimator ``estimator`` (a name of
:data:`~lowbit_core.quant.estimator_registry.REGISTRY`) with its parameter ``param`` (0: the
estimator's registry default), both ``param`` and the threshold ``tau`` in ``unit`` (``abs``, or a
per-layer statistic of :data:`~lowbit_core.quant.estimator_registry.UNITS`); weights may take the
XNOR-Net scale ``mean|W|`` (Rastegari et al., ECCV 2016). The config sections of the families
(``quant.weight_*`` / ``quant.act_*`` of ``train``, ``gradstats`` and ``sr``; the ``gradstats``
surrogate) take their defaults from :data:`WEIGHT` and :data:`ACT` here, so a default is changed
in one place.

The defaults: weights go through the normal STE (``identity``, the registry's reference; Bengio et
al. 2013) with the mean-|W| scale; activations through ApproxSign (``approx_sign``; Liu et al.,
Bi-Real Net, ECCV 2018), the piecewise-polynomial derivative that Bi-Real Net uses for activations.
Imports no torch.
"""
from __future__ import annotations

from dataclasses import dataclass

from lowbit_core.quant.estimator_registry import ABSOLUTE, REFERENCE


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

__all__ = ["SignSide", "WEIGHT", "ACT"]
