"""The cache-blocked lr scan (lowbit_core.probes.scan_fast) equals the direct computation: losses 1e-5
relative, the same argmin, flips at the same scan points, the same loss-evaluation count."""
import numpy as np
import pytest
import torch

from lowbit_core.models.mlp import MLP
from lowbit_core.probes import lr_scan, scan_fast, structure
from lowbit_core.probes.budget import box_bound
from lowbit_core.probes.gradient import batch_loss_fn, gradient_at, normalize
from lowbit_core.probes.structure import FirstLayerView
from lowbit_core.quant.estimators import sign


def problem(kind, hidden=(16, 12), seed=0, n_in=20, classes=5, batch=256):
    torch.manual_seed(seed)
    m = MLP(n_in, hidden, classes, kind=kind).requires_grad_(False)
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, n_in, generator=gen)
    y = torch.randint(0, classes, (batch,), generator=gen)
    w0 = m.layers[0].weight.clone()
    lf = batch_loss_fn(m, 0, w0, x, y)
    _, g = gradient_at(lf, torch.zeros_like(w0))
    return m, x, y, w0, lf, g


def check(fast, ref, how="max", rtol=1e-5):
    np.testing.assert_allclose(fast, ref, rtol=rtol)
    assert ref[np.argmin(fast)] <= ref.min() * (1 + 1e-6)
    if how != "sign":  # past saturation the "sign" direction gives an exact plateau (float32 noise decides)
        assert np.argmin(fast) == np.argmin(ref)


@pytest.mark.parametrize("kind", ["fp", "binary"])
@pytest.mark.parametrize("hidden", [(16,), (16, 12), (16, 12, 8)])
@pytest.mark.parametrize("how", ["max", "l2", "sign"])
def test_scan_equals_direct(kind, hidden, how):
    m, x, y, w0, lf, g = problem(kind, hidden)
    d = normalize(g, how)
    lrs = lr_scan.lr_grid(1e-4, 0.25, 5e-4)  # past epsilon: the clip binds for large lr
    ref = lr_scan.scan(lf, d, lrs, 0.1).losses
    check(scan_fast.scan_losses(FirstLayerView(m, x, y), w0, d, lrs, 0.1), ref, how)


def direct_flip_counts(w0, d, lrs, epsilon):
    """Per scan point, how many first-layer weights have flipped, computed directly."""
    b = box_bound(epsilon)
    lr32 = torch.tensor(lrs, dtype=w0.dtype)
    return np.array([int((sign(w0 + torch.clamp(-(lr * d), -b, b)) != sign(w0)).sum()) for lr in lr32])


@pytest.mark.parametrize("seed", [0, 1])
def test_binary_flips_where_the_direct_computation_does(seed):
    m, x, y, w0, lf, g = problem("binary", batch=64, seed=seed)
    d = normalize(g, "max")
    lrs = lr_scan.lr_grid(1e-5, 0.1, 1e-5)[::7]
    ev = scan_fast.scan_events(FirstLayerView(m, x, y), w0, d, lrs, 0.1)
    np.testing.assert_array_equal(np.array(ev.bounds[1:]), direct_flip_counts(w0, d, lrs, 0.1))
    ref = lr_scan.scan(lf, d, lrs, 0.1).losses
    fast = scan_fast.scan_losses(FirstLayerView(m, x, y), w0, d, lrs, 0.1)
    np.testing.assert_allclose(fast, ref, rtol=2e-6)
    # the loss changes exactly at the flip points (and is constant between them)
    flip_points = np.flatnonzero(np.diff(ev.bounds) > 0)
    assert set(np.flatnonzero(np.diff(fast) != 0) + 1) <= set(flip_points)


@pytest.mark.parametrize("points, elements, refresh", [(1, 2**19, 16), (3, 1, 1), (5, 700, 10**9), (64, 2**25, 2)])
def test_binary_blocks_chunks_and_refresh(points, elements, refresh, monkeypatch):
    """Any block length (1: one flip point per block), chunk of samples (1 sample) and refresh period."""
    monkeypatch.setattr(scan_fast, "BINARY_POINTS", points)
    monkeypatch.setattr(scan_fast, "BLOCK_ELEMENTS_CPU", elements)
    monkeypatch.setattr(scan_fast, "REFRESH_BLOCKS", refresh)
    m, x, y, w0, lf, g = problem("binary", (16, 12), batch=128)
    d = normalize(g, "max")
    lrs = lr_scan.lr_grid(1e-4, 0.25, 1e-3)
    check(scan_fast.scan_losses(FirstLayerView(m, x, y), w0, d, lrs, 0.1), lr_scan.scan(lf, d, lrs, 0.1).losses)


def test_binary_slices_in_threads_equal_one_slice():
    m, x, y, w0, lf, g = problem("binary", (24, 16), n_in=30, batch=1024)
    d = normalize(g, "max")
    lrs = lr_scan.lr_grid(1e-4, 0.12, 2e-4)
    ref = lr_scan.scan(lf, d, lrs, 0.1).losses
    threads = torch.get_num_threads()
    try:
        for n in (1, 3):
            torch.set_num_threads(n)
            check(scan_fast.scan_losses(FirstLayerView(m, x, y), w0, d, lrs, 0.1), ref)
            assert torch.get_num_threads() == n  # restored after the threaded slices
    finally:
        torch.set_num_threads(threads)


@pytest.mark.parametrize("kind", ["fp", "binary"])
def test_same_losses_and_count_as_the_old_scan(kind):
    m, x, y, w0, lf, g = problem(kind, (32, 32), n_in=40, batch=512)
    d = normalize(g, "max")
    lrs = lr_scan.lr_grid(1e-4, 0.1, 1e-4)
    old_view, new_view = FirstLayerView(m, x, y), FirstLayerView(m, x, y)
    old = structure.scan_losses(old_view, w0, d, lrs, 0.1)
    new = scan_fast.scan_losses(new_view, w0, d, lrs, 0.1)
    np.testing.assert_allclose(new, old, rtol=1e-5)
    assert np.argmin(new) == np.argmin(old)
    assert new_view.counter.snapshot() == old_view.counter.snapshot()


def test_no_flips_gives_the_start_loss():
    m, x, y, w0, lf, g = problem("binary")
    d = normalize(g, "max")
    lrs = np.array([1e-9, 2e-9])
    view = FirstLayerView(m, x, y)
    out = scan_fast.scan_losses(view, w0, d, lrs, 0.1)
    assert out[0] == out[1] == pytest.approx(lf(torch.zeros_like(w0)).item(), rel=1e-6)
    assert view.counter.forward == 1


def test_rejects_unsorted_lrs():
    m, x, y, w0, lf, g = problem("fp")
    with pytest.raises(ValueError):
        scan_fast.scan_losses(FirstLayerView(m, x, y), w0, torch.ones_like(w0), np.array([0.2, 0.1]), 0.1)
