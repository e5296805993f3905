"""The sweep's plan (``_sweep.json``, written by the driver, read by
:func:`lowbit_core.results.read_plan`): family, profile, metric and mode, axes, folded keys, seeds,
git SHA, command line and the family's canonical defaults.

Reports take the family, the metric and its mode, and which keys the sweep varies on purpose from
here instead of restating them. A folder from before plans were recorded reads as an empty plan
(``recorded`` False); each report then falls back to what it did before: the family from the rows'
columns, the family's own default metric.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from lowbit_core.results import PLAN_FILE, ResultsError, read_plan

MODES = ("min", "max")


@dataclass(frozen=True)
class SweepPlan:
    """The recorded plan; every field empty when ``recorded`` is False."""

    recorded: bool = False
    name: str | None = None
    family: str | None = None
    profile: str | None = None
    metric: str | None = None
    mode: str | None = None
    axes: dict = field(default_factory=dict)
    fold: tuple = ()
    seeds: tuple = ()
    git_sha: str | None = None
    command: tuple = ()
    canonical_defaults: dict | None = None
    baseline: dict = field(default_factory=dict)
    """Config values (dotted key -> value) the generic report compares the other settings with."""
    report: str | None = None
    """Import path of the family's own report (a plug-in family's), or None."""
    raw: dict = field(default_factory=dict, compare=False, repr=False)
    """The whole recorded plan (questions with their margins, overrides, ``margins``, ...)."""

    @classmethod
    def from_dict(cls, plan: dict | None, where: str = PLAN_FILE) -> SweepPlan:
        """The plan from its JSON object (None: not recorded). A mode other than min/max or axes that
        are not an object raise :class:`ResultsError` naming ``where``."""
        if plan is None:
            return cls()
        mode = plan.get("mode")
        if mode is not None and mode not in MODES:
            raise ResultsError(f"{where}: mode {mode!r} is not valid; valid: {', '.join(MODES)}")
        axes = plan.get("axes") or {}
        if not isinstance(axes, dict):
            raise ResultsError(f"{where}: axes is not an object; valid: dotted config key -> list of values")
        defaults = plan.get("canonical_defaults")
        return cls(recorded=True, name=plan.get("name"), family=plan.get("family"), profile=plan.get("profile"),
                   metric=plan.get("metric"), mode=mode, axes=dict(axes), fold=tuple(plan.get("fold") or ()),
                   seeds=tuple(plan.get("seeds") or ()), git_sha=plan.get("git_sha"),
                   command=tuple(plan.get("command") or ()),
                   canonical_defaults=dict(defaults) if isinstance(defaults, dict) else None,
                   baseline=dict(plan.get("baseline") or {}), report=plan.get("report"), raw=dict(plan))

    @classmethod
    def read(cls, folder: str | Path) -> SweepPlan:
        """The plan of results folder ``folder`` (an empty plan when it has none)."""
        return cls.from_dict(read_plan(folder), str(Path(folder) / PLAN_FILE))

    def metric_mode(self, fallback: tuple[str, str]) -> tuple[str, str]:
        """(metric, mode) from the plan; ``fallback`` where the plan does not name them."""
        return (self.metric or fallback[0], self.mode or fallback[1])

    def axis_columns(self) -> set[str]:
        """The ``cfg.<key>`` columns of the plan's axes (the keys the sweep varies on purpose)."""
        return {f"cfg.{k}" for k in self.axes}

    def default_of(self, column: str):
        """(True, default) of ``cfg.<key>`` column from the plan's canonical defaults, else (False, None)."""
        key = column.removeprefix("cfg.")
        if self.canonical_defaults is None or key not in self.canonical_defaults:
            return False, None
        return True, self.canonical_defaults[key]

    def facts(self) -> list[tuple[str, str]]:
        """Header facts ('plan', 'command') of a recorded plan; none for a folder without one."""
        if not self.recorded:
            return []
        parts = [f"profile {self.profile or '–'}"]
        if self.metric:
            parts.append(f"metric {self.metric} ({self.mode or '?'})")
        if self.axes:
            parts.append("axes " + ", ".join(f"{k} ({len(v) if isinstance(v, list) else 1})"
                                             for k, v in self.axes.items()))
        if self.fold:
            parts.append(f"folded {', '.join(self.fold)}")
        if self.seeds:
            parts.append(f"seeds {', '.join(map(str, self.seeds))}")
        facts = [("plan (_sweep.json)", "; ".join(parts))]
        if self.command:
            facts.append(("command", " ".join(map(str, self.command))))
        return facts
