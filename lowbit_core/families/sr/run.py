"""Super-resolution training, Ray-free: ``train_sr(cfg, report, device, start_state)`` (family ``sr``).

Per epoch (global epochs ``0 .. train.epochs - 1``, reported 1-based as ``epoch`` and ``step``):

1. the phase's EDSR (``pretrain``: FP; ``finetune`` / ``scratch``: ``quant.bits``) in train mode;
   PAMS's activation scales calibrate during the first ``quant.ema_epochs`` epochs of a quantized
   phase (:func:`~lowbit_core.quant.pams.set_pams_calibration`);
2. ``train.steps_per_epoch`` Adam steps on batches of ``train.batch_size`` random patches
   (:class:`~lowbit_core.data.sr_images.PatchSampler`: LR ``data.lr_patch`` px, flips and 90-degree
   rotations), loss ``L1 = mean |EDSR(LR) - HR|`` on 0..255 values (EDSR). The lr of epoch ``e`` of a
   phase is ``lr_phase * lr_gamma ** (e // lr_decay_every)`` (EDSR's and PAMS's step decay), for the
   weights and (from ``quant.act_clip_lr``) for PAMS's alphas;
3. evaluation (eval mode) on every test set: each LR image is super-resolved whole, brought to 8 bits
   (``round(clip(., 0, 255))``), and compared with its HR image by PSNR and SSIM on the Y channel with
   ``scale`` pixels cropped (:mod:`lowbit_core.data.sr_metrics`); a set's figure is the mean over its
   images (``psnr_y.<set>``, ``ssim_y.<set>``), ``psnr_y`` / ``ssim_y`` the mean over the trial's sets.
   The bicubic baseline of the same images, measured the same way (``bicubic_psnr_y.<set>``, ...), is
   computed once per trial and carried on every row. With a validation set
   (:class:`~lowbit_core.families.sr.config.SRDataConfig`: images held out of the training folder,
   ``data.val_root`` or generated) the same measurement on it gives ``val_psnr_y`` / ``val_ssim_y``
   (and ``val_bicubic_*``, ``n_val_images``, ``val_names``: the validation files' stems, comma-joined,
   so the split is recorded in every row): the metrics for model selection and early stopping, which
   must never read the test sets;
4. ``report(metrics)``, or ``report(metrics, state=state)`` every ``train.checkpoint_every`` epochs
   except the last (the layout of :mod:`lowbit_core.training.checkpoint`, with ``iterations`` in place
   of ``train_steps``); ``start_state`` continues after that epoch, bit-identically on the CPU. The
   last row also carries ``crop_*``: a ``data.crop_size`` px crop of the first test set's first image
   where bicubic upsampling loses the most (:func:`crop_position`), of the HR image, the bicubic baseline and the model's output (flattened HWC,
   0..255), for the report's figure.

Pretrain path (``train.pretrain_epochs`` P > 0, a quantized ``quant.bits``): an FP EDSR trains for P
epochs, its weights are loaded into the quantized EDSR (quantizer parameters start fresh), which
trains for the rest with a fresh Adam and step schedule at ``train.finetune_lr`` (0: ``lr``), as PAMS
fine-tunes an FP EDSR. Randomness from ``cfg.seed``: model init (torch's global RNG) and one CPU
generator for patches.

Hardware cost (:func:`sr_cost`, the family's cost columns): the trial's final EDSR counted by
:func:`lowbit_core.cost.model_cost` for one 192 x 192 HR output (LR input 96, 64, 48 px at x2, x3,
x4; every count except the parameters scales with the pixels: x25 gives a 1280 x 720 output, the
size SR papers quote Mult-Adds for).
"""
from __future__ import annotations

import functools
import math
import time
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from lowbit_core.cost.count import Cost, model_cost
from lowbit_core.data.sr_images import PatchSampler, SRPair, bicubic_upscale, load_file_pairs, load_pairs
from lowbit_core.data.sr_metrics import psnr_ssim_y, quantize
from lowbit_core.device import pick_device
from lowbit_core.models.edsr import EDSR
from lowbit_core.models.resnet import load_fp_weights, resolve_nonlin
from lowbit_core.quant.layers import QuantSpec
from lowbit_core.quant.pams import PAMSAct, set_pams_calibration
from lowbit_core.families.sr.config import (GENERATED_TEST_SEED, GENERATED_TRAIN_SEED, GENERATED_VAL_SEED,
                                            TEST_SETS, SRConfig, SRModelConfig, SRQuantConfig, has_validation,
                                            test_files, train_files, val_files)
from lowbit_core.training.checkpoint import FORMAT, to_cpu
from lowbit_core.training.phases import Phase, pretrain_or_scratch
from lowbit_core.training.rng import rng_state, set_rng_state

Report = Callable[..., None]
GENERATED_DEFAULT = (16, 4)
"""(training images, test images per set) when ``data.n_train`` / ``data.n_test`` is 0 for generated data."""
SET_METRICS = ("psnr_y", "ssim_y", "bicubic_psnr_y", "bicubic_ssim_y")
VAL_METRICS = tuple(f"val_{m}" for m in SET_METRICS)
SELECTION_METRICS = ("val_psnr_y", "val_ssim_y")
"""The metrics a scheduler or a searcher may read: measured on the validation set, never a test set."""

SR_METRICS: dict[str, str] = {
    "epoch": "int", "phase": "str", "train_loss": "float", "lr": "float", "iterations": "int",
    "patches_per_s": "float", "epoch_time_s": "float", "eval_time_s": "float", "resumed_from_epoch": "int",
    "n_train_images": "int", "act_clip": "float",
    **{m: "float" for m in SET_METRICS},
    **{f"{m}.{s}": "float" for s in TEST_SETS for m in SET_METRICS},
    **{f"n_images.{s}": "int" for s in TEST_SETS},
    **{m: "float" for m in VAL_METRICS}, "n_val_images": "int", "val_names": "str",
    "crop_image": "str", "crop_hr": "list[float]", "crop_bicubic": "list[float]", "crop_sr": "list[float]",
}


def plan_phases(cfg: SRConfig) -> list[Phase]:
    """``[pretrain (FP), finetune]`` with pretraining, else ``[scratch]`` (module docstring;
    :func:`lowbit_core.training.phases.pretrain_or_scratch`)."""
    t = cfg.train
    return pretrain_or_scratch(t.epochs, t.pretrain_epochs, cfg.quant.kind, t.lr, t.finetune_lr)


def quant_spec(cfg: SRConfig, kind: str) -> QuantSpec | None:
    """The quantized parts' :class:`QuantSpec` for precision ``kind`` (None for FP): binary ``sign``
    weights (``quant.weight_*``) and activations (``quant.act_*``), or k-bit ``quant.kbit`` on both
    (LSQ activations signed: EDSR's features are)."""
    q = cfg.quant
    if kind == "fp":
        return None
    if kind == "binary":
        return QuantSpec(weight="sign", weight_estimator=q.weight_estimator, weight_param=q.weight_param or None,
                         weight_scale=q.weight_scale, act="sign" if q.act == "quant" else "none",
                         act_estimator=q.act_estimator, act_param=q.act_param or None)
    return QuantSpec(weight=q.kbit, act=q.kbit if q.act == "quant" else "none", bits=q.bits, act_signed=True)


def build_model(cfg: SRConfig, kind: str) -> EDSR:
    """The EDSR of a phase of precision ``kind``; ``model.nonlin="auto"`` is resolved from the trial's
    target precision, so an FP pretraining phase has the nonlinearity of the network it initializes."""
    m, spec = cfg.model, quant_spec(cfg, kind)
    nonlin = resolve_nonlin(m.nonlin, quant_spec(cfg, cfg.quant.kind) if "body" in cfg.quant.parts else None)
    specs = {p: spec for p in cfg.quant.parts} if spec is not None else {}
    return EDSR(cfg.scale, m.blocks, m.channels, m.res_scale, specs, nonlin)


COST_HR_SIDE = 192
"""Side of the HR output the cost columns are counted for (divisible by 2, 3 and 4)."""


@functools.lru_cache(maxsize=256)
def _cost(scale: int, model: SRModelConfig, quant: SRQuantConfig) -> Cost:
    side = COST_HR_SIDE // scale
    return model_cost(build_model(SRConfig(scale=scale, model=model, quant=quant), quant.kind), (1, 3, side, side))


def sr_cost(cfg: SRConfig) -> Cost:
    """The cost of the trial's final EDSR for one 192 x 192 HR output (module docstring); cached per
    model-determining config (scale, model, quant), so a dry run builds each distinct model once."""
    return _cost(cfg.scale, cfg.model, cfg.quant)


def make_optimizer(model: nn.Module, cfg: SRConfig, lr: float) -> torch.optim.Adam:
    """Adam over the weights at ``lr`` and PAMS's alphas at ``quant.act_clip_lr`` (no weight decay)."""
    alphas = [m.alpha for m in model.modules() if isinstance(m, PAMSAct)]
    ids = {id(a) for a in alphas}
    groups = [{"params": [p for p in model.parameters() if id(p) not in ids], "lr": lr, "base_lr": lr}]
    if alphas:
        groups.append({"params": alphas, "lr": cfg.quant.act_clip_lr, "base_lr": cfg.quant.act_clip_lr})
    t = cfg.train
    return torch.optim.Adam(groups, betas=(t.beta1, t.beta2), eps=t.eps)


def step_lr_factor(epoch_in_phase: int, decay_every: int, gamma: float) -> float:
    """``gamma ** (epoch_in_phase // decay_every)`` (PyTorch's ``StepLR``, stepped once per epoch)."""
    return gamma ** (epoch_in_phase // decay_every)


@dataclass(frozen=True)
class TestSet:
    """A named test set's pairs and its bicubic baseline per image (``(PSNR, SSIM)``)."""

    name: str
    pairs: tuple[SRPair, ...]
    bicubic: tuple[tuple[float, float], ...]


def load_test_sets(cfg: SRConfig) -> list[TestSet]:
    """Every test set of ``data.test_sets`` with its bicubic baseline (module docstring)."""
    d, out = cfg.data, []
    for name in d.test_sets:
        files = test_files(d, name)
        if files is None:
            pairs = load_pairs(None, cfg.scale, d.n_test or GENERATED_DEFAULT[1], d.generated_size, GENERATED_TEST_SEED)
        else:
            pairs = load_file_pairs(files, cfg.scale)
        out.append(_with_bicubic(name, pairs, cfg.scale))
    return out


def _with_bicubic(name: str, pairs: tuple[SRPair, ...], scale: int) -> TestSet:
    bic = tuple(psnr_ssim_y(bicubic_upscale(p.lr, scale), p.hr, scale, p.grey) for p in pairs)
    return TestSet(name, pairs, bic)


def load_val_set(cfg: SRConfig) -> TestSet | None:
    """The validation set (named ``val``) with its bicubic baseline, or None without one."""
    d = cfg.data
    if not has_validation(d):
        return None
    files = val_files(d)
    if files is None:
        return _with_bicubic("val", load_pairs(None, cfg.scale, d.val_images, d.generated_size, GENERATED_VAL_SEED),
                             cfg.scale)
    return _with_bicubic("val", load_file_pairs(files, cfg.scale), cfg.scale)


def load_train_pairs(cfg: SRConfig) -> tuple[SRPair, ...]:
    """The training pairs: the files of :func:`~lowbit_core.families.sr.config.train_files` (validation
    hold-out excluded), or generated images."""
    d = cfg.data
    files = train_files(d)
    if files is None:
        return load_pairs(None, cfg.scale, d.n_train or GENERATED_DEFAULT[0], d.generated_size, GENERATED_TRAIN_SEED)
    return load_file_pairs(files, cfg.scale)


@torch.no_grad()
def super_resolve(model: nn.Module, lr: np.ndarray, device: torch.device) -> np.ndarray:
    """The model's output for one LR uint8 ``(h, w, 3)`` image as 8 bits, ``(s h, s w, 3)`` uint8."""
    x = torch.from_numpy(np.array(lr)).permute(2, 0, 1)[None].float().to(device)
    return quantize(model(x)[0].permute(1, 2, 0).cpu().numpy())


def evaluate(model: nn.Module, sets: list[TestSet], scale: int, device: torch.device) -> tuple[dict, np.ndarray | None]:
    """Per-set and mean Y-channel PSNR/SSIM of ``model`` and of bicubic (module docstring); also the
    model's 8-bit output of the first set's first image (for the crop)."""
    model.eval()
    out: dict = {}
    first = None
    for ts in sets:
        vals = []
        for p in ts.pairs:
            sr = super_resolve(model, p.lr, device)
            first = sr if first is None else first
            vals.append(psnr_ssim_y(sr, p.hr, scale, p.grey))
        for prefix, v in (("", np.array(vals)), ("bicubic_", np.array(ts.bicubic))):
            out[f"{prefix}psnr_y.{ts.name}"], out[f"{prefix}ssim_y.{ts.name}"] = float(v[:, 0].mean()), float(v[:, 1].mean())
        out[f"n_images.{ts.name}"] = len(ts.pairs)
    for m in SET_METRICS:
        out[m] = float(np.mean([out[f"{m}.{ts.name}"] for ts in sets]))
    return out, first


def evaluate_val(model: nn.Module, val: TestSet, scale: int, device: torch.device) -> dict:
    """``val_psnr_y`` / ``val_ssim_y`` (the mean over the validation images, measured as a test set
    is), the bicubic baseline ``val_bicubic_*``, ``n_val_images`` and ``val_names``."""
    scores, _ = evaluate(model, [val], scale, device)
    out = {f"val_{m}": scores[m] for m in SET_METRICS}
    return {**out, "n_val_images": len(val.pairs), "val_names": ",".join(p.name for p in val.pairs)}


def crop_position(hr: np.ndarray, bicubic: np.ndarray, size: int) -> tuple[int, int]:
    """Top-left ``(y, x)`` of the ``size`` px window, on a grid of stride ``size // 2`` (and the last
    row/column), where bicubic upsampling loses the most: the largest mean ``|bicubic - HR|`` (first
    on ties). A function of the image alone, so every trial of a sweep shows the same place."""
    err = np.abs(bicubic.astype(np.float64) - hr.astype(np.float64)).mean(axis=2)
    step = max(size // 2, 1)

    def starts(n: int) -> list[int]:
        return sorted({*range(0, n - size + 1, step), n - size})

    best = max((err[y:y + size, x:x + size].mean(), -y, -x) for y in starts(err.shape[0]) for x in starts(err.shape[1]))
    return -best[1], -best[2]


def crop_metrics(sets: list[TestSet], sr: np.ndarray, scale: int, size: int) -> dict:
    """``crop_*`` of the first set's first image: a ``size`` px crop (clamped to the image) at
    :func:`crop_position` of HR, bicubic and ``sr`` (flattened HWC floats), ``crop_image`` =
    '<set>/<image>'."""
    pair = sets[0].pairs[0]
    hr, bicubic = pair.hr, bicubic_upscale(pair.lr, scale)
    size = min(size, *hr.shape[:2])
    y, x = crop_position(hr, bicubic, size)

    def cut(img: np.ndarray) -> list[float]:
        return img[y:y + size, x:x + size].astype(np.float64).ravel().tolist()

    return {"crop_image": f"{sets[0].name}/{pair.name}", "crop_hr": cut(hr), "crop_bicubic": cut(bicubic),
            "crop_sr": cut(sr)}


def _act_clip(model: nn.Module) -> float:
    alphas = [float(m.alpha.detach()) for m in model.modules() if isinstance(m, PAMSAct)]
    return float(np.mean(alphas)) if alphas else math.nan


@dataclass
class _Run:
    """What one training run carries from epoch to epoch (the checkpointed state, live)."""

    cfg: SRConfig
    device: torch.device
    phases: list[Phase]
    sampler: PatchSampler
    gen: torch.Generator
    epoch0: int
    phase: Phase
    model: EDSR
    opt: torch.optim.Adam
    iterations: int = 0

    def phase_of(self, epoch: int) -> Phase:
        return next(p for p in self.phases if p.start <= epoch < p.end)


def _start_run(cfg: SRConfig, sampler: PatchSampler, device: torch.device, start_state: dict | None) -> _Run:
    """A fresh run (seeded init, the first phase) or one continued from ``start_state``."""
    phases = plan_phases(cfg)
    gen = torch.Generator().manual_seed(10_000 + cfg.seed)
    if start_state is None:
        torch.manual_seed(cfg.seed)
        model = build_model(cfg, phases[0].kind).to(device)
        return _Run(cfg, device, phases, sampler, gen, 0, phases[0], model, make_optimizer(model, cfg, phases[0].lr))
    names = [p.name for p in phases]
    if start_state["phase"] not in names:
        raise ValueError(f"start_state phase {start_state['phase']!r} is not a phase of this config ({names})")
    phase = phases[names.index(start_state["phase"])]
    model = build_model(cfg, phase.kind).to(device)
    model.load_state_dict(start_state["model"])
    opt = make_optimizer(model, cfg, phase.lr)
    opt.load_state_dict(start_state["optimizer"])
    set_rng_state({"data": gen}, start_state["rng"])
    return _Run(cfg, device, phases, sampler, gen, int(start_state["epoch"]), phase, model, opt,
                int(start_state["iterations"]))


def _enter_epoch(run: _Run, epoch: int) -> int:
    """Switch phase where one ends (FP weights into the quantized model, a fresh Adam), set PAMS's
    calibration and the epoch's lr; returns the epoch within the phase."""
    cfg = run.cfg
    if epoch >= run.phase.end:
        fp_state = run.model.state_dict()
        run.phase = run.phase_of(epoch)
        run.model = build_model(cfg, run.phase.kind).to(run.device)
        load_fp_weights(run.model, fp_state)
        run.opt = make_optimizer(run.model, cfg, run.phase.lr)
    e = epoch - run.phase.start
    run.model.train()
    set_pams_calibration(run.model, e, cfg.quant.ema_epochs)
    factor = step_lr_factor(e, cfg.train.lr_decay_every, cfg.train.lr_gamma)
    for group in run.opt.param_groups:
        group["lr"] = group["base_lr"] * factor
    return e


def _train_epoch(run: _Run) -> dict:
    """``steps_per_epoch`` Adam steps on random patches; the epoch's mean L1 loss and speed."""
    t = run.cfg.train
    t0 = time.perf_counter()
    loss_sum = torch.zeros((), device=run.device)
    for _ in range(t.steps_per_epoch):
        lr_b, hr_b = run.sampler.sample(t.batch_size, run.gen)
        loss = F.l1_loss(run.model(lr_b), hr_b)
        run.opt.zero_grad(set_to_none=True)
        loss.backward()
        run.opt.step()
        loss_sum += loss.detach()
        run.iterations += 1
    train_loss = float(loss_sum) / t.steps_per_epoch  # syncs the device
    return {"train_loss": train_loss, "lr": run.opt.param_groups[0]["lr"], "iterations": run.iterations,
            "patches_per_s": t.steps_per_epoch * t.batch_size / (time.perf_counter() - t0)}


def _state(run: _Run, epoch: int) -> dict:
    """The checkpoint state after global ``epoch`` (layout: :mod:`lowbit_core.training.checkpoint`)."""
    return to_cpu({"format": FORMAT, "epoch": epoch + 1, "phase": run.phase.name, "iterations": run.iterations,
                   "model": run.model.state_dict(), "optimizer": run.opt.state_dict(),
                   "scheduler": {"kind": "step", "epoch_in_phase": epoch + 1 - run.phase.start},
                   "rng": rng_state({"data": run.gen})})


def train_sr(cfg: SRConfig, report: Report, device: torch.device | None = None,
             start_state: dict | None = None) -> dict:
    """Train per ``cfg``; ``report(metrics)`` each epoch (``state=`` on checkpoint epochs; module
    docstring); ``start_state``: a state of an earlier run of the same config. Returns the last metrics."""
    device = device or pick_device()
    sampler = PatchSampler(load_train_pairs(cfg), cfg.scale, cfg.data.lr_patch, device, cfg.data.augment)
    sets = load_test_sets(cfg)
    val = load_val_set(cfg)
    run = _start_run(cfg, sampler, device, start_state)
    last: dict = {}
    for epoch in range(run.epoch0, cfg.train.epochs):
        t0 = time.perf_counter()
        _enter_epoch(run, epoch)
        train = _train_epoch(run)
        t1 = time.perf_counter()
        scores, first_sr = evaluate(run.model, sets, cfg.scale, device)
        if val is not None:
            scores.update(evaluate_val(run.model, val, cfg.scale, device))
        last = {"step": epoch + 1, "epoch": epoch + 1, "phase": run.phase.name, **train, **scores,
                "eval_time_s": time.perf_counter() - t1, "epoch_time_s": time.perf_counter() - t0,
                "resumed_from_epoch": run.epoch0, "n_train_images": len(sampler), "act_clip": _act_clip(run.model)}
        if epoch + 1 == cfg.train.epochs and cfg.data.crop_size:
            last.update(crop_metrics(sets, first_sr, cfg.scale, cfg.data.crop_size))
        every = cfg.train.checkpoint_every
        if every and (epoch + 1) % every == 0 and epoch + 1 < cfg.train.epochs:
            report(dict(last), state=_state(run, epoch))
        else:
            report(dict(last))
    return last


__all__ = ["SR_METRICS", "SET_METRICS", "VAL_METRICS", "SELECTION_METRICS", "COST_HR_SIDE", "plan_phases", "quant_spec", "build_model", "sr_cost",
           "make_optimizer",
           "step_lr_factor", "TestSet", "load_test_sets", "load_val_set", "load_train_pairs", "super_resolve",
           "evaluate", "evaluate_val",
           "crop_position", "crop_metrics", "train_sr"]
