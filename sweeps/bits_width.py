"""Bits per weight or more weights? ResNet-20 / CIFAR-10 over bit-width x width, at equal parameter bits.

Question (meeting record: "More total bits (more bits per unit, or wider layers) makes optimization
easier"): with the cost of every trial as columns (``param_bits``, ``ops``; lowbit_core.cost), is
the accuracy a ResNet-20 reaches in a fixed budget set by its total parameter bits, and at equal
bits, does it pay more to spend them on bits per weight or on more weights? Bit-widths 1 (binary:
sign weights with the mean-|W| scale, ApproxSign activations), 2, 3, 4 (DoReFa weights and
activations; ``--set quant.kbit=lsq`` for LSQ, which needs >= 2 bits) and 32 (FP), on the inner
convs (stem and classifier FP), times the width of the first stage (``model.width``: the standard
16 times 1, 1.5, 2, 3 in the full profile; 4, 8, 12 by default, to fit a CPU). Weight bits grow as
width^2 x bits, so the curves overlap in parameter bits: e.g. binary at width 32 holds 1.36 Mbit,
2-bit at width 24 1.39 Mbit, 4-bit at width 16 1.19 Mbit (incl. the FP stem, classifier, BN and
scales; ``--dry-run`` lists every trial's). The report draws accuracy against parameter bits and
against OPs, one curve per bit-width with the Pareto front, and compares each group with the
lower-bit curves interpolated at its parameter bits (analysis/train/equal_bits.py).

Expected: accuracy grows with total bits along every curve; at equal bits, more bits per weight
(2-4-bit, narrower) beats more weights (binary, wider) at these short budgets, since binary nets
optimize slowly; FP dominates per weight but not per bit. The binary curve needs the most width.

Cost (lowbit_core.cost, per inference; ``--dry-run`` lists each trial's): ResNet-20 width 16 is
40.55M MACs; FP 40.55M OPs and 8.7 Mbit, binary 1.07M OPs and 0.41 Mbit. Training: smoke ~1 min on
2 CPU cores (8 trials: synthetic images, widths 4 and 8, 1 and 4 bits, 2 seeds). Default: 24
trials (bits 1, 2, 4, 32 x widths 4, 8, 12 x 2 seeds) of 4 epochs on a fixed 3k subset of the
CIFAR-10 training images (10% held out for validation) and 1k test images. Measured (with
``--set data.name=npz`` on the 10k-image CIFAR-10 file of ../shared/data): 34 min wall on the
shared 2-core development machine (2026-12-01, 2 trials at a time, load average 13-31 from other
work, so ~3-4x slower than an idle machine), all 24 trials finished; final test_acc 17% (binary,
width 4) to 39% (FP, width 12); at equal bits, more bits per weight +0.3 ± 2.1 pp (n=2 seeds: no
clear difference; 2-bit above the binary curve by 2.8 ± 1.4 pp, FP at width 4 below the wider 4-bit
net by 2.6 ± 1.1 pp). Full: all 50k images, 200 epochs, bits 1, 2, 3, 4, 32 x widths 16, 24, 32, 48
x 3 seeds, 60 trials, ~50 GPU-hours (an estimate, not measured).

Command: python launch/sweep.py sweeps/bits_width.py [--smoke | --profile full]
         (CIFAR-10 under data/cifar-10-batches-py/, or --set data.name=npz --set data.root=FILE.npz)
then:    python analysis/report.py results/bits_width
"""
from lowbit_core.sweep import Profile, Resources, Sweep, grid

SWEEP = Sweep(
    name="bits_width",
    family="train",
    questions=("bits-vs-width",),
    base={"data.name": "cifar10", "data.n_train": 3000, "data.n_test": 1000, "model.arch": "resnet20",
          "train.optimizer": "adam", "train.lr": 0.002, "train.weight_decay": 0.0, "train.epochs": 4},
    space={
        # 1 bit = binary, 32 = FP; the family resets quant.bits where it does not act, so binary and
        # FP appear once per width
        "model.kind": grid("binary", "kbit", "fp"),
        "quant.bits": grid(2, 4),
        "model.width": grid(4, 8, 12),
    },
    metric="test_acc",
    mode="max",
    seeds=(0, 1),
    resources=Resources(cpu=1, gpu=0.25),
    retries=2,
    profiles={
        "smoke": Profile(
            base={"data.name": "synthetic", "data.n_train": 512, "data.n_test": 256, "train.batch_size": 64,
                  "train.epochs": 3, "train.steps_per_epoch": 4, "train.lr": 0.01},
            space={"model.kind": grid("binary", "kbit"), "quant.bits": grid(4), "model.width": grid(4, 8)},
            description="synthetic images, widths 4 and 8, binary and 4-bit (equal bits: 1 bit at 8, 4 bits at 4), "
                        "3 epochs of 4 steps, 2 seeds, 8 trials",
        ),
        "full": Profile(
            base={"data.n_train": 0, "data.n_test": 0, "train.epochs": 200},
            space={"quant.bits": grid(2, 3, 4), "model.width": grid(16, 24, 32, 48)},
            seeds=(0, 1, 2),
            description="all 50k images, 200 epochs, bits 1, 2, 3, 4, 32 x widths 16, 24, 32, 48, 3 seeds",
        ),
    },
)
