"""ADMM on the probed first layer inside the budget box (Leng et al., "Extremely low bit neural
network: squeeze the last bit out with ADMM", AAAI 2018).

**Problem.** Minimize the fixed batch's loss f over the first layer's weights restricted to the set C
of points the box can reach, written in a unit variable V:

- binary MLP: the effective weight is ``s V`` (s = 1/sqrt(fan_in), the MLP's fixed scale), and
  C = prod_ij C_ij with C_ij = {-1, +1} where the sign flip of w0_ij is reachable inside the box
  (:mod:`lowbit_core.probes.flips`) and C_ij = {sign(w0_ij)} elsewhere: the reachable sign patterns;
- FP MLP: the weight is ``w0 + epsilon V`` and C = [-1, 1]^(H x D), the box itself.

f(V) is differentiable in the continuous V (for the binary MLP it is the network with a real-valued
first layer: no STE is involved), and the discreteness lives only in C. As in Leng et al., an
auxiliary G carries the constraint: minimize f(V) + I_C(G) subject to V = G, with the scaled
augmented Lagrangian ``L(V, G, lam) = f(V) + I_C(G) + rho/2 ||V - G + lam||^2 - rho/2 ||lam||^2``.

**Iteration k = 0, 1, ..., K-1** (the exact update implemented):

1. proximal (V) step: ``inner_steps`` extragradient steps (Korpelevich 1976; Leng et al. solve this
   step with the extragradient method) on ``h(V) = f(V) + rho_k/2 ||V - G_k + lam_k||^2``:
   ``Vbar = V - a grad f(V) - kappa (V - G_k + lam_k)``, then
   ``V <- V - a grad f(Vbar) - kappa (Vbar - G_k + lam_k)``, with ``a = min(lr, 1/rho_k) / g_max`` and
   ``kappa = a rho_k g_max = min(lr rho_k, 1)``;
2. projection: ``G_{k+1} = Pi_C(V_{k+1} + lam_k)``, per coordinate the nearest element of C_ij:
   binary: sign(V + lam) where the flip is reachable (sign(0) = +1), sign(w0) elsewhere; FP: the
   clip to [-1, 1]. C is a product of per-coordinate sets, so this is the exact Euclidean projection
   (tests compare it with brute force over every reachable pattern);
3. dual update: ``lam_{k+1} = lam_k + V_{k+1} - G_{k+1}``;
4. penalty schedule: ``rho_{k+1} = rho_growth * rho_k``, the scaled dual rescaled
   ``lam_{k+1} <- lam_{k+1} rho_k / rho_{k+1}`` (the unscaled dual rho lam carries over; Boyd et al.
   2011, "Distributed optimization and statistical learning via ADMM", section 3.4.1). A growing
   penalty forces V onto C, the usual way to make ADMM settle on a non-convex set.

Units: g_max = max |df/dV| at V_0 (1 where it is 0), and the penalty rho_k (``rho`` at k = 0) is in units
of g_max: so ``lr`` is the largest move (in V units) the start's loss gradient makes per step, as
multi-step STE's normalized lr, and the quadratic part never overshoots (kappa <= 1). With rho fixed,
a coordinate of a fixed point leaves its start sign only where df/dV pushes against it by more than
rho g_max.

**Start.** ``G_0`` = the start point in C: w0 (``start="w0"``), or the single-step STE's best point,
the "STE checkpoint" of the meeting record (``start="ste"``; the probe adds that scan's cost to
ADMM's loss_evals); ``lam_0 = 0``. ``V_0``: binary MLP, the start's latent weights rescaled to mean
|V| = 1, so that V's least-squares binary projection with a free scale (alpha = mean |V|, as in Leng
et al.'s projection) is the layer's binary weight and a latent weight near 0 starts near the
decision boundary (Leng et al. start V from the pretrained real-valued weights); FP MLP, V_0 = G_0.

**Points.** G_k is the only iterate in C: after every iteration its loss f(G_k) is evaluated (one
loss evaluation) and yielded as the latent change that realizes it (binary: the flip targets of the
coordinates whose sign differs from w0's; FP: epsilon G clipped to the float32 box bound), so every
yielded point lies in the box. Cost per iteration: 2 * inner_steps gradients (one forward and one
backward pass each; the very first reuses the gradient at V_0 that set g_max) and 1 loss evaluation.
"""
from __future__ import annotations

from typing import Iterator

import torch

from lowbit_core.probes.budget import project
from lowbit_core.probes.flips import flips_delta, reachable
from lowbit_core.probes.points import Point
from lowbit_core.probes.structure import FirstLayerView
from lowbit_core.quant.estimators import sign


class ReachableSet:
    """The set C of one probe (module docstring) in the unit variable V, with its maps to weights."""

    def __init__(self, view: FirstLayerView, w0: torch.Tensor, epsilon: float):
        self.view, self.w0, self.epsilon = view, w0, epsilon
        self.binary = view.binary
        if self.binary:
            self.free = reachable(w0, epsilon)
            self.fixed = sign(w0)

    def weight(self, v: torch.Tensor) -> torch.Tensor:
        """The effective first-layer weight computed with V (differentiable)."""
        return self.view.scale * v if self.binary else self.w0 + self.epsilon * v

    def project(self, u: torch.Tensor) -> torch.Tensor:
        """Pi_C(u): the nearest point of C, coordinate by coordinate."""
        if self.binary:
            return torch.where(self.free, sign(u), self.fixed)
        return u.clamp(-1.0, 1.0)

    def delta(self, g: torch.Tensor) -> torch.Tensor:
        """The latent change (inside the box) whose effective weight is that of ``g`` in C."""
        if self.binary:
            return flips_delta(self.w0, self.epsilon, g != self.fixed)
        return project(self.epsilon * g, self.epsilon)

    def unit(self, delta: torch.Tensor) -> torch.Tensor:
        """The point of C of the latent change ``delta`` (inside the box)."""
        if self.binary:
            return sign(self.w0 + delta)
        return (delta / self.epsilon).clamp(-1.0, 1.0)

    def continuous(self, delta: torch.Tensor) -> torch.Tensor:
        """V_0 for the latent point ``w0 + delta``: binary, the latent weights rescaled to unit mean
        |V| (so that V's least-squares binary projection with a free scale, alpha = mean |V| as in
        Leng et al., is the layer's binary weight); FP, ``unit(delta)``."""
        if not self.binary:
            return self.unit(delta)
        w = self.w0 + delta
        scale = float(w.abs().mean())
        return w / scale if scale > 0 else sign(w)


def _loss_and_grad(view: FirstLayerView, c: ReachableSet, v: torch.Tensor) -> tuple[float, torch.Tensor]:
    v = v.detach().requires_grad_(True)
    loss = view.losses_of_effective(c.weight(v)[None])[0]
    (g,) = torch.autograd.grad(loss, v)
    return float(loss.detach()), g


def search(view: FirstLayerView, w0: torch.Tensor, epsilon: float, start_delta: torch.Tensor, iterations: int,
           rho: float = 0.01, rho_growth: float = 1.05, lr: float = 0.1, inner_steps: int = 1) -> Iterator[Point]:
    """Yield the point G_k after 0, 1, ..., ``iterations`` ADMM iterations (module docstring) from the
    start ``w0 + start_delta`` (a point inside the box)."""
    c = ReachableSet(view, w0, epsilon)
    g_set = c.unit(start_delta)
    v = c.continuous(start_delta)
    lam = torch.zeros_like(v)
    eff0 = view.effective(w0)

    def point(k: int, best: float, reach: float) -> Point:
        delta = c.delta(g_set)
        loss = float(view.losses_of_deltas(w0, delta[None])[0])
        moved = int((view.effective(w0 + delta) != eff0).sum())
        return Point(k, loss, min(best, loss), max(reach, float(delta.abs().max())), moved, delta)

    p = point(0, float("inf"), 0.0)
    yield p
    if iterations == 0:
        return
    _, pending = _loss_and_grad(view, c, v)  # df/dV at V_0: sets g_max, and is the first step's gradient
    gmax = float(pending.abs().max()) or 1.0
    rho_k = rho
    for k in range(1, iterations + 1):
        a = min(lr, 1.0 / rho_k) / gmax
        kappa = min(lr * rho_k, 1.0)
        for _ in range(inner_steps):
            gv = pending if pending is not None else _loss_and_grad(view, c, v)[1]
            pending = None
            v_bar = v - a * gv - kappa * (v - g_set + lam)
            v = v - a * _loss_and_grad(view, c, v_bar)[1] - kappa * (v_bar - g_set + lam)
        g_set = c.project(v + lam)
        lam = (lam + v - g_set) / rho_growth  # the dual update, rescaled by rho_k / rho_{k+1}
        rho_k = rho_k * rho_growth
        p = point(k, p.best_loss, p.max_abs_delta)
        yield p
