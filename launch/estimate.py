"""What a sweep costs before it runs: ``lowbit-sweep SWEEP --profile P --estimate [--devices N]``.

Rules (nothing is written to the results folder, Ray is not started):

- **Kinds.** The plan's trials (Optuna: every sample of every study) are grouped by the config keys
  that set a trial's amount of work (:data:`WORK_WORDS`: model, batch, method, epochs, steps, ...;
  the seed and the values searched over -- lr, estimator, noise -- are not among them). One trial
  of each kind is run in this process on this machine's device (:func:`lowbit_core.device.pick_device`).
- **Timing.** The run function's ``report`` callback stamps the time of each report. A family that
  reports once per epoch (train, sr: ``train.epochs`` reports; gradstats: a start row and then
  ``train.epochs`` rows) is stopped after :data:`EPOCH_REPORTS` reports by raising a private
  exception from the callback: with t1 the time to the first report and d the mean time between
  later ones, a trial of R reports takes ``t1 + (R - 1) d``. Other families (probe) run each kind to
  its end, or until :data:`PROBE_CAP_S` seconds; a cut run is extrapolated by its reported ``step``
  against the planned last step (:data:`PLANNED_STEP_KEYS`), ``t(last) * S / step``.
- **Totals.** trial-hours = the sum over trials of their kind's estimate; device-hours = trial-hours
  x the per-trial share of a device (``resources.gpu`` when it asks for a GPU, else ``resources.cpu``
  cores) -- the GPU share only when this machine times on a GPU, as the runner requests a GPU only
  where there is one; wall on N devices = the greedy longest-first schedule of the trials on
  N / share slots (``--max-concurrent`` caps them). ``sbatch --time`` = wall x
  (1 + :data:`MARGIN`), rounded up to the minute. Times are this machine's device: estimating on a
  CPU for a GPU cluster overstates them; Ray's start-up (a few seconds) is not included.
"""
from __future__ import annotations

import heapq
import json
import math
import time
from dataclasses import dataclass

from lowbit_core.config import ConfigError, flatten

EPOCH_REPORTS = 2
"""Reports (epochs) run per kind for families that report once per epoch."""
PROBE_CAP_S = 60.0
"""Longest a per-step kind runs before its time is extrapolated."""
MARGIN = 0.30
"""Safety margin of the suggested ``sbatch --time``."""
WORK_WORDS = ("model", "batch", "method", "epochs", "steps", "generations", "iterations", "population",
              "n_train", "n_test", "data.name", "lr_step", "lr_min", "lr_max", "max_coords", "n_features", "scale",
              "patch", "blocks", "channels", "state.kind", "stats.", "select", "prefix_points", "cdg_", "fp_moves",
              "fwd_equiv", "evals")
"""A config key (dotted) belongs to a trial's kind when it contains one of these words. Bit-widths and
quantized parts are not among them: quantization is simulated in floating point, at about the cost
of the FP model (a sweep over them would otherwise time each setting for 2 epochs)."""
PER_EPOCH = {"train": "train.epochs", "sr": "train.epochs", "gradstats": "train.epochs"}
"""Families that report once per epoch, with the key of the planned epochs."""
EXTRA_REPORTS = {"gradstats": 1}
"""Reports beyond one per epoch (gradstats: the start row before fine-tuning)."""
PLANNED_STEP_KEYS = {"ste": "multi.steps", "admm": "admm.iterations", "ga": "ga.generations", "es": "es.generations"}
"""Probe methods: the config key of the last reported step (others -- DG, CDG -- run to their end)."""


class _Enough(Exception):
    """Raised from the report callback once a kind has been timed."""


@dataclass(frozen=True)
class KindEstimate:
    kind: str
    trials: int
    seconds: float
    measured_s: float
    reports: int
    how: str


def work_key(flat: dict) -> str:
    """The kind of a trial: its values of the keys with a :data:`WORK_WORDS` word (no seed)."""
    return json.dumps({k: v for k, v in sorted(flat.items())
                       if k != "seed" and any(w in k for w in WORK_WORDS)}, sort_keys=True, default=str)


def trial_configs(plan) -> list[tuple[object, int]]:
    """(config, grid points it runs) of every Ray trial of ``plan`` (Optuna: each sample, at its
    study's config; the searched values do not set the amount of work)."""
    if plan.is_optuna:
        return [(st.config, 1) for st in plan.studies for _ in range(st.num_samples)]
    return [(t.config, max(1, len(t.points))) for t in plan.trials]


def _time_kind(family, cfg, device, points: int) -> tuple[float, float, int, str]:
    """(estimated seconds of one trial of ``cfg``, seconds measured, reports seen, how)."""
    stamps: list[tuple[float, dict]] = []
    epoch_key = PER_EPOCH.get(family.name)
    flat = flatten(cfg)
    planned = int(flat[epoch_key]) + EXTRA_REPORTS.get(family.name, 0) if epoch_key else 0
    t0 = time.perf_counter()

    def report(metrics, point=0, **_):
        if point:
            return
        stamps.append((time.perf_counter() - t0, metrics))
        if epoch_key and EPOCH_REPORTS <= len(stamps) < planned:
            raise _Enough
        if not epoch_key and stamps[-1][0] > PROBE_CAP_S:
            raise _Enough

    cut = False
    try:
        if points > 1 and family.run_batch is not None:
            family.run_batch([cfg] * points, report, device)
        else:
            family.run(cfg, report, device)
    except _Enough:
        cut = True
    measured = time.perf_counter() - t0
    if not stamps:
        return measured, measured, 0, "ran to its end without a report"
    if epoch_key:
        t1 = stamps[0][0]
        d = (stamps[-1][0] - t1) / (len(stamps) - 1) if len(stamps) > 1 else 0.0
        if not cut:
            return measured, measured, len(stamps), f"ran to its end ({len(stamps)} reports)"
        return t1 + (planned - 1) * d, measured, len(stamps), f"{len(stamps)} of {planned} epoch reports, extrapolated"
    if not cut:
        return measured, measured, len(stamps), f"ran to its end ({len(stamps)} reports)"
    last_t, last = stamps[-1]
    step = int(last.get("step", 0) or 0)
    key = PLANNED_STEP_KEYS.get(str(flat.get("method", "")))
    if not key or step <= 0:
        return measured, measured, len(stamps), f"cut at {PROBE_CAP_S:g} s (step {step}; a lower bound)"
    planned = int(flat[key])
    return last_t * planned / step, measured, len(stamps), f"cut at step {step} of {planned}, extrapolated"


def estimate_plan(plan, device=None) -> list[KindEstimate]:
    """Time one trial of each kind of ``plan`` (module docstring) and return the kinds' estimates."""
    import torch

    from lowbit_core.device import pick_device

    device = device or pick_device()
    groups: dict[str, list[tuple[object, int]]] = {}
    for cfg, points in trial_configs(plan):
        groups.setdefault(work_key(flatten(cfg)) + f"|{points}", []).append((cfg, points))
    torch.set_num_threads(max(1, int(plan.sweep.resources.cpu)))
    out = []
    for kind, members in groups.items():
        cfg, points = members[0]
        seconds, measured, reports, how = _time_kind(plan.family, cfg, device, points)
        out.append(KindEstimate(kind, len(members), seconds, measured, reports, how))
    return out


def makespan(durations: list[float], slots: int) -> float:
    """Wall time of ``durations`` on ``slots`` parallel slots, longest first to the freest slot."""
    if not durations:
        return 0.0
    free = [0.0] * max(1, min(slots, len(durations)))
    for d in sorted(durations, reverse=True):
        heapq.heapreplace(free, free[0] + d)
    return max(free)


def device_share(resources, on_gpu: bool) -> tuple[float, str]:
    """(a trial's share of a device, the device's name): its GPU fraction where trials get a GPU,
    else its CPU cores."""
    return (resources.gpu, "GPU") if on_gpu and resources.gpu > 0 else (resources.cpu, "CPU core")


def slots_for(resources, devices: int, max_concurrent: int | None, on_gpu: bool = False) -> int:
    """Concurrent trials on ``devices`` devices: devices / a trial's share (:func:`device_share`),
    at most ``max_concurrent``."""
    share = device_share(resources, on_gpu)[0]
    slots = max(1, int(math.floor(devices / share + 1e-9)))
    return min(slots, max_concurrent) if max_concurrent else slots


def sbatch_time(seconds: float, margin: float = MARGIN) -> str:
    """``seconds * (1 + margin)`` rounded up to the minute, as SLURM's ``[D-]HH:MM:SS``."""
    minutes = max(1, math.ceil(seconds * (1 + margin) / 60))
    d, rest = divmod(minutes, 24 * 60)
    h, m = divmod(rest, 60)
    return (f"{d}-" if d else "") + f"{h:02d}:{m:02d}:00"


def summarize(plan, kinds: list[KindEstimate], devices: int, max_concurrent: int | None, device_name: str) -> dict:
    """The totals of the module docstring as a JSON-able dict."""
    res = plan.sweep.resources
    durations = [k.seconds for k in kinds for _ in range(k.trials)]
    trial_s = sum(durations)
    on_gpu = device_name.startswith("cuda")
    share, unit = device_share(res, on_gpu)
    slots = slots_for(res, devices, max_concurrent, on_gpu)
    wall = makespan(durations, slots)
    return {"sweep": plan.sweep.name, "profile": plan.profile, "family": plan.family.name, "trials": len(durations),
            "kinds": len(kinds), "device": device_name, "trial_hours": trial_s / 3600,
            "device_unit": unit, "device_share": share,
            "device_hours": trial_s * share / 3600, "devices": devices, "slots": slots, "wall_s": wall,
            "margin": MARGIN, "sbatch_time": sbatch_time(wall), "measured_s": sum(k.measured_s for k in kinds)}


def _hours(h: float) -> str:
    return f"{h:.3f} h ({h * 60:.1f} min)" if h < 10 else f"{h:.1f} h"


def print_estimate(summary: dict, kinds: list[KindEstimate]) -> None:
    s = summary
    print(f"estimate for sweep {s['sweep']} (family {s['family']}, profile {s['profile']}): {s['trials']} trials of "
          f"{s['kinds']} kinds, timed on this machine's {s['device']} in {s['measured_s']:.1f} s")
    shown = [json.loads(k.kind.rsplit("|", 1)[0]) for k in kinds]
    varying = [key for key in shown[0] if len({json.dumps(s.get(key)) for s in shown}) > 1] if shown else []
    for k, row in zip(kinds, shown):
        what = ", ".join(f"{key}={row.get(key)}" for key in varying) or "one kind"
        points = k.kind.rsplit("|", 1)[1]
        print(f"  {k.trials:4d} x {k.seconds:9.1f} s  {what}" + (f" ({points} folded points)" if points != "1" else "")
              + f"  [{k.how}]")
    print(f"trial-hours: {_hours(s['trial_hours'])}")
    print(f"device-hours: {_hours(s['device_hours'])} ({s['device_share']:g} {s['device_unit']} per trial)")
    print(f"wall on {s['devices']} device(s): {s['wall_s'] / 60:.1f} min ({s['slots']} trials at once; "
          "without Ray's start-up)")
    print(f"sbatch --time={s['sbatch_time']}  (wall + {s['margin']:.0%} margin)")
    print("estimate-json: " + json.dumps(s, sort_keys=True))


def run_estimate(plan, devices: int | None, max_concurrent: int | None) -> int:
    """``--estimate``: time, print, write nothing; the exit status."""
    from lowbit_core.device import pick_device

    if devices is not None and devices < 1:
        raise ConfigError(f"--devices must be >= 1, got {devices}")
    devices = devices or max_concurrent or 1
    device = pick_device()
    kinds = estimate_plan(plan, device)
    print_estimate(summarize(plan, kinds, devices, max_concurrent, str(device)), kinds)
    return 0
