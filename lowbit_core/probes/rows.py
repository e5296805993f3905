"""The metrics of a probe row, built from a method's points (see :data:`lowbit_core.probes.metrics.PROBE_METRICS`).

Per reported step: the point's loss and the best loss so far on the probe batch; relative
improvements ``(L_single - L) / L_single`` over the single-step STE's best loss (positive: the method
found a lower loss); the method's answer -- the point with the lowest probe-batch loss so far -- on
the held-out batch (``heldout_loss``) and its relative improvement over the single-step STE's answer
on that batch (``rel_improvement_heldout``); the cost so far (``loss_evals``, ``grad_evals`` and
``fwd_equiv = loss_evals + 2 * grad_evals``, :mod:`lowbit_core.probes.evals`); and
``reach_frac``: binary, the fraction of the layer's weights whose sign can flip in the box
(|w0| <= epsilon); FP, mean |delta| / mean |w0| of the answer. Every row also carries the trial's
shared metrics (start and held-out start loss, the single-step STE's best loss, lr, held-out loss
and cost, the gradient comparison, ``layer_weights`` = the probed layer's number of weights).
"""
from __future__ import annotations

import math

from lowbit_core.probes.evals import fwd_equiv
from lowbit_core.probes.points import Point
from lowbit_core.probes.setup import Setup


def rel(single: float, value: float) -> float:
    return (single - value) / single if single != 0 else float("nan")


class Tracker:
    """Follows one search: sees every point (reported or not) and keeps its best, the method's answer."""

    def __init__(self, s: Setup):
        self.s = s
        self.best = math.inf
        self.best_delta = None
        self._heldout: float | None = None

    def see(self, p: Point) -> None:
        if self.best_delta is None or p.loss < self.best:
            self.best, self.best_delta, self._heldout = p.loss, p.delta, None

    def heldout(self) -> float:
        if self._heldout is None:
            self._heldout = self.s.heldout(self.best_delta)
        return self._heldout

    def reach(self) -> float:
        if self.s.flippable is not None:
            return self.s.flippable
        scale = float(self.s.w0.abs().mean())
        return float(self.best_delta.abs().mean()) / scale if scale > 0 else float("nan")

    def row(self, p: Point, counts: tuple[int, int], is_last: bool) -> dict:
        s = self.s
        single, held = s.single.best_loss, self.heldout()
        row = {"step": p.step, "loss": p.loss, "best_loss": p.best_loss, "max_abs_delta": p.max_abs_delta,
               "coords_moved": p.coords_moved, "rel_improvement": rel(single, p.loss),
               "rel_improvement_best": rel(single, p.best_loss), "heldout_loss": held,
               "rel_improvement_heldout": rel(s.common["single_heldout_loss"], held), "loss_evals": counts[0],
               "grad_evals": counts[1], "fwd_equiv": fwd_equiv(*counts), "reach_frac": self.reach(), **s.common}
        if is_last:
            row.update(scan_lr=s.single.lrs.tolist(), scan_loss=s.single.losses.tolist())
        return row
