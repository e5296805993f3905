"""What every method of one probe trial shares: start, batches, loss counter and the single-step scan.

1. The start w0 (:mod:`lowbit_core.probes.start`).
2. Two fixed batches of ``data.batch_size`` examples drawn from ``cfg.seed``
   (:meth:`lowbit_core.data.probe_batches.ProbeData.fixed_batches`): the probe batch, which every
   method of the trial sees (and so does every trial with the same seed and data config), and a
   held-out batch from the same data, independent of it, which no method sees: the loss of each
   method's answer on it tells a property of the landscape from memorization of the probe batch.
3. The gradient of the probed layer at w0 through the estimator, compared with nSTE's.
4. The single-step STE lr scan (:mod:`lowbit_core.probes.lr_scan`; the first layer's structure,
   :mod:`lowbit_core.probes.structure`, when the probed layer is the first one; the direct computation
   otherwise). Its lr grid is ``scan.lr_min..lr_max`` times epsilon when ``scan.unit = "epsilon"``.

Every loss computed on the probe batch is counted (:mod:`lowbit_core.probes.evals`); what steps 3
and 4 cost is the single-step STE's cost (``single_loss_evals``, ``single_grad_evals`` = 1 and
``single_fwd_equiv``, :mod:`lowbit_core.probes.evals`; the nSTE reference gradient is a measurement,
not counted).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from lowbit_core.models.mlp import MLP
from lowbit_core.probes import lr_scan
from lowbit_core.probes.config import ProbeConfig
from lowbit_core.probes.evals import EvalCounter, fwd_equiv
from lowbit_core.probes.flips import reachable
from lowbit_core.probes.gradient import LossFn, batch_loss_fn, compare_to_identity, gradient_at, normalize
from lowbit_core.probes.start import pretrained_mlp, probe_data
from lowbit_core.probes.scan_fast import scan_losses
from lowbit_core.probes.structure import FirstLayerView


@dataclass
class Setup:
    """One trial's shared state. ``loss_fn`` and ``view`` (first layer only, else None) compute on the
    probe batch and count on ``counter``; ``heldout_fn`` computes on the held-out batch, uncounted;
    ``single_cost`` is (loss evaluations, backward passes) of the single-step STE; ``flippable`` the
    fraction of the probed layer's weights whose sign can flip in the box (binary; None for FP);
    ``common`` the metrics every row of the trial carries."""

    model: MLP
    w0: torch.Tensor
    epsilon: float
    loss_fn: LossFn
    view: FirstLayerView | None
    heldout_fn: LossFn
    counter: EvalCounter
    single: lr_scan.ScanResult
    single_cost: tuple[int, int]
    flippable: float | None
    common: dict

    def heldout(self, delta: torch.Tensor) -> float:
        """The held-out batch's loss at ``w0 + delta``."""
        with torch.no_grad():
            return float(self.heldout_fn(delta))


def scan_grid(cfg: ProbeConfig):
    """The single-step scan's lr values (``scan.unit = "epsilon"``: in units of budget.epsilon)."""
    sc = cfg.scan
    unit = cfg.budget.epsilon if sc.unit == "epsilon" else 1.0
    return lr_scan.lr_grid(sc.lr_min, sc.lr_max, sc.lr_step) * unit


def setup(cfg: ProbeConfig, device: torch.device) -> Setup:
    data = probe_data(cfg)
    model = pretrained_mlp(cfg, data, device, cfg.estimator.name, cfg.estimator.param_value())
    (x, y), (xh, yh) = data.fixed_batches(cfg.data.batch_size, torch.Generator().manual_seed(2_000 + cfg.seed))
    x, y, xh, yh = x.to(device), y.to(device), xh.to(device), yh.to(device)

    layer, eps = cfg.budget.layer, cfg.budget.epsilon
    w0 = model.layers[layer].weight.detach().clone()
    counter = EvalCounter()
    loss_fn = batch_loss_fn(model, layer, w0, x, y, counter)
    zero = torch.zeros_like(w0)

    start_loss, g = gradient_at(loss_fn, zero)
    _, g_id = gradient_at(batch_loss_fn(pretrained_mlp(cfg, data, device), layer, w0, x, y), zero)
    cos, frac = compare_to_identity(g, g_id)

    lrs = scan_grid(cfg)
    direction = normalize(g, cfg.scan.normalize)
    view = FirstLayerView(model, x, y, counter) if layer == 0 else None
    if view is not None:  # exact, incremental along the scan (lowbit_core.probes.scan_fast)
        single = lr_scan.result(lrs, scan_losses(view, w0, direction, lrs, eps), direction, eps)
    else:
        single = lr_scan.scan(loss_fn, direction, lrs, eps)
    s = Setup(model, w0, eps, loss_fn, view, batch_loss_fn(model, layer, w0, xh, yh), counter, single,
              counter.snapshot(), float(reachable(w0, eps).double().mean()) if model.kind == "binary" else None, {})
    s.common = {"start_loss": start_loss, "single_best_loss": single.best_loss, "single_best_lr": single.best_lr,
                "grad_cos_identity": cos, "grad_clipped_frac": frac, "heldout_start_loss": s.heldout(zero),
                "single_heldout_loss": s.heldout(single.best_delta), "single_loss_evals": s.single_cost[0],
                "single_grad_evals": s.single_cost[1], "single_fwd_equiv": fwd_equiv(*s.single_cost),
                "layer_weights": w0.numel()}
    return s

