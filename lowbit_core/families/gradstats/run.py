"""One ``gradstats`` trial, Ray-free: ``run_gradstats(cfg, report, device)``.

1. The start state (:mod:`.config`): the seeded binary network (``init``); or FP weights --
   trained inside the trial (an FP ResNet with the binary network's resolved nonlinearity, e.g.
   hardtanh, as Bi-Real Net pretrains; cached per process, so trials of one seed that differ only in
   their estimators pretrain once per worker) or read from ``model.init_from`` -- loaded into it
   (``pretrained``; the architecture is checked).
2. Row ``step`` 1, ``stage`` ``start``: test/validation accuracy of the start state and the gradient
   statistics (:func:`lowbit_core.probes.gradient_stats.gradient_stats`) of the trial's weight and
   activation estimators against the references nSTE (``ste``) and the surrogate (``sur``).
3. Fine-tuning with the trial's estimators (:func:`lowbit_core.families.train.run.run_epochs`, the
   ``train`` family's loop: augmentation, cosine lr, validation split); after each of its
   ``train.epochs`` epochs a row (``step`` = 1 + epoch, ``stage`` ``finetune``) with the epoch's
   metrics and the statistics again, on the same probe batches. The last row is the accuracy after
   the fine-tuning budget.

Columns (one value per quantized layer, in forward order, as ``list<double>``: ``plt.plot(row.w_snr)``):
``w_<stat>`` for the weights, ``a_<stat>`` for the activations, with ``<stat>`` in ``norm``, ``var``,
``snr``, ``inside``, ``param``, ``tau``, ``cos_ste``, ``sign_ste``, ``cos_sur``, ``sign_sur`` and, for
activations, ``cos_input_ste``, ``cos_input_sur`` (definitions in the probe's docstring).
"""
from __future__ import annotations

import dataclasses
import json
import math
import time
from typing import Callable

import torch

from lowbit_core.config import to_dict
from lowbit_core.data.cifar import normalize
from lowbit_core.device import pick_device
from lowbit_core.families.gradstats.config import GradStatsConfig, finetune_config
from lowbit_core.families.train.config import TrainConfig
from lowbit_core.families.train.data import TrainData, load_train_data
from lowbit_core.families.train.model import architecture, quant_spec, sign_param
from lowbit_core.families.train.run import run_epochs, start_run
from lowbit_core.models.resnet import resolve_nonlin
from lowbit_core.probes.gradient_stats import SIDES, STATS, Choice, GradStats, gradient_stats
from lowbit_core.quant.estimator_registry import REFERENCE
from lowbit_core.training.checkpoint import read_model_state, to_cpu
from lowbit_core.training.evaluate import evaluate

REFERENCES = ("ste", "sur")
PREFIX = {"weight": "w", "act": "a"}


def _stat_names(side: str) -> list[str]:
    per_ref = ("cos", "sign", "cos_input") if side == "act" else ("cos", "sign")
    return [*STATS, "tau", *(f"{s}_{r}" for r in REFERENCES for s in per_ref)]


STAT_COLUMNS: tuple[str, ...] = tuple(f"{PREFIX[side]}_{k}" for side in SIDES for k in _stat_names(side))
GRADSTATS_METRICS: dict[str, str] = {
    "stage": "str", "epoch": "int", "test_acc": "float", "test_loss": "float", "val_acc": "float", "val_loss": "float",
    "train_loss": "float", "train_acc": "float", "lr": "float", "train_steps": "int", "pretrain_test_acc": "float",
    "probe_time_s": "float", "epoch_time_s": "float", "n_layers": "int",
    **{c: "list[float]" for c in STAT_COLUMNS},
}


def choices(cfg: GradStatsConfig) -> tuple[Choice, Choice, dict[str, Choice]]:
    """The trial's weight and activation estimators (as the model builds them) and the references."""
    spec, s = quant_spec(finetune_config(cfg), "binary"), cfg.stats
    refs = {"ste": Choice(REFERENCE), "sur": Choice(s.surrogate, sign_param(s.surrogate, s.surrogate_param, "abs"))}
    return Choice(cfg.quant.weight_estimator, spec.weight_param), Choice(cfg.quant.act_estimator, spec.act_param), refs


def probe_batches(cfg: GradStatsConfig, data: TrainData) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """``stats.reference_batches`` normalized batches of training images, without augmentation: the
    first of a permutation seeded by the trial's seed (permutations repeated if the set is small)."""
    n, b = len(data.y_train), cfg.stats.batch_size
    need = cfg.stats.reference_batches * b
    g = torch.Generator().manual_seed(40_000 + cfg.seed)
    idx = torch.cat([torch.randperm(n, generator=g) for _ in range(-(-need // n))])[:need].to(data.x_train.device)
    return [(normalize(data.x_train[i], data.stats), data.y_train[i]) for i in idx.split(b)]


def pretrain_config(cfg: GradStatsConfig) -> TrainConfig:
    """The in-trial FP pretraining: an FP network with the binary network's nonlinearity, the
    ``train`` section's settings at ``state.pretrain_lr`` for ``state.pretrain_epochs``."""
    nonlin = resolve_nonlin(cfg.model.nonlin, quant_spec(finetune_config(cfg), "binary"))
    model = dataclasses.replace(cfg.model, kind="fp", nonlin=nonlin, init_from="")
    train = dataclasses.replace(cfg.train, lr=cfg.state.pretrain_lr, epochs=cfg.state.pretrain_epochs, checkpoint_every=0)
    return TrainConfig(data=cfg.data, model=model, train=train, seed=cfg.seed)


_PRETRAINED: dict[str, tuple[dict, float]] = {}
_CACHE_SIZE = 4


def pretrained_state(cfg: GradStatsConfig, data: TrainData, device: torch.device) -> tuple[dict, float]:
    """(state with the FP weights, their final test accuracy) of the in-trial pretraining, cached per
    process by the pretraining config and device."""
    fp = pretrain_config(cfg)
    key = json.dumps([to_dict(fp), str(device)], sort_keys=True)
    if key not in _PRETRAINED:
        run = start_run(fp, data, device)
        last = run_epochs(run, lambda metrics, state=None: None)
        state = {"model": to_cpu(run.model.state_dict()), "arch": architecture(fp, data.n_classes),
                 "source": f"the trial's FP pretraining ({fp.train.epochs} epochs)"}
        if len(_PRETRAINED) >= _CACHE_SIZE:
            _PRETRAINED.pop(next(iter(_PRETRAINED)))
        _PRETRAINED[key] = (state, float(last["test_acc"]))
    return _PRETRAINED[key]


def start_weights(cfg: GradStatsConfig, data: TrainData, device: torch.device) -> tuple[dict | None, float]:
    """The state the binary network starts from (None: its seeded init) and the FP test accuracy of
    an in-trial pretraining (NaN otherwise)."""
    if cfg.state.kind == "init":
        return None, math.nan
    if cfg.model.init_from:
        return {**read_model_state(cfg.model.init_from), "source": cfg.model.init_from}, math.nan
    return pretrained_state(cfg, data, device)


def stat_columns(stats: GradStats, weight: Choice, act: Choice | None) -> dict[str, list[float]]:
    """The ``w_*`` / ``a_*`` columns of the trial's own estimators (``act`` None: FP activations, NaN lists)."""
    out = {}
    for side, choice in (("weight", weight), ("act", act)):
        values = {**getattr(stats, side)[choice], "tau": stats.tau[side]} if choice is not None else {}
        nan = [math.nan] * len(stats.layers)
        out.update({f"{PREFIX[side]}_{k}": [float(v) for v in values[k]] if values else list(nan)
                    for k in _stat_names(side)})
    return out


def run_gradstats(cfg: GradStatsConfig, report: Callable[..., None], device: torch.device | None = None) -> dict:
    """Run one trial (module docstring); ``report(metrics)`` per row; returns the last row."""
    device = device or pick_device()
    data = load_train_data(cfg.data, device)
    init, pretrain_acc = start_weights(cfg, data, device)
    run = start_run(finetune_config(cfg), data, device, init_model=init)
    batches = probe_batches(cfg, data)
    weight, act, refs = choices(cfg)
    act_choices = [act] if cfg.quant.act == "quant" else []

    def probe() -> dict:
        t0 = time.perf_counter()
        stats = gradient_stats(run.model, batches, [weight], act_choices, refs, n_stats=cfg.stats.batches)
        return {**stat_columns(stats, weight, act if act_choices else None), "n_layers": len(stats.layers),
                "probe_time_s": time.perf_counter() - t0}

    batch = cfg.train.eval_batch_size
    test_loss, test_acc = evaluate(run.model, data.x_test, data.y_test, batch, data.stats)
    val_loss, val_acc = (evaluate(run.model, data.x_val, data.y_val, batch, data.stats) if len(data.y_val)
                         else (math.nan, math.nan))
    last = {"step": 1, "stage": "start", "epoch": 0, "test_acc": test_acc, "test_loss": test_loss, "val_acc": val_acc,
            "val_loss": val_loss, "train_loss": math.nan, "train_acc": math.nan, "lr": math.nan, "train_steps": 0,
            "pretrain_test_acc": pretrain_acc, "epoch_time_s": 0.0, **probe()}
    report(dict(last))

    def after_epoch(metrics: dict, state=None) -> None:
        nonlocal last
        last = {"step": metrics["epoch"] + 1, "stage": "finetune", "epoch": metrics["epoch"],
                **{k: metrics[k] for k in ("test_acc", "test_loss", "val_acc", "val_loss", "train_loss", "train_acc",
                                           "lr", "train_steps", "epoch_time_s")},
                "pretrain_test_acc": pretrain_acc, **probe()}
        report(dict(last))

    run_epochs(run, after_epoch)
    return last


__all__ = ["GRADSTATS_METRICS", "STAT_COLUMNS", "REFERENCES", "choices", "probe_batches", "pretrain_config",
           "pretrained_state", "start_weights", "stat_columns", "run_gradstats"]
