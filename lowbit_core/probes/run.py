"""One budget-probe trial, Ray-free: ``run_probe(cfg, report)`` (and ``run_probe_batch`` for folded trials).

Set-up (:mod:`lowbit_core.probes.setup`): the pretrained start, the fixed probe batch and its held-out
twin, the gradient through the estimator, the single-step STE lr scan. Then the method under test
(:mod:`lowbit_core.probes.methods`) reports every ``report_every`` steps and at its last point (the
last report carries the scan curve). Rows: :mod:`lowbit_core.probes.rows`.

Cost: ``loss_evals`` / ``grad_evals`` on each row count the method's loss evaluations and backward
passes on the probe batch so far (:mod:`lowbit_core.probes.evals`), read as each point is produced;
``fwd_equiv = loss_evals + 2 * grad_evals`` is their sum in forward-pass equivalents (a backward pass
costs two forward passes, Kaplan et al. 2020; see :mod:`lowbit_core.probes.evals`), and
``single_fwd_equiv`` the single-step STE's. With ``budget.fwd_equiv_per_weight`` > 0 the method stops
before the first point whose fwd_equiv would exceed ``ceil(fwd_equiv_per_weight * weights of the
probed layer)`` (the start, step 0, always reports): a multi-step STE iteration costs 3, so under a
cap C it takes (C - 1) // 3 steps, while a method without gradients (DG, GA, CMA-ES) gets about C
loss evaluations.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Any, Callable, Iterable, Iterator

import torch

from lowbit_core.device import pick_device
from lowbit_core.probes import batched, methods
from lowbit_core.probes.config import ProbeConfig
from lowbit_core.probes.evals import EvalCounter, fwd_equiv
from lowbit_core.probes.metrics import FOLDABLE, PROBE_METRICS
from lowbit_core.probes.points import Point
from lowbit_core.probes.rows import Tracker
from lowbit_core.probes.setup import Setup, setup

Report = Callable[[dict], None]


def eval_cap(cfg: ProbeConfig, s: Setup) -> int | None:
    """The cap in forward-pass equivalents, ``ceil(budget.fwd_equiv_per_weight * layer weights)`` (None: no cap)."""
    e = cfg.budget.fwd_equiv_per_weight
    return math.ceil(e * s.w0.numel()) if e > 0 else None


def _counted(points: Iterable, counter: EvalCounter, offset: tuple[int, int], share: int = 1) -> Iterator:
    """(point, (loss_evals, grad_evals)) as each point is produced: the counts since the stream began,
    divided by ``share`` (the searches computed together), plus ``offset``."""
    f0, b0 = counter.snapshot()
    for p in points:
        yield p, ((counter.forward - f0) // share + offset[0], (counter.backward - b0) // share + offset[1])


def _capped(stream: Iterable, cap: int | None) -> Iterator:
    """The stream up to (excluding) the first point past step 0 whose fwd_equiv exceeds ``cap``."""
    for p, counts in stream:
        if cap is not None and p.step > 0 and fwd_equiv(*counts) > cap:
            return
        yield p, counts


def _with_last(points: Iterable) -> Iterator[tuple[Any, bool]]:
    """(point, is_last) pairs: searches such as CDG may stop before their cap."""
    it = iter(points)
    try:
        prev = next(it)
    except StopIteration:
        return
    for p in it:
        yield prev, False
        prev = p
    yield prev, True


def run_probe(cfg: ProbeConfig, report: Report, device: torch.device | None = None) -> dict:
    """Run one probe trial, calling ``report(metrics)`` per reported step; returns the last metrics."""
    device = device or pick_device()
    s = setup(cfg, device)
    tracker = Tracker(s)
    every = methods.report_every(cfg)
    stream = _capped(_counted(methods.points(cfg, s, device), s.counter, methods.start_cost(cfg, s)), eval_cap(cfg, s))
    last: dict = {}
    for (p, counts), is_last in _with_last(stream):
        tracker.see(p)
        if p.step % every and not is_last:
            continue
        last = tracker.row(p, counts, is_last)
        report(dict(last))
    return last


def run_probe_batch(cfgs: list[ProbeConfig], report: Callable[..., None], device: torch.device | None = None) -> None:
    """Run probe trials that differ only in ``multi.noise`` / ``multi.lr`` as one batched search.

    Set-up and the single-step scan are computed once; the multi-step searches run together
    (:func:`lowbit_core.probes.batched.search_batch`), each point with the random start a separate
    trial would draw, and each search's counts are its share of the batched evaluations. Calls
    ``report(metrics, point=i)``; rows equal separate trials' to float32 summation order.
    """
    device = device or pick_device()
    base = cfgs[0]
    for c in cfgs[1:]:
        other = dataclasses.replace(c, multi=dataclasses.replace(c.multi, noise=base.multi.noise, lr=base.multi.lr))
        if other != base:
            raise ValueError(f"folded probe trials may differ only in {sorted(FOLDABLE)}")
    if base.method != "ste" or base.budget.layer != 0:
        raise ValueError("only multi-step STE on the first layer (method=ste, budget.layer=0) can be folded")
    s = setup(base, device)
    m, eps = base.multi, base.budget.epsilon
    starts = torch.stack([methods.multistep_start(c, s.w0.shape, device) for c in cfgs])
    lrs = torch.tensor([methods.multistep_lr(c) for c in cfgs], device=device)
    trackers = [Tracker(s) for _ in cfgs]
    searches = batched.search_batch(s.model, s.view, s.w0, starts, eps, m.optimizer, lrs, m.steps, m.momentum,
                                    (m.beta1, m.beta2), m.normalize)
    stream = _capped(_counted(searches, s.counter, (0, 0), share=len(cfgs)), eval_cap(base, s))
    for (bp, counts), is_last in _with_last(stream):
        for i, tracker in enumerate(trackers):
            p = Point(bp.step, float(bp.loss[i]), float(bp.best_loss[i]), float(bp.max_abs_delta[i]),
                      int(bp.coords_moved[i]), bp.delta[i])
            tracker.see(p)
            if p.step % m.report_every and not is_last:
                continue
            report(tracker.row(p, counts, is_last), point=i)
