"""Discrete Gradient (DG), multi-step DG and coordinate-descent DG (CDG) inside the budget box.

The meeting record defines DG loosely; these are the exact rules implemented here.

**Objective of a coordinate.** For each first-layer latent weight w_ij, the exact loss change of its
best candidate move, evaluated on the fixed batch with every other weight held
(:func:`lowbit_core.probes.structure.coordinate_losses`). A step has a reach r (the largest change
one step may make) and a radius R <= epsilon (the box |w - w0| <= R it must stay in). Candidates:

- binary MLP: one candidate, the sign flip, moving w_ij just across zero; reachable when the
  flipped point lies within R of w0 (:mod:`lowbit_core.probes.flips`: only weights with
  |w0_ij| <= R can flip, and a flipped weight can always flip back);
- FP MLP: ``w_ij +- f * r`` for each fraction f in ``fp_moves`` (default 1 and 1/2), clipped to the box
  of radius R.

**Selection (one DG step).** The best move per coordinate; coordinates whose best move lowers the loss,
sorted by it. ``select="best_prefix"`` (default): apply the top k moves together for k on a log grid
of ``prefix_points`` sizes (always including 1 and all), measure the true loss of each, keep the k
with the lowest loss (none if no prefix beats the current loss) -- the "take the best coordinates
until the budget is used" of the record, with the measured loss deciding where to stop.
``select="count"``: the top ``max_coords`` moves.

**Single-step DG**: one step with r = R = epsilon. **Multi-step DG** (S steps): the budget split
evenly, r = epsilon / S per step, and a cumulative radius R_s = s * epsilon / S after step s (R_S =
epsilon); objectives recomputed at the updated point, moved coordinates starting from their new
values. S = 1 is single-step DG. The cumulative radius is what lets S steps together reach what one
step can: a flip is a jump of |w0_ij|, not a walk, so a per-step reach of epsilon / S around the
current point would confine multi-step DG on the binary MLP to the weights with |w0_ij| <= epsilon / S
(1/8 of the box at S = 8) and confound "does DG improve with S?" with a shrinking box. For the FP
MLP the radius never binds before the box (S steps of epsilon / S), so its moves are unchanged.

**CDG**: repeatedly take the single best improving move (r = R = epsilon: anywhere in the box),
apply it, re-evaluate. With ``refresh = 1`` every coordinate is re-evaluated after every accepted
move (exact coordinate descent); with ``refresh = R > 1`` a full evaluation happens every R moves and in
between only a shortlist of the ``shortlist`` best coordinates of the last full evaluation is
re-evaluated exactly (a full evaluation also happens whenever the shortlist has no improving move).
Stops after ``max_moves`` moves or when no coordinate improves.
"""
from __future__ import annotations

from typing import Iterator

import numpy as np
import torch

from lowbit_core.probes.budget import box_bound
from lowbit_core.probes.flips import flip_target
from lowbit_core.probes.points import Point
from lowbit_core.probes.structure import FirstLayerView, coordinate_losses


def candidates(view: FirstLayerView, w0: torch.Tensor, delta: torch.Tensor, reach: float, radius: float,
               fp_moves: tuple[float, ...] = (1.0, 0.5)) -> torch.Tensor:
    """Candidate new changes ``delta'`` (M, H, D) of the latent weights w0 + delta, inside the box
    |delta'| <= ``radius``; NaN where a move is unreachable or moves nothing. ``reach`` sizes the FP
    moves; a binary flip is reachable wherever its target lies in the box (module docstring).
    Working on delta (not w) keeps |delta'| <= radius exact in float32."""
    b = box_bound(radius)
    nan = torch.full_like(delta, float("nan"))
    if view.binary:
        target, ok = flip_target(w0, delta, radius)
        return torch.where(ok, target, nan)[None]
    out = []
    for f in fp_moves:
        for sgn in (1.0, -1.0):
            t = torch.clamp(delta + sgn * f * reach, -b, b)
            out.append(torch.where(t == delta, nan, t))
    return torch.stack(out)


def best_moves(view: FirstLayerView, w0: torch.Tensor, delta: torch.Tensor, cand: torch.Tensor):
    """(loss change, target delta) of the best candidate per coordinate; +inf where none is reachable."""
    losses = coordinate_losses(view, w0 + delta, w0 + cand)
    base = view.loss(w0 + delta)
    change = torch.nan_to_num(losses - base, nan=float("inf"))
    best, m = change.min(dim=0)
    target = torch.gather(cand, 0, m[None]).squeeze(0)
    return best, target


def _prefix_sizes(n: int, points: int) -> list[int]:
    return sorted({1, n, *np.unique(np.round(np.geomspace(1, n, max(2, points))).astype(int)).tolist()})


def dg_step(view: FirstLayerView, w0: torch.Tensor, w: torch.Tensor, reach: float, radius: float,
            fp_moves=(1.0, 0.5), select: str = "best_prefix", max_coords: int = 0,
            prefix_points: int = 32) -> torch.Tensor:
    """One DG step from the change ``w`` (= delta) with reach ``reach`` inside the box of ``radius``:
    the new delta (``w`` itself when nothing improves)."""
    change, target = best_moves(view, w0, w, candidates(view, w0, w, reach, radius, fp_moves))
    flat = change.flatten()
    improving = torch.nonzero(flat < 0).flatten()
    if len(improving) == 0:
        return w
    order = improving[torch.argsort(flat[improving])]
    if select == "count":
        k = len(order) if max_coords <= 0 else min(max_coords, len(order))
        new = w.clone().flatten()
        new[order[:k]] = target.flatten()[order[:k]]
        return new.view_as(w)
    if select != "best_prefix":
        raise KeyError(f"unknown DG selection {select!r}; valid: best_prefix, count")
    best_w, best_loss = w, view.loss(w0 + w)
    for k in _prefix_sizes(len(order), prefix_points):
        new = w.clone().flatten()
        new[order[:k]] = target.flatten()[order[:k]]
        new = new.view_as(w)
        loss = view.loss(w0 + new)
        if loss < best_loss:
            best_w, best_loss = new, loss
    return best_w


def _point(view, w0, delta, step, best, reach: float = 0.0) -> Point:
    loss = view.loss(w0 + delta)
    moved = int((view.effective(w0 + delta) != view.effective(w0)).sum())
    return Point(step, loss, min(best, loss), max(reach, float(delta.abs().max())), moved, delta)


def cumulative_radius(step: int, steps: int, epsilon: float) -> float:
    """R_s = s * epsilon / S, exactly epsilon at s = S."""
    return epsilon if step >= steps else step * epsilon / steps


def multistep_dg(view: FirstLayerView, w0: torch.Tensor, epsilon: float, steps: int, **kw) -> Iterator[Point]:
    """Yield the point after 0..S DG steps, step s with reach epsilon / S and radius s * epsilon / S."""
    w = torch.zeros_like(w0)
    p = _point(view, w0, w, 0, float("inf"))
    yield p
    for s in range(1, steps + 1):
        w = dg_step(view, w0, w, epsilon / steps, cumulative_radius(s, steps, epsilon), **kw)
        p = _point(view, w0, w, s, p.best_loss, p.max_abs_delta)
        yield p


def cdg(view: FirstLayerView, w0: torch.Tensor, epsilon: float, max_moves: int, refresh: int = 1,
        shortlist: int = 64, fp_moves=(1.0, 0.5)) -> Iterator[Point]:
    """Yield the point after 0, 1, ... accepted coordinate moves (see the module docstring)."""
    w = torch.zeros_like(w0)
    p = _point(view, w0, w, 0, float("inf"))
    yield p
    short: torch.Tensor | None = None
    since_full = refresh
    moves = 0
    while moves < max_moves:
        cand = candidates(view, w0, w, epsilon, epsilon, fp_moves)
        full = short is None or since_full >= refresh
        if not full:
            mask = torch.ones(cand.shape[1:], dtype=torch.bool, device=w.device).flatten()
            mask[short] = False
            cand = cand.clone()
            cand[:, mask.view(cand.shape[1:])] = float("nan")
        change, target = best_moves(view, w0, w, cand)
        flat = change.flatten()
        if full:
            since_full = 0
            short = torch.argsort(flat)[:shortlist]
        j = int(torch.argmin(flat))
        if not flat[j] < 0:
            if full:
                return
            since_full = refresh  # shortlist exhausted: re-evaluate everything
            continue
        w = w.clone()
        w.view(-1)[j] = target.view(-1)[j]
        moves += 1
        since_full += 1
        p = _point(view, w0, w, moves, p.best_loss, p.max_abs_delta)
        yield p
