"""Gradient statistics of sign estimators on one model state, per quantized layer (Ray-free).

The meeting record's advisor: "look at the STE's variance and mean -> on ResNet". For a model whose
quantized layers binarize with :class:`~lowbit_core.quant.sign.SignQuantizer` (weights
``sign(W - tau)``, scaled or not, and/or input activations ``sign(x - tau)``), a list of mini-batches
and estimator choices, :func:`gradient_stats` measures what each estimator's gradient looks like --
with the same model state and the same batches for every estimator, so that the differences are the
estimators' alone. Nothing of the model changes: parameters, gradients, BN running statistics and the
train/eval mode are as before.

**Vectors.** For layer ``l`` and batch ``m`` (mean loss over the batch):

- weights, estimator ``e``: ``g_m = dL_m/dW_l`` with ``e`` as the layer's weight estimator and the
  model's own activation estimators. One forward and one backward give ``u = dL_m/d sign(W_l - tau)``
  of every layer (and the gradient ``s`` through an XNOR scale ``alpha(W_l)``, which no estimator
  changes); then ``g_m = e(u, W_l - tau, t) + s`` exactly as the model built with ``e`` would compute;
- activations, estimator ``e``: ``e`` is the activation estimator of *every* layer (it changes what
  reaches the layers below), one backward per estimator on the shared forward. The vector is
  ``g_m = dL_m/d beta_l``, the gradient of a per-channel shift ``beta`` of the layer's input
  (``x_l + beta``; minus the gradient of a per-channel learnable activation threshold, as in
  ReActNet's RSign, Liu et al. ECCV 2020) ``= sum over batch and positions of dL_m/dx_l`` through the
  layer's own activation quantizer: its coordinates (channels) are the same in every batch. The
  full input gradient ``G_m = dL_m/dx_l`` is compared per batch instead (``cos_input_*``).

**Statistics** over the first ``M`` batches (``D`` coordinates; Welford in float64):

- ``mean = (1/M) sum_m g_m``; ``var_j = 1/(M-1) sum_m (g_mj - mean_j)^2`` (sample variance);
- ``norm = ||mean||_2``; ``var = (1/D) sum_j var_j``;
- ``snr = ||mean||^2 / (D var) = mean_j mean_j^2 / mean_j var_j`` -- the ratio of the squared mean to
  the variance of a one-batch gradient, per coordinate on average, so that layers of different size
  compare (``||mean||^2 / var`` would grow with D). Pure noise gives about ``1/M`` (the mean of M
  draws keeps ``var/M`` per coordinate);
- ``inside``: the fraction of the layer's latent weights (activations: of the batch's inputs, mean
  over batches) inside the estimator's window, i.e. where it passes a gradient
  (:meth:`~lowbit_core.quant.estimator_registry.Estimator.passes`: ``|x - tau| <= t`` for the
  window, ``|x - tau| < 1`` for ApproxSign, everywhere for nSTE and the value clip);
- ``param``: the estimator's parameter in absolute units (a relative window ``t * std(W_l)``; a value
  clip relative to the gradient, mean over batches), NaN where it has none; ``tau``: the threshold;
- for each reference ``r`` (e.g. nSTE and a smooth surrogate, whose means use all ``M_ref >= M``
  batches: "at large M"): ``cos_r = <mean, mean_r> / sqrt(<mean, mean> <mean_r, mean_r>)`` (exactly
  1 for equal vectors: ``sqrt(x^2) = |x|`` in IEEE arithmetic; NaN when a vector is 0), and
  ``sign_r``: among the coordinates where ``mean`` is nonzero, the fraction where ``sign(mean_j) =
  sign(mean_r,j)`` (a window's zeros show in ``inside``, not here); activations also
  ``cos_input_r``: the mean over the M batches of the cosine between ``G_m`` under ``e`` and under
  ``r`` on the same batch.

References: the nSTE (Bengio et al. 2013), the window STE (Hubara et al. 2016, BNN), ApproxSign
(Liu et al. 2018, Bi-Real Net), EDE's tanh surrogate (Qin et al. 2020, IR-Net); DSQ's shrinking
window (Gong et al. ICCV 2019) is what a static relative window stands in for.
"""
from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Sequence

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from lowbit_core.quant.estimator_registry import Estimator, get, resolve
from lowbit_core.quant.estimators import sign
from lowbit_core.quant.sign import SignQuantizer, get_weight_scale, shifted_input

SIDES = ("weight", "act")
STATS = ("norm", "var", "snr", "inside", "param")


@dataclass(frozen=True)
class Choice:
    """One estimator on one side: a registry name and its parameter (a number, a ``Relative``, EDE's
    pair; ``None``: the registry's default)."""

    name: str
    param: Any = None

    def __post_init__(self):
        entry = get(self.name)
        object.__setattr__(self, "param", self.param if self.param is not None else entry.default)

    @property
    def entry(self) -> Estimator:
        return get(self.name)


@dataclass
class _Running:
    """Welford's running mean and sum of squared deviations of float64 vectors; ``stats`` is taken
    when ``n`` reaches ``at`` (mean and sample variance of the first ``at`` vectors)."""

    at: int
    n: int = 0
    mean: torch.Tensor | None = None
    m2: torch.Tensor | None = None
    stats: tuple[torch.Tensor, torch.Tensor] | None = None

    def add(self, v: torch.Tensor) -> None:
        v = v.detach().reshape(-1).double()
        self.n += 1
        if self.mean is None:
            self.mean, self.m2 = v.clone(), torch.zeros_like(v)
        else:
            d = v - self.mean
            self.mean += d / self.n
            self.m2 += d * (v - self.mean)
        if self.n == self.at:
            self.stats = (self.mean.clone(), self.m2 / max(self.n - 1, 1))


def cosine(a: torch.Tensor, b: torch.Tensor) -> float:
    """``<a, b> / sqrt(<a, a> <b, b>)`` in float64, clamped to [-1, 1]; NaN if either is 0."""
    a, b = a.reshape(-1).double(), b.reshape(-1).double()
    den = float((a @ a) * (b @ b))
    return max(-1.0, min(1.0, float(a @ b) / math.sqrt(den))) if den > 0 else math.nan


def sign_agreement(a: torch.Tensor, ref: torch.Tensor) -> float:
    """Among the coordinates where ``a`` is nonzero, the fraction where sign(a) = sign(ref); NaN if none."""
    nz = a != 0
    n = int(nz.sum())
    return float((torch.sign(a[nz]) == torch.sign(ref[nz])).sum()) / n if n else math.nan


class _Switch:
    """Which activation case the next backward uses (shared by every layer)."""

    current: int = 0


class _SwitchedSign(torch.autograd.Function):
    """Forward ``sign(s)``; backward through the estimator of the switch's current case at this layer."""

    @staticmethod
    def forward(ctx, s, layer):
        ctx.save_for_backward(s)
        ctx.layer = layer
        return sign(s)

    @staticmethod
    def backward(ctx, g):
        (s,) = ctx.saved_tensors
        k = ctx.layer.switch.current
        entry, param = ctx.layer.cases[k]
        param = entry.absolute(param, g=g)
        ctx.layer.resolved[k] = param
        return entry.grad(g, s, param), None


@dataclass
class _ActLayer:
    """One layer's activation quantizer during the probe: its cases and what a batch left."""

    quantizer: SignQuantizer
    choices: list[Choice]          # cases 1..K (case 0: the layer's own estimator)
    switch: _Switch
    cases: list = field(default_factory=list)
    resolved: dict = field(default_factory=dict)  # case -> its parameter in absolute units, this batch
    x: torch.Tensor | None = None  # the alias of the input the quantizer saw (the gradient is taken here)
    s: torch.Tensor | None = None  # x - tau

    def hook(self, module, args, output):
        x = args[0]
        # a node of its own: dL/dx through this quantizer only (not the shortcut); a leaf for a data input
        x = x.view_as(x) if x.requires_grad else x.detach().requires_grad_(True)
        s = shifted_input(x, self.quantizer.threshold)
        q = self.quantizer
        own = (get(q.estimator), get(q.estimator).absolute(q.param, x=x))
        self.cases = [own] + [(c.entry, c.entry.absolute(c.param, x=x)) for c in self.choices]
        self.x, self.s = x, s.detach()
        return _SwitchedSign.apply(s, self)


@dataclass
class _WeightLayer:
    """One layer's weight quantizer during the probe: ``scale(W) * b`` with ``b = sign(W - tau)`` a
    leaf, so that ``dL/db`` (the upstream of the estimator) and the scale path's ``dL/dW`` separate."""

    quantizer: SignQuantizer
    b: torch.Tensor | None = None
    w: torch.Tensor | None = None

    def hook(self, module, args, output):
        w = args[0]
        self.w = w
        self.b = sign(shifted_input(w.detach(), self.quantizer.threshold)).requires_grad_(True)
        return self.b if self.quantizer.scale == "none" else get_weight_scale(self.quantizer.scale)(w) * self.b


def quantized_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """(name, module) of every layer with a sign quantizer on its weight or its input, in forward order."""
    return [(n, m) for n, m in model.named_modules()
            if isinstance(getattr(m, "weight_quantizer", None), SignQuantizer)
            or isinstance(getattr(m, "act_quantizer", None), SignQuantizer)]


@contextlib.contextmanager
def _instrumented(model: nn.Module, act_choices: list[Choice]):
    """Hooks on every sign quantizer for the probe; the model's buffers and mode are restored after."""
    buffers = {k: v.detach().clone() for k, v in model.named_buffers()}
    training = {m: m.training for m in model.modules()}
    switch = _Switch()
    weights, acts, handles = {}, {}, []
    for name, m in quantized_layers(model):
        if isinstance(getattr(m, "weight_quantizer", None), SignQuantizer):
            weights[name] = _WeightLayer(m.weight_quantizer)
            handles.append(m.weight_quantizer.register_forward_hook(weights[name].hook))
        if isinstance(getattr(m, "act_quantizer", None), SignQuantizer):
            acts[name] = _ActLayer(m.act_quantizer, act_choices, switch)
            handles.append(m.act_quantizer.register_forward_hook(acts[name].hook))
    model.train()
    try:
        yield weights, acts, switch
    finally:
        for h in handles:
            h.remove()
        with torch.no_grad():
            for k, v in model.named_buffers():
                v.copy_(buffers[k])
        for m, mode in training.items():
            m.train(mode)


@dataclass
class GradStats:
    """Per side, per choice (and reference), per statistic: one value per layer (``layers`` order;
    NaN where a layer lacks that side). ``tau``: per side, the threshold of each layer."""

    layers: list[str]
    weight: dict[Choice, dict[str, np.ndarray]]
    act: dict[Choice, dict[str, np.ndarray]]
    tau: dict[str, np.ndarray]
    n_batches: int
    n_reference_batches: int


def _case_index(choices: list[Choice], acts: dict[str, _ActLayer]) -> dict[Choice, int]:
    """Case of each activation choice: 0 where it is every layer's own estimator, else its own case."""
    own = {(q.estimator, q.param if q.param is not None else get(q.estimator).default)
           for q in (a.quantizer for a in acts.values())}
    return {c: 0 if own == {(c.name, c.param)} else i + 1 for i, c in enumerate(choices)}


def gradient_stats(model: nn.Module, batches: Sequence[tuple[torch.Tensor, torch.Tensor]],
                   weight: Iterable[Choice] = (), act: Iterable[Choice] = (), references: dict[str, Choice] | None = None,
                   n_stats: int | None = None, loss_fn: Callable = F.cross_entropy) -> GradStats:
    """The statistics of the module docstring for the ``weight`` and ``act`` choices, against each of
    ``references`` (name -> choice, applied on both sides), on ``batches`` (inputs ready for the
    model, on its device): the first ``n_stats`` (M, default all, >= 2) for the statistics, all of
    them for the references' means. The model's own estimators give the weight statistics' upstream."""
    references = dict(references or {})
    n_stats = len(batches) if n_stats is None else n_stats
    if not 2 <= n_stats <= len(batches):
        raise ValueError(f"gradient_stats needs 2 <= n_stats <= {len(batches)} batches, got {n_stats}")
    choices = {"weight": list(dict.fromkeys([*weight, *references.values()])),
               "act": list(dict.fromkeys([*act, *references.values()]))}
    with _instrumented(model, choices["act"]) as (wl, al, switch):
        if not al:  # no sign activations: nothing to measure on that side
            choices["act"] = []
        case = _case_index(choices["act"], al)
        acc = _Accumulators([n for n, _ in quantized_layers(model)], wl, al, choices, references, n_stats, len(batches))
        for m, (x, y) in enumerate(batches):
            loss = loss_fn(model(x), y)
            used = [c for c in choices["act"] if acc.wanted(c, m)]
            order = sorted({0, *(case[c] for c in used)})
            input_grads: dict[int, list] = {}
            for i, k in enumerate(order):
                switch.current = k
                wanted = [a.x for a in al.values()]
                if k == 0:
                    wanted += [w.b for w in wl.values()] + [w.w for w in wl.values()]
                grads = torch.autograd.grad(loss, wanted, retain_graph=i < len(order) - 1, allow_unused=True)
                input_grads[k] = list(grads[:len(al)])
                if k == 0:
                    acc.add_weights(m, grads[len(al):len(al) + len(wl)], grads[len(al) + len(wl):])
            acc.add_acts(m, {c: input_grads[case[c]] for c in used}, {c: case[c] for c in used})
    return acc.result()


class _Accumulators:
    """The running sums of one probe, and the per-layer arrays they end in."""

    def __init__(self, names, wl, al, choices, references, n_stats, n_all):
        self.names, self.layers = names, {"weight": wl, "act": al}
        self.choices, self.references = choices, references
        self.n_stats, self.n_all = n_stats, n_all
        self.run = {side: {(c, n): _Running(n_stats) for c in choices[side] for n in names} for side in SIDES}
        self.sums = {side: {(c, n, k): 0.0 for c in choices[side] for n in names for k in ("inside", "param")}
                     for side in SIDES}
        self.tau = {side: dict.fromkeys(names, 0.0) for side in SIDES}
        self.cos_input: dict = {}

    def wanted(self, c: Choice, m: int) -> bool:
        """Batch ``m`` counts for choice ``c``: one of the first M, or ``c`` is a reference."""
        return m < self.n_stats or c in self.references.values()

    def add_weights(self, m: int, b_grads, w_grads) -> None:
        for (name, layer), u, s in zip(self.layers["weight"].items(), b_grads, w_grads):
            w = layer.w.detach()
            shifted = shifted_input(w, layer.quantizer.threshold)
            for c in self.choices["weight"]:
                if self.wanted(c, m):
                    p = c.entry.absolute(c.param, x=w, g=u)
                    self.run["weight"][(c, name)].add(c.entry.grad(u, shifted, p) + (0.0 if s is None else s))
                    if m < self.n_stats:
                        self._sums("weight", c, name, shifted, p)
            if m < self.n_stats:
                self.tau["weight"][name] += float(resolve(layer.quantizer.threshold, w)) / self.n_stats

    def add_acts(self, m: int, grads: dict[Choice, list], cases: dict[Choice, int]) -> None:
        for li, (name, layer) in enumerate(self.layers["act"].items()):
            for c, gs in grads.items():
                g = gs[li]
                self.run["act"][(c, name)].add(g.sum(dim=[d for d in range(g.dim()) if d != 1]))
                if m < self.n_stats:
                    self._sums("act", c, name, layer.s, layer.resolved[cases[c]])
                    for r, rc in self.references.items():
                        key = (c, name, r)
                        self.cos_input[key] = self.cos_input.get(key, 0.0) + cosine(g, grads[rc][li]) / self.n_stats
            if m < self.n_stats:
                self.tau["act"][name] += float(resolve(layer.quantizer.threshold, layer.x.detach())) / self.n_stats

    def _sums(self, side: str, c: Choice, name: str, shifted: torch.Tensor, p) -> None:
        self.sums[side][(c, name, "inside")] += float(c.entry.passes(shifted, p).double().mean()) / self.n_stats
        self.sums[side][(c, name, "param")] += (float(p) if c.entry.param_axis else math.nan) / self.n_stats

    def keys(self, side: str) -> list[str]:
        per_ref = ("cos", "sign", "cos_input") if side == "act" else ("cos", "sign")
        return [*STATS, *(f"{s}_{r}" for r in self.references for s in per_ref)]

    def result(self) -> GradStats:
        out = {}
        for side in SIDES:
            out[side] = {c: {k: np.array(v, dtype=float) for k, v in zip(self.keys(side), zip(
                *(self._layer(side, c, n) for n in self.names)))} for c in self.choices[side]}
        tau = {side: np.array([self.tau[side][n] if n in self.layers[side] else math.nan for n in self.names])
               for side in SIDES}
        return GradStats(self.names, out["weight"], out["act"], tau, self.n_stats, self.n_all)

    def _layer(self, side: str, c: Choice, name: str) -> list[float]:
        if name not in self.layers[side]:
            return [math.nan] * len(self.keys(side))
        mean, var = self.run[side][(c, name)].stats
        norm2, v = float(mean @ mean), float(var.mean())
        row = [math.sqrt(norm2), v, norm2 / (mean.numel() * v) if v > 0 else math.nan,
               self.sums[side][(c, name, "inside")], self.sums[side][(c, name, "param")]]
        for r, rc in self.references.items():
            ref_mean = self.run[side][(rc, name)].mean
            row += [cosine(mean, ref_mean), sign_agreement(mean, ref_mean)]
            if side == "act":
                row.append(self.cos_input.get((c, name, r), math.nan))
        return row


__all__ = ["Choice", "GradStats", "SIDES", "STATS", "cosine", "sign_agreement", "gradient_stats", "quantized_layers"]
