"""Structured first-layer probes equal the direct computation (losses 1e-5 relative, same argmin)."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from lowbit_core.models.mlp import MLP
from lowbit_core.probes import lr_scan
from lowbit_core.probes.gradient import batch_loss_fn, gradient_at, normalize
from lowbit_core.probes.structure import FirstLayerView, coordinate_losses, scan_losses


def problem(kind, hidden=(16, 12), seed=0, n_in=20, classes=5, batch=256):
    torch.manual_seed(seed)
    m = MLP(n_in, hidden, classes, kind=kind).requires_grad_(False)
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, n_in, generator=gen)
    y = torch.randint(0, classes, (batch,), generator=gen)
    w0 = m.layers[0].weight.clone()
    return m, x, y, w0, batch_loss_fn(m, 0, w0, x, y)


@pytest.mark.parametrize("kind", ["fp", "binary"])
@pytest.mark.parametrize("hidden", [(16,), (16, 12), (16, 12, 8)])
@pytest.mark.parametrize("how", ["max", "l2", "sign"])
def test_scan_equals_direct(kind, hidden, how):
    m, x, y, w0, lf = problem(kind, hidden)
    _, g = gradient_at(lf, torch.zeros_like(w0))
    d = normalize(g, how)
    lrs = lr_grid = lr_scan.lr_grid(1e-4, 0.25, 5e-4)  # past epsilon: the clip binds for large lr
    ref = lr_scan.scan(lf, d, lr_grid, 0.1).losses
    fast = scan_losses(FirstLayerView(m, x, y), w0, d, lrs, 0.1)
    np.testing.assert_allclose(fast, ref, rtol=1e-5)
    # same argmin, up to ties: past saturation ("sign" direction) the losses form an exact plateau
    # whose float32 noise decides the index
    assert ref[np.argmin(fast)] <= ref.min() * (1 + 1e-6)
    if how != "sign":
        assert np.argmin(fast) == np.argmin(ref)


def test_binary_scan_flips_exactly_where_the_direct_computation_does():
    # every loss equal to float32 precision means every flip happened at the same scan point
    m, x, y, w0, lf = problem("binary", batch=64)
    _, g = gradient_at(lf, torch.zeros_like(w0))
    d = normalize(g, "max")
    lrs = lr_scan.lr_grid(1e-5, 0.1, 1e-5)[::7]
    ref = lr_scan.scan(lf, d, lrs, 0.1).losses
    fast = scan_losses(FirstLayerView(m, x, y), w0, d, lrs, 0.1)
    np.testing.assert_allclose(fast, ref, rtol=2e-6)


def test_scan_rejects_unsorted_lrs():
    m, x, y, w0, lf = problem("fp")
    with pytest.raises(ValueError):
        scan_losses(FirstLayerView(m, x, y), w0, torch.ones_like(w0), np.array([0.2, 0.1]), 0.1)


@pytest.mark.parametrize("piecewise_min", [0, 10**9])  # piecewise-linear tail / rank-1 update
@pytest.mark.parametrize("kind", ["fp", "binary"])
def test_coordinate_losses_equal_direct_on_every_coordinate(kind, piecewise_min, monkeypatch):
    from lowbit_core.probes import structure

    monkeypatch.setattr(structure, "PIECEWISE_MIN_CANDIDATES", piecewise_min)
    m, x, y, w0, lf = problem(kind, hidden=(6, 5), n_in=7, batch=64)
    gen = torch.Generator().manual_seed(1)
    w_cur = w0 + 0.03 * torch.randn(w0.shape, generator=gen)
    w_new = torch.stack([w_cur + 0.07, -w_cur, w_cur.clone()])
    w_new[0, 2, 3] = float("nan")
    out = coordinate_losses(FirstLayerView(m, x, y), w_cur, w_new)
    base = F.cross_entropy(m(x, override={0: w_cur}), y).item()
    for k in range(3):
        for i in range(w0.shape[0]):
            for j in range(w0.shape[1]):
                if torch.isnan(w_new[k, i, j]):
                    assert torch.isnan(out[k, i, j])
                    continue
                w = w_cur.clone()
                w[i, j] = w_new[k, i, j]
                ref = F.cross_entropy(m(x, override={0: w}), y).item()
                assert out[k, i, j].item() == pytest.approx(ref, rel=1e-5)
    torch.testing.assert_close(out[2], torch.full_like(out[2], base), rtol=1e-6, atol=0)  # no move


def test_view_loss_equals_model_loss():
    m, x, y, w0, lf = problem("binary")
    view = FirstLayerView(m, x, y)
    assert view.loss(w0) == pytest.approx(lf(torch.zeros_like(w0)).item(), rel=1e-6)


@pytest.mark.parametrize("hidden", [(6,), (6, 5, 4)])
def test_coordinate_losses_other_depths(hidden):
    m, x, y, w0, lf = problem("fp", hidden=hidden, n_in=7, batch=32)
    w_new = (w0 + 0.05)[None]
    out = coordinate_losses(FirstLayerView(m, x, y), w0, w_new)
    for i, j in [(0, 0), (3, 6), (5, 2)]:
        w = w0.clone()
        w[i, j] = w_new[0, i, j]
        assert out[0, i, j].item() == pytest.approx(F.cross_entropy(m(x, override={0: w}), y).item(), rel=1e-5)


@pytest.mark.parametrize("seed", range(4))
def test_piecewise_tail_on_exact_ties(seed, monkeypatch):
    """Dyadic weights and integer inputs make float32 arithmetic exact, so candidate moves land exactly
    on second-layer breakpoints, on the edges of the breakpoint window and on units with w = 0."""
    from lowbit_core.probes import structure

    monkeypatch.setattr(structure, "PIECEWISE_MIN_CANDIDATES", 0)
    gen = torch.Generator().manual_seed(seed)
    m = MLP(6, (5, 7), 4, kind="fp").requires_grad_(False)
    for layer in m.layers:
        layer.weight.copy_(torch.randint(-4, 5, layer.weight.shape, generator=gen) / 4)
        layer.bias.copy_(torch.randint(-2, 3, layer.bias.shape, generator=gen) / 4)
    m.layers[1].weight[:, 0] = 0.0  # a first-layer unit whose changes never reach the second layer
    m.layers[1].weight[2, 1:3] = 0.0
    x = torch.randint(-2, 3, (48, 6), generator=gen).float()
    y = torch.randint(0, 4, (48,), generator=gen)
    w0 = m.layers[0].weight.clone()
    w_new = torch.stack([w0 + 0.25, w0 - 0.5, w0 + 1.0])
    out = coordinate_losses(FirstLayerView(m, x, y), w0, w_new)
    for k in range(len(w_new)):
        for i in range(w0.shape[0]):
            for j in range(w0.shape[1]):
                w = w0.clone()
                w[i, j] = w_new[k, i, j]
                ref = F.cross_entropy(m(x, override={0: w}), y).item()
                assert out[k, i, j].item() == pytest.approx(ref, rel=1e-5), (k, i, j)


@pytest.mark.parametrize("block, chunk_elements", [(1, 2**21), (7, 1), (64, 3000)])
def test_fp_scan_blocks_and_chunks_equal_direct(block, chunk_elements, monkeypatch):
    """Every block size (1: every point its own block) and full-tail chunking of the clip-event blocks."""
    from lowbit_core.probes import structure

    monkeypatch.setattr(structure, "FP_BLOCK", block)
    monkeypatch.setattr(structure, "CHUNK_ELEMENTS", chunk_elements)
    m, x, y, w0, lf = problem("fp", (16, 12))
    _, g = gradient_at(lf, torch.zeros_like(w0))
    d = normalize(g, "max")
    lrs = lr_scan.lr_grid(1e-4, 0.25, 1e-3)
    ref = lr_scan.scan(lf, d, lrs, 0.1).losses
    np.testing.assert_allclose(scan_losses(FirstLayerView(m, x, y), w0, d, lrs, 0.1), ref, rtol=1e-5)
