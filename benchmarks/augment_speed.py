"""Images/s of the batched tensor augmentation vs torchvision's per-image PIL transforms + DataLoader.

Both produce the same thing from the same uint8 images: shuffled batches of 256 normalised float
images, randomly cropped (32x32, zero padding 4) and horizontally flipped.

- batched: ``lowbit_core.data.augment.batches`` + ``augment`` on uint8 tensors (N, 3, 32, 32) held on
  ``--device`` (cpu or cuda; CUDA timings synchronise before the clock stops);
- PIL: ``RandomCrop(32, padding=4), RandomHorizontalFlip(), ToTensor(), Normalize(mean, std)`` per
  image from HWC uint8 arrays, batched by a ``torch.utils.data.DataLoader`` (batch 256, shuffle) with
  ``num_workers`` 0 and 2 (persistent workers; the first, warm-up epoch is not timed).

Images: ``../shared/data/cifar10/cifar10-train10k-test10k.npz`` (x_train, 10,000 images) when it
exists, else random uint8 images of the same shape. One epoch per repeat; prints the median
images/s over repeats per method and the ratio batched / fastest PIL setting (target: >= 10x).
The batched path is timed with 1 intra-op thread and with torch's default: on a small shared machine
the default OpenMP threads can collapse when another process holds a core, and 1 thread is the
conservative comparison against 2 DataLoader workers.

Usage: python benchmarks/augment_speed.py [--repeats 5] [--device cpu|cuda] [--workers 0 2] [--threads 1 2]
                                          [--images N]
``--images N`` uses the first N images only (default: all; small N for a smoke run). Ends with one
JSON line (``benchmarks/gpu_table.py``).
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from lowbit_core.data.augment import augment, batches  # noqa: E402
from lowbit_core.data.cifar import cifar_stats, load_cifar  # noqa: E402

from gpu_table import result_line  # noqa: E402  (benchmarks/, this script's folder)

NPZ = ROOT / ".." / "shared" / "data" / "cifar10" / "cifar10-train10k-test10k.npz"
BATCH = 256


def images() -> tuple[torch.Tensor, torch.Tensor, str]:
    if NPZ.is_file():
        x, y, *_ = load_cifar("npz", NPZ)
        return x, y, f"{NPZ.resolve()} (x_train)"
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (10000, 3, 32, 32), dtype=torch.uint8, generator=g)
    return x, torch.randint(0, 10, (10000,), generator=g), "random uint8 (shared npz absent)"


def time_batched(x, y, device: str, repeats: int) -> list[float]:
    x, y = x.to(device), y.to(device)
    g = torch.Generator().manual_seed(0)

    def epoch() -> int:
        n = 0
        for xb, _ in batches(x, y, BATCH, g):
            out = augment(xb, g)
            n += len(out)
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        return n

    return images_per_second(epoch, repeats)


def images_per_second(epoch, repeats: int) -> list[float]:
    """Images/s of ``repeats`` runs of ``epoch()`` (returns the images it processed), after one warm-up."""
    epoch()
    rates = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        n = epoch()
        rates.append(n / (time.perf_counter() - t0))
    return rates


class PILDataset(torch.utils.data.Dataset):
    def __init__(self, x_hwc: np.ndarray, y: np.ndarray, transform):
        self.x, self.y, self.transform = x_hwc, y, transform

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i):
        from PIL import Image

        return self.transform(Image.fromarray(self.x[i])), int(self.y[i])


def time_pil(x, y, workers: int, repeats: int) -> list[float]:
    from torchvision import transforms as T

    mean, std = cifar_stats("cifar10")
    tf = T.Compose([T.RandomCrop(32, padding=4), T.RandomHorizontalFlip(), T.ToTensor(), T.Normalize(mean, std)])
    ds = PILDataset(x.permute(0, 2, 3, 1).contiguous().numpy(), y.numpy(), tf)
    loader = torch.utils.data.DataLoader(ds, batch_size=BATCH, shuffle=True, drop_last=True, num_workers=workers,
                                         persistent_workers=workers > 0,
                                         generator=torch.Generator().manual_seed(0))

    def epoch() -> int:
        n = 0
        for xb, _ in loader:
            n += len(xb)
        return n

    return images_per_second(epoch, repeats)  # its warm-up starts the workers


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--workers", type=int, nargs="+", default=[0, 2])
    ap.add_argument("--threads", type=int, nargs="+", default=None,
                    help="torch intra-op threads for the batched path (default: 1 and torch's default)")
    ap.add_argument("--images", type=int, default=0, help="use the first N images (0: all)")
    args = ap.parse_args()
    default_threads = torch.get_num_threads()
    threads = args.threads or sorted({1, default_threads})

    x, y, source = images()
    if args.images:
        x, y = x[:args.images], y[:args.images]
    print(f"images: {len(x)} from {source}; batch {BATCH}; repeats {args.repeats} (median reported); "
          f"torch {torch.__version__}, {torch.get_num_threads()} intra-op threads")
    batched, pil = {}, {}
    for t in threads:
        torch.set_num_threads(t)
        batched[f"batched tensor ({args.device}, {t} thread{'s' * (t > 1)})"] = statistics.median(
            time_batched(x, y, args.device, args.repeats))
    torch.set_num_threads(default_threads)
    for w in args.workers:
        pil[f"PIL + DataLoader (num_workers={w})"] = statistics.median(time_pil(x, y, w, args.repeats))
    for name, r in {**batched, **pil}.items():
        print(f"{name:44s} {r:12,.0f} images/s")
    best = max(pil.values())
    best_name = max(pil, key=pil.get)
    rows = []
    for t, (name, r) in zip(threads, batched.items()):
        print(f"ratio {name} / fastest PIL setting: {r / best:.1f}x  "
              f"(vs each: {', '.join(f'{r / v:.1f}x' for v in pil.values())}; target >= 10x)")
        rows.append({"setting": f"crop + flip, {len(x)} images, batch {BATCH}, {t} thread{'s' * (t > 1)}",
                     "figure": f"batched {r:,.0f} img/s",
                     "baseline": f"{best_name} {best:,.0f} img/s (best of workers {'/'.join(map(str, args.workers))})",
                     "ratio": f"{r / best:.1f}x", "note": f"median of {args.repeats}; target >= 10x"})
    print(result_line("augment_speed", args.device, rows))


if __name__ == "__main__":
    main()
