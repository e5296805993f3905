"""vSTE vs nSTE on a binary ResNet-20 (CIFAR-10): static relative windows, value clips and thresholds,
on initialized and FP-pretrained states -- the gradient's mean, variance, SNR and direction per layer,
and the accuracy after a short fine-tuning budget.

Question (meeting record, to-do: "on ResNet, compare variant STE and normal STE ... test vSTE
statically on ResNet with different window intervals; look at different STEs on both initialized
and pretrained models"; advisor: "change the threshold; look at the STE's variance and mean"): do
the two readings of vSTE -- the window g * 1{|w - tau| <= t std(W_l)} (Hubara et al. 2016, BNN; a
static stand-in for DSQ's shrinking window, Gong et al. ICCV 2019) and the value clip
clip(g, -c std(g_l), c std(g_l)) -- differ from nSTE (identity) in the weights' gradient SNR and in
its cosine to nSTE and to a smooth surrogate (ApproxSign, Bi-Real Net) per layer, and in test
accuracy after fine-tuning; and does that depend on pretraining? Widths are multiples of each layer's
std (``quant.weight_unit=std``) because absolute windows mean different things per layer: at
initialization no ResNet-20 weight exceeds about 0.08, so t = 0.1 is the identity there. Binary
ResNet-20 (He et al. 2016) with the XNOR mean-|W| scale and ApproxSign activations (IR-Net's setting
without EDE); weight threshold tau in units of std(W_l), activation threshold absolute (the inputs
are hardtanh outputs in [-1, 1]).

Expected: at initialization (kaiming-uniform weights, max |w| = sqrt(3) std) t = 2 std passes every
weight, so it equals nSTE; narrower windows cut weights (t = 0.5: ~30% inside), which lowers the
gradient's norm and its cosine to nSTE but not necessarily its SNR. Pretrained weights are
heavier-tailed, so the same t cuts fewer of them and vSTE and nSTE should differ less there. The
value clip acts only where |g| exceeds c std(g): small differences. Whether accuracy differs after a
70-step budget is the open question (the toy MLP could not tell them apart).

Cost (one core per trial). Default: 112 trials (7 estimator settings x 2 states x 2 weight x 2
activation thresholds x 2 seeds) on 5k training / 2k test images; probe M = 16 (references
M_ref = 32) batches of 128 at the start and after each of 2 fine-tuning epochs of 35 steps; a
5-epoch FP pretraining once per worker and seed. Estimated from the README's binary ResNet-20 step
(364 img/s at batch 128, one idle core; a probe batch costs about two steps): ~1.5 min per trial,
~1.5 h on 2 idle cores. Measured on the shared development machine (2 cores at load average ~20
from other jobs, so ~10x the idle times): one default initialized trial 18 min (probe 3.5 min,
fine-tuning epoch 3-3.5 min); a reduced run (2k training / 1k test images, M = 8 / M_ref = 16
batches of 64, one fine-tuning epoch of 28 steps, 3 pretraining epochs, thresholds 0: 28 trials)
38 min (probe 41 s, fine-tuning epoch 51 s per trial on average). Smoke: 8 trials on synthetic images, width-4 network; measured 4 min
at that load (~1 min idle). Full: all 50k images, 20 pretraining and 10 fine-tuning epochs,
M = 64 / M_ref = 256, 5 widths, 3 thresholds each side, 3 seeds: 594 trials, a GPU sweep.

Command: python launch/sweep.py sweeps/resnet_vste_window.py --set data.name=npz --set data.root=FILE.npz
         (or CIFAR-10 under data/cifar-10-batches-py/; --smoke for synthetic images)
then:    python analysis/report.py results/resnet_vste_window
Pretrained from a file instead of inside each trial (two commands): train the FP model once, with
the binary network's nonlinearity, and keep its final state (every train trial keeps it):
         python launch/sweep.py sweeps/cifar_sanity.py --set model.kind=fp --set model.nonlin=hardtanh
             --set train.epochs=30 --results results/fp
         python launch/sweep.py sweeps/resnet_vste_window.py
             --set model.init_from=$(ls -d results/fp/cifar_sanity/_ray/*/*/checkpoint_* | tail -1)
(``model.init_from`` takes the checkpoint folder or its state.pt; a state of another architecture,
width or nonlinearity is refused before Ray starts; the initialized trials ignore it.)
"""
from lowbit_core.sweep import Profile, Resources, Sweep, grid

SWEEP = Sweep(
    name="resnet_vste_window",
    family="gradstats",
    questions=("vste-resnet",),
    base={"data.name": "cifar10", "data.n_train": 5000, "data.n_test": 2000, "model.arch": "resnet20",
          "quant.weight_unit": "std", "state.pretrain_epochs": 5, "train.epochs": 2,
          "stats.batches": 16, "stats.reference_batches": 32, "stats.batch_size": 128},
    space={
        # nSTE (its width and unit reset: one setting), the window and the value clip at widths
        # 0.5, 1, 2 times the layer's std (of W for the window, of the upstream gradient for the clip)
        "quant.weight_estimator": grid("identity", "window", "value_clip"),
        "quant.weight_param": grid(0.5, 1.0, 2.0),
        "state.kind": grid("init", "pretrained"),
        "quant.threshold": grid(0.0, 0.5),
        "quant.act_threshold": grid(0.0, 0.25),
    },
    metric="test_acc",
    mode="max",
    seeds=(0, 1),
    resources=Resources(cpu=1, gpu=0.25),
    retries=1,
    profiles={
        "smoke": Profile(
            base={"data.name": "synthetic", "data.n_train": 512, "data.n_test": 128, "model.width": 4,
                  "state.pretrain_epochs": 1, "train.epochs": 1, "train.batch_size": 32, "train.steps_per_epoch": 3,
                  "stats.batches": 3, "stats.reference_batches": 4, "stats.batch_size": 32},
            space={"quant.weight_estimator": grid("identity", "window"), "quant.weight_param": grid(1.0),
                   "quant.act_threshold": grid(0.0)},
            seeds=(0,),
            description="synthetic images, width-4 ResNet-20, 1 epoch of 3 steps, 8 trials",
        ),
        "full": Profile(
            base={"data.n_train": 0, "data.n_test": 0, "state.pretrain_epochs": 20, "train.epochs": 10,
                  "stats.batches": 64, "stats.reference_batches": 256},
            space={"quant.weight_param": grid(0.25, 0.5, 1.0, 2.0, 4.0), "quant.threshold": grid(0.0, 0.25, 0.5),
                   "quant.act_threshold": grid(0.0, 0.1, 0.25)},
            seeds=(0, 1, 2),
            description="all 50k images, 20 + 10 epochs, M = 64 / 256, 5 widths, 3 thresholds each side, 3 seeds",
        ),
    },
)
