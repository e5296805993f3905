"""FP pretraining then binarize-and-finetune vs binary from scratch, with and without mixup.

Question (meeting record, to-do: "run pretraining vs training from scratch with mixup on
CIFAR-10/100: is pretraining better?"): at an equal total budget of E epochs, does a binary
ResNet-20 (sign weights with the mean-|W| scale, sign activations) reach a higher test accuracy when
an FP ResNet-20 is trained for the first P = E/2 epochs and its weights are then loaded into the
binary model for the remaining E - P epochs (phases ``pretrain`` -> ``finetune`` in one trial), than
when it is trained binary from scratch for all E epochs (phase ``scratch``)? Does mixup (alpha = 1,
Zhang et al. 2018) change the answer, on CIFAR-10 and on CIFAR-100?

Expected: pretraining helps the binary network (a better start for the latent weights; Bi-Real Net
and others report gains of a few points), more on CIFAR-100; mixup helps little or hurts at short
budgets (it is a regularizer and binary networks underfit), and may help at the full scale.
Compare final ``test_acc`` (last epoch) per (data, mixup, path), mean +- std over seeds.

Cost: smoke ~1 min on 2 CPU cores (synthetic images, width-8 nets, 4 epochs of 8 steps). Default: 16 trials
(2 data sets x 2 mixup x 2 paths x 2 seeds) of 10 epochs on a fixed 10k subset of the training images, about
8 min per trial per CPU core (measured: ~45 s per binary epoch incl. the 10k-image test pass), ~1.1 h
on 2 cores. Full: all 50k images, 200 epochs (P = 100),
ResNet-20 and ResNet-18, 5 seeds: 80 trials, ~40 GPU-hours.

Command: python launch/sweep.py sweeps/mixup_pretrain.py [--smoke | --profile full]
         (CIFAR folders under data/: cifar-10-batches-py/, cifar-100-python/; or --set data.root=DIR)
"""
from lowbit_core.sweep import Profile, Resources, Sweep, grid

SWEEP = Sweep(
    name="mixup_pretrain",
    family="train",
    questions=("pretrain-vs-scratch-mixup",),
    base={"model.arch": "resnet20", "model.kind": "binary", "train.optimizer": "adam", "train.lr": 0.002,
          "train.weight_decay": 0.0, "train.epochs": 10, "data.n_train": 10000},
    space={
        "data.name": grid("cifar10", "cifar100"),
        "train.mixup_alpha": grid(0.0, 1.0),
        "train.pretrain_epochs": grid(0, 5),
    },
    metric="test_acc",
    mode="max",
    seeds=(0, 1),
    resources=Resources(cpu=1, gpu=0.5),
    retries=2,
    profiles={
        "smoke": Profile(
            base={"model.width": 8, "data.n_train": 512, "data.n_test": 256, "train.batch_size": 64,
                  "train.epochs": 4, "train.lr": 0.01},
            space={"data.name": grid("synthetic"), "train.pretrain_epochs": grid(0, 2)},
            seeds=(0,),
            description="synthetic images, width-8 ResNet-20, 4 epochs of 8 steps, 4 trials",
        ),
        "full": Profile(
            base={"data.n_train": 0, "train.epochs": 200},
            space={"model.arch": grid("resnet20", "resnet18"), "train.pretrain_epochs": grid(0, 100)},
            seeds=(0, 1, 2, 3, 4),
            description="all 50k images, 200 epochs (P = 100), ResNet-20 and ResNet-18, 5 seeds",
        ),
    },
)
