"""Tiny first-layer problems shared by the probe-method tests (ADMM, GA, ES, the box property), the
brute force over every reachable sign pattern, and checks of that brute force itself."""
import itertools

import pytest
import torch
import torch.nn.functional as F

from lowbit_core.models.mlp import MLP
from lowbit_core.probes.flips import flips_delta, reachable
from lowbit_core.probes.structure import FirstLayerView
from lowbit_core.quant.estimators import sign


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny tensors: one intra-op thread (a second one only adds synchronization, badly on a loaded machine)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def tiny(seed: int, kind: str = "binary", reach_q: float = 0.7):
    """A 4-3-4-3 MLP on 64 random examples; epsilon reaches about ``reach_q`` of the 12 first-layer
    weights (8 or 9 reachable flips at 0.7: 256 or 512 sign patterns)."""
    torch.manual_seed(seed)
    m = MLP(4, (3, 4), 3, kind=kind).requires_grad_(False)
    g = torch.Generator().manual_seed(100 + seed)
    x, y = torch.randn(64, 4, generator=g), torch.randint(0, 3, (64,), generator=g)
    w0 = m.layers[0].weight.clone()
    eps = float(w0.abs().flatten().sort().values[int(reach_q * w0.numel())])
    return FirstLayerView(m, x, y), w0, eps


def all_patterns(w0, eps) -> torch.Tensor:
    """Every reachable flip pattern as a bool tensor (P, H, D)."""
    idx = torch.nonzero(reachable(w0, eps).flatten()).flatten()
    bits = torch.tensor(list(itertools.product([False, True], repeat=len(idx))))
    flipped = torch.zeros(len(bits), w0.numel(), dtype=torch.bool)
    flipped[:, idx] = bits
    return flipped.view(-1, *w0.shape)


def brute_optimum(view, w0, eps) -> tuple[float, torch.Tensor]:
    """(lowest loss, its flip pattern) over every reachable sign pattern."""
    patterns = all_patterns(w0, eps)
    losses = view.losses_of_deltas(w0, flips_delta(w0, eps, patterns))
    i = int(torch.argmin(losses))
    return float(losses[i]), patterns[i]


def test_reachable_flips_are_the_weights_within_epsilon():
    view, w0, eps = tiny(0)
    clear = (w0.abs() - eps).abs() > 1e-6  # away from the float32 edge of the box (one weight sits on it)
    assert torch.equal(reachable(w0, eps)[clear], (w0.abs() < eps)[clear])
    assert int(reachable(w0, eps).sum()) in (8, 9) and len(all_patterns(w0, eps)) == 2 ** int(reachable(w0, eps).sum())


def test_brute_force_losses_equal_whole_forward_passes():
    """The pattern losses the tests compare against are the model's own forward passes."""
    view, w0, eps = tiny(1)
    patterns = all_patterns(w0, eps)[::37]
    deltas = flips_delta(w0, eps, patterns)
    assert float(deltas.abs().max()) <= eps
    for p, d in zip(patterns, deltas):
        assert torch.equal(sign(w0 + d) != sign(w0), p)
        direct = F.cross_entropy(view.model(view.x, override={0: w0 + d}), view.y).item()
        assert view.losses_of_deltas(w0, d[None])[0].item() == pytest.approx(direct, rel=1e-6)
