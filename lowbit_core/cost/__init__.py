"""Hardware cost of a model: MACs (FP and low-bit by bit-widths), BOPs, OPs, parameter bits, the largest
activation and an energy ESTIMATE, per layer and in total, measured by running the model once.

One call: ``cost = model_cost(model, (1, 3, 32, 32))`` -> :class:`~lowbit_core.cost.count.Cost` with
totals (``cost.ops``, ``cost.param_bits``, ``cost.energy_uj``, ...), per-layer rows
(``cost.layers``) and the row columns (``cost.metrics()``). A family reports them on every row with
:func:`~lowbit_core.cost.family.with_cost`.

Modules: ``columns`` (the column names and conventions, torch-free), ``energy`` (the per-operation
table with its source, torch-free), ``count`` (the walker), ``family`` (wrapping a family's run
function, the dry-run description), ``train`` (the ``train`` family's model). Names below are
imported on first use, so reports can import ``lowbit_core.cost.columns`` without torch.
"""
import importlib

_EXPORTS = {
    "columns": ("COST_METRICS", "LAYER_COLUMNS", "ops", "si", "read_layers"),
    "energy": ("EnergyModel", "HOROWITZ", "HOROWITZ_45NM"),
    "count": ("Cost", "LayerCost", "model_cost", "operand_bits"),
    "family": ("with_cost", "describe_cost"),
}
_WHERE = {name: module for module, names in _EXPORTS.items() for name in names}
__all__ = list(_WHERE)


def __getattr__(name: str):
    if name not in _WHERE:
        raise AttributeError(f"module 'lowbit_core.cost' has no attribute {name!r}")
    return getattr(importlib.import_module(f"lowbit_core.cost.{_WHERE[name]}"), name)
