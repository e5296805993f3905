"""The method under test of a probe trial, as a stream of :class:`~lowbit_core.probes.points.Point`.

``step`` counts: multi-step STE iterations (``ste``, :mod:`lowbit_core.probes.multistep`), DG steps
(``dg``, :mod:`lowbit_core.probes.dg`), accepted coordinate moves (``cdg``), ADMM iterations
(``admm``, :mod:`lowbit_core.probes.admm`), GA generations (``ga``, :mod:`lowbit_core.probes.genetic`)
or CMA-ES generations (``es``, :mod:`lowbit_core.probes.evolution_strategy`). All but ``ste`` work on
the first layer's structured view.
"""
from __future__ import annotations

from typing import Iterator

import torch

from lowbit_core.probes import admm, dg, evolution_strategy, genetic, multistep
from lowbit_core.probes.budget import random_start
from lowbit_core.probes.config import ProbeConfig
from lowbit_core.probes.points import Point
from lowbit_core.probes.setup import Setup


def report_every(cfg: ProbeConfig) -> int:
    """How often the method's points become rows (the last point always does)."""
    return {"ste": cfg.multi.report_every, "dg": 1, "cdg": cfg.dg.report_every, "admm": cfg.admm.report_every,
            "ga": cfg.ga.report_every, "es": cfg.es.report_every}[cfg.method]


def start_cost(cfg: ProbeConfig, s: Setup) -> tuple[int, int]:
    """(loss evaluations, backward passes) the method has spent before its first point: ADMM from the
    STE checkpoint starts at the single-step STE's best point, so it carries that scan's cost."""
    return s.single_cost if cfg.method == "admm" and cfg.admm.start == "ste" else (0, 0)


def multistep_start(cfg: ProbeConfig, shape, device) -> torch.Tensor:
    """The multi-step search's random start (seeded from ``cfg.seed``; a folded trial draws the same)."""
    return random_start(shape, cfg.multi.noise, cfg.budget.epsilon, torch.Generator().manual_seed(3_000 + cfg.seed),
                        device)


def multistep_lr(cfg: ProbeConfig) -> float:
    """multi.lr, times epsilon when ``multi.lr_unit = "epsilon"``."""
    return cfg.multi.lr * (cfg.budget.epsilon if cfg.multi.lr_unit == "epsilon" else 1.0)


def points(cfg: ProbeConfig, s: Setup, device) -> Iterator[Point]:
    """The search under test (lazy: nothing is computed before the first point is asked for)."""
    eps, view, w0 = cfg.budget.epsilon, s.view, s.w0
    if cfg.method == "dg":
        d = cfg.dg
        return dg.multistep_dg(view, w0, eps, d.steps, fp_moves=d.fp_moves, select=d.select,
                               max_coords=d.max_coords, prefix_points=d.prefix_points)
    if cfg.method == "cdg":
        d = cfg.dg
        return dg.cdg(view, w0, eps, d.cdg_max_moves, d.cdg_refresh, d.cdg_shortlist, d.fp_moves)
    if cfg.method == "admm":
        a = cfg.admm
        start = s.single.best_delta if a.start == "ste" else torch.zeros_like(w0)
        return admm.search(view, w0, eps, start, a.iterations, a.rho, a.rho_growth, a.lr, a.inner_steps)
    if cfg.method == "ga":
        g = cfg.ga
        return genetic.search(view, w0, eps, torch.Generator().manual_seed(5_000 + cfg.seed), g.generations,
                              g.population, g.elite, g.tournament, g.crossover, g.mutations, g.init_rate)
    if cfg.method == "es":
        e = cfg.es
        return evolution_strategy.search(view, w0, eps, cfg.seed, e.generations, e.population, e.sigma0)
    m = cfg.multi
    layer = cfg.budget.layer
    eff0 = s.model.effective_weight(layer, w0)

    def changed(delta: torch.Tensor) -> int:
        return int((s.model.effective_weight(layer, w0 + delta) != eff0).sum())

    return multistep.search(s.loss_fn, multistep_start(cfg, w0.shape, device), eps, m.optimizer, multistep_lr(cfg),
                            m.steps, m.momentum, (m.beta1, m.beta2), m.normalize, changed)
