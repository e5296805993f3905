"""Speed of the structured probes against the direct computation, in one run on the same data.

1. Single-step lr scan, 10^4 points (1e-5..1e-1 by 1e-5), batch 8192, MLP 784-256-256-10 (MNIST
   inputs from ../shared/data/mnist when present, else Gaussian inputs of the same shape), FP and
   binary: the direct loop (one full forward pass per lr, ``lr_scan.scan``) is timed on an evenly
   spaced subsample of the points and extrapolated linearly to 10^4 (it would take ~20 min per
   model); the structured scan (``structure.scan_losses``) runs all 10^4 points. Their losses are
   compared on the subsample (max relative difference, same argmin).
2. DG objectives: the exact loss change of one move (+epsilon for FP, the sign flip for binary) for
   every first-layer coordinate (200,704), batch 1024: ``structure.coordinate_losses`` on all of them
   vs one full forward pass per coordinate, timed on a random subsample of coordinates and
   extrapolated (stated in the output).
Each structured run and its direct reference are timed alternately, so both see the same machine load.

Usage: python benchmarks/probe_speed.py [--repeats 3] [--scan-sample 100] [--dg-sample 300]
                                        [--device cpu|cuda] [--batch 8192] [--dg-batch 1024] [--lr-step 1e-5]
                                        [--hidden 256]
Prints medians over repeats and the ratios (targets: scan >= 3x, DG objectives >= 20x), then one JSON
line (``benchmarks/gpu_table.py``). ``--device`` defaults to CUDA when present; ``--batch`` /
``--dg-batch`` / ``--lr-step`` / ``--hidden`` (width of both hidden layers) change the problem size
(smaller for a smoke run, larger batches on a GPU).
"""
from __future__ import annotations

import argparse
import gzip
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lowbit_core.device import pick_device  # noqa: E402
from lowbit_core.models.mlp import MLP  # noqa: E402
from lowbit_core.probes import lr_scan  # noqa: E402
from lowbit_core.probes.gradient import batch_loss_fn, gradient_at, normalize  # noqa: E402
from lowbit_core.probes.structure import FirstLayerView, coordinate_losses, scan_losses  # noqa: E402

from gpu_table import result_line  # noqa: E402  (benchmarks/, this script's folder)

MNIST = Path(__file__).resolve().parents[2] / "shared" / "data" / "mnist" / "train-images-idx3-ubyte.gz"


def inputs(n: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, str]:
    if MNIST.exists():
        raw = np.frombuffer(gzip.open(MNIST).read(), dtype=np.uint8, offset=16).reshape(-1, 784)
        idx = torch.randperm(len(raw), generator=gen)[:n].numpy()
        x = (torch.from_numpy(raw[idx].astype(np.float32)) / 255 - 0.1307) / 0.3081
        src = "MNIST train images"
    else:
        x, src = torch.randn(n, 784, generator=gen), "Gaussian inputs (MNIST not found)"
    return x, torch.randint(0, 10, (n,), generator=gen), src


def timed_pair(fast, direct, repeats: int) -> tuple[float, object, float, object]:
    """Median seconds and last result of ``fast`` and of ``direct``, run alternately so that both see
    the same machine load."""
    times: tuple[list, list] = ([], [])
    outs = [None, None]
    for _ in range(repeats):
        for k, fn in enumerate((fast, direct)):
            t = time.perf_counter()
            outs[k] = fn()
            if torch.cuda.is_available():
                torch.cuda.synchronize()
            times[k].append(time.perf_counter() - t)
    return statistics.median(times[0]), outs[0], statistics.median(times[1]), outs[1]


def setup(kind: str, batch: int, device, hidden: int = 256):
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(0)
    x, y, src = inputs(batch, gen)
    model = MLP(784, (hidden, hidden), 10, kind=kind).to(device).requires_grad_(False)
    x, y = x.to(device), y.to(device)
    w0 = model.layers[0].weight.clone()
    return model, x, y, w0, src


def bench_scan(kind: str, repeats: int, sample: int, device, batch: int = 8192, lr_step: float = 1e-5,
               hidden: int = 256) -> dict:
    model, x, y, w0, src = setup(kind, batch, device, hidden)
    loss_fn = batch_loss_fn(model, 0, w0, x, y)
    _, g = gradient_at(loss_fn, torch.zeros_like(w0))
    d = normalize(g, "max")
    lrs = lr_scan.lr_grid(lr_step, 1e-1, lr_step)
    sample = min(sample, len(lrs))
    sub = np.linspace(0, len(lrs) - 1, sample).astype(int)
    view = FirstLayerView(model, x, y)
    t_fast, fast, t_sub, ref = timed_pair(lambda: scan_losses(view, w0, d, lrs, 0.1),
                                          lambda: lr_scan.scan(loss_fn, d, lrs[sub], 0.1).losses, repeats)
    t_naive = t_sub * len(lrs) / sample
    rel = float(np.max(np.abs(fast[sub] - ref) / np.abs(ref)))
    same = int(np.argmin(fast[sub])) == int(np.argmin(ref))
    print(f"lr scan {kind:6s}: {len(lrs)} points, batch {batch}, {src}; structured {t_fast:7.1f} s | direct "
          f"{t_naive:7.1f} s (extrapolated from {sample} points: {t_sub:.2f} s) | speed-up "
          f"{t_naive / t_fast:5.1f}x | max rel diff {rel:.1e}, same argmin on the subsample: {same}")
    return {"setting": f"lr scan {kind}, {len(lrs)} points, batch {batch}, 784-{hidden}-{hidden}-10", "figure": f"structured {t_fast:.2f} s",
            "baseline": f"direct {t_naive:.1f} s (from {sample} points)", "ratio": f"{t_naive / t_fast:.1f}x",
            "note": f"target >= 3x; max rel diff {rel:.1e}, same argmin {same}"}


def bench_dg(kind: str, repeats: int, sample: int, device, batch: int = 1024, hidden: int = 256) -> dict:
    model, x, y, w0, src = setup(kind, batch, device, hidden)
    view = FirstLayerView(model, x, y)
    # FP: move +epsilon; binary: flip every weight (as if every flip were reachable: the worst case)
    w_new = (w0 + 0.1)[None] if kind == "fp" else torch.where(w0 >= 0, -1e-3, 0.0)[None]
    n = w0.numel()
    gen = torch.Generator().manual_seed(1)
    coords = torch.randperm(n, generator=gen)[:sample]

    def direct():
        res = []
        for c in coords.tolist():
            w = w0.clone()
            w.view(-1)[c] = w_new.view(-1)[c]
            res.append(float(F.cross_entropy(model(x, override={0: w}), y)))
        return np.array(res)

    t_fast, out, t_sub, ref = timed_pair(lambda: coordinate_losses(view, w0, w_new), direct, repeats)
    t_naive = t_sub * n / sample
    rel = float(np.max(np.abs(out.view(-1)[coords].cpu().numpy() - ref) / ref))
    print(f"DG objectives {kind:6s}: {n} coordinates, batch {batch}; structured {t_fast:7.1f} s | direct "
          f"{t_naive:8.1f} s (extrapolated from {sample} coordinates: {t_sub:.2f} s) | speed-up "
          f"{t_naive / t_fast:6.1f}x | max rel diff {rel:.1e}")
    return {"setting": f"DG objectives {kind}, {n} coordinates, batch {batch}, 784-{hidden}-{hidden}-10", "figure": f"structured {t_fast:.2f} s",
            "baseline": f"direct {t_naive:.1f} s (from {sample} coordinates)", "ratio": f"{t_naive / t_fast:.1f}x",
            "note": f"target >= 20x; max rel diff {rel:.1e}"}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--scan-sample", type=int, default=100)
    ap.add_argument("--dg-sample", type=int, default=300)
    ap.add_argument("--only", choices=["scan", "dg"], default=None)
    ap.add_argument("--device", default=None, help="cpu or cuda (default: CUDA when present)")
    ap.add_argument("--batch", type=int, default=8192, help="batch of the lr scan")
    ap.add_argument("--dg-batch", type=int, default=1024, help="batch of the DG objectives")
    ap.add_argument("--lr-step", type=float, default=1e-5, help="lr grid step (grid: step..0.1; 1e-5: 10^4 points)")
    ap.add_argument("--hidden", type=int, default=256, help="width of both hidden layers of the MLP")
    args = ap.parse_args()
    device = torch.device(args.device) if args.device else pick_device()
    print(f"device: {device}, torch threads: {torch.get_num_threads()}, repeats: {args.repeats} (medians)")
    rows = []
    for kind in ("fp", "binary"):
        if args.only in (None, "scan"):
            rows.append(bench_scan(kind, args.repeats, args.scan_sample, device, args.batch, args.lr_step, args.hidden))
    with torch.no_grad():
        for kind in ("fp", "binary"):
            if args.only in (None, "dg"):
                rows.append(bench_dg(kind, args.repeats, args.dg_sample, device, args.dg_batch, args.hidden))
    print(result_line("probe_speed", device, rows))


if __name__ == "__main__":
    main()
