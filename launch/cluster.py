"""Starting Ray on this machine or joining a cluster, with a reachability check first."""
from __future__ import annotations

import logging
import os
import socket
import sys
import tempfile
from contextlib import contextmanager
from urllib.parse import urlparse

from lowbit_core.config import ConfigError

# Set before ray is imported anywhere: no per-trial json/csv/tensorboard loggers (the Parquet
# callback is the record), and Ctrl-C reaches our handler so we flush and print how to resume.
os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")
os.environ.setdefault("TUNE_DISABLE_SIGINT_HANDLER", "1")
os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
os.environ.setdefault("RAY_DEDUP_LOGS", "0")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # no phone-home from clusters without internet


def check_reachable(address: str, timeout: float = 3.0) -> None:
    """Raise ConfigError (one line) unless ``host:port`` (or ``ray://host:port``) accepts TCP."""
    if address == "auto":
        return
    parsed = urlparse(address if "://" in address else f"tcp://{address}")
    host, port = parsed.hostname, parsed.port
    if not host or not port:
        raise ConfigError(f"--address {address!r} is not host:port (e.g. 10.0.0.5:6379) or ray://host:port")
    try:
        with socket.create_connection((host, port), timeout=timeout):
            pass
    except OSError as exc:
        raise ConfigError(
            f"cannot reach a Ray cluster at {address} ({exc.strerror or exc}); start one with "
            "`ray start --head`, or omit --address to start Ray on this machine"
        ) from None


@contextmanager
def _stderr_captured():
    """Send file descriptor 2 (where Ray's C++ core logs) to a temp file; yields the file."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as tmp:
        os.dup2(tmp.fileno(), 2)
        try:
            yield tmp
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)


def join_error(address: str, exc: BaseException, core_log: str) -> ConfigError:
    """One line saying why joining ``address`` failed (token auth is the usual reason)."""
    if "InvalidAuthToken" in core_log or "Unauthenticated" in core_log or "uthentication" in str(exc):
        have = ("RAY_AUTH_MODE=token and a token are set but the cluster rejected it"
                if os.environ.get("RAY_AUTH_MODE", "").lower() == "token" else "this driver sent no token")
        return ConfigError(
            f"the Ray cluster at {address} requires its auth token ({have}); set RAY_AUTH_MODE=token and "
            "RAY_AUTH_TOKEN (or RAY_AUTH_TOKEN_PATH) to the token the head was started with"
        )
    return ConfigError(f"could not join the Ray cluster at {address}: {type(exc).__name__}: {exc}")


def start_ray(address: str | None, runtime_env: dict | None = None):
    """Join ``address`` or start a private Ray on this machine (no dashboard, no Ray Client server).

    A cluster started with ``ray start --head`` uses token authentication (Ray 2.60's default): the
    driver needs ``RAY_AUTH_MODE=token`` and the token (``RAY_AUTH_TOKEN`` or ``RAY_AUTH_TOKEN_PATH``)
    in its environment; launch/slurm/ray_sweep.sbatch sets them per job. Ray's C++ retry messages
    while joining are held back and turned into one error line if the join fails.
    """
    import ray

    if ray.is_initialized():
        return None
    common = dict(log_to_driver=False, logging_level=logging.ERROR, configure_logging=True)
    if runtime_env:  # the sweep's plug-in modules reach every worker, on any node (no shared disk needed)
        common["runtime_env"] = runtime_env
    if address:
        check_reachable(address)
        inject = os.environ.get("LOWBIT_FAULT_INJECT")
        if inject:  # TEST-ONLY hook (lowbit_core/faults.py): a joined cluster's workers get the nodes' environment
            common["runtime_env"] = {**(runtime_env or {}), "env_vars": {"LOWBIT_FAULT_INJECT": inject}}
        with _stderr_captured() as core_log:
            try:
                ctx = ray.init(address=address, **common)
            except Exception as exc:  # noqa: BLE001 -- ConnectionError, AuthenticationError, ...
                core_log.seek(0)
                raise join_error(address, exc, core_log.read().decode(errors="replace")) from None
    else:
        os.environ.pop("RAY_ADDRESS", None)
        ctx = ray.init(include_dashboard=False, _node_ip_address="127.0.0.1", **common)
    # Tune logs each trial error with its traceback; the CLI prints one line per failure instead
    # and keeps the full traceback in the trial's error file.
    logging.getLogger("ray.tune").setLevel(logging.CRITICAL)
    return ctx


def interrupt_on_sigterm() -> None:
    """SIGTERM (scancel, a SLURM time limit, kill) stops the sweep like Ctrl-C: the CLI flushes what
    was reported and exits 130. Installed after ``ray.init``, whose C++ core replaces the handler."""
    import signal

    def handler(signum, frame):
        signal.signal(signal.SIGTERM, signal.SIG_DFL)  # a second SIGTERM ends the process at once
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, handler)


def cluster_resources() -> dict[str, float]:
    import ray

    return ray.cluster_resources()
