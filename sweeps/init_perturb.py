"""Initialization scheme x periodic weight perturbation for a binary ResNet-20 on CIFAR-10.

Question (meeting record: low bit-widths are hard to optimize because "the gradient is wrong, so the
search cannot leave a local optimum" and "there are too many local optima"; ideas: "add
perturbations" and "vanishing gradients -> initialization (Xavier etc.)"): does the init of the
latent weights (Xavier normal, Kaiming normal, orthogonal) change what a binary ResNet-20 (sign
weights with the mean-|W| scale, sign activations) reaches, and does adding Gaussian noise to the
latent weights every 2 epochs (W += a * rms(W) * N(0, 1) per layer, a in {0, 0.05, 0.2}) help it
escape worse optima?

Expected: with BN after every binary conv and the mean-|W| scale, the init matters mostly through
the latent weights' scale relative to the optimizer's steps (how often signs flip); small
perturbations do little, large ones cost accuracy right after each kick and are recovered as the
cosine lr decays, ending within noise of no perturbation unless the network is stuck.
Compare final ``test_acc`` per (init, amplitude), mean +- std over seeds; ``perturbed`` marks kicks.

Cost: smoke ~1 min on 2 CPU cores. Default: 9 configurations x 2 seeds = 18 trials of 8 epochs
on a fixed 10k subset of the CIFAR-10 images, ~6 min each per CPU core (~1 h on 2 cores). Full: 50k images,
200 epochs, a kick every 10 epochs, 5 seeds: 45 trials, ~25 GPU-hours.

Command: python launch/sweep.py sweeps/init_perturb.py [--smoke | --profile full]
         (CIFAR-10 under data/cifar-10-batches-py/, or --set data.name=npz --set data.root=FILE.npz)
"""
from lowbit_core.sweep import Profile, Resources, Sweep, grid

SWEEP = Sweep(
    name="init_perturb",
    family="train",
    questions=("escape-local-optima",),
    base={"data.name": "cifar10", "data.n_train": 10000, "model.arch": "resnet20", "model.kind": "binary",
          "train.optimizer": "adam", "train.lr": 0.002, "train.weight_decay": 0.0, "train.epochs": 8,
          "perturb.period": 2},
    space={
        "model.init": grid("xavier", "kaiming", "orthogonal"),
        "perturb.amplitude": grid(0.0, 0.05, 0.2),
    },
    metric="test_acc",
    mode="max",
    seeds=(0, 1),
    resources=Resources(cpu=1, gpu=0.25),
    retries=2,
    profiles={
        "smoke": Profile(
            base={"data.name": "synthetic", "data.n_train": 512, "data.n_test": 256, "model.width": 8,
                  "train.batch_size": 64, "train.epochs": 4, "train.lr": 0.01, "perturb.period": 1},
            space={"perturb.amplitude": grid(0.0, 0.2)},
            seeds=(0,),
            description="synthetic images, width-8 ResNet-20, 4 epochs of 8 steps, 6 trials",
        ),
        "full": Profile(
            base={"data.n_train": 0, "train.epochs": 200, "perturb.period": 10},
            seeds=(0, 1, 2, 3, 4),
            description="all 50k images, 200 epochs, a kick every 10 epochs, 5 seeds",
        ),
    },
)
