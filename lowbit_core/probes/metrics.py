"""The probe family's declared metrics and foldable keys, apart from :mod:`lowbit_core.probes.run` so
that the driver (planning, ``--dry-run``, refusals before Ray starts) reads them without importing
torch or the search methods; the rows are built in :mod:`lowbit_core.probes.rows`.
"""
from __future__ import annotations

PROBE_METRICS: dict[str, str] = {
    "loss": "float", "best_loss": "float", "max_abs_delta": "float", "start_loss": "float",
    "single_best_loss": "float", "single_best_lr": "float", "rel_improvement": "float",
    "rel_improvement_best": "float", "grad_cos_identity": "float", "grad_clipped_frac": "float",
    "coords_moved": "int",
    "heldout_loss": "float", "heldout_start_loss": "float", "single_heldout_loss": "float",
    "rel_improvement_heldout": "float", "loss_evals": "int", "grad_evals": "int", "fwd_equiv": "int",
    "single_loss_evals": "int", "single_grad_evals": "int", "single_fwd_equiv": "int",
    "reach_frac": "float", "layer_weights": "int",
    "scan_lr": "list[float]", "scan_loss": "list[float]",
}
"""Every metric of a probe row and its type."""

FOLDABLE = frozenset({"multi.noise", "multi.lr"})
"""Grid keys a sweep may fold into one batched trial (:func:`lowbit_core.probes.run.run_probe_batch`)."""

__all__ = ["PROBE_METRICS", "FOLDABLE"]
