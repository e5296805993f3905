"""Typed configuration of CIFAR classification training (the ``train`` family).

A sweep states only what differs from these defaults, as dotted keys (``"train.mixup_alpha"``).
The sections: ``data`` (which images), ``model`` (architecture, precision, init), ``quant`` (how a
binary / k-bit model quantizes its inner convs), ``train`` (optimizer, schedule, epochs, the
pretrain path, mixup, checkpoints), ``perturb`` (periodic weight noise), and ``seed``.

Precision (``model.kind``):

- ``fp``: no quantization (``quant`` is ignored);
- ``binary``: inner convs use ``sign`` weights (``quant.weight_*``: estimator, its parameter, the
  XNOR-Net mean-|W| scale; ``quant.threshold``) and, with ``quant.act="quant"``, ``sign`` input
  activations (``quant.act_estimator`` / ``quant.act_param`` / ``quant.act_threshold``). The units
  ``quant.weight_unit`` / ``quant.act_unit`` (``abs``, or a per-layer statistic of
  :data:`~lowbit_core.quant.estimator_registry.UNITS`) apply to that side's estimator parameter
  (where the registry lets it be relative) and threshold: ``weight_unit="std"`` makes a window
  ``t * std(W_l)`` and the threshold ``tau * std(W_l)`` of each layer ``l`` at the time of the step;
- ``kbit``: inner convs use ``quant.kbit`` (``dorefa``, ``lsq``, ``dsq``, ``pams`` or a plug-in of
  :func:`~lowbit_core.quant.registry.register_quantizer`) at ``quant.bits`` on the
  weights and, with ``quant.act="quant"``, on the input activations. ``kbit="dsq", bits=1`` is 1-bit
  DSQ. DSQ's alpha is learned (``quant.dsq_schedule="learned"``) or set per epoch by a linear /
  geometric decay from ``quant.dsq_alpha`` to ``quant.dsq_alpha_min`` over the phase.

The pretrain path (``train.pretrain_epochs`` = P > 0, quantized ``model.kind``): an FP model trains
for P epochs (phase ``pretrain``), its weights are loaded into the quantized model, which trains
for the remaining ``train.epochs - P`` epochs (phase ``finetune``) with a fresh optimizer and cosine
schedule. P = 0 trains the configured model from scratch for ``train.epochs`` (phase ``scratch``):
the two paths have equal total epochs.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Literal

from lowbit_core.models.registry import ModelName
from lowbit_core.config import ConfigError
from lowbit_core.quant import estimator_registry
from lowbit_core.quant.registry import KBitName
from lowbit_core.quant.settings import ACT, WEIGHT, SignQuant

Unit = Literal[tuple(estimator_registry.UNITS)]


@dataclass(frozen=True)
class TrainDataConfig:
    """Images: ``cifar10`` / ``cifar100`` (torchvision's folders under ``root``), ``npz`` (``root`` is an
    ``.npz`` with x_train, y_train, x_test, y_test), or ``synthetic`` (generated CIFAR-shaped uint8
    images with class-dependent structure; no download; see :mod:`lowbit_core.families.train.data`).

    ``n_train`` / ``n_test``: use a fixed subset of n images (0: all of them; synthetic: 0 means
    2048 / 512), the same for every trial (:func:`lowbit_core.families.train.data.fixed_subset`).
    ``n_classes`` applies to ``synthetic`` only. ``augment``: random crop (padding 4) + flip.
    ``val_fraction``: the share of those training images held out as a validation split, on which
    the best epoch is selected (:mod:`lowbit_core.families.train.data`); 0 keeps no split, and selection
    then falls back to the test set (optimistic, and said so in the report).
    """

    name: Literal["cifar10", "cifar100", "npz", "synthetic"] = "synthetic"
    root: str = "data"
    n_train: int = 0
    n_test: int = 0
    n_classes: int = 10
    augment: bool = True
    val_fraction: float = 0.1

    def __post_init__(self):
        if self.n_train < 0 or self.n_test < 0:
            raise ConfigError(f"data.n_train and data.n_test must be >= 0, got {self.n_train}, {self.n_test}")
        if not 0 <= self.val_fraction < 1:
            raise ConfigError(f"data.val_fraction must be in [0, 1), got {self.val_fraction}")
        if not 2 <= self.n_classes <= 1000:
            raise ConfigError(f"data.n_classes must be in [2, 1000], got {self.n_classes}")


@dataclass(frozen=True)
class TrainModelConfig:
    """``arch``: CIFAR ResNet-20 or ResNet-18 (:mod:`lowbit_core.models.resnet`); ``width``: channels of
    the first stage (0: the standard 16 / 64); ``block``: ``basic`` (He et al.) or ``bireal`` (a
    shortcut around every conv); ``nonlin``: ``auto`` (hardtanh when activations are binarized,
    else ReLU), ``relu``, ``hardtanh``; ``init``: ``default`` (PyTorch's), ``xavier``, ``kaiming``,
    ``orthogonal`` (:func:`lowbit_core.models.resnet.init_weights`); ``init_from``: a state file whose
    model weights start the trial instead ('' = none): a training state (``state.pt``, e.g. a train
    trial's final checkpoint) or its checkpoint folder, loaded with ``torch.load(weights_only=True)``
    into the trial's first model; the architecture (arch, width, block, nonlinearity, classes) must
    be the same (:func:`lowbit_core.training.checkpoint.load_model_weights`), checked before Ray starts
    (:func:`preflight`: the state's ``arch`` record and its tensor names and shapes)."""

    arch: ModelName = "resnet20"
    width: int = 0
    kind: Literal["fp", "binary", "kbit"] = "binary"
    block: Literal["basic", "bireal"] = "basic"
    nonlin: Literal["auto", "relu", "hardtanh"] = "auto"
    init: Literal["default", "xavier", "kaiming", "orthogonal"] = "default"
    init_from: str = ""

    def __post_init__(self):
        if self.width < 0:
            raise ConfigError(f"model.width must be >= 0 (0: the architecture's standard width), got {self.width}")


@dataclass(frozen=True)
class QuantConfig(SignQuant):
    """How the inner convs quantize (see the module docstring for which fields act per ``model.kind``):
    the shared sign settings (:class:`~lowbit_core.quant.settings.SignQuant`) and this family's own.

    ``weight_param`` / ``act_param``: the estimator's parameter (window t, clip c); 0 takes the
    estimator's default (in the side's unit). EDE's (t, k) follow IR-Net's schedule per epoch (the
    param is ignored). ``threshold`` (weights) and ``act_threshold``: tau in sign(x - tau).
    ``weight_unit`` / ``act_unit``: the unit of that side's parameter and threshold (module docstring).
    """

    act: Literal["quant", "none"] = "quant"
    weight_unit: Unit = WEIGHT.unit
    threshold: float = WEIGHT.threshold
    act_unit: Unit = ACT.unit
    act_threshold: float = ACT.threshold
    kbit: KBitName = "dorefa"
    bits: int = 2
    dsq_alpha: float = 0.2
    dsq_schedule: Literal["learned", "linear", "geometric"] = "learned"
    dsq_alpha_min: float = 1e-3
    dsq_train_forward: Literal["soft", "sign_ste"] = "soft"

    def __post_init__(self):
        super().__post_init__()
        if not 1 <= self.bits <= 8:
            raise ConfigError(f"quant.bits must be in [1, 8], got {self.bits}")
        if not 0 < self.dsq_alpha_min <= self.dsq_alpha < 0.5:
            raise ConfigError(f"need 0 < quant.dsq_alpha_min <= quant.dsq_alpha < 0.5, got "
                              f"{self.dsq_alpha_min}, {self.dsq_alpha}")
        if self.kbit == "lsq" and self.bits < 2:
            raise ConfigError("quant.kbit='lsq' needs quant.bits >= 2 (signed 1-bit LSQ has levels {-1, 0})")


@dataclass(frozen=True)
class TrainLoopConfig:
    """Optimizer (``sgd`` with ``momentum``, or ``adam`` with ``beta1``/``beta2``), peak ``lr`` with a cosine
    decay to 0 over each phase, ``weight_decay`` on conv/linear weights only (not BN, biases or
    quantizer parameters), ``epochs`` in total, of which ``pretrain_epochs`` FP pretraining
    (``finetune_lr``: peak lr after it, 0 = ``lr``), ``steps_per_epoch`` (0: one pass over the
    training set; a cap for smoke runs), ``mixup_alpha`` (0: off), ``checkpoint_every`` (epochs; 0:
    never; the last epoch is always checkpointed too, so the trial's final state is kept, for
    ``model.init_from``)."""

    optimizer: Literal["sgd", "adam"] = "sgd"
    lr: float = 0.1
    finetune_lr: float = 0.0
    momentum: float = 0.9
    beta1: float = 0.9
    beta2: float = 0.999
    weight_decay: float = 5e-4
    epochs: int = 10
    pretrain_epochs: int = 0
    batch_size: int = 128
    eval_batch_size: int = 500
    steps_per_epoch: int = 0
    mixup_alpha: float = 0.0
    checkpoint_every: int = 1

    def __post_init__(self):
        if self.lr <= 0 or self.finetune_lr < 0 or self.weight_decay < 0:
            raise ConfigError("train.lr > 0, train.finetune_lr >= 0 and train.weight_decay >= 0 are required")
        if not 0 <= self.momentum < 1 or not 0 <= self.beta1 < 1 or not 0 <= self.beta2 < 1:
            raise ConfigError("train.momentum, train.beta1 and train.beta2 must lie in [0, 1)")
        if self.epochs < 1 or not 0 <= self.pretrain_epochs < self.epochs:
            raise ConfigError(f"need train.epochs >= 1 and 0 <= train.pretrain_epochs < train.epochs, got "
                              f"{self.epochs}, {self.pretrain_epochs}")
        if self.batch_size < 2 or self.eval_batch_size < 1 or self.steps_per_epoch < 0:
            raise ConfigError("train.batch_size >= 2, train.eval_batch_size >= 1, train.steps_per_epoch >= 0 are required")
        if self.mixup_alpha < 0 or self.checkpoint_every < 0:
            raise ConfigError("train.mixup_alpha >= 0 and train.checkpoint_every >= 0 are required")


@dataclass(frozen=True)
class PerturbConfig:
    """Periodic weight perturbation (:func:`lowbit_core.families.train.init.perturb`): at the start of every epoch
    e > 0 with e % period == 0, each inner conv's latent weight W gets
    ``W += amplitude * rms(W) * N(0, 1)``. ``amplitude`` 0: off."""

    amplitude: float = 0.0
    period: int = 1

    def __post_init__(self):
        if self.amplitude < 0 or self.period < 1:
            raise ConfigError(f"perturb.amplitude >= 0 and perturb.period >= 1 are required, got "
                              f"{self.amplitude}, {self.period}")


@dataclass(frozen=True)
class TrainConfig:
    """One training trial (family ``train``)."""

    data: TrainDataConfig = field(default_factory=TrainDataConfig)
    model: TrainModelConfig = field(default_factory=TrainModelConfig)
    quant: QuantConfig = field(default_factory=QuantConfig)
    train: TrainLoopConfig = field(default_factory=TrainLoopConfig)
    perturb: PerturbConfig = field(default_factory=PerturbConfig)
    seed: int = 0


def _sign_side(q: QuantConfig, d: QuantConfig, estimator: str, param: str, unit: str, threshold: str) -> dict:
    """The fields of one sign side (weights or activations) that do not act, reset to the defaults:
    the parameter of an estimator without one; the unit where neither the threshold nor the
    parameter can be relative."""
    entry = estimator_registry.get(getattr(q, estimator))
    out = {}
    if entry.param is None:
        out[param] = getattr(d, param)
    if getattr(q, threshold) == 0.0 and entry.param_axis is None:
        out[unit] = getattr(d, unit)
    return out


def canonicalize(cfg: TrainConfig) -> TrainConfig:
    """Reset parameters that do not act, so equivalent trials share one key.

    FP models ignore ``quant`` and have no pretrain path (``pretrain_epochs`` -> 0); binary models
    ignore the k-bit fields; k-bit models ignore the sign fields; non-DSQ models ignore the DSQ
    fields; estimators without a parameter ignore theirs; a side's unit acts only on a nonzero
    threshold or a parameter the registry lets be relative; each optimizer ignores the other's
    fields; ``finetune_lr`` acts only with pretraining; ``perturb.period`` only with an amplitude.
    """
    q, d = cfg.quant, QuantConfig()
    t = cfg.train
    if cfg.model.kind == "fp":
        q = d
        t = dataclasses.replace(t, pretrain_epochs=0)
    elif cfg.model.kind == "binary":
        q = dataclasses.replace(q, kbit=d.kbit, bits=d.bits, dsq_alpha=d.dsq_alpha, dsq_schedule=d.dsq_schedule,
                                dsq_alpha_min=d.dsq_alpha_min, dsq_train_forward=d.dsq_train_forward)
        q = dataclasses.replace(q, **_sign_side(q, d, "weight_estimator", "weight_param", "weight_unit", "threshold"))
        if q.act == "none":
            q = dataclasses.replace(q, act_estimator=d.act_estimator, act_param=d.act_param, act_unit=d.act_unit,
                                    act_threshold=d.act_threshold)
        else:
            q = dataclasses.replace(q, **_sign_side(q, d, "act_estimator", "act_param", "act_unit", "act_threshold"))
    else:
        q = dataclasses.replace(q, weight_estimator=d.weight_estimator, weight_param=d.weight_param,
                                weight_unit=d.weight_unit, weight_scale=d.weight_scale, threshold=d.threshold,
                                act_estimator=d.act_estimator, act_param=d.act_param, act_unit=d.act_unit,
                                act_threshold=d.act_threshold)
        if q.kbit != "dsq":
            q = dataclasses.replace(q, dsq_alpha=d.dsq_alpha, dsq_schedule=d.dsq_schedule,
                                    dsq_alpha_min=d.dsq_alpha_min, dsq_train_forward=d.dsq_train_forward)
        elif q.dsq_schedule == "learned":
            q = dataclasses.replace(q, dsq_alpha_min=d.dsq_alpha_min)
    dt = TrainLoopConfig()
    if t.optimizer == "sgd":
        t = dataclasses.replace(t, beta1=dt.beta1, beta2=dt.beta2)
    else:
        t = dataclasses.replace(t, momentum=dt.momentum)
    if t.pretrain_epochs == 0:
        t = dataclasses.replace(t, finetune_lr=dt.finetune_lr)
    p = cfg.perturb if cfg.perturb.amplitude > 0 else PerturbConfig()
    data = cfg.data if cfg.data.name == "synthetic" else dataclasses.replace(cfg.data, n_classes=TrainDataConfig().n_classes)
    return dataclasses.replace(cfg, data=data, quant=q, train=t, perturb=p)

