"""Typed configuration of low-bit super-resolution training (the ``sr`` family).

Defaults are the literature's protocol (EDSR: Lim et al. 2017 and the EDSR-PyTorch code; PAMS:
Li et al., ECCV 2020 and its code); a sweep states only what differs, as dotted keys.

- ``scale``: 2, 3 or 4.
- ``data``: training HR images (``generated``, a ``folder`` of images such as T91, or ``div2k``:
  ``<root>/DIV2K_train_HR/``), benchmark test sets by name under ``test_root`` (``<test_root>/Set5/``,
  ...; ``custom`` is the folder ``custom_test``; ``generated`` needs no files), a validation set for
  model selection and early stopping (images held out of the training folder, a named folder such
  as DIV2K's 0801-0900, or generated images; never a test set), the LR patch size (EDSR: 48),
  augmentation (flips and 90-degree rotations) and the report's crop.
- ``model``: EDSR-baseline's 16 blocks, 64 channels, residual scaling 1 (smaller for CPU runs).
- ``quant``: the bit-width (32 = FP; 1 = binary: sign weights with the XNOR-Net mean-|W| scale and
  sign activations, backward estimators from the registry; 2..8 = k-bit, ``pams`` by default), which
  parts are quantized (:data:`lowbit_core.models.edsr.PARTS`), and PAMS's calibration epochs and
  activation-scale learning rate.
- ``train``: Adam (0.9, 0.999, eps 1e-8) at lr 1e-4 halved every 200 epochs of 1000 iterations,
  batch 16, L1 loss, 300 epochs (EDSR); evaluation and a checkpoint after every epoch;
  ``pretrain_epochs`` P > 0 trains an FP model for P epochs and then quantizes it (PAMS fine-tunes an
  FP EDSR; its alpha calibrated in the first quantized epoch) for the remaining epochs.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from lowbit_core.config import ConfigError
from lowbit_core.data.sr_images import DIV2K_TRAIN, benchmark_folder, holdout_split, list_images
from lowbit_core.data.sr_metrics import SSIM_WINDOW
from lowbit_core.models.edsr import PARTS, SCALES
from lowbit_core.quant import estimator_registry
from lowbit_core.quant.registry import SignedKBitName
from lowbit_core.quant.settings import SignQuant

TEST_SETS = ("Set5", "Set14", "B100", "Urban100", "Manga109", "custom", "generated")
"""Test-set names: benchmark folders under ``data.test_root``, ``custom`` (``data.custom_test``), and
``generated`` (images made from fixed seeds). Each gets its metric columns (``psnr_y.Set5``, ...)."""
FP_BITS, BINARY_BITS = 32, 1
GENERATED_TRAIN_SEED, GENERATED_TEST_SEED, GENERATED_VAL_SEED = 1000, 2000, 3000


def _tuple_of(key: str, values: tuple, valid: tuple, allow_empty: bool = False) -> None:
    bad = [v for v in values if v not in valid]
    if bad:
        raise ConfigError(f"{key} has {bad[0]!r}; valid: {', '.join(valid)}")
    if len(set(values)) != len(values):
        raise ConfigError(f"{key} lists a value twice: {list(values)}")
    if not values and not allow_empty:
        raise ConfigError(f"{key} must name at least one of {', '.join(valid)}")


@dataclass(frozen=True)
class SRDataConfig:
    """``train``: ``generated`` (``n_train`` images of ``generated_size`` px; 0 -> 16), ``folder``
    (the images directly in ``root``) or ``div2k`` (``root/DIV2K_train_HR``); ``n_train`` > 0 keeps
    the first n by file name. ``test_sets``: names from :data:`TEST_SETS`; ``n_test`` > 0 keeps the first
    n images of each (generated: 0 -> 4). ``lr_patch``: LR patch side (the HR patch is ``scale`` times
    it). ``crop_size``: side of the HR crop stored for the report's figure (0: none), cut from the first
    test set's first image where bicubic upsampling loses the most.

    Validation (the ``val_*`` metrics; none when ``val_images`` is 0 and ``val_root`` empty):
    ``val_root`` empty: ``val_images`` images held out of the training folder, chosen by
    :func:`~lowbit_core.data.sr_images.holdout_split` (the first ``val_images`` of a seed-0 permutation
    of the sorted file list; fixed for the folder, the same in every trial, never sampled for
    training patches; ``n_train`` then keeps the first n of the remaining files), or for generated
    training images ``val_images`` generated images from seed 3000 (train: 1000, test: 2000).
    ``val_root`` a folder: its images are the validation set (``val_images`` > 0 keeps the first n by
    name), e.g. ``DIV2K_valid_HR`` (DIV2K's 0801-0900)."""

    train: Literal["generated", "folder", "div2k"] = "generated"
    root: str = "data"
    n_train: int = 0
    test_root: str = "data"
    test_sets: tuple[str, ...] = ("generated",)
    custom_test: str = ""
    n_test: int = 0
    generated_size: int = 192
    lr_patch: int = 48
    augment: bool = True
    crop_size: int = 48
    val_images: int = 0
    val_root: str = ""

    def __post_init__(self):
        _tuple_of("data.test_sets", self.test_sets, TEST_SETS)
        if "custom" in self.test_sets and not self.custom_test:
            raise ConfigError("data.test_sets has 'custom' but data.custom_test (a folder of PNGs) is empty")
        if self.n_train < 0 or self.n_test < 0 or self.crop_size < 0 or self.val_images < 0:
            raise ConfigError("data.n_train, data.n_test, data.crop_size and data.val_images must be >= 0")
        if self.lr_patch < 4 or self.generated_size < 16:
            raise ConfigError(f"need data.lr_patch >= 4 and data.generated_size >= 16, got "
                              f"{self.lr_patch}, {self.generated_size}")


@dataclass(frozen=True)
class SRModelConfig:
    """EDSR (:mod:`lowbit_core.models.edsr`): ``blocks`` residual blocks of ``channels`` channels,
    residual scaling ``res_scale``; ``nonlin`` ``auto`` (hardtanh where the body's activations are
    binarized, else ReLU), ``relu`` or ``hardtanh``."""

    blocks: int = 16
    channels: int = 64
    res_scale: float = 1.0
    nonlin: Literal["auto", "relu", "hardtanh"] = "auto"

    def __post_init__(self):
        if self.blocks < 1 or self.channels < 1 or not self.res_scale > 0:
            raise ConfigError(f"need model.blocks >= 1, model.channels >= 1 and model.res_scale > 0, got "
                              f"{self.blocks}, {self.channels}, {self.res_scale}")


@dataclass(frozen=True)
class SRQuantConfig(SignQuant):
    """``bits``: 32 (FP; the other fields are ignored), 1 (binary: ``sign`` weights with
    ``weight_scale`` and, with ``act="quant"``, ``sign`` activations; ``*_estimator``/``*_param``
    from the estimator registry, param 0 = its default: the shared
    :class:`~lowbit_core.quant.settings.SignQuant`) or 2..8 (``kbit``: ``pams``, ``lsq`` with
    signed activations, or a registered k-bit quantizer whose activations may be signed).
    ``parts``: the quantized parts (:data:`lowbit_core.models.edsr.PARTS`).
    ``ema_epochs``: PAMS's calibration epochs at the start of the quantized phase; ``act_clip_lr``:
    learning rate of PAMS's activation scales alpha (the authors' 1e-2)."""

    bits: int = FP_BITS
    parts: tuple[str, ...] = ("body",)
    act: Literal["quant", "none"] = "quant"
    kbit: SignedKBitName = "pams"
    ema_epochs: int = 1
    act_clip_lr: float = 1e-2

    def __post_init__(self):
        super().__post_init__()
        if self.bits != FP_BITS and not 1 <= self.bits <= 8:
            raise ConfigError(f"quant.bits={self.bits} is not valid; valid: 1 (binary), 2..8 (k-bit), 32 (FP)")
        _tuple_of("quant.parts", self.parts, PARTS)
        if self.ema_epochs < 0 or not self.act_clip_lr > 0:
            raise ConfigError(f"need quant.ema_epochs >= 0 and quant.act_clip_lr > 0, got {self.ema_epochs}, "
                              f"{self.act_clip_lr}")

    @property
    def kind(self) -> str:
        """``fp``, ``binary`` or ``kbit``."""
        return "fp" if self.bits == FP_BITS else ("binary" if self.bits == BINARY_BITS else "kbit")


@dataclass(frozen=True)
class SRTrainConfig:
    """Adam with ``lr`` (weights; PAMS's alphas use ``quant.act_clip_lr``) multiplied by ``lr_gamma``
    every ``lr_decay_every`` epochs of the phase (EDSR: 200; PAMS: 10), ``epochs`` in total of
    ``steps_per_epoch`` iterations of ``batch_size`` patches (EDSR: 300 x 1000 x 16), of which
    ``pretrain_epochs`` FP pretraining (``finetune_lr``: the quantized phase's lr, 0 = ``lr``);
    ``checkpoint_every`` epochs (0: never; the last epoch is not checkpointed)."""

    epochs: int = 300
    steps_per_epoch: int = 1000
    batch_size: int = 16
    lr: float = 1e-4
    lr_decay_every: int = 200
    lr_gamma: float = 0.5
    beta1: float = 0.9
    beta2: float = 0.999
    eps: float = 1e-8
    pretrain_epochs: int = 0
    finetune_lr: float = 0.0
    checkpoint_every: int = 1

    def __post_init__(self):
        if self.epochs < 1 or not 0 <= self.pretrain_epochs < self.epochs:
            raise ConfigError(f"need train.epochs >= 1 and 0 <= train.pretrain_epochs < train.epochs, got "
                              f"{self.epochs}, {self.pretrain_epochs}")
        if self.steps_per_epoch < 1 or self.batch_size < 1 or self.lr_decay_every < 1:
            raise ConfigError("need train.steps_per_epoch >= 1, train.batch_size >= 1, train.lr_decay_every >= 1")
        if not self.lr > 0 or self.finetune_lr < 0 or not 0 < self.lr_gamma <= 1 or not self.eps > 0:
            raise ConfigError("need train.lr > 0, train.finetune_lr >= 0, 0 < train.lr_gamma <= 1, train.eps > 0")
        if not 0 <= self.beta1 < 1 or not 0 <= self.beta2 < 1 or self.checkpoint_every < 0:
            raise ConfigError("need train.beta1, train.beta2 in [0, 1) and train.checkpoint_every >= 0")


@dataclass(frozen=True)
class SRConfig:
    """One super-resolution trial (family ``sr``)."""

    scale: int = 2
    data: SRDataConfig = field(default_factory=SRDataConfig)
    model: SRModelConfig = field(default_factory=SRModelConfig)
    quant: SRQuantConfig = field(default_factory=SRQuantConfig)
    train: SRTrainConfig = field(default_factory=SRTrainConfig)
    seed: int = 0

    def __post_init__(self):
        if self.scale not in SCALES:
            raise ConfigError(f"scale={self.scale!r} is not valid; valid: {', '.join(map(str, SCALES))}")
        if self.data.train == "generated" and self.data.generated_size < self.scale * self.data.lr_patch:
            raise ConfigError(f"data.generated_size={self.data.generated_size} is smaller than the HR patch "
                              f"scale x data.lr_patch = {self.scale * self.data.lr_patch}")


def canonicalize(cfg: SRConfig) -> SRConfig:
    """Reset what does not act, so equivalent trials share one key: an FP model ignores ``quant``
    (bits kept) and has no pretrain path; binary models ignore the k-bit fields, k-bit models the
    sign fields; estimators without a parameter ignore theirs; ``ema_epochs``/``act_clip_lr`` act for
    PAMS activations only; ``finetune_lr`` only with pretraining; ``data.root`` is unused for generated
    training images, ``data.custom_test`` without the ``custom`` set, ``data.generated_size`` when
    nothing is generated."""
    q, d = cfg.quant, SRQuantConfig()
    t = cfg.train
    if q.kind == "fp":
        q = dataclasses.replace(d, bits=FP_BITS)
        t = dataclasses.replace(t, pretrain_epochs=0)
    elif q.kind == "binary":
        q = dataclasses.replace(q, kbit=d.kbit, ema_epochs=d.ema_epochs, act_clip_lr=d.act_clip_lr)
        if q.weight_estimator not in estimator_registry.WITH_PARAM:
            q = dataclasses.replace(q, weight_param=d.weight_param)
        if q.act == "none":
            q = dataclasses.replace(q, act_estimator=d.act_estimator, act_param=d.act_param)
        elif q.act_estimator not in estimator_registry.WITH_PARAM:
            q = dataclasses.replace(q, act_param=d.act_param)
    else:
        q = dataclasses.replace(q, weight_estimator=d.weight_estimator, weight_param=d.weight_param,
                                weight_scale=d.weight_scale, act_estimator=d.act_estimator, act_param=d.act_param)
        if q.kbit != "pams" or q.act == "none":
            q = dataclasses.replace(q, ema_epochs=d.ema_epochs, act_clip_lr=d.act_clip_lr)
    if t.pretrain_epochs == 0:
        t = dataclasses.replace(t, finetune_lr=SRTrainConfig().finetune_lr)
    data, dd = cfg.data, SRDataConfig()
    if data.train == "generated":
        data = dataclasses.replace(data, root=dd.root)
    if "custom" not in data.test_sets:
        data = dataclasses.replace(data, custom_test=dd.custom_test)
    if data.train != "generated" and "generated" not in data.test_sets:
        data = dataclasses.replace(data, generated_size=dd.generated_size)
    if all(s in ("custom", "generated") for s in data.test_sets):
        data = dataclasses.replace(data, test_root=dd.test_root)
    return dataclasses.replace(cfg, data=data, quant=q, train=t)


def train_folder(cfg: SRDataConfig) -> str | None:
    """The folder of training images (None for generated ones)."""
    if cfg.train == "generated":
        return None
    return str(Path(cfg.root) / DIV2K_TRAIN) if cfg.train == "div2k" else cfg.root


def test_folder(cfg: SRDataConfig, name: str) -> str | None:
    """The folder of test set ``name`` (None for ``generated``)."""
    if name == "generated":
        return None
    if name == "custom":
        return cfg.custom_test
    return str(benchmark_folder(cfg.test_root, name))


def has_validation(cfg: SRDataConfig) -> bool:
    """Whether the trial has a validation set (and reports the ``val_*`` metrics)."""
    return cfg.val_images > 0 or bool(cfg.val_root)


def train_files(cfg: SRDataConfig) -> list[Path] | None:
    """The training image files in name order (None for generated images): the training folder's
    files less those held out for validation, then the first ``n_train`` (0: all)."""
    folder = train_folder(cfg)
    if folder is None:
        return None
    files = list_images(folder)
    if cfg.val_images and not cfg.val_root:
        files = holdout_split(files, cfg.val_images)[0]
    return files[:cfg.n_train] if cfg.n_train else files


def val_files(cfg: SRDataConfig) -> list[Path] | None:
    """The validation image files in name order: those of ``val_root`` (first ``val_images``, 0: all)
    or those held out of the training folder; None when the validation images are generated or there
    is no validation set (:class:`SRDataConfig`)."""
    if cfg.val_root:
        files = list_images(cfg.val_root)
        return files[:cfg.val_images] if cfg.val_images else files
    folder = train_folder(cfg)
    if folder is None or not cfg.val_images:
        return None
    return holdout_split(list_images(folder), cfg.val_images)[1]


def test_files(cfg: SRDataConfig, name: str) -> list[Path] | None:
    """The image files of test set ``name`` in name order (first ``n_test``; None for ``generated``)."""
    folder = test_folder(cfg, name)
    if folder is None:
        return None
    files = list_images(folder)
    return files[:cfg.n_test] if cfg.n_test else files


def min_eval_side(scale: int) -> int:
    """The smallest side an evaluated (validation or test) HR image may have after cropping to a
    multiple of ``scale``: ``scale`` px are shaved from each side and SSIM's 11 px window must fit,
    ``2 scale + 11``."""
    return 2 * scale + SSIM_WINDOW


__all__ = ["TEST_SETS", "FP_BITS", "BINARY_BITS", "SRDataConfig", "SRModelConfig", "SRQuantConfig", "SRTrainConfig",
           "SRConfig", "canonicalize", "train_folder", "test_folder", "has_validation", "train_files", "val_files",
           "test_files", "min_eval_side"]
