"""Estimator labels, all derived from the one registry (:mod:`lowbit_core.quant.estimator_registry`,
torch-free): the name with its parameter where it acts ('window t=0.5', 'value_clip c=0.5',
'identity'). No estimator name is written down in ``analysis/``.
"""
from __future__ import annotations

from lowbit_core.quant import estimator_registry

# The registry's estimator for "no estimator given" (the identity, nSTE): the reference of the
# vSTE-vs-nSTE comparison.
REFERENCE = estimator_registry.label(None)
PARAM_NAMES = estimator_registry.PARAM_NAMES
"""The config names of the registry's estimator parameters ('clip', 'window')."""


def param_name(name) -> str | None:
    """The config name of estimator ``name``'s parameter ('clip', 'window'), None where it has none."""
    entry = estimator_registry.REGISTRY.get(str(name), None)
    return entry.param if entry else None


def label(name, value=None) -> str:
    """The registry's label of ``name`` with parameter ``value`` (null or 0: the default)."""
    return estimator_registry.label(name, value)


def label_from_params(name, params: dict) -> str:
    """The label of ``name`` with its own parameter taken from ``params`` (parameter name -> value;
    the other estimators' parameters are ignored)."""
    return label(name, params.get(param_name(name)))

