"""Registry of experiment families: config class, Ray-free run function, declared metrics.

A family is what a sweep's ``family`` names. ``run(cfg, report, device)`` calls ``report(metrics)`` once
per reported step; every metric it reports is declared in ``metrics`` (name -> "float" | "int" | "str"
| "list[float]"), which fixes the Parquet schema before the first trial starts.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Callable

from lowbit_core.config import ConfigError


@dataclass(frozen=True)
class Family:
    name: str
    config_cls: type
    run: Callable[..., Any]
    metrics: dict[str, str]
    canonicalize: Callable[[Any], Any] = lambda cfg: cfg
    preflight: Callable[[Any], str | None] = lambda cfg: None
    """Driver-side check before Ray starts; returns an error line (e.g. data not on disk) or None."""
    foldable: frozenset = frozenset()
    """Grid keys a sweep may fold into one trial (``Sweep.fold``): ``run_batch(cfgs, report, device)``
    runs such points as one batched computation, calling ``report(metrics, point=i)``."""
    run_batch: Callable[..., Any] | None = None
    path_keys: tuple[str, ...] = ("data.root",)
    """Config keys holding file-system paths: a relative one is relative to the driver's working
    directory (Ray runs trials in their own folders), so trials resolve it against that directory;
    the trial key keeps the path as written."""
    describe: Callable[[Any], dict[str, str]] | None = None
    """Extra columns of a trial in the ``--dry-run`` table (e.g. its OPs and parameter size), or None."""


def _probe_family() -> Family:
    from lowbit_core.data.mnist import mnist_missing, mnist_too_small
    from lowbit_core.probes.config import (AdmmConfig, DGConfig, ESConfig, EstimatorConfig, GAConfig, MultiConfig,
                                           ProbeConfig)
    from lowbit_core.probes.run import FOLDABLE, PROBE_METRICS, run_probe, run_probe_batch
    from lowbit_core.quant import estimator_registry

    def canonicalize(cfg: ProbeConfig) -> ProbeConfig:
        # Parameters that do not act are reset to their defaults so equivalent trials get one key:
        # the FP model ignores the estimator; each estimator ignores the other one's parameter.
        default = EstimatorConfig()
        est = cfg.estimator
        if cfg.model.kind == "fp":
            est = default
        else:
            acting = estimator_registry.get(est.name).param
            est = dataclasses.replace(est, **{p: getattr(default, p) for p in estimator_registry.PARAM_NAMES
                                              if p != acting})
        multi, dg = cfg.multi, cfg.dg
        if multi.optimizer != "sgdm":
            multi = dataclasses.replace(multi, momentum=MultiConfig().momentum)
        if multi.optimizer != "adam":
            multi = dataclasses.replace(multi, beta1=MultiConfig().beta1, beta2=MultiConfig().beta2)
        # each method ignores the other methods' sections (the estimator still acts: every trial's
        # single-step scan, ADMM's STE checkpoint among them, goes through it)
        if cfg.method not in ("dg", "cdg"):
            dg = DGConfig()
        else:
            keep = {"fp_moves": dg.fp_moves}
            if cfg.method == "dg":
                keep.update(steps=dg.steps, select=dg.select, prefix_points=dg.prefix_points,
                            max_coords=dg.max_coords if dg.select == "count" else 0)
            else:
                keep.update(cdg_max_moves=dg.cdg_max_moves, cdg_refresh=dg.cdg_refresh, report_every=dg.report_every,
                            cdg_shortlist=dg.cdg_shortlist if dg.cdg_refresh > 1 else DGConfig().cdg_shortlist)
            dg = DGConfig(**keep)
        if cfg.method != "ste":
            multi = MultiConfig()
        return dataclasses.replace(cfg, estimator=est, multi=multi, dg=dg,
                                   admm=cfg.admm if cfg.method == "admm" else AdmmConfig(),
                                   ga=cfg.ga if cfg.method == "ga" else GAConfig(),
                                   es=cfg.es if cfg.method == "es" else ESConfig())

    def preflight(cfg: ProbeConfig) -> str | None:
        if cfg.data.name != "mnist":
            return None
        return mnist_missing(cfg.data.root) or mnist_too_small(cfg.data.batch_size)

    return Family("probe", ProbeConfig, run_probe, PROBE_METRICS, canonicalize, preflight,
                  foldable=FOLDABLE, run_batch=run_probe_batch)


def _train_family() -> Family:
    # CIFAR training (lowbit_core.train): run(cfg, report, device, start_state=None) reports once per
    # epoch, with report(metrics, state=...) on checkpoint epochs (the trainable saves the state).
    # Every row also carries the cost of the trial's final model (lowbit_core.cost: MACs, BOPs, OPs,
    # parameter bits, energy estimate); the dry run shows its OPs and size.
    from lowbit_core.cost.family import COST_METRICS, describe_cost, with_cost
    from lowbit_core.cost.train import train_cost
    from lowbit_core.train.config import TrainConfig, canonicalize, preflight
    from lowbit_core.train.loop import TRAIN_METRICS, train

    return Family("train", TrainConfig, with_cost(train, train_cost), {**TRAIN_METRICS, **COST_METRICS},
                  canonicalize, preflight, describe=describe_cost(train_cost))


def _sr_family() -> Family:
    # Low-bit super-resolution (lowbit_core.train.sr_loop): EDSR in FP / k-bit / binary on HR folders
    # with MATLAB-bicubic LR images; reports once per epoch, with report(metrics, state=...) on
    # checkpoint epochs (the trainable saves the state), like the train family. Path keys: the
    # training images and the benchmark sets (and a custom test folder). Every row also carries the
    # cost of the trial's final EDSR for a 192 x 192 HR output (lowbit_core.train.sr_loop.sr_cost).
    from lowbit_core.cost.family import COST_METRICS, describe_cost, with_cost
    from lowbit_core.train.sr_config import SRConfig, canonicalize, preflight
    from lowbit_core.train.sr_loop import SR_METRICS, sr_cost, train_sr

    return Family("sr", SRConfig, with_cost(train_sr, sr_cost), {**SR_METRICS, **COST_METRICS}, canonicalize,
                  preflight, path_keys=("data.root", "data.test_root", "data.custom_test"),
                  describe=describe_cost(sr_cost))


def _gradstats_family() -> Family:
    # Gradient statistics of sign estimators on a binary CIFAR ResNet (lowbit_core.gradstats): rows at
    # the start state (initialized or FP-pretrained) and after each fine-tuning epoch; per-layer
    # statistics as list columns; no checkpoints (a trial restarts whole). Rows carry the cost of the
    # trial's binary model, as in the train family.
    from lowbit_core.cost.family import COST_METRICS, describe_cost, with_cost
    from lowbit_core.cost.train import train_cost
    from lowbit_core.gradstats.config import GradStatsConfig, canonicalize, finetune_config, preflight
    from lowbit_core.gradstats.run import GRADSTATS_METRICS, run_gradstats

    def cost(cfg):
        return train_cost(finetune_config(cfg))

    return Family("gradstats", GradStatsConfig, with_cost(run_gradstats, cost), {**GRADSTATS_METRICS, **COST_METRICS},
                  canonicalize, preflight, path_keys=("data.root", "model.init_from"), describe=describe_cost(cost))


_BUILDERS: dict[str, Callable[[], Family]] = {"probe": _probe_family, "train": _train_family, "sr": _sr_family,
                                              "gradstats": _gradstats_family}


def get_family(name: str) -> Family:
    if name not in _BUILDERS:
        raise ConfigError(f"unknown family {name!r}; valid: {', '.join(sorted(_BUILDERS))}")
    return _BUILDERS[name]()


def family_names() -> list[str]:
    return sorted(_BUILDERS)
