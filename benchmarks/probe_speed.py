"""Speed of the structured probes against the direct computation, in one run on the same data.

1. Single-step lr scan, 10^4 points (1e-5..1e-1 by 1e-5), batch 8192, MLP 784-256-256-10 (MNIST
   inputs from ../shared/data/mnist when present, else Gaussian inputs of the same shape), FP and
   binary: the direct loop (one full forward pass per lr, ``lr_scan.scan``) is timed on an evenly
   spaced subsample of the points and extrapolated linearly to 10^4 (it would take ~20 min per
   model); the structured scan (``scan_fast.scan_losses``, cache-blocked) and the previous one
   (``structure.scan_losses``, "old") run all 10^4 points. Losses are compared with the direct ones
   on the subsample and with the old scan's on every point (max relative difference, same argmin).
   Then the floor: the scan's arithmetic (layers after the first for every evaluated point, the
   block matmuls / rank updates), the fp32 and bf16 matmul rates measured at the scan's shapes
   (second layer ``(B, H1) @ (H1, H2)``, third ``(C, H2) @ (H2, B)``), the memory bandwidth of a
   large copy, and each scan's memory traffic beyond the caches (a model, stated in the output).
2. DG objectives: the exact loss change of one move (+epsilon for FP, the sign flip for binary) for
   every first-layer coordinate (200,704), batch 1024: ``structure.coordinate_losses`` on all of them
   vs one full forward pass per coordinate, timed on a random subsample of coordinates and
   extrapolated (stated in the output).
Each structured run and its direct reference are timed alternately, so both see the same machine load.

Usage: python benchmarks/probe_speed.py [--repeats 3] [--scan-sample 100] [--dg-sample 300]
                                        [--device cpu|cuda] [--batch 8192] [--dg-batch 1024] [--lr-step 1e-5]
                                        [--hidden 256] [--no-old] [--kind fp|binary]
Prints medians over repeats and the ratios (targets: scan >= 3x over direct, binary scan >= 5x over
the old one (issue 28), DG objectives >= 20x), then one JSON
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
from lowbit_core.probes import lr_scan, scan_fast  # noqa: E402
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


def timed_group(fns, repeats: int) -> tuple[list[float], list]:
    """Median seconds and last result of each function, run alternately so that all see the same
    machine load."""
    times: list[list[float]] = [[] for _ in fns]
    outs = [None] * len(fns)
    for _ in range(repeats):
        for k, fn in enumerate(fns):
            t = time.perf_counter()
            outs[k] = fn()
            if torch.cuda.is_available():
                torch.cuda.synchronize()
            times[k].append(time.perf_counter() - t)
    return [statistics.median(t) for t in times], outs


def timed_pair(fast, direct, repeats: int) -> tuple[float, object, float, object]:
    """Median seconds and last result of ``fast`` and of ``direct``, run alternately."""
    (t_fast, t_direct), (out_fast, out_direct) = timed_group([fast, direct], repeats)
    return t_fast, out_fast, t_direct, out_direct


def _sync(device) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def matmul_rate(m: int, k: int, n: int, dtype, device, seconds: float = 0.3) -> float:
    """GFLOP/s of ``(m, k) @ (k, n)`` in ``dtype`` (best of a few timed batches)."""
    a = torch.randn(m, k, device=device).to(dtype)
    b = torch.randn(k, n, device=device).to(dtype)
    a @ b
    _sync(device)
    reps, best = 1, float("inf")
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        t = time.perf_counter()
        for _ in range(reps):
            a @ b
        _sync(device)
        dt = (time.perf_counter() - t) / reps
        best = min(best, dt)
        reps = min(reps * 2, 64)
    return 2 * m * k * n / best / 1e9


def copy_bandwidth(device, mib: int = 256) -> float:
    """GB/s of a large float32 copy (bytes read + written)."""
    a = torch.empty(mib * 2**18, device=device).uniform_()
    b = torch.empty_like(a)
    b.copy_(a)
    _sync(device)
    best = float("inf")
    for _ in range(3):
        t = time.perf_counter()
        b.copy_(a)
        _sync(device)
        best = min(best, time.perf_counter() - t)
    return 2 * a.numel() * 4 / best / 1e9


def scan_floor(kind: str, view, ev, n_points: int, batch: int, hidden: int, n_cls: int, device) -> tuple[str, float]:
    """The scan's arithmetic, its memory traffic (a model) and the times they take at the rates
    measured here; returns the text and the floor in seconds."""
    h1 = h2 = hidden
    r2 = {dt: matmul_rate(batch, h1, h2, dt, device) for dt in (torch.float32, torch.bfloat16)}
    r3 = {dt: matmul_rate(n_cls, h2, batch, dt, device) for dt in (torch.float32, torch.bfloat16)}
    bw = copy_bandwidth(device)
    mat = batch * h2 * 4  # bytes of one (B, H2) float32 matrix
    if kind == "binary":
        flips = np.diff(ev.bounds)
        evals = int((flips > 0).sum())
        pairs = sum(len(torch.unique(ev.rows[ev.bounds[k]:ev.bounds[k + 1]])) for k in np.flatnonzero(flips))
        blocks = -(-evals // scan_fast.BINARY_POINTS)
        refresh = blocks // scan_fast.REFRESH_BLOCKS
        flop3 = evals * batch * h2 * n_cls * 2
        flop2 = pairs * batch * h2 * 2 + refresh * batch * h1 * h2 * 2
        what2 = f"{pairs} (point, unit) rank-1 updates + {refresh} refreshes"
        # old: per evaluated point z2 += (r+w), relu (r+w), layer 3 (r), per unit its (r+w) update
        old_traffic = evals * 5 * mat + pairs * 2 * mat
        # new: per block each chunk's z2 read and written once; the (T, H2, rows) block stays in cache
        new_traffic = blocks * 2 * mat + refresh * 2 * mat
    else:
        evals = n_points
        blocks = -(-n_points // 64)
        flop3 = evals * batch * h2 * n_cls * 2
        flop2 = blocks * 2 * batch * h1 * h2 * 2
        what2 = f"{blocks} blocks x 2 matmuls (P, Q)"
        old_traffic = evals * 5 * mat + blocks * 4 * mat
        new_traffic = old_traffic  # the FP scan is not cache-blocked yet
    direct = n_points * batch * (h1 * h2 + h2 * n_cls) * 2
    t_floor = flop3 / 1e9 / r3[torch.float32] + flop2 / 1e9 / r2[torch.float32]
    text = (f"  floor: {evals} evaluated points; layer 3 {flop3 / 1e12:.3f} TFLOP, layer 2 {flop2 / 1e12:.3f} TFLOP "
            f"({what2}); direct layers 2-3 for every point would be {direct / 1e12:.2f} TFLOP\n"
            f"  matmul rates here: (B,H1)@(H1,H2) fp32 {r2[torch.float32]:.0f} / bf16 {r2[torch.bfloat16]:.0f} GFLOP/s, "
            f"(C,H2)@(H2,B) fp32 {r3[torch.float32]:.0f} / bf16 {r3[torch.bfloat16]:.0f} GFLOP/s; copy {bw:.0f} GB/s\n"
            f"  arithmetic floor (fp32) {t_floor:.2f} s; memory traffic beyond cache: old scan {old_traffic / 1e9:.0f} GB "
            f"= {old_traffic / 1e9 / bw:.1f} s at the copy rate, new {new_traffic / 1e9:.1f} GB = {new_traffic / 1e9 / bw:.2f} s")
    return text, t_floor


def setup(kind: str, batch: int, device, hidden: int = 256):
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(0)
    x, y, src = inputs(batch, gen)
    model = MLP(784, (hidden, hidden), 10, kind=kind).to(device).requires_grad_(False)
    x, y = x.to(device), y.to(device)
    w0 = model.layers[0].weight.clone()
    return model, x, y, w0, src


def bench_scan(kind: str, repeats: int, sample: int, device, batch: int = 8192, lr_step: float = 1e-5,
               hidden: int = 256, old: bool = True) -> dict:
    model, x, y, w0, src = setup(kind, batch, device, hidden)
    loss_fn = batch_loss_fn(model, 0, w0, x, y)
    _, g = gradient_at(loss_fn, torch.zeros_like(w0))
    d = normalize(g, "max")
    lrs = lr_scan.lr_grid(lr_step, 1e-1, lr_step)
    sample = min(sample, len(lrs))
    sub = np.linspace(0, len(lrs) - 1, sample).astype(int)
    view = FirstLayerView(model, x, y)
    fns = [lambda: scan_fast.scan_losses(view, w0, d, lrs, 0.1), lambda: lr_scan.scan(loss_fn, d, lrs[sub], 0.1).losses]
    if old:
        fns.append(lambda: scan_losses(view, w0, d, lrs, 0.1))
    times, outs = timed_group(fns, repeats)
    t_fast, t_sub, fast, ref = times[0], times[1], outs[0], outs[1]
    t_naive = t_sub * len(lrs) / sample
    rel = float(np.max(np.abs(fast[sub] - ref) / np.abs(ref)))
    same = int(np.argmin(fast[sub])) == int(np.argmin(ref))
    print(f"lr scan {kind:6s}: {len(lrs)} points, batch {batch}, {src}; structured {t_fast:7.1f} s | direct "
          f"{t_naive:7.1f} s (extrapolated from {sample} points: {t_sub:.2f} s) | speed-up "
          f"{t_naive / t_fast:5.1f}x | max rel diff {rel:.1e}, same argmin on the subsample: {same}")
    note = f"target >= 3x; max rel diff {rel:.1e}, same argmin {same}"
    if old:
        t_old, prev = times[2], outs[2]
        rel_old = float(np.max(np.abs(fast - prev) / np.abs(prev)))
        same_old = int(np.argmin(fast)) == int(np.argmin(prev))
        target = ", target >= 5x" if kind == "binary" else ""
        print(f"  old structured scan (structure.scan_losses) {t_old:7.1f} s | new/old speed-up {t_old / t_fast:5.1f}x{target} | "
              f"all {len(lrs)} points: max rel diff {rel_old:.1e}, same argmin {same_old}")
        note += f"; old structured {t_old:.2f} s ({t_old / t_fast:.1f}x){target}, max rel diff {rel_old:.1e}, same argmin {same_old}"
    text, t_floor = scan_floor(kind, view, scan_fast.scan_events(view, w0, d, lrs, 0.1), len(lrs), batch, hidden,
                              model.layers[-1].out_features, device)
    print(text)
    print(f"  structured {t_fast:.2f} s = {t_fast / t_floor:.1f}x the arithmetic floor")
    note += f"; arithmetic floor {t_floor:.2f} s"
    return {"setting": f"lr scan {kind}, {len(lrs)} points, batch {batch}, 784-{hidden}-{hidden}-10", "figure": f"structured {t_fast:.2f} s",
            "baseline": f"direct {t_naive:.1f} s (from {sample} points)", "ratio": f"{t_naive / t_fast:.1f}x",
            "note": note}


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
    ap.add_argument("--kind", choices=["fp", "binary"], default=None, help="only this MLP (default: both)")
    ap.add_argument("--no-old", action="store_true", help="do not time the old structured scan (structure.scan_losses)")
    args = ap.parse_args()
    device = torch.device(args.device) if args.device else pick_device()
    print(f"device: {device}, torch threads: {torch.get_num_threads()}, repeats: {args.repeats} (medians)")
    rows = []
    kinds = (args.kind,) if args.kind else ("fp", "binary")
    for kind in kinds:
        if args.only in (None, "scan"):
            rows.append(bench_scan(kind, args.repeats, args.scan_sample, device, args.batch, args.lr_step, args.hidden,
                                  not args.no_old))
    with torch.no_grad():
        for kind in kinds:
            if args.only in (None, "dg"):
                rows.append(bench_dg(kind, args.repeats, args.dg_sample, device, args.dg_batch, args.hidden))
    print(result_line("probe_speed", device, rows))


if __name__ == "__main__":
    main()
