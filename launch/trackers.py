"""Experiment trackers (``--log mlflow|tensorboard|wandb``, repeatable): Ray Tune's own logger
callbacks (``MLflowLoggerCallback``, ``TBXLoggerCallback``, ``WandbLoggerCallback``), run on the driver
and fed with exactly the rows the Parquet writer takes. Parquet stays the source of truth.

What a tracker sees of a trial is a :class:`TrialView` per grid point (one, or each folded point):
its config is the trial's typed config flattened (``cfg`` keys without the prefix) plus ``trial_key``
and ``sweep``; its results are the family's numeric metrics of each (trial, step) row, logged at that
step (``training_iteration`` = ``step``), once each (a retried trial's repeated steps are not sent
again, as the Parquet writer skips them). Curves (list metrics) and text metrics stay in Parquet only.

Where the data goes (offline by default):

- MLflow: ``$MLFLOW_TRACKING_URI`` when set, else the store MLflow recommends for local work, a SQLite
  file ``<results>/<sweep>/_mlflow.db`` (:func:`mlflow_default_uri`; MLflow 3 reads its old file
  stores only with ``MLFLOW_ALLOW_FILE_STORE=true``), read back with
  ``MlflowClient("sqlite:///<abs path>/_mlflow.db")`` or ``mlflow ui --backend-store-uri`` that URI.
  Only the driver writes it. SQLite's locking is unreliable on some network file systems: there, use a
  tracking server. The experiment's artifact root is ``<results>/<sweep>/_mlflow_artifacts`` (nothing
  is logged there unless you do). Experiment = sweep name, run name = trial key, tags ``trial_key``,
  ``sweep``, ``lowbit_run_id``.
- TensorBoard: event files in ``<results>/<sweep>/_tensorboard/<trial key>/`` (scalars under
  ``ray/tune/<metric>``; the config as hparams when the trial ends).
- W&B: offline unless logged in (``$WANDB_API_KEY`` or ``wandb login``) or ``$WANDB_MODE`` says
  otherwise; run folders under ``<results>/<sweep>/_wandb/wandb/``; project ``$WANDB_PROJECT`` or the
  sweep name, group the sweep name, run name the trial key, tags [sweep name, trial key].

The ``_`` folders are skipped by Parquet readers, like ``_ray``.

A tracker never takes the sweep down. Before Ray starts, :func:`check_reachable` refuses (one line,
exit 2, nothing written) a ``$MLFLOW_TRACKING_URI`` whose scheme MLflow does not accept
(:func:`mlflow_uri_problem`: ``htp://...``), an http(s) one that does not answer within
:data:`REACH_TIMEOUT` seconds, and W&B in online mode without an API key or without an answer from
its server. During the run, a tracker whose hook raises (its server died, its disk is full) is one
warning line on stderr and is dropped for the rest of the run (:class:`TrackerForwarder`); the
Parquet rows are unaffected.
"""
from __future__ import annotations

import importlib.util
import os
import sys
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


MLFLOW_DB = "_mlflow.db"
"""The default MLflow store's file in a sweep's results folder (skipped by Parquet readers: ``_``)."""
MLFLOW_ARTIFACTS = "_mlflow_artifacts"
"""The default store's experiment artifact root in a sweep's results folder (MLflow's own default is
``./mlruns`` in the current directory)."""


def mlflow_default_uri(folder: str | Path) -> str:
    """``sqlite:///<absolute path>/_mlflow.db`` of a sweep's results ``folder``: where ``--log mlflow``
    logs unless ``$MLFLOW_TRACKING_URI`` is set, and what ``MlflowClient`` / ``mlflow ui
    --backend-store-uri`` read it back with."""
    return "sqlite:///" + str((Path(folder) / MLFLOW_DB).resolve())


def _mlflow(folder: Path, sweep: str):
    from ray.air.integrations.mlflow import MLflowLoggerCallback

    default = not os.environ.get("MLFLOW_TRACKING_URI")

    class Callback(MLflowLoggerCallback):
        def setup(self, *args, **kwargs):
            if default:  # the experiment's artifacts beside the store, not in ./mlruns of the cwd
                from mlflow import MlflowClient

                folder.mkdir(parents=True, exist_ok=True)
                client = MlflowClient(tracking_uri=self.tracking_uri)
                if client.get_experiment_by_name(sweep) is None:
                    client.create_experiment(sweep, artifact_location=(folder / MLFLOW_ARTIFACTS).resolve().as_uri())
            super().setup(*args, **kwargs)

        def log_trial_start(self, trial):
            self.tags = dict(trial.tags)  # Ray's callback tags every run alike; ours carry the trial key
            super().log_trial_start(trial)

    uri = os.environ.get("MLFLOW_TRACKING_URI") or mlflow_default_uri(folder)
    return Callback(tracking_uri=uri, experiment_name=sweep), lambda key: folder


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


MLFLOW_HTTP_DEFAULTS = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2", "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
                        "MLFLOW_HTTP_REQUEST_TIMEOUT": "10"}
"""MLflow's HTTP client settings for a tracking server, unless set by the user. MLflow's own defaults
(7 retries, backoff factor 2, 120 s timeout) keep the driver -- and so every trial -- waiting about
4.5 min per request once a server stops answering (the backoffs 2 + 4 + ... + 128 s); with these a
request gives up within about 3 attempts x 10 s plus 1 + 2 s of backoff, and the tracker is dropped."""


def prepare_environment(names: list[str]) -> None:
    """Settle the trackers' environment before Ray starts (a local Ray's workers, among them W&B's
    logging actors, inherit it): :data:`MLFLOW_HTTP_DEFAULTS` for a tracking server (the default
    SQLite store needs nothing), ``MLFLOW_ALLOW_FILE_STORE=true`` unless set when
    ``$MLFLOW_TRACKING_URI`` names a file store (``file://`` or a plain path: MLflow 3 refuses to open
    one without it; reading it back needs it too); ``WANDB_MODE`` resolved (:func:`wandb_mode`: Ray's
    W&B set-up asks for an API key unless the mode is offline, and W&B rejects an empty mode) and an
    empty ``WANDB_API_KEY`` removed."""
    uri = os.environ.get("MLFLOW_TRACKING_URI")
    if "mlflow" in names and uri:
        for key, value in MLFLOW_HTTP_DEFAULTS.items():
            os.environ.setdefault(key, value)
        if _file_store(uri):
            os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
    if "wandb" in names:
        if not os.environ.get("WANDB_API_KEY"):
            os.environ.pop("WANDB_API_KEY", None)
        os.environ["WANDB_MODE"] = wandb_mode()


REACH_TIMEOUT = 3.0
"""Seconds a tracker's server has to answer the check before Ray starts (:func:`check_reachable`)."""

OFFLINE_WANDB_MODES = ("offline", "dryrun", "disabled")


def http_problem(url: str, timeout: float = REACH_TIMEOUT) -> str | None:
    """None when an HTTP server answers a GET of ``url`` within ``timeout`` seconds with any status
    below 500 (a 404 or 401 is still a server that is up), else why not, in a few words."""
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(urllib.request.Request(url, method="GET"), timeout=timeout):
            return None
    except urllib.error.HTTPError as exc:
        return None if exc.code < 500 else f"HTTP {exc.code} {exc.reason}"
    except urllib.error.URLError as exc:
        reason = exc.reason
        return getattr(reason, "strerror", None) or str(reason)
    except (OSError, ValueError) as exc:  # a timeout while reading, a malformed URL
        return getattr(exc, "strerror", None) or str(exc) or type(exc).__name__


MLFLOW_SCHEMES = ("http", "https", "file", "sqlite", "postgresql", "mysql", "mssql", "databricks", "databricks-uc",
                  "uc")
"""The tracking URI schemes MLflow 3 takes (``mlflow.tracking._tracking_service.utils``): a REST server,
a file store, SQLAlchemy databases (optionally ``+driver``, e.g. ``postgresql+psycopg2``), Databricks
and Unity Catalog; a plain path (no scheme, or a Windows drive letter) is a file store."""
_DATABASES = ("sqlite", "postgresql", "mysql", "mssql")


def _plugin_schemes() -> set[str]:
    """Schemes that installed MLflow plug-ins register (entry points ``mlflow.tracking_store``)."""
    from importlib.metadata import entry_points

    try:
        return {ep.name for ep in entry_points(group="mlflow.tracking_store")}
    except Exception:  # noqa: BLE001 -- unreadable package metadata: no plug-ins
        return set()


def _file_store(uri: str) -> bool:
    """Whether MLflow takes ``uri`` as a file store: ``file://``, or a plain path (also ``C:\\...``)."""
    from urllib.parse import urlparse

    scheme = urlparse(uri).scheme.lower()
    return scheme == "file" or not scheme or (len(scheme) == 1 and scheme.isalpha())


def mlflow_uri_problem(uri: str) -> str | None:
    """None when MLflow would take ``uri`` as a tracking URI (a scheme of :data:`MLFLOW_SCHEMES`, a
    database scheme with ``+driver``, a plug-in's scheme, or a plain path), else the one line saying
    why not, with the valid schemes. Imports nothing of MLflow."""
    from urllib.parse import urlparse

    scheme = urlparse(uri).scheme.lower()
    if (_file_store(uri) or scheme in MLFLOW_SCHEMES
            or (scheme.partition("+")[0] in _DATABASES and scheme.partition("+")[2]) or scheme in _plugin_schemes()):
        return None
    return (f"--log mlflow: MLFLOW_TRACKING_URI={uri} has a scheme MLflow does not take ({scheme!r}); valid: "
            "http://, https://, file://, sqlite:///, postgresql://, mysql://, mssql:// (a database optionally "
            "+driver, e.g. postgresql+psycopg2://), databricks, or a plain path; unset it to log to "
            "<results>/<sweep>/_mlflow.db")


def check_reachable(names: list[str], timeout: float = REACH_TIMEOUT) -> None:
    """Raise ConfigError (one line) before Ray starts when a ``--log`` tracker cannot work:

    - mlflow: ``$MLFLOW_TRACKING_URI`` has a scheme MLflow does not take (:func:`mlflow_uri_problem`),
      or is http(s) and no server answers ``<uri>/health`` within ``timeout`` s (any status below 500
      counts as an answer; other URIs -- files, databases -- are left to MLflow);
    - wandb in an online mode (:func:`wandb_mode` not offline, dryrun or disabled): no API key
      (:func:`wandb_logged_in`), or no answer from ``$WANDB_BASE_URL`` (default https://api.wandb.ai)."""
    from urllib.parse import urlparse

    if "mlflow" in names:
        uri = os.environ.get("MLFLOW_TRACKING_URI") or ""
        problem = mlflow_uri_problem(uri) if uri else None
        if problem:
            raise ConfigError(problem)
        if urlparse(uri).scheme.lower() in ("http", "https"):
            problem = http_problem(uri.rstrip("/") + "/health", timeout)
            if problem:
                raise ConfigError(f"--log mlflow: no MLflow server answers at MLFLOW_TRACKING_URI={uri} ({problem}, "
                                  f"{timeout:g} s timeout); start it, or unset MLFLOW_TRACKING_URI to log to "
                                  "<results>/<sweep>/_mlflow.db")
    if "wandb" in names:
        mode = wandb_mode()
        if mode not in OFFLINE_WANDB_MODES:
            if not wandb_logged_in():
                raise ConfigError(f"--log wandb: WANDB_MODE={mode} needs a W&B API key, and none is set "
                                  "($WANDB_API_KEY or `wandb login`); log in, or set WANDB_MODE=offline to keep "
                                  "offline runs under the results folder")
            base = os.environ.get("WANDB_BASE_URL") or "https://api.wandb.ai"
            problem = http_problem(base, timeout)
            if problem:
                raise ConfigError(f"--log wandb: the W&B server {base} does not answer ({problem}, {timeout:g} s "
                                  "timeout); check the network, or set WANDB_MODE=offline to keep offline runs "
                                  "under the results folder")


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


def dropped_line(name: str, hook: str, exc: BaseException) -> str:
    """The one warning line for a tracker dropped because its ``hook`` raised ``exc``."""
    text = str(exc).strip().splitlines()
    detail = f"{type(exc).__name__}: {text[0][:200]}" if text else type(exc).__name__
    return (f"warning: --log {name}: {hook} failed ({detail}); no more logging to {name} in this run, "
            "the sweep goes on (Parquet keeps every row)")


class TrackerForwarder:
    """One Ray logger callback, driven by the Parquet callback (:class:`launch.callbacks.ParquetCallback`
    calls its listeners): set-up, every row the writer takes, each trial's end, the experiment's end.

    The first exception from the logger in any of these (a server gone, a full disk) is reported in
    one line on stderr (:func:`dropped_line`) and the tracker is dropped: it gets no further call in
    this run, and nothing is raised to Ray Tune, so the sweep and its Parquet rows go on unaffected."""

    def __init__(self, logger, view_path: Callable[[str], Path], sweep: str, run_id: str, metrics: dict[str, str],
                 name: str = "tracker", stream=None):
        self.logger, self.view_path = logger, view_path
        self.sweep, self.run_id, self.metrics = sweep, run_id, metrics
        self.name, self.stream = name, stream
        self.dropped = False
        self._views: dict[str, dict[str, TrialView]] = {}

    def _guarded(self, hook: str, fn, *args, **kwargs) -> None:
        if self.dropped:
            return
        try:
            fn(*args, **kwargs)
        except Exception as exc:  # noqa: BLE001 -- any tracker failure: warn once, drop the tracker
            self.dropped = True
            self._views.clear()
            stream = self.stream or sys.stderr
            stream.write(dropped_line(self.name, hook, exc) + "\n")
            stream.flush()

    def setup(self, **info) -> None:
        self._guarded("setup", self.logger.setup, **info)

    def _view(self, trial, key: str, row: dict) -> TrialView:
        views = self._views.setdefault(trial.trial_id, {})
        if key not in views:
            tags = {"trial_key": key, "sweep": self.sweep, "lowbit_run_id": self.run_id}
            views[key] = TrialView(trial, key, view_config(row, key, self.sweep), tags, self.view_path(key))
            self.logger.log_trial_start(views[key])
        return views[key]

    def _row_added(self, trial, key: str, row: dict) -> None:
        self.logger.log_trial_result(row["step"], self._view(trial, key, row), view_result(row, self.metrics))

    def row_added(self, trial, key: str, row: dict) -> None:
        self._guarded("logging a result", self._row_added, trial, key, row)

    def _trial_ended(self, trial, failed: bool) -> None:
        for view in self._views.pop(trial.trial_id, {}).values():
            self.logger.log_trial_end(view, failed=failed)

    def trial_ended(self, trial, failed: bool) -> None:
        self._guarded("ending a trial", self._trial_ended, trial, failed)

    def experiment_ended(self, trials, **info) -> None:
        self._guarded("ending the experiment", self.logger.on_experiment_end, trials=trials, **info)


def tracker_listeners(names: list[str], folder: Path, sweep: str, run_id: str, metrics: dict[str, str]) -> list:
    """One :class:`TrackerForwarder` per tracker name (checked by :func:`check_trackers`)."""
    out = []
    for name in names:
        logger, view_path = TRACKERS[name].build(folder, sweep)
        out.append(TrackerForwarder(logger, view_path, sweep, run_id, metrics, name=name))
    return out
