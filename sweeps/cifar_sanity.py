"""Sanity baseline: does a ResNet-20 learn on real CIFAR-10, FP and binary, within a tiny budget?

Question: before reading anything into the training sweeps, does the stack (data, augmentation,
model, quantizers, loop) train? ResNet-20 (He et al. 2016), FP and binary (sign weights with the
per-channel mean-|W| scale, ApproxSign activations; first and last layer FP), 2 epochs of Adam on
a fixed 10k subset of the CIFAR-10 training images, evaluated on the test set.

Expected: FP far above chance (10%) after 2 epochs (~40-45%); binary above chance but well below
FP (~30%): binary ResNets need many more epochs.

Cost: 2 trials of 2 epochs, ~1.5 min on 2 CPU cores (one core each); smoke ~30 s (synthetic
images); full: all 50k images, 200 epochs (the FP / binary baselines the other sweeps compare to).

Command: python launch/sweep.py sweeps/cifar_sanity.py --set data.name=npz --set data.root=FILE.npz
         (FILE.npz with x_train, y_train, x_test, y_test; or CIFAR-10 under data/cifar-10-batches-py/
         without the --set options)
then:    python analysis/report.py results/cifar_sanity
"""
from lowbit_core.sweep import Profile, Resources, Sweep, grid

SWEEP = Sweep(
    name="cifar_sanity",
    family="train",
    questions=(),  # a sanity check of the stack: it answers none of the questions
    base={"data.name": "cifar10", "data.n_train": 10000, "model.arch": "resnet20",
          "train.optimizer": "adam", "train.lr": 0.002, "train.weight_decay": 0.0, "train.epochs": 2},
    space={"model.kind": grid("fp", "binary")},
    metric="test_acc",
    mode="max",
    seeds=(0,),
    resources=Resources(cpu=1, gpu=0.5),
    retries=1,
    profiles={
        "smoke": Profile(
            base={"data.name": "synthetic", "data.n_train": 512, "data.n_test": 256, "model.width": 8,
                  "train.batch_size": 64, "train.epochs": 4, "train.lr": 0.01},
            description="synthetic images, width-8 ResNet-20, 4 epochs of 8 steps, 2 trials",
        ),
        "full": Profile(
            base={"data.n_train": 0, "train.epochs": 200},
            seeds=(0, 1, 2),
            description="all 50k images, 200 epochs, 3 seeds",
        ),
    },
)
