"""16 noise starts as one batched trial vs 16 separate trials, both through the launch path.

Same sweep (the default toy MLP 64-128-128-10, batch 1024, 100 SGD steps, noise amplitudes
a = 0, 0.1/15, ..., 0.1, ``--seeds`` seeds), run twice through ``launch.runner.run_plan`` in one
process: once as 16 trials per seed, once with ``fold=("multi.noise",)`` (one trial per seed running
the 16 searches as one batched computation, :mod:`lowbit_core.probes.batched`). Both write the same
grid points' rows. With as many seeds as trials run at once (default 2 and 2), both variants keep
every core busy, so the ratio measures the work saved, not idle cores. Ray's start-up is excluded;
each variant runs ``--repeats`` times into fresh folders, alternately (medians printed).

``--device cuda`` gives each trial a 1/max-concurrent share of the GPU (Ray then makes the GPU visible
to it); the default (cpu) requests no GPU, as before. The device the trials actually ran on is read
back from the rows' ``device`` column and printed.

``--quick`` (a smoke run of the benchmark itself, figures meaningless): tiny trials (MLP 64-16-10,
batch 64, no pretraining, 10 steps).

Usage: python benchmarks/fold_speed.py [--repeats 3] [--max-concurrent 2] [--seeds 2] [--device cpu|cuda]
                                       [--quick]
Ends with one JSON line (``benchmarks/gpu_table.py``).
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import lowbit_sweeps.launch.cluster  # noqa: E402,F401
from lowbit_core.sweep import Resources, Sweep, grid, plan  # noqa: E402

from gpu_table import result_line  # noqa: E402  (benchmarks/, this script's folder)

NOISES = tuple(round(0.1 * i / 15, 6) for i in range(16))
QUICK = {"multi.steps": 10, "multi.report_every": 5, "model.pretrain_steps": 0, "model.hidden": (16,),
         "data.batch_size": 64, "scan.lr_step": 0.02}


def make_sweep(seeds: int, gpu: float = 0.0, quick: bool = False) -> Sweep:
    base = {"multi.steps": 100, "multi.report_every": 10, "model.pretrain_steps": 200}
    return Sweep(name="fold_speed", family="probe", metric="loss", base={**base, **(QUICK if quick else {})},
                 space={"multi.noise": grid(*NOISES)}, seeds=tuple(range(seeds)), resources=Resources(cpu=1, gpu=gpu))


def trial_devices(root: Path) -> str:
    """The distinct ``device`` values of the rows written under ``root`` (e.g. "cuda")."""
    from lowbit_core.results import read_results

    names = set()
    for folder in root.glob("*/fold_speed"):
        names |= {str(d) for d in read_results(folder)["device"].dropna().unique()}
    return ",".join(sorted(names)) or "?"


def run(sweep: Sweep, root: Path, max_concurrent: int) -> float:
    from lowbit_sweeps.launch.runner import run_plan

    t = time.perf_counter()
    out = run_plan(plan(sweep), root, address=None, resume=False, max_concurrent=max_concurrent)
    if not out.ok:
        raise SystemExit(f"run failed: {out.failures[:3]}")
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--max-concurrent", type=int, default=2)
    ap.add_argument("--seeds", type=int, default=2)
    ap.add_argument("--device", choices=["cpu", "cuda"], default="cpu",
                    help="cuda: each trial requests 1/max-concurrent of a GPU (default cpu: no GPU requested)")
    ap.add_argument("--quick", action="store_true", help="tiny trials: a smoke run, figures meaningless")
    args = ap.parse_args()
    gpu = 1.0 / args.max_concurrent if args.device == "cuda" else 0.0
    import ray

    from lowbit_sweeps.launch.cluster import start_ray

    start_ray(None)
    sep, fold = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.repeats):
            sweep = make_sweep(args.seeds, gpu, args.quick)
            sep.append(run(sweep, Path(tmp) / f"sep{r}", args.max_concurrent))
            fold.append(run(replace(sweep, fold=("multi.noise",)), Path(tmp) / f"fold{r}", args.max_concurrent))
        devices = trial_devices(Path(tmp))
    ray.shutdown()
    s, f = statistics.median(sep), statistics.median(fold)
    n = args.seeds
    print(f"16 noise starts x {n} seeds, {args.repeats} repeats, up to {args.max_concurrent} trials at once")
    print(f"{16 * n} separate trials: median {s:.2f} s")
    print(f"{n} folded trials ({16} points each): median {f:.2f} s")
    print(f"speed-up of folding: {s / f:.1f}x (trials ran on: {devices})")
    print(result_line("fold_speed", devices, [{
        "setting": f"16 noise starts x {n} seeds, up to {args.max_concurrent} trials at once",
        "figure": f"{n} folded trials {f:.2f} s", "baseline": f"{16 * n} separate trials {s:.2f} s",
        "ratio": f"{s / f:.1f}x", "note": f"median of {args.repeats}; Ray start-up excluded" + ("; --quick (tiny trials)" if args.quick else "")}]))


if __name__ == "__main__":
    main()
