"""The cost columns every row of a costed family carries, and the conventions behind them (torch-free,
so reports read the names and rules from here).

Conventions (per inference of one sample; computed by :func:`lowbit_core.cost.model_cost`):

- ``macs``: multiply-accumulates of the convolutions and linear layers (the bias add, BN,
  nonlinearities, pooling and residual additions are not counted, as in Bi-Real Net, ReActNet and
  fvcore's conv/linear counts);
- a MAC is **FP** when both operands are 32-bit (no quantizer on either side), else **low-bit** at
  (weight bits, activation bits), an unquantized side counting 32 bits;
- ``bops`` = sum over low-bit MACs of ``weight bits x activation bits`` (the usual BOPs convention,
  e.g. van Baalen et al., "Bayesian Bits", NeurIPS 2020, which drops the accumulator terms of
  Baskin et al.'s UNIQ count; for 1 x 1-bit MACs it is Bi-Real Net's BOPs);
- ``ops`` = ``bops / 64 + fp_macs`` (Bi-Real Net, Liu et al. ECCV 2018, and ReActNet, Liu et al.
  ECCV 2020, in their computation-cost comparisons: a 64-bit CPU does 64 binary operations per
  instruction; their "FLOPs" count multiply-accumulates), :func:`ops`;
- ``param_bits``: every stored number at its bit-width: quantized weights at the weight bits, the
  scales their quantizer derives (XNOR-Net's per-channel mean |W|, DoReFa's 1-bit E|W|) and every
  other floating tensor of the state (biases, BN weights and running statistics, LSQ steps, DSQ
  bounds) at 32 bits; ``params`` is the usual count of parameters (numbers, not bits);
- ``peak_act_elems``: the largest tensor an inference produces (the model input and every module's
  output), in elements (they are float32 in these models: a layer quantizes its input itself);
- ``energy_uj``: an ESTIMATE from the per-operation table of :mod:`lowbit_core.cost.energy`
  (Horowitz, ISSCC 2014, 45 nm), in microjoules;
- ``cost_layers``: the per-layer table as JSON, ``{"columns": LAYER_COLUMNS, "rows": [...]}``, with a
  last row for the parameters outside the counted layers (BN etc.).
"""
from __future__ import annotations

import json
import math

BITS_PER_OP = 64
"""Binary operations per OP: Bi-Real Net / ReActNet divide BOPs by 64 (a 64-bit word per cycle)."""

COST_METRICS: dict[str, str] = {
    "macs": "int", "fp_macs": "int", "lowbit_macs": "int", "bops": "int", "ops": "float",
    "params": "int", "param_bits": "int", "peak_act_elems": "int", "energy_uj": "float", "cost_layers": "str",
}
"""The columns a costed family declares (name -> metric type); conventions in the module docstring."""

LAYER_COLUMNS = ("layer", "op", "out", "w_bits", "a_bits", "macs", "bops", "ops", "param_bits", "energy_uj")
"""The fields of one per-layer row of ``cost_layers``; ``w_bits``/``a_bits`` 32 means unquantized."""

OTHER_LAYER = "(other parameters: BN, ...)"


def ops(bops: float, fp_macs: float) -> float:
    """OPs = BOPs / 64 + FP MACs (Bi-Real Net, ReActNet)."""
    return bops / BITS_PER_OP + fp_macs


def si(x: float, unit: str = "") -> str:
    """``x`` to 4 significant digits with an SI prefix: ``si(40.55e6) == '40.55M'``,
    ``si(2.2e6, 'bit') == '2.2 Mbit'``, ``si(12, 'bit') == '12 bit'``; '–' for null."""
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "–"
    scale, prefix = next(((s, p) for s, p in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")) if abs(x) >= s),
                         (1.0, ""))
    number = f"{x / scale:.4g}"
    return f"{number} {prefix}{unit}" if unit else f"{number}{prefix}"


def layers_json(rows: list[tuple]) -> str:
    """The ``cost_layers`` cell: rows of :data:`LAYER_COLUMNS` values as compact JSON."""
    return json.dumps({"columns": list(LAYER_COLUMNS), "rows": [list(r) for r in rows]}, separators=(",", ":"))


def read_layers(cell: str) -> list[dict]:
    """A ``cost_layers`` cell back as a list of dicts (one per layer, keys :data:`LAYER_COLUMNS`)."""
    data = json.loads(cell)
    return [dict(zip(data["columns"], r)) for r in data["rows"]]


__all__ = ["BITS_PER_OP", "COST_METRICS", "LAYER_COLUMNS", "OTHER_LAYER", "ops", "si", "layers_json", "read_layers"]
