"""The genetic algorithm (lowbit_core/probes/genetic.py) and separable CMA-ES (lowbit_core/probes/
evolution_strategy.py): brute-force optimum of tiny layers, elitism, operators, cost, cma's options."""
import math

import pytest
import torch

from lowbit_core.probes import evolution_strategy, genetic
from lowbit_core.probes.budget import box_bound
from lowbit_core.probes.flips import reachable
from lowbit_core.quant.estimators import sign
from test_probe_tiny import brute_optimum, one_thread, tiny  # noqa: F401 (one_thread: fixture)


@pytest.mark.parametrize("seed", range(6))
def test_ga_reaches_the_brute_force_optimum_of_a_tiny_layer(seed):
    """16 x 40 GA generations (624 evaluations) against brute force over the 256-512 reachable sign
    patterns: the GA's best is the optimum."""
    view, w0, eps = tiny(seed)
    opt, _ = brute_optimum(view, w0, eps)
    last = list(genetic.search(view, w0, eps, torch.Generator().manual_seed(seed), 40, population=16))[-1]
    assert last.best_loss == pytest.approx(opt, abs=1e-6)


@pytest.mark.parametrize("kind", ["binary", "fp"])
@pytest.mark.parametrize("seed", [0, 3])
def test_ga_best_never_worse_than_its_initial_population(kind, seed):
    view, w0, eps = tiny(seed, kind=kind)
    pts = list(genetic.search(view, w0, eps, torch.Generator().manual_seed(seed), 25, population=8, elite=1,
                              mutations=3.0, init_rate=0.3))
    initial_best = pts[0].loss  # generation 0: the best of the initial population
    assert pts[0].loss <= view.loss(w0)  # the start is individual 0
    for a, b in zip(pts, pts[1:]):
        assert b.loss <= a.loss  # elitism: the population's best never gets worse
    assert all(p.best_loss <= initial_best for p in pts)
    assert all(p.best_loss == min(q.loss for q in pts[:i + 1]) for i, p in enumerate(pts))


def test_ga_genes_are_the_reachable_flips_and_every_individual_is_in_the_box():
    view, w0, eps = tiny(1, reach_q=0.5)
    g = genetic.Genome(view, w0, eps)
    assert g.n == int(reachable(w0, eps).sum())
    genes = g.mutate(g.start(50), 0.5, torch.Generator().manual_seed(0))
    deltas = g.deltas(genes)
    assert float(deltas.abs().max()) <= box_bound(eps)
    flipped = sign(w0 + deltas) != sign(w0)[None]
    assert torch.equal(flipped.flatten(1)[:, g.index], genes)  # a gene is exactly one sign flip
    assert not flipped.flatten(1)[:, [i for i in range(w0.numel()) if i not in set(g.index.tolist())]].any()


def test_ga_fp_mutation_resamples_inside_the_box():
    view, w0, eps = tiny(2, kind="fp")
    g = genetic.Genome(view, w0, eps)
    assert g.n == w0.numel()
    genes = g.mutate(g.start(200), 1.0, torch.Generator().manual_seed(0))
    assert float(genes.abs().max()) <= box_bound(eps) and float(genes.abs().min()) > 0
    assert genes.std() == pytest.approx(box_bound(eps) / math.sqrt(3), rel=0.05)  # U(-b, b)


def test_ga_cost_and_determinism():
    view, w0, eps = tiny(3)
    counts = []
    pts = []
    for p in genetic.search(view, w0, eps, torch.Generator().manual_seed(9), 4, population=10, elite=3):
        counts.append(view.counter.forward)
        pts.append(p.loss)
    assert counts == [10, 17, 24, 31, 38]  # population, then population - elite per generation
    again = [p.loss for p in genetic.search(view, w0, eps, torch.Generator().manual_seed(9), 4, population=10, elite=3)]
    assert again == pts


def test_ga_needs_an_elite():
    view, w0, eps = tiny(0)
    with pytest.raises(ValueError, match="elite"):
        next(genetic.search(view, w0, eps, torch.Generator(), 3, population=4, elite=0))


def test_es_uses_separable_cma_with_its_stops_off():
    opts = evolution_strategy.cma_options(12, 5)
    assert opts["CMA_diagonal"] is True and opts["popsize"] == 12 and opts["seed"] == 5
    assert opts["bounds"] == [-1.0, 1.0]
    assert opts["tolflatfitness"] == math.inf and opts["tolfun"] == 0 and opts["maxiter"] == math.inf
    assert "popsize" not in evolution_strategy.cma_options(0, 5)  # cma's default 4 + 3 ln n


@pytest.mark.parametrize("kind", ["binary", "fp"])
def test_es_points_in_the_box_cost_and_seed(kind):
    view, w0, eps = tiny(4, kind=kind)
    counts, pts = [], []
    for p in evolution_strategy.search(view, w0, eps, seed=3, generations=6, population=8):
        counts.append(view.counter.forward)
        pts.append(p)
    assert counts == [1 + 8 * k for k in range(7)]  # the start, then popsize per generation
    assert all(p.max_abs_delta <= box_bound(eps) and float(p.delta.abs().max()) <= box_bound(eps) for p in pts)
    assert all(b.best_loss <= a.best_loss for a, b in zip(pts, pts[1:]))
    if kind == "binary":  # only reachable coordinates move
        assert not pts[-1].delta[~reachable(w0, eps)].any()
    again = [p.loss for p in evolution_strategy.search(view, w0, eps, seed=3, generations=6, population=8)]
    assert again == [p.loss for p in pts]


def test_es_improves_a_tiny_fp_layer():
    view, w0, eps = tiny(5, kind="fp")
    last = list(evolution_strategy.search(view, w0, eps, seed=0, generations=60, population=10))[-1]
    assert last.best_loss < view.loss(w0) - 1e-3
