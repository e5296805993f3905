"""Low-bit super-resolution: an EDSR baseline, and which part of the network resists low bit-widths.

Question (meeting record, to-do: "survey mainstream super-resolution approaches and find parts that do
not suit low bit-widths; get a baseline running"): how much Y-channel PSNR/SSIM does EDSR (Lim et al.
2017) lose when one part -- the head conv, the residual blocks' convs (body), the residual sums'
addends (skip), the upsampler and last conv (tail), or the body's closing conv -- is quantized to k bits
(PAMS, Li et al. ECCV 2020: max-scaled weights, learned activation clipping) or binarized (sign weights
with the mean-|W| scale, sign activations, ApproxSign / STE estimators from the registry), with the
rest full precision? The PAMS reference setting (body + skip quantized) is one of the grid points.
Every row carries the bicubic baseline of its test sets (MATLAB imresize; Y channel, scale px cropped).
Model selection and early stopping read the validation set only (``val_psnr_y``: 10 T91 images held out
of training by a fixed seed-0 permutation, recorded in every row as ``val_names``; smoke: 2 generated
images; full: DIV2K's 0801-0810, the first 10 of ``DIV2K_valid_HR``, EDSR-PyTorch's validation range
``--data_range 1-800/801-810``); the report's headline is the test sets at the final epoch.

Expected: the FP model beats bicubic (+1.5 dB on Set5 x2 within a CPU budget); 4-bit body/skip stay
within a few tenths of a dB of FP; binarizing costs more, most where the full-precision information
path is cut -- the head (a 1-bit image) and the tail (1-bit features into the upsampler) -- and least in
the body, whose blocks sit on the FP skip connections.

Measured (default profile before the validation hold-out, i.e. trained on all 91 T91 images, 2 seeds,
2026-12-02; ± std over seeds; the report of that run): bicubic
Set5 x2 33.67 dB / 0.9303 (literature 33.66 / 0.9299), Set14 x2 30.23 / 0.8691; FP 35.14 / 31.38 dB,
+1.46 / +1.15 dB above bicubic. Against FP (paired on seed, Set5): 4-bit body -0.11, skip -0.20,
body+skip -0.25, tail -1.67 ± 0.45, head -2.06 ± 0.06 dB; binary body -0.13, skip -0.24, body+skip
-0.29, head -14.3, tail -17.7 dB (Set14 alike). The head and the tail resist low bits; at this size
(4 blocks on FP skip connections) the body barely matters, binary or 4-bit.

Cost (default, measured on the development machine, 2 shared CPU cores, one core per trial): 22 trials
(FP once, {4-bit PAMS, binary} x {head, body, skip, tail, body+skip}, 2 seeds) of a 4-block,
32-channel EDSR at x2 trained on T91 (LR patches 24 px, batch 16, 4 epochs of 250 iterations, Adam
5e-4 halved after epoch 3), each evaluated on Set5 and Set14 after every epoch: about 6 min per trial
per core, 70 min on 2 cores (measured 2026-12-02, part of it beside other work). Smoke: generated images, a 2-block 8-channel EDSR, 5 trials, about
a minute. Full: the literature's scale -- EDSR-baseline (16 blocks, 64 channels, LR patches 48) on
DIV2K, 300 epochs of 1000 iterations (lr 1e-4 halved every 200 epochs), x2/x3/x4, bits 32/8/4/2/1 x
7 part sets x 3 seeds (261 trials) tested on Set5, Set14, B100, Urban100; roughly 1 GPU-day per trial.

Profiles ``asha`` and ``asha_smoke``: the default and the smoke grid with ASHA on ``val_psnr_y`` (rungs at
epochs 1 and 3 of 4; smoke: 1 and 2 of 3): trials that trail on the validation set at a rung stop
(STOPPED_EARLY; the report lists them as not finished). Measured (``asha_smoke``, 2026-12-02, 2 shared
CPU cores): 5 trials, 8 epochs run instead of 15 -- FP ran its 3 epochs, 4-bit body stopped at epoch 2,
the other three at epoch 1; 59 s of sweep, 107 s with Ray's start.

Command: python launch/sweep.py sweeps/sr_lowbit.py [--smoke | --profile full | --profile asha]
         (run from the repository root: the default reads ../shared/data/sr/{T91,Set5,Set14};
         --set data.root=DIR --set data.test_root=DIR for other folders)
then:    python analysis/report.py results/sr_lowbit
"""
from lowbit_core.sweep import ASHA, Profile, Resources, Sweep, grid

PARTS = grid(("head",), ("body",), ("skip",), ("tail",), ("body", "skip"))
SMOKE_BASE = {"data.train": "generated", "data.test_sets": ("generated",), "data.n_train": 8, "data.n_test": 2,
              "data.val_images": 2, "data.generated_size": 48, "data.lr_patch": 12, "data.crop_size": 24,
              "model.blocks": 2, "model.channels": 8, "train.epochs": 2, "train.steps_per_epoch": 4,
              "train.batch_size": 4}
SMOKE_SPACE = {"quant.parts": grid(("body",), ("skip",))}

SWEEP = Sweep(
    name="sr_lowbit",
    family="sr",
    questions=("sr-parts",),
    base={"scale": 2, "data.train": "folder", "data.root": "../shared/data/sr/T91",
          "data.test_root": "../shared/data/sr", "data.test_sets": ("Set5", "Set14"), "data.val_images": 10,
          "data.lr_patch": 24,
          "model.blocks": 4, "model.channels": 32, "train.epochs": 4, "train.steps_per_epoch": 250,
          "train.lr": 5e-4, "train.lr_decay_every": 3},
    space={"quant.bits": grid(32, 4, 1), "quant.parts": PARTS},
    metric="val_psnr_y",
    mode="max",
    seeds=(0, 1),
    resources=Resources(cpu=1, gpu=0.25),
    retries=1,
    profiles={
        "smoke": Profile(
            base=SMOKE_BASE,
            space=SMOKE_SPACE,
            seeds=(0,),
            description="generated images, 2-block 8-channel EDSR, 2 epochs of 4 steps, 5 trials",
        ),
        "asha": Profile(
            scheduler=ASHA(grace_period=1, reduction_factor=3),
            description="the default grid with ASHA on val_psnr_y, rungs at epochs 1 and 3",
        ),
        "asha_smoke": Profile(
            base={**SMOKE_BASE, "train.epochs": 3},
            space=SMOKE_SPACE,
            seeds=(0,),
            scheduler=ASHA(grace_period=1, reduction_factor=2),
            description="the smoke grid for 3 epochs with ASHA on val_psnr_y, rungs at epochs 1 and 2",
        ),
        "full": Profile(
            base={"data.train": "div2k", "data.root": "data", "data.test_root": "data/benchmark",
                  "data.val_root": "data/DIV2K_valid_HR", "data.val_images": 10,
                  "data.test_sets": ("Set5", "Set14", "B100", "Urban100"), "data.lr_patch": 48,
                  "model.blocks": 16, "model.channels": 64, "train.epochs": 300, "train.steps_per_epoch": 1000,
                  "train.lr": 1e-4, "train.lr_decay_every": 200},
            space={"scale": grid(2, 3, 4), "quant.bits": grid(32, 8, 4, 2, 1),
                   "quant.parts": grid(("head",), ("body",), ("body_end",), ("skip",), ("tail",), ("body", "skip"),
                                       ("head", "body", "body_end", "skip", "tail"))},
            seeds=(0, 1, 2),
            description="EDSR-baseline on DIV2K, 300 x 1000 iterations, x2/x3/x4, 5 bit-widths x 7 part sets, 3 seeds",
        ),
    },
)
