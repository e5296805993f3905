"""CIFAR classification training, Ray-free: ``train(cfg, report, device, start_state)``, made of
:func:`start_run` (the model, optimizer and generators of a fresh or continued run) and
:func:`run_epochs` (the epochs below), which other families call to train a model they then inspect.

Per epoch (global epochs ``0 .. train.epochs - 1``, reported 1-based as ``epoch`` and ``step``):

1. the phase's model (``pretrain``: FP; ``finetune`` / ``scratch``: ``model.kind``) in train mode;
   EDE's (t, k) set for the epoch within the phase (:func:`~lowbit_core.quant.layers.set_ede_epoch`);
   a scheduled DSQ alpha set to ``dsq_alpha_schedule(e, max(E - 1, 1), alpha, alpha_min, kind)``
   with ``e`` the epoch within the phase of ``E`` epochs (so the last epoch uses ``alpha_min``);
   at epochs ``e > 0`` with ``e % perturb.period == 0`` the inner convs are perturbed
   (:func:`~lowbit_core.families.train.init.perturb`);
2. ``min(n_train // batch_size, steps_per_epoch or inf)`` SGD/Adam steps on shuffled batches
   (the final short batch is dropped), each batch cropped + flipped + normalised on the device
   (:mod:`lowbit_core.data.augment`), optionally mixed (:mod:`lowbit_core.data.mixup`); the lr of
   step ``s`` of a phase with ``S`` steps is ``cosine_lr(peak, s, S) = peak (1 + cos(pi s / S)) / 2``;
3. evaluation on the test set and the validation split (eval mode: BN running statistics, DSQ's
   hard quantizer); model selection on validation: ``selected_epoch`` is the epoch (1-based) with
   the best ``val_acc`` so far within the current phase (so a pretrain path selects among its
   finetune epochs, never an FP epoch; ties keep the earlier) and ``selected_test_acc`` its test
   accuracy.
   With ``data.val_fraction = 0`` the selection uses the test accuracy (optimistic: it peeks at the
   test set; reports say so). ``best_test_acc`` (the running maximum of ``test_acc``) is kept as a
   column for old readers and is never a selection rule. The headline number is the final epoch's
   ``test_acc``;
4. ``report(metrics)`` -- or ``report(metrics, state=state)`` every ``train.checkpoint_every``
   epochs and at the last epoch (the trial's final state is kept, so another trial can start from
   it: ``model.init_from``): ``state`` (a fresh CPU copy the caller may keep; layout in
   :mod:`lowbit_core.training.checkpoint`) restarts the run after that epoch when passed back as
   ``start_state``, bit-identically on the CPU (same thread count). Every report carries
   ``resumed_from_epoch``: the epoch this call started from (``start_state["epoch"]``; 0 when fresh),
   so the rows of a resumed trial show where it continued.

Initial weights: ``model.init_from`` (a state file) or the ``init_model`` state a caller passes to
:func:`start_run` replaces the seeded init of the first phase's model, after a check that it holds
weights of the same architecture (:func:`lowbit_core.training.checkpoint.load_model_weights`).

Pretrain path: at the first finetune epoch the FP model's weights are loaded into the quantized
model (:func:`~lowbit_core.models.resnet.load_fp_weights`; quantizer parameters start fresh) and a
new optimizer (no momentum carried over) with its own cosine schedule starts at ``finetune_lr``
(0: ``lr``).

Randomness, all seeded from ``cfg.seed``: model init (torch's global RNG, or a CPU generator for
the named init schemes), one CPU generator for data order / crops / flips / mixup, one for
perturbations. ``train_acc`` under mixup is ``lam acc(y_a) + (1 - lam) acc(y_b)``.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Callable

import torch
from torch import nn

from lowbit_core.data.augment import augment, batches
from lowbit_core.data.cifar import normalize
from lowbit_core.data.mixup import mixup, mixup_loss
from lowbit_core.device import pick_device
from lowbit_core.families.train.config import TrainConfig
from lowbit_core.families.train.data import TrainData, load_train_data
from lowbit_core.families.train.init import init_weights, perturb
from lowbit_core.families.train.model import architecture, build_model
from lowbit_core.models.resnet import CifarResNet, load_fp_weights
from lowbit_core.quant.dsq import DSQQuantizer, dsq_alpha_schedule
from lowbit_core.quant.estimator_registry import get as get_estimator_entry
from lowbit_core.quant.layers import set_dsq_alpha, set_ede_epoch
from lowbit_core.quant.sign import SignQuantizer
from lowbit_core.training.checkpoint import FORMAT, load_model_weights, read_model_state, to_cpu
from lowbit_core.training.evaluate import evaluate
from lowbit_core.training.phases import Phase, pretrain_or_scratch
from lowbit_core.training.rng import rng_state, set_rng_state

Report = Callable[..., None]

TRAIN_METRICS: dict[str, str] = {
    "epoch": "int", "phase": "str", "train_loss": "float", "train_acc": "float", "test_loss": "float",
    "test_acc": "float", "best_test_acc": "float", "val_loss": "float", "val_acc": "float", "best_val_acc": "float",
    "selected_epoch": "int", "selected_test_acc": "float", "lr": "float", "train_steps": "int",
    "images_per_s": "float", "epoch_time_s": "float", "dsq_alpha": "float", "ede_t": "float", "perturbed": "int",
    "resumed_from_epoch": "int",
}


def plan_phases(cfg: TrainConfig) -> list[Phase]:
    """``[pretrain (FP), finetune]`` with ``train.pretrain_epochs`` > 0 and a quantized ``model.kind``,
    else ``[scratch]`` (:func:`lowbit_core.training.phases.pretrain_or_scratch`)."""
    t = cfg.train
    return pretrain_or_scratch(t.epochs, t.pretrain_epochs, cfg.model.kind, t.lr, t.finetune_lr)


def make_optimizer(model: nn.Module, cfg: TrainConfig, lr: float) -> torch.optim.Optimizer:
    """Weight decay on conv/linear weights (ndim > 1) only; BN, biases and quantizer scalars get none."""
    t = cfg.train
    decay = [p for p in model.parameters() if p.ndim > 1]
    rest = [p for p in model.parameters() if p.ndim <= 1]
    groups = [{"params": decay, "weight_decay": t.weight_decay}, {"params": rest, "weight_decay": 0.0}]
    if t.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=t.momentum)
    return torch.optim.Adam(groups, lr=lr, betas=(t.beta1, t.beta2))


def cosine_lr(peak: float, step: int, total: int) -> float:
    """``peak * (1 + cos(pi * step / total)) / 2``: ``peak`` at step 0, 0 at ``total``."""
    return peak * 0.5 * (1.0 + math.cos(math.pi * min(step, total) / max(total, 1)))


def _dsq_alpha(model: nn.Module) -> float:
    alphas = [float(m.effective_alpha().detach()) for m in model.modules() if isinstance(m, DSQQuantizer)]
    return sum(alphas) / len(alphas) if alphas else math.nan


def _ede_t(model: nn.Module) -> float:
    for m in model.modules():
        if isinstance(m, SignQuantizer) and get_estimator_entry(m.estimator).schedule and m.param is not None:
            return float(m.param[0] if isinstance(m.param, (tuple, list)) else m.param)
    return math.nan


def steps_per_epoch(cfg: TrainConfig, n_train: int) -> int:
    full = n_train // cfg.train.batch_size
    if full < 1:
        raise ValueError(f"{n_train} training images give no batch of {cfg.train.batch_size}; lower train.batch_size")
    return min(full, cfg.train.steps_per_epoch) if cfg.train.steps_per_epoch else full


NO_SELECTION = {"best_val_acc": math.nan, "selected_epoch": 0, "selected_test_acc": math.nan}


@dataclass
class TrainRun:
    """What one training run carries from epoch to epoch (the checkpointed state, live)."""

    cfg: TrainConfig
    data: TrainData
    device: torch.device
    phases: list[Phase]
    gens: dict[str, torch.Generator]
    n_steps: int
    epoch0: int
    phase: Phase
    model: CifarResNet
    opt: torch.optim.Optimizer
    train_steps: int = 0
    best_test: float = 0.0
    selection: dict = field(default_factory=lambda: dict(NO_SELECTION))

    def phase_of(self, epoch: int) -> Phase:
        return next(p for p in self.phases if p.start <= epoch < p.end)


def start_run(cfg: TrainConfig, data: TrainData, device: torch.device, start_state: dict | None = None,
              init_model: dict | None = None) -> TrainRun:
    """A fresh run (seeded init, the first phase) or one continued from ``start_state``. ``init_model``
    (fresh runs only): a state with ``"model"`` weights (and ``"arch"``) that replace the seeded init
    after the architecture check; its source is named in errors as ``init_model["source"]``."""
    phases = plan_phases(cfg)
    gens = {"data": torch.Generator().manual_seed(10_000 + cfg.seed),
            "perturb": torch.Generator().manual_seed(20_000 + cfg.seed)}
    n_steps = steps_per_epoch(cfg, len(data.y_train))
    if start_state is None:
        phase = phases[0]
        torch.manual_seed(cfg.seed)
        model = build_model(cfg, phase.kind, data.n_classes)
        init_weights(model, cfg.model.init, torch.Generator().manual_seed(30_000 + cfg.seed))
        if init_model is not None:
            load_model_weights(model, init_model, architecture(cfg, data.n_classes),
                               init_model.get("source", "init_model"))
        model.to(device)
        return TrainRun(cfg, data, device, phases, gens, n_steps, 0, phase, model, make_optimizer(model, cfg, phase.lr))
    names = [p.name for p in phases]
    if start_state["phase"] not in names:
        raise ValueError(f"start_state phase {start_state['phase']!r} is not a phase of this config ({names})")
    phase = phases[names.index(start_state["phase"])]
    model = build_model(cfg, phase.kind, data.n_classes).to(device)
    model.load_state_dict(start_state["model"])
    opt = make_optimizer(model, cfg, phase.lr)
    opt.load_state_dict(start_state["optimizer"])
    set_rng_state(gens, start_state["rng"])
    run = TrainRun(cfg, data, device, phases, gens, n_steps, int(start_state["epoch"]), phase, model, opt,
               int(start_state["train_steps"]), float(start_state["best_test_acc"]))
    run.selection.update(start_state.get("selection", {}))
    return run


def _enter_epoch(run: TrainRun, epoch: int) -> tuple[int, int]:
    """Switch phase where one ends (FP weights into the quantized model, a fresh optimizer), set the
    epoch's schedules (EDE, scheduled DSQ alpha) and perturb; returns (epoch within phase, perturbed)."""
    cfg = run.cfg
    if epoch >= run.phase.end:
        fp_state = run.model.state_dict()
        run.phase = run.phase_of(epoch)
        run.model = build_model(cfg, run.phase.kind, run.data.n_classes).to(run.device)
        load_fp_weights(run.model, fp_state)
        run.opt = make_optimizer(run.model, cfg, run.phase.lr)
        run.selection = dict(NO_SELECTION)  # select among the trained model's own epochs, never the FP ones
    phase, model, e = run.phase, run.model, epoch - run.phase.start
    model.train()
    set_ede_epoch(model, e, phase.epochs)
    q = cfg.quant
    if phase.kind == "kbit" and q.kbit == "dsq" and q.dsq_schedule != "learned":
        set_dsq_alpha(model, dsq_alpha_schedule(e, max(phase.epochs - 1, 1), q.dsq_alpha, q.dsq_alpha_min,
                                                q.dsq_schedule))
    perturbed = 0
    if cfg.perturb.amplitude > 0 and epoch > 0 and epoch % cfg.perturb.period == 0:
        perturbed = int(perturb(model, cfg.perturb.amplitude, run.gens["perturb"]) > 0)
    return e, perturbed


def _train_epoch(run: TrainRun, e: int) -> dict:
    """One pass of ``n_steps`` optimizer steps at epoch ``e`` of the phase; the epoch's train metrics."""
    cfg, data, model, opt, phase, n_steps = run.cfg, run.data, run.model, run.opt, run.phase, run.n_steps
    t = cfg.train
    t0 = time.perf_counter()
    loss_sum = torch.zeros((), device=run.device)
    correct = torch.zeros((), device=run.device)
    seen, lr = 0, phase.lr
    g = run.gens["data"]
    for i, (xb, yb) in enumerate(batches(data.x_train, data.y_train, t.batch_size, g)):
        if i >= n_steps:
            break
        lr = cosine_lr(phase.lr, e * n_steps + i, phase.epochs * n_steps)
        for group in opt.param_groups:
            group["lr"] = lr
        x = augment(xb, g, data.stats) if cfg.data.augment else normalize(xb, data.stats)
        x, ya, yb2, lam = mixup(x, yb, t.mixup_alpha, g)
        logits = model(x)
        loss = mixup_loss(logits, ya, yb2, lam)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        with torch.no_grad():
            pred = logits.argmax(1)
            loss_sum += loss.detach() * len(yb)
            correct += lam * (pred == ya).sum() + (1.0 - lam) * (pred == yb2).sum()
        seen += len(yb)
        run.train_steps += 1
    train_loss, train_acc = float(loss_sum) / seen, float(correct) / seen  # syncs the device
    return {"train_loss": train_loss, "train_acc": train_acc, "lr": lr, "train_steps": run.train_steps,
            "images_per_s": seen / (time.perf_counter() - t0)}


def _evaluate_and_select(run: TrainRun, epoch: int) -> dict:
    """Test and validation metrics of the epoch, and the selected epoch so far: the best validation
    accuracy (ties keep the earlier epoch); with no validation split, the best test accuracy (optimistic)."""
    data, batch = run.data, run.cfg.train.eval_batch_size
    test_loss, test_acc = evaluate(run.model, data.x_test, data.y_test, batch, data.stats)
    val_loss, val_acc = math.nan, math.nan
    if len(data.y_val):
        val_loss, val_acc = evaluate(run.model, data.x_val, data.y_val, batch, data.stats)
    run.best_test = max(run.best_test, test_acc)
    score = val_acc if len(data.y_val) else test_acc
    sel = run.selection
    if not score <= sel["best_val_acc"]:  # also true while best_val_acc is NaN (first epoch)
        sel.update(best_val_acc=score, selected_epoch=epoch + 1, selected_test_acc=test_acc)
    return {"test_loss": test_loss, "test_acc": test_acc, "best_test_acc": run.best_test, "val_loss": val_loss,
            "val_acc": val_acc, **sel}


def _state(run: TrainRun, epoch: int, e: int) -> dict:
    """The checkpoint state after global ``epoch`` (layout: :mod:`lowbit_core.training.checkpoint`)."""
    return to_cpu({
        "format": FORMAT, "epoch": epoch + 1, "phase": run.phase.name, "arch": architecture(run.cfg, run.data.n_classes),
        "train_steps": run.train_steps,
        "best_test_acc": run.best_test, "selection": dict(run.selection), "model": run.model.state_dict(),
        "optimizer": run.opt.state_dict(),
        "scheduler": {"kind": "cosine", "phase_step": (e + 1) * run.n_steps, "phase_steps": run.phase.epochs * run.n_steps},
        "rng": rng_state(run.gens),
    })


def run_epochs(run: TrainRun, report: Report) -> dict:
    """The run's remaining epochs, ``report(metrics)`` after each (``state=`` on checkpoint epochs and
    the last, see the module docstring); returns the last epoch's metrics ({} when none was left)."""
    cfg = run.cfg
    last: dict = {}
    for epoch in range(run.epoch0, cfg.train.epochs):
        t0 = time.perf_counter()
        e, perturbed = _enter_epoch(run, epoch)
        last = {"step": epoch + 1, "epoch": epoch + 1, "phase": run.phase.name, **_train_epoch(run, e),
                **_evaluate_and_select(run, epoch), "epoch_time_s": time.perf_counter() - t0,
                "dsq_alpha": _dsq_alpha(run.model), "ede_t": _ede_t(run.model), "perturbed": perturbed,
                "resumed_from_epoch": run.epoch0}
        every = cfg.train.checkpoint_every
        if every and ((epoch + 1) % every == 0 or epoch + 1 == cfg.train.epochs):
            report(dict(last), state=_state(run, epoch, e))
        else:
            report(dict(last))
    return last


def train(cfg: TrainConfig, report: Report, device: torch.device | None = None,
          start_state: dict | None = None) -> dict:
    """Train per ``cfg``; ``report(metrics)`` each epoch (``state=`` on checkpoint epochs and the last,
    see the module docstring); ``start_state``: a state from an earlier run of the same config to
    continue from (``model.init_from`` then does not act: the state holds the trained weights).
    Returns the last epoch's metrics."""
    device = device or pick_device()
    init = None
    if start_state is None and cfg.model.init_from:
        init = {**read_model_state(cfg.model.init_from), "source": cfg.model.init_from}
    run = start_run(cfg, load_train_data(cfg.data, device), device, start_state, init)
    return run_epochs(run, report)


__all__ = ["TRAIN_METRICS", "plan_phases", "make_optimizer", "cosine_lr", "steps_per_epoch", "TrainRun", "start_run",
           "run_epochs", "train"]
