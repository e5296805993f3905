"""The energy table: per-operation and per-access energies, and the per-inference ESTIMATE built on them.

Everything computed from this file is an estimate for a hypothetical accelerator in one technology,
not a measurement of any chip. Swap in another technology by building an :class:`EnergyModel` from
your own table (:meth:`EnergyModel.from_table`, same keys) or with your own four numbers, and pass it
as ``energy=`` to :func:`lowbit_core.cost.model_cost`.

Source of :data:`HOROWITZ_45NM` (all figures exactly as published): M. Horowitz, "Computing's energy
problem (and what we can do about it)", IEEE ISSCC 2014, Digest of Technical Papers, pp. 10-14,
doi:10.1109/ISSCC.2014.6757323, the energy table for 45 nm at 0.9 V:

=============================  =========  ==============================================
operation                      energy     key
=============================  =========  ==============================================
8-bit integer add              0.03 pJ    ``int8_add``
32-bit integer add             0.1 pJ     ``int32_add``
16-bit float add               0.4 pJ     ``fp16_add``
32-bit float add               0.9 pJ     ``fp32_add``
8-bit integer multiply         0.2 pJ     ``int8_mult``
32-bit integer multiply        3.1 pJ     ``int32_mult``
16-bit float multiply          1.1 pJ     ``fp16_mult``
32-bit float multiply          3.7 pJ     ``fp32_mult``
64-bit read, 8 KB SRAM cache   10 pJ      ``sram_8kb_64bit``
64-bit read, 32 KB SRAM cache  20 pJ      ``sram_32kb_64bit``
64-bit read, 1 MB SRAM cache   100 pJ     ``sram_1mb_64bit``
64-bit read, DRAM              1.3-2.6 nJ ``dram_64bit`` (the low end, 1300 pJ, is used)
=============================  =========  ==============================================

How the estimate uses them (:class:`EnergyModel`), per inference of one sample:

- an FP MAC costs a 32-bit float multiply plus a 32-bit float add: 3.7 + 0.9 = 4.6 pJ;
- a low-bit MAC of ``b_w``-bit weights and ``b_a``-bit activations is ``b_w * b_a`` bit operations
  (BOPs), each costing ``int8_mult / 64`` = 0.003125 pJ. Basis (an estimate: Horowitz lists no
  XNOR or popcount figure): an ``n x n``-bit array multiplier is ``n^2`` AND + full-adder cells,
  so the 8-bit multiply's 0.2 pJ is spread over its 64 cells; a binary MAC (XNOR + popcount) is
  one such cell per bit pair. The rule gives 0.2 pJ for an 8 x 8-bit MAC against Horowitz's
  0.2 + 0.03 = 0.23 pJ (multiply + add), and 0.1 pJ for a 1 x 32-bit MAC (a sign-selected add)
  against the 32-bit add's 0.1 pJ;
- every stored parameter bit (:mod:`lowbit_core.cost.count`: weights at their bit-width, the rest at
  32 bits) is read once from DRAM: 1300 / 64 = 20.3 pJ per bit (batch 1, no reuse across
  inferences: the weights do not stay on chip);
- each counted layer reads its input once at its activation bit-width and writes its output once
  at 32 bits (BN and the nonlinearity follow in float) from/to a 32 KB SRAM: 20 / 64 = 0.3125 pJ
  per bit.

Not in the estimate: BN, nonlinearities, pooling and residual additions (like the MAC counts),
control, leakage, and any data reuse a real dataflow would add or save.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

SOURCE = ("Horowitz, 'Computing's energy problem (and what we can do about it)', ISSCC 2014, "
          "45 nm, 0.9 V")

HOROWITZ_45NM: dict[str, float] = {
    "int8_add": 0.03, "int32_add": 0.1, "fp16_add": 0.4, "fp32_add": 0.9,
    "int8_mult": 0.2, "int32_mult": 3.1, "fp16_mult": 1.1, "fp32_mult": 3.7,
    "sram_8kb_64bit": 10.0, "sram_32kb_64bit": 20.0, "sram_1mb_64bit": 100.0,
    "dram_64bit": 1300.0,  # published as 1.3-2.6 nJ; the low end
}
"""Horowitz (ISSCC 2014), 45 nm, 0.9 V, in pJ per operation / per 64-bit access (table above)."""

CELLS_PER_INT8_MULT = 8 * 8
BITS_PER_ACCESS = 64


@dataclass(frozen=True)
class EnergyModel:
    """The four energies (pJ) the estimate multiplies counts by, and where they come from."""

    fp_mac_pj: float
    bop_pj: float
    weight_bit_pj: float
    act_bit_pj: float
    source: str = ""

    @classmethod
    def from_table(cls, table: Mapping[str, float], source: str = "", act_memory: str = "sram_32kb_64bit",
                   weight_memory: str = "dram_64bit") -> "EnergyModel":
        """Derive the four numbers from a table with :data:`HOROWITZ_45NM`'s keys (rules in the module
        docstring); ``act_memory`` / ``weight_memory`` name the 64-bit accesses used for activations
        and parameters."""
        missing = [k for k in ("fp32_mult", "fp32_add", "int8_mult", act_memory, weight_memory) if k not in table]
        if missing:
            raise KeyError(f"energy table lacks {', '.join(missing)}; keys: {', '.join(HOROWITZ_45NM)}")
        return cls(fp_mac_pj=table["fp32_mult"] + table["fp32_add"],
                   bop_pj=table["int8_mult"] / CELLS_PER_INT8_MULT,
                   weight_bit_pj=table[weight_memory] / BITS_PER_ACCESS,
                   act_bit_pj=table[act_memory] / BITS_PER_ACCESS, source=source)

    def lowbit_mac_pj(self, w_bits: int, a_bits: int) -> float:
        """One MAC of ``w_bits``-bit weights and ``a_bits``-bit activations: ``w_bits * a_bits`` BOPs."""
        return w_bits * a_bits * self.bop_pj


HOROWITZ = EnergyModel.from_table(HOROWITZ_45NM, SOURCE)
"""The default estimate: 4.6 pJ per FP MAC, 0.003125 pJ per BOP, 20.3 pJ per parameter bit (DRAM),
0.3125 pJ per activation bit (32 KB SRAM)."""

__all__ = ["SOURCE", "HOROWITZ_45NM", "EnergyModel", "HOROWITZ"]
