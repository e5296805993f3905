"""One epoch of the ``cifar_sanity`` training on real CIFAR-10 images: images/s and epoch time, FP vs binary.

The sweep's own base config (``sweeps/cifar_sanity.py``: ResNet-20, Adam, lr 0.002, batch 128, the
first 10,000 training images, random crop + flip on the device) with ``train.epochs=1`` and no
checkpoints, run through the library's ``lowbit_core.families.train.run.train`` (no Ray) on ``--device``, for
``model.kind`` fp and binary. Images: ``--data`` (default ``../shared/data/cifar10/cifar10-train10k-test10k.npz``
relative to the project root, read as ``data.name=npz``; ``synthetic`` for a smoke run without it).

Reported per model, from the epoch's own metrics: ``images_per_s`` (training steps only),
``epoch_time_s`` (training + evaluation on the test set) and ``test_acc``; the binary model's
images/s relative to FP's. Before the timed run each model trains ``--warmup`` steps untimed (CUDA
context, cuDNN and allocator warm-up would otherwise land in the first model's epoch).

Usage: python benchmarks/cifar_epoch.py [--device cpu|cuda] [--data FILE.npz|synthetic] [--epochs 1]
                                        [--n-train 0] [--n-test 0] [--width 0] [--warmup 3]
(``--n-train`` / ``--n-test`` / ``--width`` 0: the sweep's values.) Ends with one JSON line
(``benchmarks/gpu_table.py``).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from lowbit_core.config import with_overrides  # noqa: E402
from lowbit_core.device import pick_device  # noqa: E402
from lowbit_core.sweep import load_sweep  # noqa: E402
from lowbit_core.families.train.config import TrainConfig  # noqa: E402
from lowbit_core.families.train.run import train  # noqa: E402

from gpu_table import result_line  # noqa: E402  (benchmarks/, this script's folder)

NPZ = ROOT.parent / "shared" / "data" / "cifar10" / "cifar10-train10k-test10k.npz"


def config(args, kind: str) -> TrainConfig:
    over = dict(load_sweep(ROOT / "sweeps" / "cifar_sanity.py").base)
    if args.data == "synthetic":
        over.update({"data.name": "synthetic"})
    else:
        over.update({"data.name": "npz", "data.root": str(Path(args.data).resolve())})
    over.update({"model.kind": kind, "train.epochs": args.epochs, "train.checkpoint_every": 0})
    for key, value in (("data.n_train", args.n_train), ("data.n_test", args.n_test), ("model.width", args.width)):
        if value:
            over[key] = value
    return with_overrides(TrainConfig(), over)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default=None, help="cpu or cuda (default: CUDA when present)")
    p.add_argument("--data", default=str(NPZ), help="an .npz with x_train, y_train, x_test, y_test; or 'synthetic'")
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--n-train", type=int, default=0)
    p.add_argument("--n-test", type=int, default=0)
    p.add_argument("--width", type=int, default=0)
    p.add_argument("--warmup", type=int, default=3, help="untimed training steps per model first (0: none)")
    p.add_argument("--kinds", nargs="+", default=["fp", "binary"], choices=["fp", "binary"])
    args = p.parse_args(argv)
    if args.data != "synthetic" and not Path(args.data).is_file():
        print(f"cifar_epoch: {args.data} not found (pass --data FILE.npz, or --data synthetic)", file=sys.stderr)
        return 2
    device = torch.device(args.device) if args.device else pick_device()
    kinds = list(dict.fromkeys(["fp", *args.kinds]))
    out = {}
    for kind in kinds:
        cfg = config(args, kind)
        if args.warmup:
            train(with_overrides(cfg, {"train.steps_per_epoch": args.warmup, "train.epochs": 1}), lambda m, **kw: None,
                  device)
        t0 = time.perf_counter()
        last = train(cfg, lambda m, **kw: None, device)
        out[kind] = dict(last, wall_s=time.perf_counter() - t0)
    cfg = config(args, "fp")
    what = (f"cifar_sanity, {args.epochs} epoch{'s' * (args.epochs > 1)}, {cfg.data.name} "
            f"({cfg.data.n_train or 'all'} train images), batch {cfg.train.batch_size}, device {device}")
    print(what)
    for kind, m in out.items():
        print(f"  {kind:7s} {m['images_per_s']:9,.0f} images/s  epoch {m['epoch_time_s']:.2f} s "
              f"(train + test)  test_acc {m['test_acc']:.3f}  wall {m['wall_s']:.1f} s")
    fp = out["fp"]
    rows = [{"setting": f"cifar_sanity {args.epochs} epoch fp, {cfg.data.n_train or 'all'} images, batch {cfg.train.batch_size}",
             "figure": f"fp {fp['images_per_s']:,.0f} img/s, epoch {fp['epoch_time_s']:.2f} s", "baseline": "",
             "ratio": "", "note": f"test_acc {fp['test_acc']:.3f} after {args.epochs} epoch(s)"}]
    for kind, m in out.items():
        if kind != "fp":
            rows.append({"setting": f"cifar_sanity {args.epochs} epoch {kind} vs fp",
                         "figure": f"{kind} {m['images_per_s']:,.0f} img/s, epoch {m['epoch_time_s']:.2f} s",
                         "baseline": f"fp {fp['images_per_s']:,.0f} img/s",
                         "ratio": f"{m['images_per_s'] / fp['images_per_s']:.2f}",
                         "note": f"test_acc {m['test_acc']:.3f}"})
    print(result_line("cifar_epoch", device, rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
