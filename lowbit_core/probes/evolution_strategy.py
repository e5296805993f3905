"""Separable CMA-ES over the budget box, run by the ``cma`` library (pycma, pinned at 4.5.0).

Search space: ``x in [-1, 1]^n`` over the probed first layer's genes -- the coordinates that can
change the loss inside the box (binary MLP: the weights whose sign flip is reachable,
:mod:`lowbit_core.probes.flips`; the others cannot change sign, so searching them would only add
dimensions; FP MLP: every weight) -- with the latent change ``delta = clip(epsilon x, -b, b)`` on the
genes and 0 elsewhere (b = the float32 box bound), so every evaluated point lies in the box.

The strategy is CMA-ES with a diagonal covariance, sep-CMA-ES (Ros & Hansen, PPSN 2008; Hansen &
Ostermeier 2001 for CMA-ES), as ``cma.CMAEvolutionStrategy(x0=0, sigma0, options)`` with the options
``CMA_diagonal=True`` (separable for the whole run), ``popsize`` (``population``; 0 keeps cma's
default 4 + 3 ln n), ``bounds=[-1, 1]`` (cma's BoundTransform: every solution ``ask`` returns is
feasible and is evaluated as returned) and ``seed`` (from the probe's seed; cma reads 0 as "time",
so the seed passed is never 0). cma's own termination criteria (tolfun, tolx, tolflatfitness,
tolstagnation, maxiter, ...) are switched off: a binary layer's loss is piecewise constant, and a flat
generation must not end the run; the run ends after ``generations``. Each generation asks
``popsize`` solutions, evaluates them on the fixed batch (``popsize`` loss evaluations) and tells cma
their losses. Generation 0 is the start (x = 0: one loss evaluation). The point yielded after each
generation is that generation's best solution. pycma needs n >= 2: a layer with a single gene
gets an inert second coordinate (it moves no weight).
"""
from __future__ import annotations

import math
from typing import Iterator

import cma
import numpy as np
import torch

from lowbit_core.probes.budget import project
from lowbit_core.probes.flips import reachable
from lowbit_core.probes.points import Point
from lowbit_core.probes.structure import FirstLayerView

OFF = {"tolfun": 0, "tolfunhist": 0, "tolfunrel": 0, "tolx": 0, "tolflatfitness": math.inf,
       "tolstagnation": math.inf, "tolfacupx": math.inf, "tolupsigma": math.inf, "tolconditioncov": math.inf,
       "maxiter": math.inf, "maxfevals": math.inf}
"""cma options that switch its termination criteria off (the generation count ends the run)."""


def cma_options(population: int, seed: int) -> dict:
    """The options passed to ``cma.CMAEvolutionStrategy`` (module docstring)."""
    opts = {"CMA_diagonal": True, "bounds": [-1.0, 1.0], "seed": seed, "verbose": -9, **OFF}
    if population:
        opts["popsize"] = population
    return opts


def search(view: FirstLayerView, w0: torch.Tensor, epsilon: float, seed: int, generations: int,
           population: int = 0, sigma0: float = 0.3) -> Iterator[Point]:
    """Yield the start (generation 0) and each generation's best solution for 1..``generations``."""
    index = (torch.nonzero(reachable(w0, epsilon).flatten()).flatten() if view.binary
             else torch.arange(w0.numel(), device=w0.device))
    eff0 = view.effective(w0)

    def deltas(x: np.ndarray) -> torch.Tensor:
        flat = torch.zeros(x.shape[0], w0.numel(), dtype=w0.dtype, device=w0.device)
        flat[:, index] = torch.as_tensor(x[:, :len(index)], dtype=w0.dtype).to(w0.device) * epsilon
        return project(flat, epsilon).view(x.shape[0], *w0.shape)

    def point(k: int, delta: torch.Tensor, loss: float, best: float, reach: float) -> Point:
        moved = int((view.effective(w0 + delta) != eff0).sum())
        return Point(k, loss, min(best, loss), max(reach, float(delta.abs().max())), moved, delta)

    zero = torch.zeros_like(w0)
    p = point(0, zero, float(view.losses_of_deltas(w0, zero[None])[0]), math.inf, 0.0)
    yield p
    if generations == 0 or len(index) == 0:
        return
    es = cma.CMAEvolutionStrategy(np.zeros(max(len(index), 2)), sigma0, cma_options(population, 10_007 + seed))
    for k in range(1, generations + 1):
        x = np.asarray(es.ask())
        d = deltas(x)
        losses = view.losses_of_deltas(w0, d)
        es.tell(list(x), losses.double().cpu().tolist())
        i = int(torch.argmin(losses))
        p = point(k, d[i], float(losses[i]), p.best_loss, p.max_abs_delta)
        yield p
