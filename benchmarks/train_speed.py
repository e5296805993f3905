"""Images/s of one training step, FP vs binary (and other low-bit) ResNet-20, same batch.

One step = forward, cross-entropy, backward and an SGD (momentum) step on one fixed batch of
normalised CIFAR-shaped images, in train mode, on ``--device``: exactly the model, loss and optimizer
the ``train`` family uses (``lowbit_core.families.train.model.build_model`` / ``make_optimizer``), without
data loading or augmentation (measured by ``benchmarks/augment_speed.py``). Models:

- ``fp``: the full-precision ResNet-20;
- ``binary``: the ``train`` family's default binary model: sign weights with the per-channel
  mean-|W| scale (identity STE) and sign activations (ApproxSign) in every inner conv;
- optional ``dorefa2``, ``lsq2``, ``dsq2`` (2-bit weights and activations; ``--kinds``).

Each model is warmed up, then timed for ``--steps`` steps per repeat; CUDA timings synchronise
before the clock stops. The models are timed interleaved (fp, binary, fp, binary, ...) so that
load from other processes hits them alike. Prints the median images/s over repeats per model and
its ratio to FP's median (target for binary: >= 0.7), and the best repeat of each (less sensitive to
other processes on a shared machine).

Usage: python benchmarks/train_speed.py [--batch 128] [--repeats 15] [--steps 3] [--threads 1]
                                        [--device cpu|cuda] [--width 16] [--kinds fp binary dsq2]
Ends with one JSON line (``benchmarks/gpu_table.py``).
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
from torch.nn import functional as F  # noqa: E402

from lowbit_core.config import with_overrides  # noqa: E402
from lowbit_core.families.train.config import TrainConfig  # noqa: E402
from lowbit_core.families.train.model import build_model  # noqa: E402
from lowbit_core.families.train.run import make_optimizer  # noqa: E402

from gpu_table import result_line  # noqa: E402  (benchmarks/, this script's folder)

KINDS = {
    "fp": {"model.kind": "fp"},
    "binary": {"model.kind": "binary"},
    "dorefa2": {"model.kind": "kbit", "quant.kbit": "dorefa", "quant.bits": 2},
    "lsq2": {"model.kind": "kbit", "quant.kbit": "lsq", "quant.bits": 2},
    "dsq2": {"model.kind": "kbit", "quant.kbit": "dsq", "quant.bits": 2},
}


def setup(kind: str, width: int, device: str):
    cfg = with_overrides(TrainConfig(), {**KINDS[kind], "model.width": width})
    torch.manual_seed(0)
    model = build_model(cfg, cfg.model.kind, 10).to(device).train()
    opt = make_optimizer(model, cfg, 0.01)
    return model, opt


def step(model, opt, x, y) -> None:
    loss = F.cross_entropy(model(x), y)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()


def timed(model, opt, x, y, steps: int, device: str) -> float:
    """images/s over ``steps`` steps."""
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(steps):
        step(model, opt, x, y)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return steps * len(y) / (time.perf_counter() - t0)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--repeats", type=int, default=15)
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--threads", type=int, default=1, help="torch intra-op threads on the CPU (0: torch's default)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--width", type=int, default=16)
    p.add_argument("--kinds", nargs="+", default=["fp", "binary"], choices=list(KINDS))
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    kinds = list(dict.fromkeys(["fp", *args.kinds]))
    g = torch.Generator().manual_seed(0)
    x = torch.randn(args.batch, 3, 32, 32, generator=g).to(args.device)
    y = torch.randint(0, 10, (args.batch,), generator=g).to(args.device)
    models = {k: setup(k, args.width, args.device) for k in kinds}
    for model, opt in models.values():
        for _ in range(args.warmup):
            step(model, opt, x, y)
    rates: dict[str, list[float]] = {k: [] for k in kinds}
    for _ in range(args.repeats):
        for k, (model, opt) in models.items():
            rates[k].append(timed(model, opt, x, y, args.steps, args.device))
    threads = torch.get_num_threads() if args.device == "cpu" else "-"
    print(f"ResNet-20 (width {args.width}) training step, batch {args.batch}, device {args.device}, threads {threads}, "
          f"median of {args.repeats} x {args.steps} steps")
    fp = statistics.median(rates["fp"])
    rows = []
    for k in kinds:
        med = statistics.median(rates[k])
        best = max(rates[k])
        print(f"  {k:8s} {med:9.1f} images/s median (best {best:.0f})  ratio to fp {med / fp:.2f} "
              f"(best/best {best / max(rates['fp']):.2f})")
        if k != "fp":
            rows.append({"setting": f"ResNet-20 step, batch {args.batch}, {k} vs fp",
                         "figure": f"{k} {med:,.0f} img/s", "baseline": f"fp {fp:,.0f} img/s",
                         "ratio": f"{med / fp:.2f}", "note": f"median of {args.repeats} x {args.steps} steps"
                         + ("; target >= 0.70" if k == "binary" else "")})
    if "binary" in rates:
        ratio = statistics.median(rates["binary"]) / fp
        print(f"binary / fp = {ratio:.2f} (target >= 0.70: {'met' if ratio >= 0.7 else 'NOT met'})")
    print(result_line("train_speed", args.device, rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
