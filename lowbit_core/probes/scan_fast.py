"""The single-step lr scan at its arithmetic floor: the second layer's pre-activations stay in cache.

Same results as :func:`lowbit_core.probes.structure.scan_losses` (the losses to float32 summation
order, the same flip / saturation points: they are located with the same float32 expressions, see
:func:`scan_events`), with the work reordered (issue 28):

- **binary** (:func:`_binary_scan`): between two flip points nothing changes, so only the points with
  flips are evaluated. The flips of a point change a few first-layer units i; each such (point, unit)
  pair changes ``h = relu(z1)`` by a column ``dh`` and the second layer's pre-activations by the
  rank-1 term ``dh W2[:, i]^T``. The points are taken in blocks of ``T`` flip points and the batch in
  chunks of rows; for one (block, chunk) the ``T`` second-layer matrices ``Z2[t]`` of the chunk are
  built at once (one batched matmul of the pairs' ``dh`` with their ``W2`` columns, each point's
  pairs as one small matmul, then a running sum over t from the chunk's current ``z2``), so the
  ``(T, rows, H2)`` block is written once, stays in cache for the ReLU and the layers after it, and
  only the chunk's losses leave it. The old scan streamed the whole ``(B, H2)`` matrix through
  memory once per flipped unit and point.
- **FP** (:func:`_fp_scan`): the block structure of :func:`lowbit_core.probes.structure._fp_scan`
  (``z2 = P + lr Q`` plus the entries whose first-layer ReLU switches inside the block), evaluated
  per chunk of rows for all points of a block at once, again without a full ``(B, H2)`` pass per point.

The arithmetic floor either way is the layers after the second for every evaluated point
(``B * H2 * C`` multiply-adds per point for 784-H1-H2-C) plus the small rank updates;
``benchmarks/probe_speed.py`` prints it next to the measured time.

Every loss value is counted once on the view's counter, as by the old scan (binary: the start point
and each flip point; FP: every point).
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from lowbit_core.probes.budget import box_bound
from lowbit_core.probes.structure import FirstLayerView, _first_index
from lowbit_core.quant.estimators import sign

# elements of one (points, rows, H2) block of second-layer pre-activations: 2^19 float32 = 2 MB, the
# L2 of one core split over the two threads that run each op (measured on 784-256-256-10, batch 8192)
BLOCK_ELEMENTS_CPU = 2**19
# on a GPU the block only has to keep the launches few
BLOCK_ELEMENTS_CUDA = 2**25
# flip points per block of the binary scan
BINARY_POINTS = 16
# refresh the second layer's pre-activations from h every this many blocks (bounds float32 drift of
# the running sum; the old scan refreshed every 64 updates)
REFRESH_BLOCKS = 16


def _block_elements(device: torch.device) -> int:
    return BLOCK_ELEMENTS_CUDA if device.type == "cuda" else BLOCK_ELEMENTS_CPU


class Events:
    """What changes along the scan, sorted by scan index: ``rows[f], cols[f]`` the first-layer weight of
    event f, ``bounds[k]:bounds[k+1]`` the events at scan index k. Binary: ``change`` is the effective
    weight's change at its flip. FP: ``d_c`` / ``sat_value`` the direction and the clip value of a
    coordinate that saturates there."""

    def __init__(self, rows, cols, bounds, change=None, d_c=None, sat_value=None):
        self.rows, self.cols, self.bounds = rows, cols, bounds
        self.change, self.d_c, self.sat_value = change, d_c, sat_value


@torch.no_grad()
def scan_events(view: FirstLayerView, w0: torch.Tensor, d: torch.Tensor, lrs: np.ndarray, epsilon: float) -> Events:
    """The flip (binary) or saturation (FP) events of the scan ``w0 + clip(-lr d, -eps, eps)``, located
    with the float32 expression of the direct computation (the same code as
    :func:`lowbit_core.probes.structure.scan_losses`)."""
    if np.any(np.diff(lrs) < 0):
        raise ValueError("lrs must be ascending")
    b = box_bound(epsilon)
    n = len(lrs)
    dev = w0.device
    lr32 = torch.tensor(lrs, dtype=w0.dtype, device=dev)
    flat_w0, flat_d = w0.reshape(-1), d.reshape(-1)
    n_in = w0.shape[1]

    def moved(k, idx):  # the direct computation's float32 expression at scan index k
        return flat_w0[idx] + torch.clamp(-(lr32[k] * flat_d[idx]), -b, b)

    if view.binary:
        cand = torch.nonzero(sign(moved(torch.full_like(flat_d, n - 1, dtype=torch.long),
                                        torch.arange(len(flat_d), device=dev))) != sign(flat_w0)).flatten()
        w_c, d_c = flat_w0[cand], flat_d[cand]

        def flipped(k, i):
            return sign(w_c[i] + torch.clamp(-(lr32[k] * d_c[i]), -b, b)) != sign(w_c[i])

        event = _first_index(flipped, torch.full_like(cand, n - 1), n)
        change = -2.0 * sign(w_c) * view.scale
    else:
        cand = torch.nonzero(torch.clamp(-(lr32[-1] * flat_d), -b, b) != -(lr32[-1] * flat_d)).flatten()
        d_c = flat_d[cand]

        def saturated(k, i):
            v = -(lr32[k] * d_c[i])
            return torch.clamp(v, -b, b) != v

        event = _first_index(saturated, torch.full_like(cand, n - 1), n)
        sat_value = torch.clamp(-(lr32[-1] * d_c), -b, b)
    order = torch.argsort(event)
    event, cand = event[order], cand[order]
    bounds = torch.searchsorted(event, torch.arange(n + 1, device=dev)).tolist()
    rows, cols = cand // n_in, cand % n_in
    if view.binary:
        return Events(rows, cols, bounds, change=change[order])
    return Events(rows, cols, bounds, d_c=d_c[order], sat_value=sat_value[order])


@torch.no_grad()
def scan_losses(view: FirstLayerView, w0: torch.Tensor, d: torch.Tensor, lrs: np.ndarray, epsilon: float) -> np.ndarray:
    """``L(w0 + clip(-lr * d, -eps, eps))`` for every lr in ``lrs`` (ascending): a drop-in for
    :func:`lowbit_core.probes.structure.scan_losses`, cache-blocked (module docstring)."""
    ev = scan_events(view, w0, d, lrs, epsilon)
    if view.binary:
        return _binary_scan(view, view.z1(w0), ev)
    from lowbit_core.probes.structure import _fp_scan
    a = view.z1(w0)
    g = -(view.x @ d.T)
    lr32 = torch.tensor(lrs, dtype=w0.dtype, device=w0.device)
    return _fp_scan(view, a, g, torch.zeros_like(a), ev.rows, ev.cols, ev.d_c, ev.sat_value, ev.bounds, lr32)


def _tail_sums(view: FirstLayerView, z2: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Summed cross-entropy over the samples of each leading index of second-layer pre-activations
    ``z2`` (T, H2, R), samples on the last axis, labels ``y`` (R,); returns (T,) float64. ``z2`` is
    overwritten (its ReLU)."""
    last = len(view.weights) - 1
    z = z2
    for i in range(2, last + 1):
        z = torch.baddbmm(view.biases[i][None, :, None], view.weights[i].expand(z.shape[0], -1, -1), torch.relu_(z))
    lse = torch.logsumexp(z, 1)  # over the class axis 1: C long vector operations
    picked = z.gather(1, y.view(1, 1, -1).expand(z.shape[0], 1, -1))[:, 0]
    return (lse - picked).sum(1, dtype=torch.float64)


def _running_sum_(zb: torch.Tensor) -> None:
    """``zb[t] += zb[t - 1]`` along the leading axis, in place (torch's cumsum over a leading axis is
    not vectorized; in groups of 4 this is ~2 passes over zb in 2 (T/4 - 1) + 3 operations)."""
    t = zb.shape[0]
    g = 4 if t % 4 == 0 and t > 4 else 1
    v = zb.view(t // g, g, *zb.shape[1:])
    for k in range(1, g):
        v[:, k] += v[:, k - 1]
    for k in range(1, t // g):
        v[k] += v[k - 1, g - 1]


def _pairs(ev: Events, n_units: int):
    """The (flip point, unit) pairs: ``points`` the scan indices with flips, and per pair its unit,
    its point's position in ``points``, and per flip its pair."""
    dev = ev.rows.device
    bounds = torch.tensor(ev.bounds, device=dev)
    point_of_flip = torch.repeat_interleave(torch.arange(len(bounds) - 1, device=dev), bounds.diff())
    key, pair_of_flip = torch.unique(point_of_flip * n_units + ev.rows, return_inverse=True)  # sorted by point
    points, slot_of_pair = torch.unique(key // n_units, return_inverse=True)
    return points, key % n_units, slot_of_pair, pair_of_flip


def _generations(u: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per entry of ``u``: how many earlier entries have the same value, and the index of the nearest
    one (-1 if none)."""
    order = torch.argsort(u, stable=True)
    us = u[order]
    new = torch.ones_like(us, dtype=torch.bool)
    new[1:] = us[1:] != us[:-1]
    pos = torch.arange(len(u), device=u.device)
    start = torch.cummax(torch.where(new, pos, 0), 0).values
    gen, prev = torch.empty_like(u), torch.empty_like(u)
    gen[order] = pos - start
    prev[order] = torch.where(new, -1, order[(pos - 1).clamp(min=0)])
    return gen, prev


class _Block:
    """One block of flip points, the same for every slice of samples: its pairs' units ``u``, their
    generations (``gen``, ``prev``: :func:`_generations`), which pair is each unit's last, the flips
    ``f0:f1`` with their pair ``pair_of_flip``, and each point's pairs padded to U: ``idx`` (T, U) rows
    of dh (E: the zero row) and ``w_pad`` (T, H2, U) the matching ``W2`` columns (zeros for padding)."""

    def __init__(self, unit, slot, pair_of_flip, e0, e1, f0, f1, p0, p1, w2_pad):
        dev = unit.device
        n_e, t = e1 - e0, p1 - p0
        self.p0, self.p1, self.f0, self.f1, self.n_e = p0, p1, f0, f1, n_e
        self.u = unit[e0:e1]
        self.pair_of_flip = pair_of_flip[f0:f1] - e0
        self.gen, self.prev = _generations(self.u)
        self.generations = [torch.nonzero(self.gen == g).flatten() for g in range(1, int(self.gen.max()) + 1)]
        last = torch.ones(n_e, dtype=torch.bool, device=dev)
        last[self.prev[self.prev >= 0]] = False
        self.last = torch.nonzero(last).flatten()
        s = slot[e0:e1] - p0
        counts = torch.bincount(s, minlength=t)
        n_u = int(counts.max())
        pos = torch.arange(n_e, device=dev) - (torch.cumsum(counts, 0) - counts)[s]
        idx = torch.full((t, n_u), n_e, dtype=torch.long, device=dev)
        idx[s, pos] = torch.arange(n_e, device=dev)
        self.idx = idx.view(-1)
        units_pad = torch.full((t, n_u), w2_pad.shape[1] - 1, dtype=torch.long, device=dev)
        units_pad[s, pos] = self.u
        self.w_pad = w2_pad[:, units_pad].permute(1, 0, 2).contiguous()  # (T, H2, U)
        self.t, self.n_u = t, n_u


def _binary_scan(view: FirstLayerView, z1: torch.Tensor, ev: Events) -> np.ndarray:
    """The binary scan's losses; ``z1`` the first-layer pre-activations (B, H1) at point 0.

    Samples lie on the last axis throughout (``z1T`` (H1, B), ``z2T`` (H2, B)): every matmul then has
    the long batch axis as its N, and a chunk of samples is a contiguous run of each row.
    Per block of :data:`BINARY_POINTS` flip points: each pair's change of its unit's pre-activation is
    the sum of its flips' ``change * x_j`` (before: the unit's value after the block's earlier pairs),
    ``dh = relu(after) - relu(before)``. Per chunk of samples, ``Z2[t] = z2 + sum_{t' <= t} inc[t']``
    with ``inc[t]`` one matmul of the point's pairs' ``W2`` columns (H2, U) and their ``dh`` (U, R), U
    the block's largest number of pairs per point (padded with zeros). The chunk's ``z2`` (the second
    layer at the block's start) becomes ``Z2[T - 1]``, and every :data:`REFRESH_BLOCKS` blocks it is
    recomputed from ``relu(z1)``, which bounds the float32 drift of the running sum.

    On the CPU with n torch threads, the samples are split into n slices, each run by its own Python
    thread with one torch thread through all blocks (the slices share nothing but the block
    descriptions): no synchronization per operation, which on a loaded machine costs more than the
    operations (many small ones here).
    """
    y, w2, b2 = view.y, view.weights[1], view.biases[1][:, None]
    n_points = len(ev.bounds) - 1
    bsz, n_units = z1.shape
    h2 = w2.shape[0]
    dev, dt = z1.device, z1.dtype
    z2t = torch.addmm(b2, w2, torch.relu(z1.T))
    start = float(view.counter.count((_tail_sums(view, z2t[None], y) / bsz).to(dt))[0])
    out = np.full(n_points, start)
    if ev.bounds[-1] == 0:
        return out
    points, unit, slot, pair_of_flip = _pairs(ev, n_units)
    pair_bounds = torch.searchsorted(slot, torch.arange(len(points) + 1, device=dev)).tolist()
    flip_bounds = [ev.bounds[k] for k in points.tolist()] + [ev.bounds[-1]]
    w2_pad = torch.cat([w2, torch.zeros(h2, 1, dtype=dt, device=dev)], 1)  # column n_units: padding
    blocks = [_Block(unit, slot, pair_of_flip, pair_bounds[p0], pair_bounds[p1], flip_bounds[p0], flip_bounds[p1],
                     p0, p1, w2_pad)
              for p0 in range(0, len(points), BINARY_POINTS) for p1 in [min(len(points), p0 + BINARY_POINTS)]]
    xt = view.x.T.contiguous()  # (D, B)
    z1t = z1.T.contiguous()  # (H1, B)
    n_workers = torch.get_num_threads() if dev.type == "cpu" else 1
    n_workers = max(1, min(n_workers, bsz // 256))
    edges = [bsz * k // n_workers for k in range(n_workers + 1)]

    def work(k: int) -> torch.Tensor:
        lo, hi = edges[k], edges[k + 1]
        return _binary_slice(view, blocks, len(points), ev, xt[:, lo:hi].contiguous(), z1t[:, lo:hi].contiguous(),
                             y[lo:hi])

    if n_workers == 1:
        sums = work(0)
    else:
        from concurrent.futures import ThreadPoolExecutor
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            with ThreadPoolExecutor(n_workers) as pool:
                sums = sum(pool.map(work, range(n_workers)))
        finally:
            torch.set_num_threads(threads)
    losses = view.counter.count((sums / bsz).to(dt))
    vals = losses.double().cpu().numpy()
    # every point from a flip point to the next one has the flip point's loss
    at = np.searchsorted(points.cpu().numpy(), np.arange(n_points), side="right") - 1
    has = at >= 0
    out[has] = vals[at[has]]
    return out


def _binary_slice(view: FirstLayerView, blocks: list[_Block], n_flip_points: int, ev: Events, xt: torch.Tensor,
                  z1t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Summed cross-entropy (float64, per flip point) of one slice of samples: ``xt`` (D, R), ``z1t``
    (H1, R) at point 0 (overwritten), labels ``y`` (R,). See :func:`_binary_scan`."""
    w2, b2 = view.weights[1], view.biases[1][:, None]
    h2, bsz = w2.shape[0], z1t.shape[1]
    dev, dt = z1t.device, z1t.dtype
    z2t = torch.addmm(b2, w2, torch.relu(z1t))
    sums = torch.zeros(n_flip_points, dtype=torch.float64, device=dev)
    cols_per_chunk = max(1, _block_elements(dev) // (BINARY_POINTS * h2))
    zero_row = torch.zeros(1, bsz, dtype=dt, device=dev)
    for k, blk in enumerate(blocks):
        # each pair's change of its unit's pre-activation (E, R); a unit's pairs in order of their
        # points (generation g: its g-th pair in the block), before = the previous pair's after
        dz = torch.zeros(blk.n_e, bsz, dtype=dt, device=dev)
        dz.index_add_(0, blk.pair_of_flip, xt[ev.cols[blk.f0:blk.f1]] * ev.change[blk.f0:blk.f1, None])
        before = z1t[blk.u]
        after = before + dz
        for sel in blk.generations:
            before[sel] = after[blk.prev[sel]]
            after[sel] = before[sel] + dz[sel]
        z1t[blk.u[blk.last]] = after[blk.last]
        dh = torch.cat([torch.relu(after) - torch.relu(before), zero_row])
        dh_pad = dh[blk.idx].view(blk.t, blk.n_u, bsz)  # (T, U, R)
        t = blk.t
        for c0 in range(0, bsz, cols_per_chunk):
            c1 = min(bsz, c0 + cols_per_chunk)
            zb = torch.bmm(blk.w_pad, dh_pad[:, :, c0:c1])  # (T, H2, R): each point's increment
            zb[0] += z2t[:, c0:c1]
            _running_sum_(zb)
            z2t[:, c0:c1] = zb[t - 1]
            sums[blk.p0:blk.p1] += _tail_sums(view, zb, y[c0:c1])
        if (k + 1) % REFRESH_BLOCKS == 0:
            torch.addmm(b2, w2, torch.relu(z1t), out=z2t)
    return sums
