"""The Sweep spec, the loader for sweep files, and planning a sweep into trials.

A sweep file is a module in ``sweeps/`` that defines one :class:`Sweep`; importing it runs nothing.
The sweep names a family (:mod:`lowbit_core.families`), states only what differs from the family's
typed defaults (``base``, dotted keys), and a search space: :class:`Grid` axes (the cartesian product,
like Ray's ``grid_search``) and, for Optuna sweeps, distributions (:class:`LogUniform`,
:class:`Uniform`, :class:`IntUniform`). Seeds are an explicit axis. Profiles are named variants
(``smoke``: about a minute on 2 CPU cores; ``full``: the seed's scale) that override parts of it.

Planning turns a sweep into concrete trials *before* Ray starts, so every mistake (unknown key,
wrong type, a value out of range) surfaces as one :class:`ConfigError` line:

- grid search: one trial per point of the product, canonicalized by the family (parameters that do
  not act are reset) and de-duplicated; each trial has a stable ``key`` (hash of its config);
- Optuna search: one study per point of the grid axes (seeds included), each sampling
  ``num_samples`` trials from the distributions that apply to that point (``when``);
- early stopping (multi-fidelity): a sweep of a family that reports once per epoch may declare a
  scheduler, :class:`ASHA` or :class:`HyperBand` (Ray Tune's ``ASHAScheduler`` / ``HyperBandScheduler``
  on the sweep's metric and mode, with the epoch as time); it stops trials that trail at a rung, and
  such a trial is recorded as stopped early, not failed.
"""
from __future__ import annotations

import hashlib
import importlib.util
import itertools
import json
import sys
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal, Mapping

from lowbit_core.config import (
    ConfigError, check_value, flatten, parse_text, resolve_key, to_dict, with_overrides,
)
from lowbit_core import plugins
from lowbit_core.families import Family, family_names, get_family
from lowbit_core.questions import describe as describe_questions, resolve as resolve_questions


# ---------------------------------------------------------------- search-space primitives
@dataclass(frozen=True)
class Grid:
    """Every value is tried (Ray's ``grid_search``)."""

    values: tuple

    def __post_init__(self):
        object.__setattr__(self, "values", tuple(self.values))
        if not self.values:
            raise ConfigError("a grid axis needs at least one value")


def grid(*values: Any) -> Grid:
    return Grid(values)


@dataclass(frozen=True)
class LogUniform:
    """Optuna distribution: log-uniform on [low, high]; applies only where ``when`` matches."""

    low: float
    high: float
    when: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Uniform:
    """Optuna distribution: uniform on [low, high]; applies only where ``when`` matches."""

    low: float
    high: float
    when: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class IntUniform:
    """Optuna distribution: integers in [low, high]; applies only where ``when`` matches."""

    low: int
    high: int
    when: Mapping[str, Any] = field(default_factory=dict)


Distribution = LogUniform | Uniform | IntUniform


@dataclass(frozen=True)
class Resources:
    """Per-trial resources. ``gpu`` (a fraction) is requested only when the cluster has GPUs, so the
    same sweep runs on a CPU laptop; the trial's device is picked at run time."""

    cpu: float = 1.0
    gpu: float = 0.0

    def __post_init__(self):
        if self.cpu <= 0 or self.gpu < 0:
            raise ConfigError(f"resources need cpu > 0 and gpu >= 0, got cpu={self.cpu}, gpu={self.gpu}")


@dataclass(frozen=True)
class Optuna:
    """Search with Optuna's TPE sampler through Ray Tune's ``OptunaSearch``."""

    num_samples: int = 16
    sampler_seed: int = 0

    def __post_init__(self):
        if self.num_samples < 1:
            raise ConfigError(f"Optuna.num_samples must be >= 1, got {self.num_samples}")


EPOCH = "epoch"
"""The reported metric a scheduler counts time in (Ray's ``time_attr``)."""


def _positive_int(owner: str, name: str, value: Any, minimum: int = 1) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise ConfigError(f"{owner}.{name} must be an int >= {minimum}, got {value!r}")


def _reduction_factor(owner: str, value: Any) -> None:
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not value > 1:
        raise ConfigError(f"{owner}.reduction_factor must be a number > 1, got {value!r}")


@dataclass(frozen=True)
class ASHA:
    """Asynchronous successive halving (Li et al. 2020, "A System for Massively Parallel Hyperparameter
    Tuning"), run by Ray Tune's ``ASHAScheduler`` on the sweep's metric and mode, time in epochs.

    Rungs lie at ``grace_period * reduction_factor**k`` epochs below ``max_epochs``; a trial reaching a
    rung goes on only if its metric is in the best ``1 / reduction_factor`` of the values recorded at
    that rung so far, else it is stopped (recorded as STOPPED_EARLY with the epoch). ``max_epochs``: 0
    takes the trials' planned epochs (``train.epochs``); it may not be below them. ``brackets``: Ray's
    brackets (1: plain ASHA)."""

    grace_period: int = 1
    reduction_factor: float = 3
    max_epochs: int = 0
    brackets: int = 1

    def __post_init__(self):
        _positive_int("ASHA", "grace_period", self.grace_period)
        _reduction_factor("ASHA", self.reduction_factor)
        _positive_int("ASHA", "max_epochs", self.max_epochs, minimum=0)
        _positive_int("ASHA", "brackets", self.brackets)


@dataclass(frozen=True)
class HyperBand:
    """Synchronous HyperBand (Li et al. 2018), run by Ray Tune's ``HyperBandScheduler`` on the sweep's
    metric and mode, time in epochs: brackets of successive halving with budgets up to ``max_epochs``
    (0: the trials' planned epochs); a trial waits (paused, resumed from its epoch checkpoint) until
    its bracket's rung is complete, the worse ``1 - 1 / reduction_factor`` are stopped."""

    reduction_factor: float = 3
    max_epochs: int = 0

    def __post_init__(self):
        _reduction_factor("HyperBand", self.reduction_factor)
        _positive_int("HyperBand", "max_epochs", self.max_epochs, minimum=0)


Scheduler = ASHA | HyperBand
NO_SCHEDULER = "none"
"""``Profile(scheduler=NO_SCHEDULER)``: the profile runs without the sweep's scheduler (e.g. the same
grid to the end, to measure what the scheduler saved)."""


@dataclass(frozen=True)
class Profile:
    """A named variant: ``base`` and ``space`` entries replace the sweep's; ``seeds``, ``num_samples``,
    ``search`` and ``scheduler`` replace the sweep's when given (``scheduler=NO_SCHEDULER`` removes it).
    A space entry set to None removes that axis."""

    base: Mapping[str, Any] = field(default_factory=dict)
    space: Mapping[str, Any] = field(default_factory=dict)
    seeds: tuple[int, ...] | None = None
    num_samples: int | None = None
    description: str = ""
    search: Literal["grid"] | Optuna | None = None
    scheduler: ASHA | HyperBand | Literal["none"] | None = None


@dataclass(frozen=True)
class Sweep:
    """One sweep: what to run (family + config diff + space), how to judge it, and its scales."""

    name: str
    family: str
    base: Mapping[str, Any] = field(default_factory=dict)
    space: Mapping[str, Any] = field(default_factory=dict)
    metric: str = ""
    mode: Literal["min", "max"] = "min"
    seeds: tuple[int, ...] = (0,)
    resources: Resources = field(default_factory=Resources)
    search: Literal["grid"] | Optuna = "grid"
    profiles: Mapping[str, Profile] = field(default_factory=dict)
    doc: str = ""
    retries: int = 0
    """How often a trial that raises is restarted (from its last checkpoint where the family
    checkpoints) before it counts as failed: Tune's ``FailureConfig(max_failures=retries)``."""
    fold: tuple[str, ...] = ()
    """Grid axes run inside one Ray trial as a batched computation (keys the family lists as
    foldable, e.g. ``multi.noise``); each grid point still gets its own key and Parquet rows."""
    scheduler: ASHA | HyperBand | None = None
    """Early stopping on the sweep's metric and mode (:class:`ASHA`, :class:`HyperBand`), for families
    that report once per epoch (``Family.epoch_key``); None runs every trial to its end."""
    baseline: Mapping[str, Any] = field(default_factory=dict)
    """Config values the other settings are compared with in the generic report (``{"estimator.name":
    "identity"}``); added to (and overriding) the family's ``baseline``."""
    plugins: tuple[str, ...] = ()
    """Import names of plug-in modules (estimators, models, families) the sweep uses besides those
    its file imports from its own folder, which :func:`load_sweep` adds (:mod:`lowbit_core.plugins`)."""
    questions: tuple = ()
    """The meeting record's questions the sweep bears on (:mod:`lowbit_core.questions`): ids, or
    ``Question(id, text)`` objects of a plug-in sweep's own; the plan records them for the book."""


# ---------------------------------------------------------------- plans
FOLD = "_fold"


@dataclass(frozen=True)
class Trial:
    """One Ray trial: one grid point, or several folded ones (``points``: (key, config) pairs that
    differ only in the sweep's ``fold`` keys; ``key``/``config`` are then those of the first)."""

    key: str
    study: str
    config: Any  # the family's typed config
    points: tuple = ()
    fold_keys: tuple[str, ...] = ()

    @property
    def keys(self) -> list[str]:
        return [k for k, _ in self.points] if self.points else [self.key]

    @property
    def flat(self) -> dict[str, Any]:
        """The flat config Ray passes as ``base``; a folded trial adds ``_fold``: each point's values
        of the fold keys (see :func:`resolve_points`)."""
        out = flatten(self.config)
        if self.points:
            out[FOLD] = [{k: flatten(c)[k] for k in self.fold_keys} for _, c in self.points]
        return out

    @property
    def ray_base(self) -> str:
        """:attr:`flat` as the JSON text the runner grid-searches over (see :func:`ray_base`)."""
        return json.dumps(self.flat, sort_keys=True)


@dataclass(frozen=True)
class Study:
    """One Optuna study: a fixed config (a grid point) and the distributions searched around it."""

    key: str
    config: Any
    distributions: Mapping[str, Distribution]
    num_samples: int


@dataclass(frozen=True)
class Plan:
    sweep: Sweep
    profile: str
    family: Family
    seeds: tuple[int, ...]
    trials: tuple[Trial, ...] = ()
    studies: tuple[Study, ...] = ()
    space: Mapping[str, Any] = field(default_factory=dict)
    """The sweep's space after the profile and overrides, in its order: dotted key -> tuple of grid
    values, a :data:`Distribution`, or a one-value tuple for an axis an override pinned. No seeds."""
    overrides: Mapping[str, Any] = field(default_factory=dict)
    """The typed ``--set`` config overrides (dotted key -> value; seeds are :attr:`seeds`)."""
    scheduler: Scheduler | None = None
    """The sweep's scheduler after the profile, with ``max_epochs`` resolved (never 0)."""
    source_sha256: str = ""
    """sha256 of the sweep file's bytes ("" when the plan was not made from a file)."""
    source_path: str = ""
    """The sweep file's absolute path ("" when the plan was not made from a file): the rows' ``git_sha``
    is the commit of the git repository holding it (the user's research code), where there is one."""
    plugins: tuple[plugins.Source, ...] = ()
    """The plug-in modules the sweep uses (:mod:`lowbit_core.plugins`): recorded in the plan, shipped
    to the workers, and covered by the trial keys."""
    settle: tuple = ()
    """The rounds a ``--settle`` run added: ``({"seeds": [...], "cells": [{key: value}, ...]}, ...)``;
    each round's seeds run only at the grid points that match one of its cells."""

    @property
    def fingerprint(self) -> str:
        return plugins.fingerprint(list(self.plugins))

    @property
    def is_optuna(self) -> bool:
        return isinstance(self.sweep.search, Optuna)

    @property
    def n_trials(self) -> int:
        return len(self.trials) if not self.is_optuna else sum(s.num_samples for s in self.studies)


def config_key(cfg: Any) -> str:
    """Stable 12-hex-digit key of a typed config (same config, same key, on any machine). With
    plug-ins active (:func:`lowbit_core.plugins.active`) their fingerprint is part of it, so a trial
    run with an edited plug-in is another trial."""
    text = json.dumps(to_dict(cfg), sort_keys=True) + (f"|plugins:{plugins.active()}" if plugins.active() else "")
    return hashlib.sha1(text.encode()).hexdigest()[:12]


def profile_names(sweep: Sweep) -> list[str]:
    return ["default", *sweep.profiles]


def _apply_profile(sweep: Sweep, profile: str) -> Sweep:
    if profile == "default":
        return sweep
    if profile not in sweep.profiles:
        raise ConfigError(f"unknown profile {profile!r} for sweep {sweep.name}; valid: {', '.join(profile_names(sweep))}")
    p = sweep.profiles[profile]
    space = dict(sweep.space)
    for key, value in p.space.items():
        if value is None:
            space.pop(key, None)
        else:
            space[key] = value
    search = sweep.search if p.search is None else p.search
    if p.num_samples is not None and isinstance(search, Optuna):
        search = replace(search, num_samples=p.num_samples)
    scheduler = sweep.scheduler if p.scheduler is None else (None if p.scheduler == NO_SCHEDULER else p.scheduler)
    return replace(sweep, base={**sweep.base, **p.base}, space=space,
                   seeds=p.seeds if p.seeds is not None else sweep.seeds, search=search, scheduler=scheduler)


def parse_set(family: Family, items: list[str]) -> tuple[dict[str, Any], tuple[int, ...] | None]:
    """``["multi.lr=0.01", "seeds=[0,1]"]`` -> (typed dotted overrides, seeds or None)."""
    overrides: dict[str, Any] = {}
    seeds = None
    for item in items:
        key, sep, text = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError(f"--set expects key=value, got {item!r}")
        if key == "seeds":
            seeds = _check_seeds(parse_text("seeds", tuple[int, ...], text))
            continue
        if key == "seed":
            raise ConfigError("seeds are an axis: use --set seeds=[N] (or seeds=[0,1,2]) instead of seed=N")
        overrides[key] = parse_text(key, resolve_key(family.config_cls, key), text.strip())
    return overrides, seeds


def _check_seeds(seeds: Any) -> tuple[int, ...]:
    seeds = check_value("seeds", tuple[int, ...], seeds)
    if not seeds:
        raise ConfigError("seeds must be a non-empty tuple of ints")
    if len(set(seeds)) != len(seeds):
        raise ConfigError(f"seeds contain duplicates: {list(seeds)}")
    if any(s < 0 for s in seeds):  # torch runs them; code that seeds numpy with cfg.seed would fail mid-sweep
        raise ConfigError(f"seeds must be ints >= 0, got {list(seeds)}: torch.manual_seed takes a negative seed but "
                          "numpy.random.default_rng does not; valid: e.g. seeds=[0,1,2]")
    return seeds


def _check_distribution(key: str, dist: Any, tp: Any, family: Family) -> None:
    if isinstance(dist, (LogUniform, Uniform)) and tp is not float:
        raise ConfigError(f"space[{key!r}]: {type(dist).__name__} needs a float field, {key} is {tp}")
    if isinstance(dist, IntUniform) and tp is not int:
        raise ConfigError(f"space[{key!r}]: IntUniform needs an int field, {key} is {tp}")
    if not dist.low < dist.high or (isinstance(dist, LogUniform) and dist.low <= 0):
        raise ConfigError(f"space[{key!r}]: need low < high (and low > 0 for LogUniform), got {dist.low}, {dist.high}")
    for wkey, wval in dist.when.items():
        check_value(wkey, resolve_key(family.config_cls, wkey), wval)


def _check_sweep(sweep: Sweep, family: Family) -> None:
    """Raise ConfigError for a sweep whose name, retries, mode, metric or profiles are invalid."""
    if not isinstance(sweep.name, str) or not sweep.name.replace("_", "").replace("-", "").isalnum():
        raise ConfigError(f"sweep name must be letters, digits, '_' or '-', got {sweep.name!r}")
    if not isinstance(sweep.retries, int) or isinstance(sweep.retries, bool) or sweep.retries < 0:
        raise ConfigError(f"sweep retries must be an int >= 0, got {sweep.retries!r}")
    if sweep.mode not in ("min", "max"):
        raise ConfigError(f"sweep mode must be 'min' or 'max', got {sweep.mode!r}")
    if sweep.metric not in family.metrics:
        raise ConfigError(f"sweep metric {sweep.metric!r} is not a metric of family {family.name}; valid: "
                          f"{', '.join(family.metrics)}")
    resolve_questions(sweep.questions)
    for key, value in dict(sweep.baseline).items():
        check_value(f"baseline[{key!r}]", resolve_key(family.config_cls, key), value)
    if sweep.scheduler is not None and not isinstance(sweep.scheduler, (ASHA, HyperBand)):
        raise ConfigError(f"sweep scheduler must be ASHA(...), HyperBand(...) or None, got {sweep.scheduler!r}")
    for name, p in sweep.profiles.items():
        if not isinstance(p, Profile):
            raise ConfigError(f"profile {name!r} must be a Profile, got {type(p).__name__}")
        if p.scheduler is not None and p.scheduler != NO_SCHEDULER and not isinstance(p.scheduler, (ASHA, HyperBand)):
            raise ConfigError(f"profile {name!r}: scheduler must be ASHA(...), HyperBand(...), "
                              f"{NO_SCHEDULER!r} or None, got {p.scheduler!r}")
        if p.search is not None and p.search != "grid" and not isinstance(p.search, Optuna):
            raise ConfigError(f"profile {name!r}: search must be 'grid', Optuna(...) or None, got {p.search!r}")


def _check_selection(s: Sweep, family: Family) -> None:
    """ConfigError when a scheduler or a search would read a metric computed on test data: early
    stopping and model selection see validation data only (``Family.selection_metrics``)."""
    reader = "scheduler" if s.scheduler is not None else "Optuna search" if isinstance(s.search, Optuna) else None
    if reader and s.metric not in family.selectable:
        valid = [m for m in family.selectable if family.metrics[m] in ("float", "int")]
        raise ConfigError(f"the {reader} would select on {s.metric!r}, a test-set metric of family {family.name}; "
                          f"use a validation metric: {', '.join(valid)}")


def _resolved_scheduler(s: Sweep, family: Family, points: Mapping[str, Any],
                        dists: Mapping[str, Distribution]) -> Scheduler | None:
    """The sweep's scheduler with ``max_epochs`` resolved from the trials' planned epochs, checked:
    the family reports per epoch, the planned epochs are fixed (not searched), none exceeds
    ``max_epochs``, and the first rung lies below them (else nothing could ever be stopped)."""
    sched = s.scheduler
    if sched is None:
        return None
    name = type(sched).__name__
    if family.epoch_key is None:
        per_epoch = [n for n in family_names() if get_family(n).epoch_key]
        raise ConfigError(f"scheduler {name} needs a family that reports once per epoch "
                          f"({', '.join(per_epoch)}); family {family.name} does not")
    key = family.epoch_key
    if key in dists:
        raise ConfigError(f"scheduler {name} needs {key} fixed per trial; it is searched ({type(dists[key]).__name__})")
    planned = sorted({int(flatten(cfg)[key]) for cfg in points.values()})
    max_epochs = sched.max_epochs or planned[-1]
    if max_epochs < planned[-1]:
        raise ConfigError(f"scheduler {name}: max_epochs={max_epochs} is below {key}={planned[-1]} of some "
                          f"trials (they would be cut at {max_epochs}); use max_epochs=0 (the trials' epochs) "
                          f"or >= {planned[-1]}")
    if isinstance(sched, ASHA) and sched.grace_period >= planned[0]:
        raise ConfigError(f"scheduler ASHA: grace_period={sched.grace_period} is not below {key}={planned[0]}; "
                          "no trial could be stopped early")
    return replace(sched, max_epochs=max_epochs)


def _split_space(s: Sweep, family: Family, overrides: Mapping[str, Any]) -> tuple[dict[str, tuple], dict[str, Distribution]]:
    """(checked grid axes, checked distributions) of ``s.space``; keys in ``overrides`` are left out
    (the override pins them: it is part of the base config)."""
    axes: dict[str, tuple] = {}
    dists: dict[str, Distribution] = {}
    for key, axis in s.space.items():
        tp = resolve_key(family.config_cls, key)
        if key == "seed":
            raise ConfigError("seeds are the sweep's `seeds` field (or --set seeds=[...]), not a space axis")
        if key in overrides:
            continue
        if isinstance(axis, Grid):
            axes[key] = tuple(check_value(key, tp, v) for v in axis.values)
        elif isinstance(axis, (LogUniform, Uniform, IntUniform)):
            if not isinstance(s.search, Optuna):
                raise ConfigError(f"space[{key!r}] is a distribution but the sweep's search is grid; "
                                  "use Grid(...) or search=Optuna(...)")
            _check_distribution(key, axis, tp, family)
            dists[key] = axis
        else:
            raise ConfigError(f"space[{key!r}] must be Grid, LogUniform, Uniform or IntUniform, got {axis!r}")
    return axes, dists


def _grid_points(family: Family, base_cfg: Any, axes: Mapping[str, tuple]) -> dict[str, Any]:
    """key -> canonical config of every point of the product of ``axes`` (duplicates merged);
    a point the family's preflight rejects raises its ConfigError."""
    points: dict[str, Any] = {}
    names = list(axes)
    for values in itertools.product(*(axes[k] for k in names)):
        cfg = family.canonicalize(with_overrides(base_cfg, dict(zip(names, values))))
        err = family.preflight(cfg)
        if err:
            raise ConfigError(err)
        points.setdefault(config_key(cfg), cfg)
    return points


def _studies(points: Mapping[str, Any], dists: Mapping[str, Distribution], num_samples: int,
             pinned: tuple[str, ...] = ()) -> tuple[Study, ...]:
    """One study per grid point, searching the distributions whose ``when`` matches that point;
    ``pinned``: the distribution keys a ``--set`` fixed (left out of ``dists``)."""
    if not dists and pinned:
        raise ConfigError(f"every searched key of this Optuna sweep is pinned by --set ({', '.join(pinned)}); "
                          "nothing is left to search: drop at least one of these --set")
    studies = []
    for key, cfg in points.items():
        flat = flatten(cfg)
        applicable = {k: d for k, d in dists.items() if all(flat.get(wk) == wv for wk, wv in d.when.items())}
        if not applicable:
            raise ConfigError(f"no distribution applies to grid point {key}; check the `when` conditions")
        studies.append(Study(key, cfg, applicable, num_samples))
    return tuple(studies)


def _in_cells(cfg: Any, cells) -> bool:
    """Whether a config matches one of ``cells`` (each a dotted key -> column value dict)."""
    flat = flatten(cfg)
    return any(all(flat.get(k) == v for k, v in cell.items()) for cell in cells)


def _settle_points(family: Family, base_cfg: Any, axes: Mapping[str, tuple], rounds) -> dict[str, Any]:
    """The grid points of the ``--settle`` rounds: each round's seeds at its cells only."""
    points: dict[str, Any] = {}
    for r in rounds:
        seeds = _check_seeds(tuple(r["seeds"]))
        for key, cfg in _grid_points(family, base_cfg, {**axes, "seed": seeds}).items():
            if _in_cells(cfg, r["cells"]):
                points.setdefault(key, cfg)
    return points


def plan(sweep: Sweep, profile: str = "default", overrides: Mapping[str, Any] | None = None,
         seeds: tuple[int, ...] | None = None, source_sha256: str = "", source_path: str = "",
         settle: tuple = ()) -> Plan:
    """Check a sweep under a profile and ``--set`` overrides, and expand it into trials or studies.

    An override of a key that is also a grid axis pins that axis to the one value. ``source_sha256``:
    the sweep file's hash (:func:`sweep_file_sha256`), recorded in the plan. ``settle``: the rounds
    of seeds a ``--settle`` run added to some cells (:attr:`Plan.settle`; grid sweeps only).
    """
    srcs = plugins.sources(sweep.plugins)
    plugins.set_active(plugins.fingerprint(srcs))
    family = get_family(sweep.family)
    _check_sweep(sweep, family)
    s = _apply_profile(sweep, profile)
    _check_selection(s, family)
    overrides = dict(overrides or {})
    seeds = _check_seeds(seeds if seeds is not None else s.seeds)
    base_cfg = with_overrides(family.config_cls(), {**s.base, **overrides})
    axes, dists = _split_space(s, family, overrides)
    space = {k: (overrides[k],) if k in overrides else axes[k] if k in axes else dists[k] for k in s.space}
    points = _grid_points(family, base_cfg, {**axes, "seed": seeds})
    if settle:
        if isinstance(s.search, Optuna):
            raise ConfigError("--settle adds seeds to grid cells; this sweep searches with Optuna")
        for key, cfg in _settle_points(family, base_cfg, axes, settle).items():
            points.setdefault(key, cfg)
    common = dict(space=space, overrides=overrides, scheduler=_resolved_scheduler(s, family, points, dists),
                  source_sha256=source_sha256, plugins=tuple(srcs), source_path=source_path,
                  settle=tuple(settle))
    if not isinstance(s.search, Optuna):
        return Plan(s, profile, family, seeds, trials=_fold(family, tuple(s.fold), points), **common)
    pinned = tuple(k for k, a in s.space.items() if k in overrides and isinstance(a, (LogUniform, Uniform, IntUniform)))
    return Plan(s, profile, family, seeds, studies=_studies(points, dists, s.search.num_samples, pinned), **common)


def _column_value(value: Any) -> Any:
    """A config value as its ``cfg.<key>`` Parquet column holds it (tuples as JSON text, as :func:`flatten`)."""
    return json.dumps(list(value)) if isinstance(value, tuple) else value


def _describe_axis(axis: tuple | Distribution) -> list | dict:
    """A space entry as JSON: grid values as a list (column form), a distribution as
    ``{"type": "LogUniform" | "Uniform" | "IntUniform", "low", "high", "when"}``."""
    if isinstance(axis, tuple):
        return [_column_value(v) for v in axis]
    return {"type": type(axis).__name__, "low": axis.low, "high": axis.high,
            "when": {k: _column_value(v) for k, v in axis.when.items()}}


def _describe_spec(spec: Any) -> Any:
    """A search or scheduler spec as JSON: ``"grid"`` / None as is, a dataclass as ``{"type": name,
    <its fields>}``."""
    if spec is None or isinstance(spec, str):
        return spec
    return {"type": type(spec).__name__, **to_dict(spec)}


def describe_plan(p: Plan) -> dict[str, Any]:
    """What a plan runs, as JSON-able data (the identity part of ``_sweep.json``): ``name``,
    ``family``, ``profile``, ``metric``, ``mode``, ``axes`` (dotted key -> grid values after the
    profile and overrides, a pinned axis as its one value, or a distribution; see
    :func:`_describe_axis`), ``fold``, ``seeds``, ``canonical_defaults`` (dotted key -> the family's
    default for every config key), ``base`` (the sweep's base config after the profile), ``overrides``
    (the ``--set`` config keys), ``search`` (``"grid"`` or the Optuna settings), ``scheduler`` (None
    or its settings, ``max_epochs`` resolved), ``sweep_sha256`` (the sweep file's hash, None when
    unknown) and ``questions`` (``[{"id", "text"}]``: the questions it bears on, for the book).
    Values are as the ``cfg.<key>`` columns hold them (tuples as JSON text), so they compare
    directly with the Parquet data.
    """
    s = p.sweep
    return {
        "name": s.name, "family": p.family.name, "profile": p.profile, "metric": s.metric, "mode": s.mode,
        "axes": {k: _describe_axis(v) for k, v in p.space.items()}, "fold": list(s.fold),
        "seeds": list(p.seeds), "canonical_defaults": flatten(p.family.config_cls()),
        "base": {k: _column_value(v) for k, v in s.base.items()},
        "overrides": {k: _column_value(v) for k, v in p.overrides.items()},
        "search": _describe_spec(s.search), "scheduler": _describe_spec(p.scheduler),
        "sweep_sha256": p.source_sha256 or None,
        **({"plugins": {src.module: {"origin": src.origin, "sha256": src.sha256} for src in p.plugins}}
           if p.plugins else {}),
        "baseline": {k: _column_value(v) for k, v in {**p.family.baseline, **dict(s.baseline)}.items()},
        "report": p.family.report,
        "questions": describe_questions(resolve_questions(s.questions)),
        **({"settle": [dict(r) for r in p.settle]} if p.settle else {}),
    }


def trial_config(family: Family, base_flat: Mapping[str, Any], sampled: Mapping[str, Any]) -> Any:
    """A trial's typed, canonical config from a flat base and the values a searcher sampled."""
    base = with_overrides(family.config_cls(), {k: _unflatten_value(family, k, v) for k, v in base_flat.items()})
    return family.canonicalize(with_overrides(base, dict(sampled)))


def _fold(family: Family, fold: tuple[str, ...], points: dict[str, Any]) -> tuple[Trial, ...]:
    """Group grid points that differ only in the ``fold`` keys into one trial each."""
    if not fold:
        return tuple(Trial(k, "", c) for k, c in points.items())
    bad = [k for k in fold if k not in family.foldable]
    if bad or family.run_batch is None:
        raise ConfigError(f"sweep fold key {bad[0] if bad else fold[0]!r} cannot be folded in family {family.name}; "
                          f"foldable: {', '.join(sorted(family.foldable)) or 'none'}")
    groups: dict[str, list[tuple[str, Any]]] = {}
    for key, cfg in points.items():
        rest = {k: v for k, v in flatten(cfg).items() if k not in fold}
        groups.setdefault(json.dumps(rest, sort_keys=True), []).append((key, cfg))
    trials = []
    for members in groups.values():
        if len(members) == 1:
            trials.append(Trial(members[0][0], "", members[0][1]))
            continue
        group_key = hashlib.sha1("+".join(k for k, _ in members).encode()).hexdigest()[:12]
        trials.append(Trial(group_key, "", members[0][1], points=tuple(members), fold_keys=fold))
    return tuple(trials)


def ray_base(ray_config: Mapping[str, Any]) -> dict[str, Any]:
    """The planned flat config in a Ray trial config: ``base`` is a dict, or its JSON text.

    The runner passes JSON text: Tune deep-copies the whole ``grid_search`` list for every trial it
    generates, which for dicts made planning quadratic in the number of trials (a string is copied
    by reference). JSON turns tuples into lists, which the typed configs take back unchanged.
    """
    base = ray_config["base"]
    return json.loads(base) if isinstance(base, str) else dict(base)


def resolve_points(family: Family, ray_config: Mapping[str, Any]) -> list[tuple[Any, str]]:
    """[(typed config, key)] of every grid point a Ray trial runs: one, or the folded ones."""
    cfg, key = resolve_trial(family, ray_config)
    fold = ray_base(ray_config).get(FOLD) or []
    if not fold:
        return [(cfg, key)]
    out = []
    for override in fold:
        c = family.canonicalize(with_overrides(cfg, dict(override)))
        out.append((c, config_key(c)))
    return out


def resolve_trial(family: Family, ray_config: Mapping[str, Any]) -> tuple[Any, str]:
    """(typed config, key) of a Ray trial config ``{"base": {...}, "study": str, <sampled keys>}``.

    The trainable (on a worker) and the results callback (on the driver) both call this, so they
    agree on the trial's config and key.
    """
    sampled = {k: v for k, v in ray_config.items() if k not in ("base", "study")}
    base = {k: v for k, v in ray_base(ray_config).items() if k != FOLD}
    cfg = trial_config(family, base, sampled)
    return cfg, config_key(cfg)


def _unflatten_value(family: Family, key: str, value: Any) -> Any:
    tp = resolve_key(family.config_cls, key)
    if getattr(tp, "__origin__", None) is tuple and isinstance(value, str):
        return tuple(json.loads(value))
    return value


# ---------------------------------------------------------------- loading sweep files
def sweep_file_sha256(path: str | Path) -> str:
    """sha256 (hex) of a sweep file's bytes: the plan records it, so a resume notices an edited file."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def shipped_sweeps() -> dict[str, Path]:
    """The sweeps shipped with the package, by name (``lowbit-sweep vste_window`` runs one)."""
    from lowbit_core.shipped import sweeps_dir

    folder = sweeps_dir()
    return {q.stem: q for q in sorted(folder.glob("*.py")) if not q.name.startswith("_")} if folder else {}


def find_sweep_file(path: str | Path) -> Path:
    """``path`` as a file, or the shipped sweep of that name (``vste_window``); ConfigError listing
    the shipped sweeps otherwise."""
    p = Path(path)
    if p.is_file():
        return p
    shipped = shipped_sweeps()
    if p.suffix == "" and str(path) in shipped:
        return shipped[str(path)]
    hint = f"; shipped sweeps (run by name): {', '.join(shipped)}" if shipped else ""
    raise ConfigError(f"sweep file {str(path)!r} not found{hint}")


def load_sweep(path: str | Path) -> Sweep:
    """Import a sweep file and return its one :class:`Sweep`; errors are one-line ConfigErrors.

    The sweep file's folder is put first on ``sys.path``, so the file imports modules next to it; the
    modules it imported from that folder become the sweep's plug-ins (``Sweep.plugins``, after those
    of installed packages' ``lowbit_sweeps.plugins`` entry points and before those it names itself).
    A plug-in must live in such a module, not in the sweep file: workers import modules, never the
    sweep file, so registering an estimator, model or family in the sweep file itself is an error.
    """
    p = find_sweep_file(path)
    if p.suffix != ".py":
        raise ConfigError(f"sweep file {str(path)!r} is not a Python module (.py)")
    installed = plugins.entry_point_modules()
    folder = str(p.resolve().parent)
    if folder not in sys.path:
        sys.path.insert(0, folder)
    name = f"_lowbit_sweep_{hashlib.sha1(str(p.resolve()).encode()).hexdigest()[:8]}"
    spec = importlib.util.spec_from_file_location(name, p)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses in the file resolve their module through sys.modules
    try:
        spec.loader.exec_module(module)
    except Exception as exc:  # noqa: BLE001 -- any error in user code becomes one line
        raise ConfigError(f"importing {path} failed: {type(exc).__name__}: {exc}") from None
    finally:
        sys.modules.pop(name, None)
    from lowbit_core.registry import registered_by

    inline = registered_by(name)
    if inline:
        raise ConfigError(f"{path} registers {', '.join(inline)} itself; move it into a module next to the sweep "
                          "file and import that module (workers import modules, never the sweep file)")
    sweeps = [v for v in vars(module).values() if isinstance(v, Sweep)]
    if len(sweeps) != 1:
        what = "no Sweep object" if not sweeps else f"{len(sweeps)} Sweep objects"
        raise ConfigError(f"{path} defines {what}; a sweep file must define exactly one lowbit_core.sweep.Sweep")
    sweep = sweeps[0]
    if not isinstance(sweep.plugins, (tuple, list)) or not all(isinstance(m, str) for m in sweep.plugins):
        raise ConfigError(f"sweep plugins must be a tuple of module names, got {sweep.plugins!r}")
    local = [m for m in plugins.loaded_from(Path(folder), name) if not sys.modules[m].__file__.endswith(p.name)]
    for m in sweep.plugins:
        plugins.import_plugin(m, f"named in {p.name}'s plugins")
    sweep = replace(sweep, plugins=tuple(dict.fromkeys([*installed, *local, *sweep.plugins])))
    if not sweep.doc and module.__doc__:
        sweep = replace(sweep, doc=module.__doc__.strip())
    return sweep
