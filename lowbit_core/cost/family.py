"""Cost columns for an experiment family: wrap its run function so every reported row carries the cost
of the trial's model, and describe a trial's cost for ``--dry-run``.

A family supplies ``cost_of(cfg) -> Cost`` (e.g. :func:`lowbit_core.families.train.cost.train_cost`); the cost
is computed once per trial, before training, from the model the config builds (the final model of
the trial: for a pretrain path, the quantized one), so it never depends on the trained weights.
"""
from __future__ import annotations

import functools
from typing import Any, Callable

from lowbit_core.cost.columns import COST_METRICS, si
from lowbit_core.cost.count import Cost

CostOf = Callable[[Any], Cost]


def with_cost(run: Callable[..., Any], cost_of: CostOf) -> Callable[..., Any]:
    """``run(cfg, report, device, **kw)`` whose every ``report(metrics, **kw)`` also carries
    ``cost_of(cfg).metrics()`` (the :data:`~lowbit_core.cost.columns.COST_METRICS` columns); the
    returned metrics (if a dict) get them too. Declare ``COST_METRICS`` with the family's metrics."""

    @functools.wraps(run)
    def costed(cfg, report, *args, **kwargs):
        cost = cost_of(cfg).metrics()

        def report_with_cost(metrics: dict, **kw) -> None:
            report({**metrics, **cost}, **kw)

        out = run(cfg, report_with_cost, *args, **kwargs)
        return {**out, **cost} if isinstance(out, dict) else out

    return costed


def describe_cost(cost_of: CostOf) -> Callable[[Any], dict[str, str]]:
    """``describe(cfg) -> {"OPs": ..., "size": ...}`` for the dry-run table: the trial's OPs (BOPs/64 +
    FP MACs) and parameter size (bits and megabytes)."""

    def describe(cfg) -> dict[str, str]:
        c = cost_of(cfg)
        return {"OPs": si(c.ops), "size": f"{si(c.param_bits, 'bit')} ({c.param_bits / 8e6:.3g} MB)"}

    return describe


__all__ = ["COST_METRICS", "with_cost", "describe_cost"]
