"""Starting Ray on this machine or joining a cluster, with a reachability check first."""
from __future__ import annotations

import logging
import os
import socket
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


def start_ray(address: str | None):
    """Join ``address`` or start a private Ray on this machine (no dashboard, bound to localhost)."""
    import ray

    if ray.is_initialized():
        return None
    common = dict(log_to_driver=False, logging_level=logging.ERROR, configure_logging=True)
    if address:
        check_reachable(address)
        ctx = ray.init(address=address, **common)
    else:
        os.environ.pop("RAY_ADDRESS", None)
        ctx = ray.init(include_dashboard=False, _node_ip_address="127.0.0.1", **common)
    # Tune logs each trial error with its traceback; the CLI prints one line per failure instead
    # and keeps the full traceback in the trial's error file.
    logging.getLogger("ray.tune").setLevel(logging.CRITICAL)
    return ctx


def cluster_resources() -> dict[str, float]:
    import ray

    return ray.cluster_resources()
