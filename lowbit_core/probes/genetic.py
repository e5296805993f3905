"""A genetic algorithm over the probed first layer's reachable coordinates inside the budget box.

**Genes.** The coordinates that can change the loss inside the box: binary MLP: the weights whose
sign flip is reachable (:mod:`lowbit_core.probes.flips`), allele = flipped or not (the latent change
is the flip target or 0, so every individual lies in the box); FP MLP: every weight, allele =
delta_ij in [-b, b] (b = the float32 box bound of epsilon). An individual is a latent change delta.

**Operators.** Mutating a gene: binary: flip it; FP: resample it uniformly in [-b, b].

- Initial population: individual 0 is the start (delta = 0); each of the other population - 1 is the
  start with every gene mutated independently with probability ``init_rate``.
- Each generation: the ``elite`` best individuals pass unchanged (elitism; they are not evaluated
  again). Each of the population - elite children gets two parents by tournament selection (the best
  of ``tournament`` individuals drawn uniformly with replacement), uniform crossover with probability
  ``crossover`` (each gene from either parent with probability 1/2; otherwise a copy of the first
  parent), then every gene mutated independently with probability min(1, mutations / n_genes).
- Cost: ``population`` loss evaluations for the initial population, population - elite per generation.

The point yielded after each generation (0 = the initial population) is the population's best
individual; with elite >= 1 the best is carried over, so its loss never increases and is never
worse than the initial population's best. Random numbers come from the generator passed in (the
probe seeds it from the trial's seed).
"""
from __future__ import annotations

from typing import Iterator

import torch

from lowbit_core.probes.budget import box_bound
from lowbit_core.probes.flips import flip_target
from lowbit_core.probes.points import Point
from lowbit_core.probes.structure import FirstLayerView


class Genome:
    """Maps genes (P, n_genes) to latent changes (P, H, D) and mutates them (module docstring)."""

    def __init__(self, view: FirstLayerView, w0: torch.Tensor, epsilon: float):
        self.w0, self.binary, self.bound = w0, view.binary, box_bound(epsilon)
        if self.binary:
            target, ok = flip_target(w0, torch.zeros_like(w0), epsilon)
            self.index = torch.nonzero(ok.flatten()).flatten()
            self.target = target.flatten()[self.index]
        else:
            self.index = torch.arange(w0.numel(), device=w0.device)
        self.n = len(self.index)

    def start(self, count: int) -> torch.Tensor:
        """``count`` copies of the start's genes."""
        dtype = torch.bool if self.binary else self.w0.dtype
        return torch.zeros(count, self.n, dtype=dtype, device=self.w0.device)

    def mutate(self, genes: torch.Tensor, rate: float, gen: torch.Generator) -> torch.Tensor:
        """Every gene mutated independently with probability ``rate``."""
        hit = (torch.rand(genes.shape, generator=gen) < rate).to(genes.device)
        if self.binary:
            return genes ^ hit
        fresh = ((2 * torch.rand(genes.shape, generator=gen) - 1) * self.bound).to(genes)
        return torch.where(hit, fresh, genes).clamp(-self.bound, self.bound)

    def deltas(self, genes: torch.Tensor) -> torch.Tensor:
        """The latent changes (P, H, D) of individuals ``genes`` (P, n_genes)."""
        flat = torch.zeros(genes.shape[0], self.w0.numel(), dtype=self.w0.dtype, device=self.w0.device)
        values = torch.where(genes, self.target, torch.zeros_like(self.target)) if self.binary else genes
        flat[:, self.index] = values
        return flat.view(genes.shape[0], *self.w0.shape)


def _tournament(fitness: torch.Tensor, count: int, size: int, gen: torch.Generator) -> torch.Tensor:
    """Indices of ``count`` winners: the lowest loss among ``size`` uniform draws each."""
    draws = torch.randint(len(fitness), (count, size), generator=gen).to(fitness.device)
    return draws.gather(1, fitness[draws].argmin(dim=1, keepdim=True)).squeeze(1)


def search(view: FirstLayerView, w0: torch.Tensor, epsilon: float, gen: torch.Generator, generations: int,
           population: int = 32, elite: int = 2, tournament: int = 3, crossover: float = 0.9,
           mutations: float = 1.0, init_rate: float = 0.05) -> Iterator[Point]:
    """Yield the population's best after generation 0 (the initial population), 1, ..., ``generations``."""
    if not 1 <= elite < population:
        raise ValueError(f"need 1 <= elite < population, got elite={elite}, population={population}")
    g = Genome(view, w0, epsilon)
    eff0 = view.effective(w0)
    genes = torch.cat([g.start(1), g.mutate(g.start(population - 1), init_rate, gen)])
    fitness = view.losses_of_deltas(w0, g.deltas(genes))
    rate = min(1.0, mutations / max(g.n, 1))
    best, reach = float("inf"), 0.0
    for k in range(generations + 1):
        if k > 0:
            order = torch.argsort(fitness)
            keep = order[:elite]
            n_child = population - elite
            a = genes[_tournament(fitness, n_child, tournament, gen)]
            b = genes[_tournament(fitness, n_child, tournament, gen)]
            cross = (torch.rand(n_child, 1, generator=gen) < crossover).to(genes.device)
            pick_b = (torch.rand(a.shape, generator=gen) < 0.5).to(genes.device) & cross
            children = g.mutate(torch.where(pick_b, b, a), rate, gen)
            genes = torch.cat([genes[keep], children])
            fitness = torch.cat([fitness[keep], view.losses_of_deltas(w0, g.deltas(children))])
        i = int(torch.argmin(fitness))
        delta = g.deltas(genes[i:i + 1])[0]
        loss = float(fitness[i])
        best = min(best, loss)
        reach = max(reach, float(delta.abs().max()))
        yield Point(k, loss, best, reach, int((view.effective(w0 + delta) != eff0).sum()), delta)
