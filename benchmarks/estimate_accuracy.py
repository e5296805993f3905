"""How close is ``--estimate`` to the wall time a sweep then takes on the same machine?

For each case (by default: ``sweeps/vste_window.py`` -- probe family -- and ``sweeps/cifar_sanity.py``
-- train family, on the shared 10k-image CIFAR-10 file when present, else synthetic images at the
profile's 10k images), at the default profile:

1. ``launch/sweep.py SWEEP --estimate --devices N`` in a subprocess (N = ``--devices``, default 2:
   the cores of the development machine; the trials ask for 1 CPU each, so N run at once), parsing its
   ``estimate-json`` line: the estimated wall time (without Ray's start-up);
2. ``launch/sweep.py SWEEP --results TMP --max-concurrent N`` in a subprocess, timing the whole process
   (Ray's start-up included) -- the measured wall time;

and prints one row per case: estimated and measured minutes, the error (estimate - measured) /
measured, the estimate's own cost, and the 1-minute load average at the start and end of each phase.
The machine's cores may be shared with other work: its load moves both numbers, and not necessarily
alike (the estimate times one trial at a time, the run has N at once).

Usage: ``python benchmarks/estimate_accuracy.py [--devices N] [--only NAME] [--keep DIR]`` (``--keep``:
the runs' results folders go to DIR/<sweep> instead of a temporary folder, e.g. for ``lowbit-report
--book DIR``); ends with one JSON line.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CIFAR = ROOT.parent / "shared" / "data" / "cifar10" / "cifar10-train10k-test10k.npz"


def cases() -> dict[str, list[str]]:
    data = (["--set", "data.name=npz", "--set", f"data.root={CIFAR}"] if CIFAR.is_file()
            else ["--set", "data.name=synthetic"])
    return {"vste_window": ["sweeps/vste_window.py"], "cifar_sanity": ["sweeps/cifar_sanity.py", *data]}


def _run(args: list[str]) -> tuple[float, subprocess.CompletedProcess]:
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, str(ROOT / "launch" / "sweep.py"), *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, stdin=subprocess.DEVNULL)
    return time.perf_counter() - t0, proc


def measure(name: str, args: list[str], devices: int, keep: Path | None = None) -> dict:
    load = [os.getloadavg()[0]]
    est_s, est = _run([*args, "--estimate", "--devices", str(devices)])
    load.append(os.getloadavg()[0])
    if est.returncode:
        raise SystemExit(f"estimate of {name} failed: {est.stderr.strip().splitlines()[-1:]}")
    line = next(ln for ln in est.stdout.splitlines() if ln.startswith("estimate-json: "))
    summary = json.loads(line.removeprefix("estimate-json: "))
    with tempfile.TemporaryDirectory() as tmp:
        load.append(os.getloadavg()[0])
        wall_s, run = _run([*args, "--results", str(keep or tmp), "--max-concurrent", str(devices)])
        load.append(os.getloadavg()[0])
    if run.returncode:
        raise SystemExit(f"run of {name} failed: {run.stderr.strip().splitlines()[-1:]}")
    err = (summary["wall_s"] - wall_s) / wall_s
    return {"setting": f"{name} (default profile, {summary['trials']} trials, {devices} at once)",
            "figure": summary["wall_s"], "baseline": wall_s, "ratio": summary["wall_s"] / wall_s,
            "note": f"error {err:+.0%}; estimate took {est_s:.0f} s; sbatch --time={summary['sbatch_time']}; "
                    f"load average {load[0]:.1f}->{load[1]:.1f} (estimate), {load[2]:.1f}->{load[3]:.1f} (run)",
            "error": err, "estimate_cost_s": est_s, "trials": summary["trials"]}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--devices", type=int, default=2)
    p.add_argument("--only", default=None, help="run one case: " + ", ".join(cases()))
    p.add_argument("--keep", type=Path, default=None, help="keep the runs' results under this folder")
    args = p.parse_args()
    rows = []
    for name, sweep_args in cases().items():
        if args.only and name != args.only:
            continue
        r = measure(name, sweep_args, args.devices, args.keep)
        rows.append(r)
        print(f"{r['setting']}: estimated {r['figure'] / 60:.2f} min, measured {r['baseline'] / 60:.2f} min "
              f"({r['note']})", flush=True)
    print(json.dumps({"benchmark": "estimate_accuracy", "device": "cpu", "rows": rows}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
