"""DSQ (Differentiable Soft Quantization) on ResNet-20 / CIFAR-10 against static STE windows.

Question (meeting record: "DSQ: its window shrinks during training, hardtanh-like? Reproduce it";
to-do: "test vSTE statically on ResNet with different window intervals"): does DSQ (Gong et al.,
ICCV 2019; tanh-based soft quantizer on weights and activations, alpha learned as in the paper or
decayed geometrically from 0.2 to 1e-3 over training; hard quantizer at evaluation) reach a higher
test accuracy than the same network trained with a fixed STE -- at 1 bit a sign network whose
weight estimator is the window g * 1{|w| <= t} for t in {0.05, 0.1, 1.0} (1.0 covers every latent
weight: plain STE) with hardtanh-window activations, and DoReFa (STE through the rounding) at 1 and
2 bits?

Expected: DSQ above the static windows by a point or two at 2 bits (the paper's claim), closer at
1 bit; a narrow window (0.05) hurts by freezing weights outside it. A learned alpha that stays
large leaves a soft/hard gap at evaluation: watch ``dsq_alpha`` next to ``train_acc``/``test_acc``.

Cost: smoke ~1 min on 2 CPU cores. Default: 9 configurations x 2 seeds = 18 trials of 10 epochs on
a fixed 10k subset of the CIFAR-10 images, ~8 min each per CPU core, ~25 min for DSQ (3x slower per step),
~2.5 h on 2 cores.
Full: 50k images, 200 epochs, 3 seeds: 27 trials, ~15 GPU-hours.

Command: python launch/sweep.py sweeps/dsq.py [--smoke | --profile full]
         (CIFAR-10 under data/cifar-10-batches-py/, or --set data.name=npz --set data.root=FILE.npz)
"""
from lowbit_core.sweep import Profile, Resources, Sweep, grid

SWEEP = Sweep(
    name="dsq",
    family="train",
    questions=("vste-resnet",),
    base={"data.name": "cifar10", "data.n_train": 10000, "model.arch": "resnet20", "train.optimizer": "adam",
          "train.lr": 0.002, "train.weight_decay": 0.0, "train.epochs": 10,
          "quant.weight_estimator": "window", "quant.act_estimator": "window", "quant.act_param": 1.0},
    space={
        # binary: the sign network with a static window t (k-bit fields are reset for it);
        # kbit: DSQ (learned or scheduled alpha) and DoReFa at 1 and 2 bits (the window is reset)
        "model.kind": grid("binary", "kbit"),
        "quant.weight_param": grid(0.05, 0.1, 1.0),
        "quant.kbit": grid("dsq", "dorefa"),
        "quant.bits": grid(1, 2),
        "quant.dsq_schedule": grid("learned", "geometric"),
    },
    metric="test_acc",
    mode="max",
    seeds=(0, 1),
    resources=Resources(cpu=1, gpu=0.25),
    retries=2,
    profiles={
        "smoke": Profile(
            base={"data.name": "synthetic", "data.n_train": 512, "data.n_test": 256, "model.width": 8,
                  "train.batch_size": 64, "train.epochs": 4, "train.lr": 0.01},
            space={"quant.weight_param": grid(0.1, 1.0), "quant.kbit": grid("dsq"), "quant.bits": grid(1)},
            seeds=(0,),
            description="synthetic images, width-8 ResNet-20, 4 epochs of 8 steps, 4 trials",
        ),
        "full": Profile(
            base={"data.n_train": 0, "train.epochs": 200},
            seeds=(0, 1, 2),
            description="all 50k images, 200 epochs, 3 seeds",
        ),
    },
)
