"""Ray Tune trainables: thin adapters from a trial's config dict to a family's Ray-free run function.

A trial's config is ``{"base": {dotted key: value}, "study": str, <dotted key>: sampled value, ...}``:
``base`` is the planned (grid) config, the other dotted keys are what a searcher sampled. The adapter
rebuilds the typed config exactly as the driver does (:func:`lowbit_core.sweep.trial_config`), picks
the device, and forwards each ``report(metrics)`` to ``ray.tune.report`` (``ray.train.report`` errors
inside Tune on Ray 2.60) with the trial key and provenance attached.
"""
from __future__ import annotations

import platform
import socket
from importlib import metadata

import ray
import torch
from ray import tune

from lowbit_core.device import pick_device
from lowbit_core.families import get_family
from lowbit_core.sweep import resolve_trial


def _version(pkg: str) -> str:
    try:
        return metadata.version(pkg)
    except metadata.PackageNotFoundError:
        return "unknown"


def provenance() -> dict[str, str]:
    """What the worker ran on: attached to every report, stored as provenance columns."""
    return {
        "_device": str(pick_device()), "_host": socket.gethostname(),
        "_ver_python": platform.python_version(), "_ver_torch": torch.__version__,
        "_ver_ray": ray.__version__, "_ver_lowbit_sweeps": _version("lowbit-sweeps"),
    }


def run_trial(family_name: str, config: dict) -> None:
    family = get_family(family_name)
    cfg, key = resolve_trial(family, config)
    cpus = ray.get_runtime_context().get_assigned_resources().get("CPU", 1)
    torch.set_num_threads(max(1, int(cpus)))
    extra = {"_key": key, **provenance()}
    declared = set(family.metrics) | {"step"}

    def report(metrics: dict) -> None:
        unknown = set(metrics) - declared
        if unknown:
            raise KeyError(f"family {family.name} reported undeclared metrics {sorted(unknown)}")
        tune.report({**metrics, **extra})

    family.run(cfg, report, pick_device())


def probe_trainable(config: dict) -> None:
    """Ray Tune function trainable of the ``probe`` family."""
    run_trial("probe", config)


TRAINABLES = {"probe": probe_trainable}
