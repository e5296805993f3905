"""Which Adam learning rate and weight decay train a binary ResNet-20 best? Optuna (TPE) proposes
the settings, ASHA stops the trials that trail at a rung, so a search costs a fraction of the grid.

Question: the training sweeps fix Adam's lr (2e-3) and weight decay (0) for the binary ResNet-20
(sign weights with the mean-|W| scale, ApproxSign activations) from one sanity run. Is that near the
best, on CIFAR-10 at a fixed budget of E epochs? Search lr on [1e-4, 3e-2] and weight decay on
[1e-6, 1e-3] (both log-uniform) with Optuna's TPE sampler (Ray Tune's OptunaSearch), selecting on the
validation split (``val_acc``, 10% of the training images held out; the test set only reports), and
stop a trial early with ASHA (Ray Tune's ASHAScheduler; rungs at 2, 4, 8 epochs, the better half
goes on) when it trails the trials recorded at a rung.

Expected: the best lr within a factor ~3 of 2e-3; weight decay matters little for a binary net
(the latent weights' scale is normalized away); ASHA stops the high-lr and very low-lr trials at the
first rungs, and finds the same best region as running every trial to the end.

Cost: default 16 samples of 10 epochs on 10k training images, ASHA runs about half the epochs:
~1.5 h on 2 CPU cores (one trial per core, ~45 s per binary epoch). Smoke ~1 min (synthetic images,
4 samples, width 4). ``grid`` and ``grid_full``: the same 8-value lr grid with and without ASHA, at a
CPU-practical scale (2000 training images, 1000 test images, 8 epochs), to measure what ASHA saves.
Full: all 50k images, 200 epochs, 64 samples per seed, 2 seeds (a cluster).

Measured (2026-12-02, the development machine: 2 CPU cores shared with other work, load ~20;
CIFAR-10 from the 10k-image subset, ``--set data.name=npz --set
data.root=../shared/data/cifar10/cifar10-train10k-test10k.npz``, 1 seed; trials are deterministic, so
a trial run in both profiles has the same accuracies): ``grid_full`` ran 64 trial-epochs (8 x 8) in
2036 s; its best trial by val_acc is lr 5e-3 (val 34.0%, test 29.4%). ``grid`` (ASHA) ran 30
trial-epochs (-53%) in 1337 s (part of it beside grid_full), 7 of 8 trials stopped early (3 at epoch
2, 4 at epoch 4); its best is lr 2e-3 (val 31.5%, test 26.8%): it stopped lr 5e-3 at epoch 4, where it
trailed lr 2e-3 (28.5% vs 32.5%), 2.5 points below the best at 8 epochs -- inside the noise of a
200-image validation split (+-3.2 points). With the same values sorted ascending (accuracy rising with
lr up to 5e-3, so trials arrive worst-first) ASHA ran 60 trial-epochs (1 trial stopped) and found the
same best as grid_full.

Command: python launch/sweep.py sweeps/train_search.py [--smoke | --profile grid | --profile grid_full
         | --profile full] (CIFAR-10 under data/cifar-10-batches-py/, or --set data.name=npz --set
         data.root=FILE.npz)
then:    python analysis/report.py results/train_search
"""
from lowbit_core.sweep import ASHA, NO_SCHEDULER, LogUniform, Optuna, Profile, Resources, Sweep, grid

MEASURE_BASE = {"data.n_train": 2000, "data.n_test": 1000, "train.epochs": 8}
MEASURE_SPACE = {"train.lr": grid(2e-3, 2e-4, 5e-3, 5e-4, 1e-4, 1e-3, 3e-2, 1e-2), "train.weight_decay": None}
"""The measurement grid (both grid profiles): 8 lr values from 1e-4 to 3e-2, weight decay at the base's 0.
The values are in a fixed random order (``random.Random(0).shuffle`` of the sorted ones): trials start in
grid order, and ASHA can only cut a trial that trails those recorded before it at a rung, so values
sorted worst-first (here: ascending, accuracy rising with lr up to 5e-3) leave it little to cut."""

SWEEP = Sweep(
    name="train_search",
    family="train",
    questions=(),  # tunes the training sweeps' lr and weight decay: it answers none of the questions
    base={"data.name": "cifar10", "data.n_train": 10000, "model.arch": "resnet20", "model.kind": "binary",
          "train.optimizer": "adam", "train.lr": 0.002, "train.weight_decay": 0.0, "train.epochs": 10},
    space={"train.lr": LogUniform(1e-4, 3e-2), "train.weight_decay": LogUniform(1e-6, 1e-3)},
    metric="val_acc",
    mode="max",
    seeds=(0,),
    resources=Resources(cpu=1, gpu=0.5),
    search=Optuna(num_samples=16, sampler_seed=0),
    scheduler=ASHA(grace_period=2, reduction_factor=2),
    retries=2,
    profiles={
        "smoke": Profile(
            base={"data.name": "synthetic", "data.n_train": 256, "data.n_test": 128, "model.width": 4,
                  "train.batch_size": 32, "train.epochs": 3, "train.steps_per_epoch": 2},
            num_samples=4,
            scheduler=ASHA(grace_period=1, reduction_factor=2),
            description="synthetic images, width-4 ResNet-20, 4 samples of 3 epochs of 2 steps, ASHA from epoch 1",
        ),
        "grid": Profile(
            base=MEASURE_BASE, space=MEASURE_SPACE, search="grid",
            description="8 lr values, 2000 training images, 8 epochs, with ASHA (the saving's measurement)",
        ),
        "grid_full": Profile(
            base=MEASURE_BASE, space=MEASURE_SPACE, search="grid", scheduler=NO_SCHEDULER,
            description="the grid profile's trials, each run to its end (the measurement's reference)",
        ),
        "full": Profile(
            base={"data.n_train": 0, "train.epochs": 200},
            seeds=(0, 1),
            num_samples=64,
            scheduler=ASHA(grace_period=10, reduction_factor=3),
            description="all 50k images, 200 epochs, 64 samples per seed, ASHA rungs at 10, 30, 90 epochs",
        ),
    },
)
