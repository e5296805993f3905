"""Typed configuration of the ``gradstats`` family (a sweep states only what differs, as dotted keys).

Sections shared with the ``train`` family: ``data``, ``model`` (``kind`` must be ``binary``: the
estimators act on sign quantizers), ``quant`` (the trial's weight and activation estimators, their
parameters, units and thresholds) and ``train`` (the fine-tuning budget: ``epochs`` of at most
``steps_per_epoch`` steps, optimizer, ``lr`` with a cosine decay to 0). Its own:

- ``state``: the model state the statistics start from. ``init``: the seeded initialization
  (``model.init``). ``pretrained``: an FP network with the binary network's nonlinearity, trained
  inside the trial for ``pretrain_epochs`` at peak lr ``pretrain_lr`` (the ``train`` section's other
  settings), whose weights the binary network then takes -- or, with ``model.init_from``, the
  weights of a state file (the two-command workflow: train the FP model once, study it many times).
- ``stats``: the probe (:mod:`lowbit_core.probes.gradient_stats`): ``batches`` (M) mini-batches of
  ``batch_size`` training images (no augmentation; a fixed permutation per seed, the same for every
  estimator, at every measurement) for the statistics, ``reference_batches`` (M_ref >= M) for the
  references' means: nSTE and the smooth ``surrogate`` (a registry estimator, default ApproxSign,
  with ``surrogate_param`` in absolute units, 0: its default).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Literal

from lowbit_core.config import ConfigError
from lowbit_core.quant import estimator_registry
from lowbit_core.quant.settings import ACT
from lowbit_core.families.train.config import (QuantConfig, TrainConfig, TrainDataConfig, TrainLoopConfig,
                                               TrainModelConfig, canonicalize as canonicalize_train)
from lowbit_core.families.train.preflight import preflight as preflight_train


@dataclass(frozen=True)
class StateConfig:
    """Where the statistics start (module docstring)."""

    kind: Literal["init", "pretrained"] = "init"
    pretrain_epochs: int = 3
    pretrain_lr: float = 0.002

    def __post_init__(self):
        if self.pretrain_epochs < 1 or self.pretrain_lr <= 0:
            raise ConfigError(f"state.pretrain_epochs >= 1 and state.pretrain_lr > 0 are required, got "
                              f"{self.pretrain_epochs}, {self.pretrain_lr}")


@dataclass(frozen=True)
class StatsConfig:
    """The probe's batches and references (module docstring)."""

    batches: int = 16
    reference_batches: int = 64
    batch_size: int = 128
    surrogate: estimator_registry.EstimatorName = ACT.estimator
    surrogate_param: float = 0.0

    def __post_init__(self):
        if not 2 <= self.batches <= self.reference_batches or self.batch_size < 1:
            raise ConfigError(f"need 2 <= stats.batches <= stats.reference_batches and stats.batch_size >= 1, got "
                              f"{self.batches}, {self.reference_batches}, {self.batch_size}")
        if self.surrogate_param < 0:
            raise ConfigError(f"stats.surrogate_param must be >= 0 (0: the estimator's default), got {self.surrogate_param}")


def _finetune_defaults() -> TrainLoopConfig:
    return TrainLoopConfig(optimizer="adam", lr=0.001, weight_decay=0.0, epochs=1, checkpoint_every=0)


@dataclass(frozen=True)
class GradStatsConfig:
    """One gradient-statistics trial (family ``gradstats``)."""

    data: TrainDataConfig = field(default_factory=TrainDataConfig)
    model: TrainModelConfig = field(default_factory=TrainModelConfig)
    quant: QuantConfig = field(default_factory=QuantConfig)
    state: StateConfig = field(default_factory=StateConfig)
    train: TrainLoopConfig = field(default_factory=_finetune_defaults)
    stats: StatsConfig = field(default_factory=StatsConfig)
    seed: int = 0

    def __post_init__(self):
        if self.model.kind != "binary":
            raise ConfigError(f"gradstats studies sign estimators: model.kind must be 'binary', got {self.model.kind!r}")
        if self.train.pretrain_epochs or self.train.finetune_lr:
            raise ConfigError("train.pretrain_epochs and train.finetune_lr do not act in gradstats; "
                              "the FP pretraining is state.pretrain_epochs at state.pretrain_lr")


def finetune_config(cfg: GradStatsConfig) -> TrainConfig:
    """The ``train``-family config of the trial's fine-tuning (no checkpoints: a trial restarts whole)."""
    return TrainConfig(data=cfg.data, model=cfg.model, quant=cfg.quant,
                       train=dataclasses.replace(cfg.train, checkpoint_every=0), seed=cfg.seed)


def canonicalize(cfg: GradStatsConfig) -> GradStatsConfig:
    """Reset what does not act, so equivalent trials share one key: the ``train`` family's rules for
    ``data``, ``quant`` and ``train`` (the optimizer's other fields; no checkpoints); an initialized
    state ignores ``model.init_from`` and the pretraining fields; a state from a file ignores the
    pretraining fields; the surrogate's parameter where it takes none."""
    t = canonicalize_train(finetune_config(cfg))
    state, model = cfg.state, t.model
    if state.kind == "init":
        state, model = StateConfig(kind="init"), dataclasses.replace(model, init_from="")
    elif model.init_from:
        state = StateConfig(kind="pretrained")
    stats = cfg.stats
    if estimator_registry.get(stats.surrogate).param is None:
        stats = dataclasses.replace(stats, surrogate_param=StatsConfig().surrogate_param)
    train = dataclasses.replace(t.train, checkpoint_every=_finetune_defaults().checkpoint_every)
    return dataclasses.replace(cfg, data=t.data, model=model, quant=t.quant, state=state, train=train, stats=stats)


def preflight(cfg: GradStatsConfig) -> str | None:
    """Driver-side: the data files, and a ``model.init_from`` state of this architecture (train family's check)."""
    return preflight_train(finetune_config(cfg))


__all__ = ["StateConfig", "StatsConfig", "GradStatsConfig", "finetune_config", "canonicalize", "preflight"]
