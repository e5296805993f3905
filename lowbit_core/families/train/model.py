"""The ``train`` family's model: the quantization settings of a precision (:func:`quant_spec`), the
network of a phase (:func:`build_model`), what a model state must fit (:func:`architecture`) and the
driver-side check of a ``model.init_from`` state (:func:`init_from_problem`). Public: ``gradstats``
and the cost of a trial (:mod:`.cost`) build the same networks.
"""
from __future__ import annotations

import functools
import os

import torch

from lowbit_core.families.train.config import TrainConfig
from lowbit_core.models.registry import get_model
from lowbit_core.models.resnet import CifarResNet, build_resnet, resolve_nonlin
from lowbit_core.quant.estimator_registry import get as get_estimator_entry
from lowbit_core.quant.estimator_registry import relative
from lowbit_core.quant.layers import QuantSpec
from lowbit_core.training.checkpoint import load_model_weights, read_model_state


def sign_param(estimator: str, value: float, unit: str):
    """A sign side's estimator parameter for :class:`QuantSpec`: ``None`` where the estimator takes
    none (or sets it by schedule); else ``value`` (0: the registry's default) in ``unit``."""
    entry = get_estimator_entry(estimator)
    if entry.param is None:
        return None
    return relative(value or entry.default, unit) if entry.param_axis else (value or None)


def quant_spec(cfg: TrainConfig, kind: str) -> QuantSpec | None:
    """The inner convs' :class:`QuantSpec` for precision ``kind`` (None for FP)."""
    q = cfg.quant
    if kind == "fp":
        return None
    if kind == "binary":
        return QuantSpec(weight="sign", weight_estimator=q.weight_estimator,
                         weight_param=sign_param(q.weight_estimator, q.weight_param, q.weight_unit),
                         weight_scale=q.weight_scale, weight_threshold=relative(q.threshold, q.weight_unit),
                         act="sign" if q.act == "quant" else "none", act_estimator=q.act_estimator,
                         act_param=sign_param(q.act_estimator, q.act_param, q.act_unit),
                         act_threshold=relative(q.act_threshold, q.act_unit))
    return QuantSpec(weight=q.kbit, act=q.kbit if q.act == "quant" else "none", bits=q.bits,
                     dsq_alpha=q.dsq_alpha, dsq_learn_alpha=q.dsq_schedule == "learned",
                     dsq_train_forward=q.dsq_train_forward)


def build_model(cfg: TrainConfig, kind: str, n_classes: int) -> CifarResNet:
    """The network of a phase of precision ``kind``; ``model.nonlin="auto"`` is resolved from the
    trial's target ``model.kind``, so an FP pretraining phase uses the nonlinearity of the quantized
    network it initializes (Bi-Real Net pretrains with clip(-1, x, 1) for this reason)."""
    m = cfg.model
    nonlin = resolve_nonlin(m.nonlin, quant_spec(cfg, m.kind))
    return build_resnet(m.arch, n_classes, quant_spec(cfg, kind), m.width, m.block, nonlin)


def architecture(cfg: TrainConfig, n_classes: int | None) -> dict:
    """What a model state of this trial fits: arch, width, block and nonlinearity as built (``auto``
    and width 0 resolved) and the number of classes (``None``: not known yet)."""
    m = cfg.model
    return {"arch": m.arch, "width": m.width or get_model(m.arch).default_width, "block": m.block,
            "nonlin": resolve_nonlin(m.nonlin, quant_spec(cfg, m.kind)), "n_classes": n_classes}


def init_from_problem(cfg: TrainConfig, n_classes: int | None = None) -> str | None:
    """Driver-side check of ``model.init_from``: the one-line reason the file cannot start this trial
    (missing, unreadable, another architecture), or None. With ``n_classes`` known, the tensor names
    and shapes are checked against an FP model of the trial's architecture built on the CPU (the
    check ignores quantizer tensors, and the other tensors are the same at every precision), so a
    state without an ``arch`` record (a bare ``state_dict``, another family's state) is checked
    too. The file is read once per planning run (cached on its path, size and mtime)."""
    path = cfg.model.init_from
    try:
        st = os.stat(path)
        stamp = (st.st_size, st.st_mtime_ns)
    except OSError:
        stamp = None
    return _init_from_problem(path, stamp, tuple(sorted(architecture(cfg, n_classes).items())))


@functools.lru_cache(maxsize=32)
def _init_from_problem(path: str, stamp, arch: tuple) -> str | None:
    a = dict(arch)
    try:
        state = read_model_state(path)
        model = None
        if a["n_classes"] is not None:
            with torch.random.fork_rng(devices=[]):  # the driver's global RNG is left as it was
                model = build_resnet(a["arch"], a["n_classes"], None, a["width"], a["block"], a["nonlin"])
        load_model_weights(model, state, a, path)
    except (OSError, ValueError) as exc:
        return str(exc)
    return None



__all__ = ["sign_param", "quant_spec", "build_model", "architecture", "init_from_problem"]
