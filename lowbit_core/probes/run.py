"""One budget-probe trial, Ray-free: ``run_probe(cfg, report)``.

1. Seeded set-up: the task (teacher fixed, or MNIST), the MLP (FP or binary) initialized from
   ``cfg.seed`` and pretrained for ``model.pretrain_steps`` Adam steps on fresh batches (the binary
   MLP through nSTE, whatever estimator is probed, so every estimator starts from the same w0).
2. One fixed probe batch of ``data.batch_size`` examples (from ``cfg.seed``): every method of the
   trial sees it, and so does every trial with the same seed and data config.
3. Gradient of the probed layer at w0 through the estimator, compared with nSTE's.
4. Single-step STE lr scan (:mod:`lowbit_core.probes.lr_scan`).
5. The method under test, reporting every ``report_every`` steps and at the last (the last report
   carries the scan curve): multi-step STE (:mod:`lowbit_core.probes.multistep`; step = iteration),
   DG (:mod:`lowbit_core.probes.dg`; step = DG step) or CDG (step = accepted coordinate moves).

The scan and DG use the first layer's structure (:mod:`lowbit_core.probes.structure`) when the probed
layer is the first one; the direct computation otherwise.

Metrics (see :data:`PROBE_METRICS`): relative improvement is ``(L_single - L_multi) / L_single``,
positive when the multi-step search found a lower loss than the best single step.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator

import torch
import torch.nn.functional as F

from lowbit_core.data.probe_batches import ProbeData
from lowbit_core.device import pick_device
from lowbit_core.models.mlp import MLP
from lowbit_core.probes import batched, dg, lr_scan, multistep
from lowbit_core.probes.budget import random_start
from lowbit_core.probes.config import ProbeConfig
from lowbit_core.probes.gradient import batch_loss_fn, compare_to_identity, gradient_at, normalize
from lowbit_core.probes.structure import FirstLayerView, scan_losses

Report = Callable[[dict], None]

PROBE_METRICS: dict[str, str] = {
    "loss": "float", "best_loss": "float", "max_abs_delta": "float", "start_loss": "float",
    "single_best_loss": "float", "single_best_lr": "float", "rel_improvement": "float",
    "rel_improvement_best": "float", "grad_cos_identity": "float", "grad_clipped_frac": "float",
    "coords_moved": "int",
    "scan_lr": "list[float]", "scan_loss": "list[float]",
}


_DATA_CACHE: dict = {}
_START_CACHE: dict = {}
_CACHE_SIZE = 8


def _cached(cache: dict, key, make):
    """Small FIFO cache: a reused Ray actor runs many trials that share data and start weights."""
    if key not in cache:
        if len(cache) >= _CACHE_SIZE:
            cache.pop(next(iter(cache)))
        cache[key] = make()
    return cache[key]


def probe_data(cfg: ProbeConfig) -> ProbeData:
    d = cfg.data
    key = (d.name, d.root, d.n_features, d.n_classes, d.teacher_hidden)
    return _cached(_DATA_CACHE, key, lambda: ProbeData(*key))


def pretrained_mlp(cfg: ProbeConfig, data: ProbeData, device: torch.device, estimator: str = "identity",
                   estimator_param=None) -> MLP:
    """The MLP at its probe start w0, built with ``estimator`` (a fresh module; the weights are
    computed once per process)."""
    key = (cfg.data, cfg.model, cfg.seed, str(device))
    state = _cached(_START_CACHE, key, lambda: _pretrain(cfg, data, device).state_dict())
    model = MLP(data.in_dim, cfg.model.hidden, data.n_classes, cfg.model.kind, estimator, estimator_param).to(device)
    model.load_state_dict(state)
    return model.requires_grad_(False)


def _pretrain(cfg: ProbeConfig, data: ProbeData, device: torch.device) -> MLP:
    """Seeded init, then Adam pretraining (nSTE for the binary MLP, exact gradient for FP)."""
    torch.manual_seed(cfg.seed)
    model = MLP(data.in_dim, cfg.model.hidden, data.n_classes, cfg.model.kind).to(device)
    gen = torch.Generator().manual_seed(1_000 + cfg.seed)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.model.pretrain_lr)
    for _ in range(cfg.model.pretrain_steps):
        x, y = data.sample(cfg.model.pretrain_batch, gen)
        loss = F.cross_entropy(model(x.to(device)), y.to(device))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return model


@dataclass
class _Setup:
    """What every method of one (model, seed, batch, estimator) shares: start, batch, scan result."""

    model: MLP
    w0: torch.Tensor
    loss_fn: Callable
    view: FirstLayerView | None
    single: lr_scan.ScanResult
    common: dict


def _setup(cfg: ProbeConfig, device: torch.device) -> _Setup:
    data = probe_data(cfg)
    model = pretrained_mlp(cfg, data, device, cfg.estimator.name, cfg.estimator.param())
    x, y = data.sample(cfg.data.batch_size, torch.Generator().manual_seed(2_000 + cfg.seed))
    x, y = x.to(device), y.to(device)

    layer, eps = cfg.budget.layer, cfg.budget.epsilon
    w0 = model.layers[layer].weight.detach().clone()
    loss_fn = batch_loss_fn(model, layer, w0, x, y)
    zero = torch.zeros_like(w0)

    start_loss, g = gradient_at(loss_fn, zero)
    _, g_id = gradient_at(batch_loss_fn(pretrained_mlp(cfg, data, device), layer, w0, x, y), zero)
    cos, frac = compare_to_identity(g, g_id)

    lrs = lr_scan.lr_grid(cfg.scan.lr_min, cfg.scan.lr_max, cfg.scan.lr_step)
    direction = normalize(g, cfg.scan.normalize)
    view = FirstLayerView(model, x, y) if layer == 0 else None
    if view is not None:  # exact, incremental along the scan (lowbit_core.probes.structure)
        single = lr_scan.result(lrs, scan_losses(view, w0, direction, lrs, eps), direction, eps)
    else:
        single = lr_scan.scan(loss_fn, direction, lrs, eps)
    common = {"start_loss": start_loss, "single_best_loss": single.best_loss, "single_best_lr": single.best_lr,
              "grad_cos_identity": cos, "grad_clipped_frac": frac}
    return _Setup(model, w0, loss_fn, view, single, common)


def _row(s: _Setup, step: int, loss: float, best: float, reach: float, moved: int, is_last: bool) -> dict:
    best_single = s.single.best_loss
    row = {"step": step, "loss": loss, "best_loss": best, "max_abs_delta": reach, "coords_moved": moved,
           "rel_improvement": _rel(best_single, loss), "rel_improvement_best": _rel(best_single, best), **s.common}
    if is_last:
        row.update(scan_lr=s.single.lrs.tolist(), scan_loss=s.single.losses.tolist())
    return row


def run_probe(cfg: ProbeConfig, report: Report, device: torch.device | None = None) -> dict:
    """Run one probe trial, calling ``report(metrics)`` per reported step; returns the last metrics."""
    device = device or pick_device()
    s = _setup(cfg, device)
    last: dict = {}
    every = {"ste": cfg.multi.report_every, "dg": 1, "cdg": cfg.dg.report_every}[cfg.method]
    for p, is_last in _with_last(_method_points(cfg, s.model, s.view, s.loss_fn, s.w0, device)):
        if p.step % every and not is_last:
            continue
        last = _row(s, p.step, p.loss, p.best_loss, p.max_abs_delta, p.coords_moved, is_last)
        report(dict(last))
    return last


FOLDABLE = frozenset({"multi.noise", "multi.lr"})


def run_probe_batch(cfgs: list[ProbeConfig], report: Callable[..., None], device: torch.device | None = None) -> None:
    """Run probe trials that differ only in ``multi.noise`` / ``multi.lr`` as one batched search.

    Set-up and the single-step scan are computed once; the multi-step searches run together
    (:func:`lowbit_core.probes.batched.search_batch`), each point with the random start a separate
    trial would draw. Calls ``report(metrics, point=i)``; rows equal separate trials' to float32
    summation order.
    """
    device = device or pick_device()
    base = cfgs[0]
    for c in cfgs[1:]:
        other = dataclasses.replace(c, multi=dataclasses.replace(c.multi, noise=base.multi.noise, lr=base.multi.lr))
        if other != base:
            raise ValueError(f"folded probe trials may differ only in {sorted(FOLDABLE)}")
    if base.method != "ste" or base.budget.layer != 0:
        raise ValueError("only multi-step STE on the first layer (method=ste, budget.layer=0) can be folded")
    s = _setup(base, device)
    m, eps = base.multi, base.budget.epsilon
    starts = torch.stack([_start(c, s.w0.shape, device) for c in cfgs])
    lrs = torch.tensor([c.multi.lr for c in cfgs], device=device)
    points = batched.search_batch(s.model, s.view, s.w0, starts, eps, m.optimizer, lrs, m.steps, m.momentum,
                                  (m.beta1, m.beta2), m.normalize)
    for p in points:
        is_last = p.step == m.steps
        if p.step % m.report_every and not is_last:
            continue
        for i in range(len(cfgs)):
            report(_row(s, p.step, float(p.loss[i]), float(p.best_loss[i]), float(p.max_abs_delta[i]),
                        int(p.coords_moved[i]), is_last), point=i)


def _start(cfg: ProbeConfig, shape, device) -> torch.Tensor:
    """The multi-step search's random start (seeded from ``cfg.seed``; a folded trial draws the same)."""
    return random_start(shape, cfg.multi.noise, cfg.budget.epsilon, torch.Generator().manual_seed(3_000 + cfg.seed),
                        device)


def _method_points(cfg: ProbeConfig, model: MLP, view, loss_fn, w0: torch.Tensor, device) -> Iterator:
    """The search under test as a stream of points (step, loss, best_loss, max_abs_delta, coords_moved)."""
    eps, d = cfg.budget.epsilon, cfg.dg
    if cfg.method == "dg":
        return dg.multistep_dg(view, w0, eps, d.steps, fp_moves=d.fp_moves, select=d.select,
                               max_coords=d.max_coords, prefix_points=d.prefix_points)
    if cfg.method == "cdg":
        return dg.cdg(view, w0, eps, d.cdg_max_moves, d.cdg_refresh, d.cdg_shortlist, d.fp_moves)
    m = cfg.multi
    delta0 = _start(cfg, w0.shape, device)
    eff0 = model.effective_weight(cfg.budget.layer, w0)

    def changed(delta: torch.Tensor) -> int:
        return int((model.effective_weight(cfg.budget.layer, w0 + delta) != eff0).sum())

    return multistep.search(loss_fn, delta0, eps, m.optimizer, m.lr, m.steps, m.momentum, (m.beta1, m.beta2),
                            m.normalize, changed)


def _with_last(points: Iterable) -> Iterator[tuple[Any, bool]]:
    """(point, is_last) pairs: searches such as CDG may stop before their cap."""
    it = iter(points)
    try:
        prev = next(it)
    except StopIteration:
        return
    for p in it:
        yield prev, False
        prev = p
    yield prev, True


def _rel(single: float, multi: float) -> float:
    return (single - multi) / single if single != 0 else float("nan")
