"""Ray Tune trainables: thin adapters from a trial's config dict to a family's Ray-free run function.

A trial's config is ``{"base": {dotted key: value}, "study": str, <dotted key>: sampled value, ...}``:
``base`` is the planned (grid) config (JSON text for grid trials, :func:`lowbit_core.sweep.ray_base`),
the other dotted keys are what a searcher sampled. The adapter rebuilds the typed config exactly as
the driver does (:func:`lowbit_core.sweep.trial_config`), picks the device, and forwards each ``report(metrics)`` to ``ray.tune.report`` (``ray.train.report`` errors
inside Tune on Ray 2.60) with the trial key and provenance attached.
"""
from __future__ import annotations

import os
import platform
import socket
from importlib import metadata

import ray
import torch
from ray import tune

from lowbit_core.config import flatten, with_overrides
from lowbit_core.device import pick_device
from lowbit_core.families import Family, get_family
from lowbit_core.metric_values import MetricTypeError, coerce_metrics, refused
from lowbit_core.sweep import resolve_points


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
        "_node_id": ray.get_runtime_context().get_node_id(),
    }


def absolute_paths(family: Family, cfg, cwd: str | None):
    """``cfg`` with each relative path of ``family.path_keys`` joined to ``cwd`` (the driver's working
    directory; ``~`` expanded); unchanged when ``cwd`` is None."""
    if cwd is None:
        return cfg
    flat = flatten(cfg)
    fixed = {}
    for k in family.path_keys:
        v = flat.get(k)
        if isinstance(v, str) and v:
            full = os.path.join(cwd, os.path.expanduser(v))
            if full != v:
                fixed[k] = full
    return with_overrides(cfg, fixed) if fixed else cfg


def check_declared(family: Family, metrics: dict) -> None:
    """KeyError unless every key of a reported ``metrics`` dict is ``step`` or a metric ``family``
    declares (the Parquet schema is fixed from the declaration before the first trial starts)."""
    unknown = set(metrics) - set(family.metrics) - {"step"}
    if unknown:
        raise KeyError(f"family {family.name} reported undeclared metrics {sorted(unknown)}")


_WRAPPERS = {os.path.abspath(__file__), os.path.abspath(os.path.join(os.path.dirname(__file__), "cost", "family.py"))}


def _reported_at() -> str:
    """'bad_plugin.py:22 in run_bad': the nearest caller outside the report wrappers (this module,
    the cost columns' wrapper), i.e. the family's line that called ``report``."""
    import sys

    frame = sys._getframe(1)
    try:
        while frame is not None and os.path.abspath(frame.f_code.co_filename) in _WRAPPERS:
            frame = frame.f_back
        if frame is None:
            return ""
        return f"{os.path.basename(frame.f_code.co_filename)}:{frame.f_lineno} in {frame.f_code.co_name}"
    finally:
        del frame


def checked_metrics(family: Family, metrics: dict) -> dict:
    """``metrics`` as reported, checked (:func:`check_declared`) and coerced to the declared types
    (:func:`lowbit_core.metric_values.coerce_metrics`: numpy scalars, 0-d arrays and tensors become
    Python numbers). A value that is not of its declared type raises
    :class:`~lowbit_core.metric_values.MetricTypeError` (one line, naming the metric, its type, the
    value's type and the family's line that reported it), which fails this trial only."""
    check_declared(family, metrics)
    try:
        return coerce_metrics(family.metrics, metrics)
    except MetricTypeError as exc:
        where = _reported_at()
        value = metrics[exc.name]
        context = f"family {family.name}" + (f", reported at {where}" if where else "")
        raise refused(exc.name, exc.declared, value, context) from None


def _fault_injector(key: str, config: dict):
    """TEST-ONLY: the fault injector of :mod:`lowbit_core.faults` for this trial when
    ``$LOWBIT_FAULT_INJECT`` is set (tests/test_faults.py), else None (the module is not imported)."""
    spec = os.environ.get("LOWBIT_FAULT_INJECT")
    if spec:
        from lowbit_core.faults import fault_injection_hook

        return fault_injection_hook(key, config, spec)
    return None


def run_trial(family_ref: str, config: dict, resume: dict[str, list[str]] | None = None,
              cwd: str | None = None) -> None:
    """Run one trial. ``resume``: trial key -> checkpoint folders an earlier (killed) run of the sweep
    left, best first (the driver's ``--resume`` finds them; see :func:`start_state`). ``cwd``: the
    driver's working directory, against which relative data paths are resolved (:func:`absolute_paths`;
    the trial key is computed from the paths as written)."""
    family = get_family(family_ref)
    points = resolve_points(family, config)  # [(config, key)]: one, or a folded trial's points
    cfg, key = points[0]
    cfg = absolute_paths(family, cfg, cwd)
    cpus = ray.get_runtime_context().get_assigned_resources().get("CPU", 1)
    torch.set_num_threads(max(1, int(cpus)))
    extra = {"_key": key, **provenance()}
    inject = _fault_injector(key, config)
    reports = 0

    def report(metrics: dict, state: dict | None = None) -> None:
        nonlocal reports
        metrics = checked_metrics(family, metrics)
        if inject is not None:
            metrics = inject(metrics)
        reports += 1
        if state is None:
            tune.report({**metrics, **extra})
        else:  # a family that checkpoints (train): the state becomes a tune.Checkpoint
            report_with_checkpoint(metrics, state, key, extra)

    if len(points) > 1:  # folded grid points: one batched computation, rows tagged with the point
        def report_point(metrics: dict, point: int) -> None:
            metrics = checked_metrics(family, metrics)
            tune.report({**metrics, **extra, "_key": points[point][1], "_point": point})

        family.run_batch([absolute_paths(family, c, cwd) for c, _ in points], report_point, pick_device())
        return
    start, last = start_state(key, (resume or {}).get(key, ())) if family.checkpoints else (None, {})
    family.run(cfg, report, pick_device(), **({"start_state": start} if start is not None else {}))
    if start is not None and reports == 0:
        # Restarted from its final state (the driver died after the last checkpoint, before the trial
        # was recorded finished): no epoch was left to run. Its last result is reported again, so Tune
        # and a searcher get the trial's value; the writer skips the (trial, step) row already on disk.
        if not last:
            raise RuntimeError(f"trial {key}: restarted from its final checkpoint, which records no metrics "
                               "(written by an older lowbit-sweeps); delete its checkpoints to rerun it")
        report_with_checkpoint(last, start, key, extra)


def report_with_checkpoint(metrics: dict, state: dict, key: str, extra: dict | None = None) -> None:
    """``tune.report({**metrics, **extra}, checkpoint=...)`` of a folder holding ``state`` (torch.save)
    and a marker naming the trial key, step, epoch, size, sha256 and ``metrics`` (Ray copies the folder
    to the trial's storage before returning, so the temporary folder can go)."""
    import tempfile

    from lowbit_core.training.checkpoint import save_state, write_marker

    with tempfile.TemporaryDirectory(prefix="lowbit-ckpt-") as tmp:
        save_state(state, tmp)
        write_marker(tmp, key, int(metrics["step"]), int(state["epoch"]), metrics)
        tune.report({**metrics, **(extra or {})}, checkpoint=tune.Checkpoint.from_directory(tmp))


def start_state(key: str, earlier: list[str] | tuple = ()) -> tuple[dict | None, dict]:
    """``(state, metrics)``: the state a trial continues from and the metrics reported with it, or
    ``(None, {})`` to start fresh:

    1. its own latest checkpoint in this run (``tune.get_checkpoint()``: Tune retried the trial);
    2. else the first of ``earlier`` (checkpoint folders of the same trial key left by an earlier run
       that was killed, best first) that is complete -- marker, size, sha256, ``torch.load(
       weights_only=True)`` (:func:`lowbit_core.training.checkpoint.load_first_valid`);
    3. else None. A corrupt or unreadable checkpoint is skipped with a warning (worker log), never fatal.
    """
    import sys

    from lowbit_core.training.checkpoint import load_first_valid, load_state, reported_metrics

    checkpoint = tune.get_checkpoint()
    if checkpoint is not None:
        try:
            with checkpoint.as_directory() as folder:
                return load_state(folder), reported_metrics(folder)
        except Exception as exc:  # noqa: BLE001 -- fall back to an earlier checkpoint or a fresh start
            print(f"lowbit: trial {key}: skipped its latest checkpoint: {type(exc).__name__}: {exc}", file=sys.stderr)
    state, used, skipped = load_first_valid(earlier, key)
    for line in skipped:
        print(f"lowbit: trial {key}: {line}", file=sys.stderr)
    return (state, reported_metrics(used)) if state is not None else (None, {})


def trainable_for(family_ref: str):
    """The Ray Tune function trainable of a family (derived from its declaration; none is written by
    hand): ``trainable(config, resume=None, cwd=None, plugins=(), fingerprint="")``, named
    ``<family>_trainable`` so Ray's trial names show the family. ``family_ref``: the sweep's ``family``
    as written (a registered name or an import path). ``plugins``/``fingerprint``: the plug-in modules
    the driver used and their fingerprint; the worker imports the same modules from what Ray shipped
    (:func:`lowbit_core.plugins.activate`) before it resolves the trial's config."""
    def trainable(config: dict, resume: dict | None = None, cwd: str | None = None, plugins: tuple = (),
                  fingerprint: str = "") -> None:
        from lowbit_core import plugins as plugin_modules

        plugin_modules.activate(tuple(plugins), fingerprint)
        run_trial(family_ref, config, resume, cwd)

    label = family_ref.rsplit(":", 1)[-1].lower() if ":" in family_ref else family_ref
    trainable.__name__ = trainable.__qualname__ = f"{''.join(c if c.isalnum() else '_' for c in label)}_trainable"
    return trainable
