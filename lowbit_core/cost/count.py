"""Count what one inference of a model costs, by running it once with forward hooks.

:func:`model_cost` deep-copies the model, puts the copy in eval mode, feeds it one random input of
``input_shape`` (batch 1) under ``no_grad`` and records, for every ``nn.Conv2d`` / ``nn.Linear``
call (the project's :class:`~lowbit_core.quant.layers.QuantConv2d` / ``QuantLinear`` included), the
input and output shapes; the output of every module gives the largest activation. So each
architecture and setting counts as it runs: what stays FP (stem, 1x1 shortcuts, classifier) is
FP because its layer has no quantizer, and what is skipped (option-A shortcuts) costs nothing.

Per counted layer (conventions: :mod:`lowbit_core.cost.columns`; energy: :mod:`lowbit_core.cost.energy`):

- ``macs`` = output elements x (input channels / groups) x kernel height x kernel width for a conv,
  output elements x input features for a linear layer;
- bit-widths from the layer's :class:`~lowbit_core.quant.layers.QuantSpec` (:func:`operand_bits`):
  ``none`` 32, ``sign`` 1, the k-bit quantizers (``dorefa``, ``lsq``, ``dsq``, ``pams``) their
  ``bits``; a plain layer is 32 x 32;
- ``param_bits``: the weight at its bit-width, the bias, the quantizers' own floating tensors (LSQ
  step, DSQ bounds and alpha, PAMS's activation max) and the scales the weight quantizer derives
  (:func:`derived_scales`) at 32 bits. Floating tensors outside the counted layers (BN weights, biases and running
  statistics) form :attr:`Cost.other_param_bits`; integer buffers (BN's batch counter, lazy-init
  flags) are bookkeeping and not counted.

Layers whose MACs this walker does not know (1-D/3-D and transposed convolutions, attention,
recurrent layers) raise ``TypeError`` rather than count as free.
"""
from __future__ import annotations

import copy
from collections import Counter
from dataclasses import dataclass, field

import torch
from torch import nn

from lowbit_core.cost.columns import OTHER_LAYER, layers_json, ops
from lowbit_core.cost.energy import HOROWITZ, EnergyModel
from lowbit_core.quant.layers import QuantConv2d, QuantLinear
from lowbit_core.quant.registry import QuantizerSpec

FP_BITS = 32
COUNTED = (nn.Conv2d, nn.Linear)
UNSUPPORTED = (nn.Conv1d, nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d, nn.Bilinear,
               nn.MultiheadAttention, nn.RNNBase)


def operand_bits(q: QuantizerSpec) -> int:
    """The bit-width a quantizer's output is stored at: 32 for ``none``, 1 for ``sign``, else ``bits``."""
    return FP_BITS if q.name == "none" else 1 if q.name == "sign" else q.bits


def layer_bits(m: nn.Module) -> tuple[int, int]:
    """(weight bits, activation bits) of a counted layer (32, 32 for a plain one)."""
    if isinstance(m, (QuantConv2d, QuantLinear)):
        return operand_bits(m.spec.weight_quantizer()), operand_bits(m.spec.act_quantizer())
    return FP_BITS, FP_BITS


def derived_scales(m: nn.Module) -> int:
    """How many FP scale numbers the layer's weight quantizer computes from the weight (not stored as
    parameters, needed at inference): XNOR-Net's mean |W| per output channel for ``sign`` with a
    scale, one per layer for DoReFa at 1 bit (its BWN branch, E|W|) and for PAMS (max |W|); 0
    otherwise (DoReFa's k-bit levels are fixed in [-1, 1]; LSQ's step and DSQ's bounds are parameters)."""
    if not isinstance(m, (QuantConv2d, QuantLinear)):
        return 0
    q = m.spec.weight_quantizer()
    if q.name == "sign" and q.scale != "none":
        return int(m.weight.shape[0])
    return 1 if (q.name == "dorefa" and q.bits == 1) or q.name == "pams" else 0


def _float_numel(tensors) -> int:
    return sum(t.numel() for t in tensors if t.is_floating_point())


def layer_param_bits(m: nn.Module) -> int:
    """Stored bits of a counted layer: weight at its bit-width, everything else it owns at 32."""
    w_bits, _ = layer_bits(m)
    rest = [t for t in (*m.parameters(), *m.buffers()) if t is not m.weight]
    return m.weight.numel() * w_bits + FP_BITS * (_float_numel(rest) + derived_scales(m))


def _op_name(m: nn.Module) -> str:
    if isinstance(m, nn.Conv2d):
        kh, kw = m.kernel_size
        sh, sw = m.stride
        text = f"conv {kh}x{kw} s{sh}" + (f"x{sw}" if sw != sh else "")
        return text + (f" g{m.groups}" if m.groups != 1 else "")
    return "linear"


@dataclass(frozen=True)
class LayerCost:
    """One call of a counted layer."""

    name: str
    op: str
    in_shape: tuple[int, ...]
    out_shape: tuple[int, ...]
    w_bits: int
    a_bits: int
    macs: int
    param_bits: int
    energy_pj: float

    @property
    def is_fp(self) -> bool:
        return self.w_bits >= FP_BITS and self.a_bits >= FP_BITS

    @property
    def fp_macs(self) -> int:
        return self.macs if self.is_fp else 0

    @property
    def lowbit_macs(self) -> int:
        return 0 if self.is_fp else self.macs

    @property
    def bops(self) -> int:
        return self.lowbit_macs * self.w_bits * self.a_bits

    @property
    def ops(self) -> float:
        return ops(self.bops, self.fp_macs)


@dataclass(frozen=True)
class Cost:
    """Totals and per-layer rows of one inference (conventions: :mod:`lowbit_core.cost.columns`)."""

    layers: tuple[LayerCost, ...]
    params: int
    other_param_bits: int
    peak_act_elems: int
    input_shape: tuple[int, ...]
    energy_model: EnergyModel = field(default=HOROWITZ, repr=False)

    @property
    def macs(self) -> int:
        return sum(r.macs for r in self.layers)

    @property
    def fp_macs(self) -> int:
        return sum(r.fp_macs for r in self.layers)

    @property
    def lowbit_macs(self) -> int:
        return sum(r.lowbit_macs for r in self.layers)

    @property
    def macs_by_bits(self) -> dict[tuple[int, int], int]:
        """Low-bit MACs per (weight bits, activation bits)."""
        out: Counter = Counter()
        for r in self.layers:
            if not r.is_fp:
                out[(r.w_bits, r.a_bits)] += r.macs
        return dict(out)

    @property
    def bops(self) -> int:
        return sum(r.bops for r in self.layers)

    @property
    def ops(self) -> float:
        return ops(self.bops, self.fp_macs)

    @property
    def param_bits(self) -> int:
        return sum(r.param_bits for r in self.layers) + self.other_param_bits

    @property
    def other_energy_pj(self) -> float:
        """Reading the parameters outside the counted layers (BN etc.) once."""
        return self.other_param_bits * self.energy_model.weight_bit_pj

    @property
    def energy_pj(self) -> float:
        return sum(r.energy_pj for r in self.layers) + self.other_energy_pj

    @property
    def energy_uj(self) -> float:
        """The energy ESTIMATE of one inference in microjoules (:mod:`lowbit_core.cost.energy`)."""
        return self.energy_pj * 1e-6

    def layer_rows(self) -> list[tuple]:
        """Per-layer rows of :data:`~lowbit_core.cost.columns.LAYER_COLUMNS`, then the other-parameters row."""
        rows = [(r.name, r.op, "x".join(map(str, r.out_shape[1:])), r.w_bits, r.a_bits, r.macs, r.bops, r.ops,
                 r.param_bits, r.energy_pj * 1e-6) for r in self.layers]
        rows.append((OTHER_LAYER, "", "", None, None, 0, 0, 0.0, self.other_param_bits, self.other_energy_pj * 1e-6))
        return rows

    def metrics(self) -> dict:
        """The row columns of :data:`~lowbit_core.cost.columns.COST_METRICS`."""
        return {"macs": self.macs, "fp_macs": self.fp_macs, "lowbit_macs": self.lowbit_macs, "bops": self.bops,
                "ops": self.ops, "params": self.params, "param_bits": self.param_bits,
                "peak_act_elems": self.peak_act_elems, "energy_uj": self.energy_uj,
                "cost_layers": layers_json(self.layer_rows())}


def _layer_macs(m: nn.Module, out: torch.Tensor) -> int:
    if isinstance(m, nn.Conv2d):
        kh, kw = m.kernel_size
        return out.numel() * (m.in_channels // m.groups) * kh * kw
    return out.numel() * m.in_features


def _layer_energy(e: EnergyModel, w_bits: int, a_bits: int, macs: int, param_bits: int, n_in: int, n_out: int) -> float:
    compute = macs * (e.fp_mac_pj if w_bits >= FP_BITS and a_bits >= FP_BITS else e.lowbit_mac_pj(w_bits, a_bits))
    return compute + param_bits * e.weight_bit_pj + (n_in * a_bits + n_out * FP_BITS) * e.act_bit_pj


@torch.no_grad()
def model_cost(model: nn.Module, input_shape: tuple[int, ...], energy: EnergyModel = HOROWITZ) -> Cost:
    """The :class:`Cost` of one inference of ``model`` on an input of ``input_shape`` (batch 1, e.g.
    ``(1, 3, 32, 32)``), measured on a deep copy in eval mode (the model itself is not run, so
    lazily initialized quantizers and BN statistics stay as they are). ``energy``: the per-operation
    table (:mod:`lowbit_core.cost.energy`)."""
    input_shape = tuple(int(s) for s in input_shape)
    if len(input_shape) < 2 or input_shape[0] != 1:
        raise ValueError(f"input_shape must include a batch of 1, e.g. (1, 3, 32, 32); got {input_shape}")
    bad = sorted({type(m).__name__ for m in model.modules() if isinstance(m, UNSUPPORTED)})
    if bad:
        raise TypeError(f"model_cost cannot count {', '.join(bad)} layers (counted: Conv2d, Linear)")
    net = copy.deepcopy(model).eval()
    names = {m: n or type(net).__name__ for n, m in net.named_modules()}
    param = next(net.parameters(), None)
    x = torch.randn(input_shape, generator=torch.Generator().manual_seed(0))
    if param is not None:
        x = x.to(device=param.device, dtype=param.dtype)
    calls: list[tuple[nn.Module, torch.Tensor, torch.Tensor]] = []
    peak = [x.numel()]

    def hook(m, inputs, out):
        if isinstance(out, torch.Tensor):
            peak[0] = max(peak[0], out.numel())
        if isinstance(m, COUNTED):
            calls.append((m, inputs[0], out))

    weight_quantizers = {m.weight_quantizer for m in net.modules() if isinstance(m, (QuantConv2d, QuantLinear))}
    handles = [m.register_forward_hook(hook) for m in net.modules() if m not in weight_quantizers]
    try:
        net(x)
    finally:
        for h in handles:
            h.remove()
    seen = Counter()
    layers = []
    for m, inp, out in calls:
        seen[m] += 1
        name = names[m] + (f"#{seen[m]}" if seen[m] > 1 else "")
        w_bits, a_bits = layer_bits(m)
        macs = _layer_macs(m, out)
        pbits = layer_param_bits(m) if seen[m] == 1 else 0  # a reused layer's weights are stored once
        layers.append(LayerCost(name, _op_name(m), tuple(inp.shape), tuple(out.shape), w_bits, a_bits, macs, pbits,
                                _layer_energy(energy, w_bits, a_bits, macs, pbits, inp.numel(), out.numel())))
    counted = [m for m in net.modules() if isinstance(m, COUNTED)]
    owned = {id(t) for m in counted for t in (*m.parameters(), *m.buffers())}
    other = [t for t in (*net.parameters(), *net.buffers()) if id(t) not in owned]
    unused = sum(layer_param_bits(m) for m in counted if m not in seen)  # stored, never run
    return Cost(tuple(layers), sum(p.numel() for p in net.parameters()), FP_BITS * _float_numel(other) + unused,
                peak[0], input_shape, energy)


__all__ = ["FP_BITS", "operand_bits", "layer_bits", "derived_scales", "layer_param_bits", "LayerCost", "Cost",
           "model_cost"]
