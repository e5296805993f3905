"""Experiment trackers (``--log mlflow|tensorboard|wandb``, repeatable): Ray Tune's own logger
callbacks (``MLflowLoggerCallback``, ``TBXLoggerCallback``, ``WandbLoggerCallback``), run on the driver
and fed with exactly the rows the Parquet writer takes. Parquet stays the source of truth.

What a tracker sees of a trial is a :class:`TrialView` per grid point (one, or each folded point):
its config is the trial's typed config flattened (``cfg`` keys without the prefix) plus ``trial_key``
and ``sweep``; its results are the family's numeric metrics of each (trial, step) row, logged at that
step (``training_iteration`` = ``step``), once each (a retried trial's repeated steps are not sent
again, as the Parquet writer skips them). Curves (list metrics) and text metrics stay in Parquet only.

Where the data goes (offline by default):

- MLflow: ``$MLFLOW_TRACKING_URI`` when set, else a file store in ``<results>/<sweep>/_mlflow``
  (MLflow 3 opts in to file stores with ``MLFLOW_ALLOW_FILE_STORE=true``, set for that default: plain
  files like the Parquet parts, safe on the network file systems results folders often live on,
  where SQLite's locking is not). Experiment = sweep name, run name = trial key, tags ``trial_key``,
  ``sweep``, ``lowbit_run_id``.
- TensorBoard: event files in ``<results>/<sweep>/_tensorboard/<trial key>/`` (scalars under
  ``ray/tune/<metric>``; the config as hparams when the trial ends).
- W&B: offline unless logged in (``$WANDB_API_KEY`` or ``wandb login``) or ``$WANDB_MODE`` says
  otherwise; run folders under ``<results>/<sweep>/_wandb/wandb/``; project ``$WANDB_PROJECT`` or the
  sweep name, group the sweep name, run name the trial key, tags [sweep name, trial key].

The ``_`` folders are skipped by Parquet readers, like ``_ray``.
"""
from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from lowbit_core.config import ConfigError


@dataclass(frozen=True)
class Tracker:
    """One ``--log`` choice: the module its Ray callback needs, the pyproject extra that installs it,
    and ``build(folder, sweep) -> (LoggerCallback, view folder of a trial key)``."""

    name: str
    module: str
    extra: str
    build: Callable[[Path, str], tuple[object, Callable[[str], Path]]]


def _mlflow(folder: Path, sweep: str):
    from ray.air.integrations.mlflow import MLflowLoggerCallback

    class Callback(MLflowLoggerCallback):
        def log_trial_start(self, trial):
            self.tags = dict(trial.tags)  # Ray's callback tags every run alike; ours carry the trial key
            super().log_trial_start(trial)

    uri = os.environ.get("MLFLOW_TRACKING_URI") or (folder / "_mlflow").resolve().as_uri()
    return Callback(tracking_uri=uri, experiment_name=sweep), lambda key: folder / "_mlflow"


def _tensorboard(folder: Path, sweep: str):
    from ray.tune.logger import TBXLoggerCallback

    return TBXLoggerCallback(), lambda key: folder / "_tensorboard" / key


def wandb_logged_in() -> bool:
    """Whether W&B has an API key here: ``$WANDB_API_KEY``, or the entry ``wandb login`` writes into
    ``~/.netrc`` (``$NETRC``) for the W&B host (``$WANDB_BASE_URL``, default api.wandb.ai). Reads
    files only; contacts nothing."""
    import netrc
    from urllib.parse import urlparse

    if os.environ.get("WANDB_API_KEY"):
        return True
    host = urlparse(os.environ.get("WANDB_BASE_URL") or "https://api.wandb.ai").hostname
    try:
        return netrc.netrc(os.environ.get("NETRC")).authenticators(host) is not None
    except (OSError, netrc.NetrcParseError):
        return False


def wandb_mode() -> str:
    """``$WANDB_MODE`` when set, else ``online`` when logged in, else ``offline``."""
    return os.environ.get("WANDB_MODE") or ("online" if wandb_logged_in() else "offline")


def _wandb(folder: Path, sweep: str):
    from ray.air.integrations.wandb import WandbLoggerCallback

    class Callback(WandbLoggerCallback):
        def log_trial_start(self, trial):
            self.kwargs["tags"] = [trial.tags["sweep"], trial.tags["trial_key"]]
            super().log_trial_start(trial)

    root = folder / "_wandb"
    root.mkdir(parents=True, exist_ok=True)
    callback = Callback(project=os.environ.get("WANDB_PROJECT") or sweep, group=sweep, mode=wandb_mode(),
                        dir=str(root.resolve()))
    return callback, lambda key: root


def prepare_environment(names: list[str]) -> None:
    """Settle the trackers' environment before Ray starts (a local Ray's workers, among them W&B's
    logging actors, inherit it): ``MLFLOW_ALLOW_FILE_STORE=true`` for the default MLflow file store;
    ``WANDB_MODE`` resolved (:func:`wandb_mode`: Ray's W&B set-up asks for an API key unless the mode
    is offline, and W&B rejects an empty mode) and an empty ``WANDB_API_KEY`` removed."""
    if "mlflow" in names and not os.environ.get("MLFLOW_TRACKING_URI"):
        os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
    if "wandb" in names:
        if not os.environ.get("WANDB_API_KEY"):
            os.environ.pop("WANDB_API_KEY", None)
        os.environ["WANDB_MODE"] = wandb_mode()


TRACKERS: dict[str, Tracker] = {
    "mlflow": Tracker("mlflow", "mlflow", "mlflow", _mlflow),
    "tensorboard": Tracker("tensorboard", "tensorboardX", "tensorboard", _tensorboard),
    "wandb": Tracker("wandb", "wandb", "wandb", _wandb),
}


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def check_trackers(names: list[str]) -> list[str]:
    """The ``--log`` names, each once, in order; ConfigError (one line) for an unknown one or one whose
    package is not installed, naming the extra that installs it. Imports nothing."""
    out = list(dict.fromkeys(names))
    for name in out:
        if name not in TRACKERS:
            raise ConfigError(f"--log {name!r} is not a tracker; valid: {', '.join(TRACKERS)}")
        t = TRACKERS[name]
        if not _installed(t.module):
            raise ConfigError(f"--log {name} needs the {t.module} package, which is not installed; "
                              f"pip install 'lowbit-sweeps[{t.extra}]'")
    return out


class TrialView:
    """What a tracker sees of one grid point of a Ray trial: its own id (trial key + run id, unique per
    run), the typed config (flat) with ``trial_key`` and ``sweep``, the tags, and its folder;
    everything else is the Ray trial's."""

    def __init__(self, trial, key: str, config: dict, tags: dict, local_path: Path):
        self._trial, self.key = trial, key
        self.trial_id = f"{key}-{tags['lowbit_run_id']}"
        self.config = self.evaluated_params = config
        self.tags = tags
        self.local_path = str(local_path)
        self.experiment_dir_name = tags["sweep"]

    def init_local_path(self) -> None:
        Path(self.local_path).mkdir(parents=True, exist_ok=True)

    def __str__(self) -> str:
        return self.key

    def __getattr__(self, name):
        return getattr(self._trial, name)


def view_config(row: dict, key: str, sweep: str) -> dict:
    """A row's config as a tracker records it: ``trial_key``, ``sweep``, then every ``cfg.<key>``."""
    return {"trial_key": key, "sweep": sweep, **{k[4:]: v for k, v in row.items() if k.startswith("cfg.")}}


def view_result(row: dict, metrics: dict[str, str]) -> dict:
    """A row's numeric metrics (the family's ``int``/``float`` ones that are set), ``step`` and
    ``training_iteration`` = step (the step Ray's loggers log at)."""
    out = {k: row[k] for k, kind in metrics.items()
           if kind in ("int", "float") and isinstance(row.get(k), (int, float)) and not isinstance(row.get(k), bool)}
    return {**out, "step": row["step"], "training_iteration": row["step"]}


class TrackerForwarder:
    """One Ray logger callback, driven by the Parquet callback (:class:`launch.callbacks.ParquetCallback`
    calls its listeners): set-up, every row the writer takes, each trial's end, the experiment's end."""

    def __init__(self, logger, view_path: Callable[[str], Path], sweep: str, run_id: str, metrics: dict[str, str]):
        self.logger, self.view_path = logger, view_path
        self.sweep, self.run_id, self.metrics = sweep, run_id, metrics
        self._views: dict[str, dict[str, TrialView]] = {}

    def setup(self, **info) -> None:
        self.logger.setup(**info)

    def _view(self, trial, key: str, row: dict) -> TrialView:
        views = self._views.setdefault(trial.trial_id, {})
        if key not in views:
            tags = {"trial_key": key, "sweep": self.sweep, "lowbit_run_id": self.run_id}
            views[key] = TrialView(trial, key, view_config(row, key, self.sweep), tags, self.view_path(key))
            self.logger.log_trial_start(views[key])
        return views[key]

    def row_added(self, trial, key: str, row: dict) -> None:
        self.logger.log_trial_result(row["step"], self._view(trial, key, row), view_result(row, self.metrics))

    def trial_ended(self, trial, failed: bool) -> None:
        for view in self._views.pop(trial.trial_id, {}).values():
            self.logger.log_trial_end(view, failed=failed)

    def experiment_ended(self, trials, **info) -> None:
        self.logger.on_experiment_end(trials=trials, **info)


def tracker_listeners(names: list[str], folder: Path, sweep: str, run_id: str, metrics: dict[str, str]) -> list:
    """One :class:`TrackerForwarder` per tracker name (checked by :func:`check_trackers`)."""
    out = []
    for name in names:
        logger, view_path = TRACKERS[name].build(folder, sweep)
        out.append(TrackerForwarder(logger, view_path, sweep, run_id, metrics))
    return out
