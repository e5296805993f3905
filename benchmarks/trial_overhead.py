"""Per-trial overhead of the launch path (Ray Tune + Parquet callback) vs a plain Python loop.

Both run the same N short probe trials (tiny MLP, no pretraining, 5-point lr scan, 5 steps) in one
process run, on the same configs. The launch path runs them through ``launch.runner.run_plan`` with
one trial at a time (``--max-concurrent 1``), so the difference is overhead, not parallelism; Ray's
start-up is timed separately and excluded.

    per-trial overhead = (T_launch - T_loop) / N

Usage: python benchmarks/trial_overhead.py [--trials 120] [--repeats 3]
Prints the medians over repeats and the ratio T_launch / T_loop, then one JSON line
(``benchmarks/gpu_table.py``). Trials run on the family's default device (CUDA when visible).
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import lowbit_sweeps.launch.cluster  # noqa: E402,F401
from lowbit_core.sweep import Resources, Sweep, grid, plan  # noqa: E402

from gpu_table import result_line  # noqa: E402  (benchmarks/, this script's folder)

TINY = {"model.hidden": (16,), "model.pretrain_steps": 0, "data.batch_size": 64, "scan.lr_step": 0.02,
        "multi.steps": 5, "multi.report_every": 5}


def tiny_plan(n: int):
    lrs = tuple(1e-3 * (1 + i) for i in range(n))
    sweep = Sweep(name="overhead", family="probe", base=TINY, space={"multi.lr": grid(*lrs)},
                  metric="loss", mode="min", seeds=(0,), resources=Resources(cpu=1))
    return plan(sweep)


def time_loop(p) -> float:
    import torch

    torch.set_num_threads(1)
    t = time.perf_counter()
    for trial in p.trials:
        p.family.run(trial.config, lambda m: None)
    return time.perf_counter() - t


def time_launch(p, results: Path) -> float:
    from lowbit_sweeps.launch.runner import run_plan

    t = time.perf_counter()
    out = run_plan(p, results, address=None, resume=False, max_concurrent=1)
    elapsed = time.perf_counter() - t
    if not out.ok:
        raise SystemExit(f"launch path failed: {out.failures[:3]}")
    return elapsed


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--trials", type=int, default=120)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    import ray

    from lowbit_sweeps.launch.cluster import start_ray

    t0 = time.perf_counter()
    start_ray(None)
    startup = time.perf_counter() - t0
    p = tiny_plan(args.trials)
    loops, launches = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.repeats):
            loops.append(time_loop(p))
            launches.append(time_launch(p, Path(tmp) / f"r{r}"))
    ray.shutdown()
    n = args.trials
    loop, launch = statistics.median(loops), statistics.median(launches)
    print(f"trials per run: {n}, repeats: {args.repeats}, Ray start-up (excluded): {startup:.1f} s")
    print(f"plain loop:  median {loop:.2f} s  = {1e3 * loop / n:.1f} ms/trial")
    print(f"launch path: median {launch:.2f} s  = {1e3 * launch / n:.1f} ms/trial")
    print(f"overhead per trial: {1e3 * (launch - loop) / n:.1f} ms (target <= 50 ms); ratio launch/loop: "
          f"{launch / loop:.1f}x")
    from lowbit_core.device import pick_device

    print(result_line("trial_overhead", pick_device(), [{
        "setting": f"{n} tiny probe trials, one at a time", "figure": f"launch path {1e3 * launch / n:.1f} ms/trial",
        "baseline": f"plain loop {1e3 * loop / n:.1f} ms/trial",
        "ratio": f"{1e3 * (launch - loop) / n:.1f} ms overhead/trial",
        "note": f"median of {args.repeats}; target <= 50 ms; Ray start-up {startup:.1f} s excluded"}]))


if __name__ == "__main__":
    main()
