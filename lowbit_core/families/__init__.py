"""Experiment families: one declaration each, found by name; built-ins and plug-ins through one door.

A family is what a sweep's ``family`` names. Its :class:`Family` declaration holds everything the
orchestrator needs, and everything else is derived from it: the Ray trainable
(:func:`lowbit_core.trainables.trainable_for`), the Parquet schema (``metrics``), whether a scheduler
may stop its trials (``epoch_key``), which metrics a scheduler or a search may read
(``selection_metrics``: validation data only), whether a trial continues from a checkpoint
(``checkpoints``), the hardware-cost columns (``cost``) and the report (``report``; the generic one
when absent).

``run(cfg, report, device)`` is Ray-free: it calls ``report(metrics)`` once per reported step (a
family that checkpoints calls ``report(metrics, state=...)`` on checkpoint epochs and accepts
``start_state=`` to continue). Every metric it reports is declared in ``metrics`` (name -> "float" |
"int" | "str" | "list[float]"), which fixes the Parquet schema before the first trial starts.

Where families come from (:func:`get_family`):

1. the built-ins, one package each under ``lowbit_core/families/<name>/`` that registers itself with
   :func:`register_family` (adding one touches no shared file: the folder is found by
   :func:`pkgutil.iter_modules`);
2. plug-ins: a module next to a sweep file or an installed package that calls
   :func:`register_family` (loaded by :mod:`lowbit_core.plugins`; installed packages through the
   ``lowbit_sweeps.plugins`` entry-point group);
3. an import path ``"package.module:attribute"`` in the sweep's ``family`` (a :class:`Family` or a
   function returning one), as Hydra's ``_target_``.
"""
from __future__ import annotations

import dataclasses
import importlib
import pkgutil
from dataclasses import dataclass
from typing import Any, Callable

from lowbit_core.config import ConfigError
from lowbit_core.registry import Registry


@dataclass(frozen=True)
class Family:
    """The declaration of one experiment family (module docstring)."""

    name: str
    config_cls: type
    run: Callable[..., Any]
    metrics: dict[str, str]
    canonicalize: Callable[[Any], Any] = lambda cfg: cfg
    preflight: Callable[[Any], str | None] = lambda cfg: None
    """Driver-side check before Ray starts; returns an error line (e.g. data not on disk) or None."""
    foldable: frozenset = frozenset()
    """Grid keys a sweep may fold into one trial (``Sweep.fold``): ``run_batch(cfgs, report, device)``
    runs such points as one batched computation, calling ``report(metrics, point=i)``."""
    run_batch: Callable[..., Any] | None = None
    path_keys: tuple[str, ...] = ("data.root",)
    """Config keys holding file-system paths: a relative one is relative to the driver's working
    directory (Ray runs trials in their own folders), so trials resolve it against that directory;
    the trial key keeps the path as written."""
    describe: Callable[[Any], dict[str, str]] | None = None
    """Extra columns of a trial in the ``--dry-run`` table (e.g. its OPs and parameter size), or None."""
    epoch_key: str | None = None
    """The config key of a trial's planned epochs, for a family that reports once per epoch (an
    ``epoch`` metric, one report each): only such a family takes a scheduler, whose time is the epoch."""
    selection_metrics: frozenset | None = None
    """The metrics computed on data that is not the test set (validation split, training loss): the
    only ones a scheduler or a search may read (model selection never sees test data). None: every
    declared metric (a family with no test set, e.g. one whose every number is its own objective)."""
    checkpoints: bool = False
    """True when ``run`` reports ``state=`` (saved as a Tune checkpoint) and takes ``start_state=``
    (a retried or resumed trial continues from its newest intact checkpoint; one given its final state
    reports nothing, and the trainable reports that state's metrics again)."""
    cost: Callable[[Any], Any] | None = None
    """``cost(cfg) -> lowbit_core.cost.count.ModelCost`` of the trial's model: every row then carries
    the cost columns (MACs, BOPs, OPs, parameter bits, energy) and the dry run shows OPs and size."""
    report: str | None = None
    """Import path ``"package.module:REPORT"`` of the family's report (an
    ``analysis.common.writing.FamilyReport``); None: ``analysis/<name>/`` for a built-in, else the
    generic report."""
    baseline: dict[str, Any] = dataclasses.field(default_factory=dict)
    """Config values the generic report compares the other settings with (``{"estimator.name":
    "identity"}``); a sweep may name its own."""

    def __post_init__(self):
        if self.cost is not None and "macs" not in self.metrics:
            from lowbit_core.cost.family import COST_METRICS, describe_cost, with_cost

            object.__setattr__(self, "run", with_cost(self.run, self.cost))
            object.__setattr__(self, "metrics", {**self.metrics, **COST_METRICS})
            if self.describe is None:
                object.__setattr__(self, "describe", describe_cost(self.cost))
        unknown = sorted(set(self.selection_metrics or ()) - set(self.metrics))
        if unknown:
            raise ValueError(f"family {self.name}: selection_metrics {unknown} are not declared metrics")

    @property
    def selectable(self) -> tuple[str, ...]:
        """The metrics a scheduler or a search may read (see ``selection_metrics``)."""
        if self.selection_metrics is None:
            return tuple(self.metrics)
        return tuple(m for m in self.metrics if m in self.selection_metrics)


FAMILIES: Registry[Callable[[], Family]] = Registry("family")
"""Family builders by name (a builder imports the family's heavy modules only when called)."""
_BUILT: dict[str, Family] = {}
_DISCOVERED = False


def register_family(obj=None, *, name: str | None = None):
    """Register a family: ``register_family(FAMILY)`` with a :class:`Family`, or as a decorator on a
    function returning one (``@register_family(name="mine")``; the name defaults to the function's
    name without a trailing ``_family``). Returns its argument."""
    def add(target):
        if isinstance(target, Family):
            FAMILIES.add(target.name, lambda: target, origin=_caller_module())
            _BUILT.pop(target.name, None)
            return target
        n = name or target.__name__.removesuffix("_family")
        FAMILIES.add(n, target, origin=getattr(target, "__module__", ""))
        return target
    return add(obj) if obj is not None else add


def _caller_module() -> str:
    import inspect

    frame = inspect.currentframe()
    try:
        return frame.f_back.f_back.f_globals.get("__name__", "") if frame and frame.f_back and frame.f_back.f_back else ""
    finally:
        del frame


def discover() -> None:
    """Import every built-in family package (``lowbit_core/families/<name>/``) once."""
    global _DISCOVERED
    if _DISCOVERED:
        return
    _DISCOVERED = True
    for info in pkgutil.iter_modules(__path__):
        if info.ispkg:
            importlib.import_module(f"{__name__}.{info.name}")


def get_family(name: str) -> Family:
    """The family a sweep's ``family`` names: a registered name or an import path ``"mod:attr"``.
    ConfigError (one line) for an unknown name, listing the valid ones."""
    if isinstance(name, str) and ":" in name:
        return _from_import_path(name)
    discover()
    if name not in FAMILIES:
        raise ConfigError(f"unknown family {name!r}; valid: {', '.join(family_names())} "
                          "(or an import path 'package.module:FAMILY')")
    if name not in _BUILT:
        family = FAMILIES.get(name)()
        if not isinstance(family, Family):
            raise ConfigError(f"family {name!r}: its builder returned {type(family).__name__}, not a Family")
        _BUILT[name] = family
    return _BUILT[name]


def _from_import_path(path: str) -> Family:
    module_name, _, attr = path.partition(":")
    try:
        obj = getattr(importlib.import_module(module_name), attr)
    except Exception as exc:  # noqa: BLE001 -- any failure of user code is one line
        raise ConfigError(f"family {path!r} could not be imported: {type(exc).__name__}: {exc}") from None
    family = obj() if callable(obj) and not isinstance(obj, Family) else obj
    if not isinstance(family, Family):
        raise ConfigError(f"family {path!r} is a {type(family).__name__}, not a lowbit_core.families.Family")
    return family


def family_names() -> list[str]:
    """Every registered family name (built-ins and plug-ins loaded so far), sorted."""
    discover()
    return sorted(FAMILIES.names())


__all__ = ["Family", "FAMILIES", "register_family", "get_family", "family_names", "discover"]
