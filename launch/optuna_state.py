"""Optuna studies that outlive the driver: ``--resume`` continues a study, ``--extend`` adds trials to it.

Each study of a sweep (one per grid point, :class:`lowbit_core.sweep.Study`) keeps its trials in an
Optuna journal next to the data, ``<folder>/_optuna/<study key>.log`` (``optuna.storages.JournalStorage``
on a ``JournalFileBackend``). Every run into the folder (the first, each ``--resume`` and ``--extend``)
opens a new study in that file, named ``<sweep>/<study key>/<run id>`` (:func:`study_name`: the
sweep and the grid point, as the Parquet rows' ``sweep`` and ``study`` columns, and the run, as their
``run_id``), that continues the newest one before it. Every trial of it carries its trial key as the
user attribute ``trial_key`` (:class:`KeyedOptunaSearch`, :func:`new_study`), so a dashboard's trials
join the Parquet rows on ``trial_key``:

- a trial the Parquet data records as finished (:func:`lowbit_core.results.finished_trials`: a done
  status and every row it counted on disk) is added as a completed trial with its value (the value
  Optuna recorded, else the metric of its last row), so the sampler knows it and it is not run again;
- every other trial known to the earlier study or the Parquet rows (asked and then killed with the
  driver, failed, interrupted, or with rows moved to ``_damaged/``) is enqueued with its exact
  parameters, so it runs again under the same trial key and, in families that checkpoint, continues
  from the checkpoints the earlier run left (:func:`launch.runner.earlier_checkpoints`);
- new trials are sampled after those, up to the study's ``num_samples``.

A run starts a new study instead of loading the old one because Optuna cannot take back a finished
trial: Ray tells the searcher that a trial completed before the driver's Parquet callback records it,
so a driver killed between the two would otherwise leave a trial that counts twice.

Sampling is TPE (Bergstra et al., "Algorithms for Hyper-Parameter Optimization", NeurIPS 2011;
Optuna's ``TPESampler`` with its defaults) whose random state for the trial numbered n is seeded by
(sampler seed, n) alone (:class:`TrialSeededTPE`). Trial numbers count every configuration the study
asked before, so trial n of a resumed or extended study draws what trial n of an uninterrupted run
draws given the same finished trials, instead of a re-seeded stream proposing the finished
configurations again.
"""
from __future__ import annotations

import hashlib
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import optuna
from optuna.distributions import BaseDistribution
from optuna.samplers import BaseSampler, TPESampler
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend
from optuna.trial import FrozenTrial, TrialState, create_trial
from ray.tune.schedulers import AsyncHyperBandScheduler
from ray.tune.search.optuna import OptunaSearch

from lowbit_core.results import DAMAGED_DIR

JOURNAL_DIR = "_optuna"
"""The folder, inside a sweep's results folder, of its Optuna journals (skipped by ``pandas.read_parquet``)."""

_LOCK_SUFFIX = ".lock"  # optuna.storages.journal._file.LOCK_FILE_SUFFIX: the symlink lock next to a journal


def journal_path(folder: str | Path, study_key: str) -> Path:
    return Path(folder) / JOURNAL_DIR / f"{study_key}.log"


def study_name(sweep: str, study_key: str, run_id: str) -> str:
    """The Optuna study a run opens for a study of the sweep: ``<sweep>/<study key>/<run id>`` (each run
    opens its own study in the journal, so the run id keeps the names apart)."""
    return f"{sweep}/{study_key}/{run_id}"


TRIAL_KEY_ATTR = "trial_key"
"""The user attribute of every Optuna trial that holds its trial key (the Parquet rows' ``trial_key``)."""


class KeyedOptunaSearch(OptunaSearch):
    """Ray Tune's ``OptunaSearch`` that records, when it asks the study for a trial, that trial's trial
    key as its user attribute :data:`TRIAL_KEY_ATTR` (through the study's storage, so the journal
    holds it even for a trial killed with the driver). ``key_of``: the searched parameters (Optuna's
    flat names) -> the trial key."""

    def __init__(self, *args, key_of: Callable[[dict], str], **kwargs):
        super().__init__(*args, **kwargs)
        self._key_of = key_of

    def suggest(self, trial_id: str):
        config = super().suggest(trial_id)
        ot_trial = self._ot_trials.get(trial_id)
        if ot_trial is not None and ot_trial.params and TRIAL_KEY_ATTR not in ot_trial.user_attrs:
            ot_trial.set_user_attr(TRIAL_KEY_ATTR, self._key_of(dict(ot_trial.params)))  # a replay has it already
        return config

    def save(self, checkpoint_path: str) -> None:
        """Ray Tune's experiment checkpoint pickles the searcher's attributes; ``key_of`` (it holds the
        family's functions) is left out: a restore keeps the searcher's own."""
        key_of = self.__dict__.pop("_key_of")
        try:
            super().save(checkpoint_path)
        finally:
            self._key_of = key_of


def trial_seed(seed: int, number: int) -> int:
    """The sampler seed of trial ``number`` under the study's ``seed``: the first 4 bytes of
    sha256("<seed>:<number>") as an unsigned integer (any two pairs give independent streams)."""
    return int.from_bytes(hashlib.sha256(f"{seed}:{number}".encode()).digest()[:4], "little")


class TrialSeededTPE(BaseSampler):
    """Optuna's TPE sampler with a fresh random state per trial: trial n samples with
    ``TPESampler(seed=trial_seed(seed, n))``. Given the same finished trials, a trial's proposal then
    depends only on its number, not on how many samplers or processes the study went through."""

    def __init__(self, seed: int):
        self.seed = seed
        self._by_number: dict[int, TPESampler] = {}

    def _tpe(self, trial) -> TPESampler:
        if trial.number not in self._by_number:
            self._by_number[trial.number] = TPESampler(seed=trial_seed(self.seed, trial.number))
        return self._by_number[trial.number]

    def infer_relative_search_space(self, study, trial):
        return self._tpe(trial).infer_relative_search_space(study, trial)

    def sample_relative(self, study, trial, search_space):
        return self._tpe(trial).sample_relative(study, trial, search_space)

    def sample_independent(self, study, trial, param_name, param_distribution):
        return self._tpe(trial).sample_independent(study, trial, param_name, param_distribution)

    def before_trial(self, study, trial) -> None:
        self._tpe(trial).before_trial(study, trial)

    def after_trial(self, study, trial, state, values) -> None:
        self._tpe(trial).after_trial(study, trial, state, values)
        self._by_number.pop(trial.number, None)


def _repair(path: Path) -> None:
    """Undo what a driver killed while writing ``path`` leaves (the caller holds the sweep folder's
    lock, so no other process uses the journal): the lock file, and a torn last line, which Optuna
    would otherwise glue to the next record and then refuse the whole file."""
    lock = path.with_name(path.name + _LOCK_SUFFIX)
    if lock.is_symlink() or lock.exists():
        lock.unlink()
    if path.exists():
        data = path.read_bytes()
        if data and not data.endswith(b"\n"):
            with open(path, "r+b") as fh:
                fh.truncate(data.rfind(b"\n") + 1)


def open_journal(folder: str | Path, study_key: str, run_id: str) -> JournalStorage:
    """The study's journal storage (created when missing). A journal Optuna cannot read is moved to
    ``<folder>/_damaged/`` (never deleted; one line on stderr) and a new one is started: the study
    then continues from what the Parquet rows record."""
    path = journal_path(folder, study_key)
    path.parent.mkdir(parents=True, exist_ok=True)
    _repair(path)
    try:
        storage = JournalStorage(JournalFileBackend(str(path)))
        storage.get_all_studies()  # replays the whole log: a damaged record raises here
        return storage
    except Exception as exc:  # noqa: BLE001 -- any unreadable journal is set aside the same way
        damaged = Path(folder) / DAMAGED_DIR / f"{JOURNAL_DIR}-{path.stem}-{run_id}.log"
        damaged.parent.mkdir(exist_ok=True)
        path.rename(damaged)
        print(f"damaged Optuna journal {path} ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}) "
              f"moved to {damaged}; the study continues from the Parquet rows", file=sys.stderr)
        return JournalStorage(JournalFileBackend(str(path)))


@dataclass
class Known:
    """One configuration a study asked earlier: its trial key, searched parameters, and the value
    Optuna recorded for it (None unless the trial completed)."""

    key: str
    params: dict
    value: float | None = None


@dataclass
class Rows:
    """What the Parquet rows hold about one trial key of a study."""

    params: dict
    first_time: object
    last_step: int
    last_value: float | None
    by_epoch: dict[int, float] = field(default_factory=dict)
    """epoch -> the metric reported at it (families that report epochs)."""


def frozen_params(trial: FrozenTrial) -> dict:
    """A trial's parameters (asked) or its enqueued ones (waiting)."""
    return dict(trial.params) or dict(trial.system_attrs.get("fixed_params") or {})


def journal_trials(storage: JournalStorage, key_of: Callable[[dict], str]) -> list[Known]:
    """The configurations the newest study in ``storage`` asked, in trial-number order (an enqueued
    trial that was never asked holds its parameters as ``fixed_params``)."""
    studies = storage.get_all_studies()
    if not studies:
        return []
    newest = max(storage.get_study_id_from_name(s.study_name) for s in studies)
    out = []
    for t in storage.get_all_trials(newest, deepcopy=False):
        params = frozen_params(t)
        if params:
            value = t.value if t.state == TrialState.COMPLETE else None
            out.append(Known(key_of(params), params, value))
    return out


@dataclass
class Continuation:
    """How a run continues a study: ``finished`` (added as completed trials, in order), ``replays``
    (enqueued, run first) and ``remaining``: the trials the run's Tuner runs (replays included)."""

    finished: list[Known]
    replays: list[Known]
    remaining: int


def _finite(value) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)


def continue_study(earlier: list[Known], rows: dict[str, Rows], done: set[str], num_samples: int) -> Continuation:
    """Split what a study knows (``earlier``: the journal's configurations in order; ``rows``: trial
    key -> its Parquet rows, for keys the journal lacks, taken in order of their first row) into the
    finished trials (key in ``done``; value: Optuna's, else the last row's metric) and the ones to
    run again (every other key, once). At most ``num_samples`` of them in all, finished first."""
    seen, order = set(), []
    for known in earlier:
        if known.key not in seen:
            seen.add(known.key)
            order.append(known)
    for key, r in sorted(rows.items(), key=lambda kv: (kv[1].first_time is None, kv[1].first_time or 0, kv[0])):
        if key not in seen:
            seen.add(key)
            order.append(Known(key, r.params))
    finished, replays = [], []
    for known in order:
        if known.key in done:
            value = known.value if _finite(known.value) else rows[known.key].last_value if known.key in rows else None
            finished.append(Known(known.key, known.params, value))
        else:
            replays.append(known)
    finished = finished[:num_samples]
    replays = replays[:max(0, num_samples - len(finished))]
    return Continuation(finished, replays, max(0, num_samples - len(finished)))


def new_study(storage: JournalStorage, name: str, direction: str, distributions: dict[str, BaseDistribution],
              cont: Continuation, sampler: BaseSampler) -> optuna.Study:
    """Create the run's study ``name`` (:func:`study_name`) in ``storage``: ``cont.finished`` as completed
    trials (failed when their value is not finite, as Optuna records a NaN result), then ``cont.replays``
    enqueued; each with its trial key as the user attribute :data:`TRIAL_KEY_ATTR`."""
    study = optuna.create_study(storage=storage, study_name=name, direction=direction, sampler=sampler)
    for known in cont.finished:
        ok = _finite(known.value)
        study.add_trial(create_trial(state=TrialState.COMPLETE if ok else TrialState.FAIL,
                                     value=float(known.value) if ok else None, params=known.params,
                                     distributions={k: distributions[k] for k in known.params},
                                     user_attrs={TRIAL_KEY_ATTR: known.key}))
    for known in cont.replays:
        study.enqueue_trial(known.params, user_attrs={TRIAL_KEY_ATTR: known.key, "replayed": True})
    return study



def warm_asha(scheduler, history: dict[str, dict[int, float]], key_of: Callable[[dict], str]):
    """``scheduler`` (a fresh one-bracket ASHAScheduler) as the uninterrupted run's would be: with the
    rung records of the trials that ran before (``history``: trial key -> epoch -> metric, from the
    Parquet rows). ``key_of``: a Ray trial config -> its trial key. A resumed run with a cold ASHA
    compares its trials only with each other, so it stops (or keeps) other trials than the
    uninterrupted run.

    ASHA (Li et al., "A System for Massively Parallel Hyperparameter Tuning", MLSys 2020) records a
    trial's metric at each rung milestone it reaches and stops it when that value is below the rung's
    1 - 1/reduction_factor quantile. Here every earlier trial's value at each milestone its rows
    reached is recorded when the run's first trial is added; a trial run again (same key) takes its
    own records over under its new Ray trial id, so the rungs it passed before are not decided again
    (it passed them: it was not stopped there). Other schedulers, and ASHA with more than one
    bracket (Ray picks a trial's bracket at random), are returned as they are.
    """
    if type(scheduler) is not AsyncHyperBandScheduler or len(scheduler._brackets) != 1 or not history:
        return scheduler
    warm = WarmASHA.__new__(WarmASHA)
    warm.__dict__.update(scheduler.__dict__)
    warm._history, warm._key_of, warm._warmed = history, key_of, False
    return warm


def _rung_records(rungs, ident: str, by_epoch: dict[int, float], sign: float) -> None:
    for milestone, recorded in rungs:
        reached = [e for e in by_epoch if e >= milestone and _finite(by_epoch[e])]
        if reached:
            recorded[ident] = sign * by_epoch[min(reached)]


class WarmASHA(AsyncHyperBandScheduler):
    """An ASHAScheduler whose rungs start with earlier runs' records (made by :func:`warm_asha`)."""

    def on_trial_add(self, tune_controller, trial):
        super().on_trial_add(tune_controller, trial)
        rungs = self._brackets[0]._rungs
        if not self._warmed:  # the metric's sign is known once the Tuner has set metric and mode
            self._warmed = True
            for key, by_epoch in self._history.items():
                _rung_records(rungs, f"earlier:{key}", by_epoch, self._metric_op)
        key = self._key_of(trial.config)
        if key in self._history:
            for _, recorded in rungs:
                recorded.pop(f"earlier:{key}", None)
            _rung_records(rungs, trial.trial_id, self._history[key], self._metric_op)
