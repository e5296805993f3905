"""Where does the budget bind? The gain of multi-step STE and DG over single-step STE against epsilon.

Question (issue #10; meeting record, "DG, STE and CDG share one budget, epsilon = 0.1"): on real
MNIST at epsilon = 0.1 the box admits almost every first-layer sign flip and a 200-step search
drives the probe batch's loss close to zero, so the relative improvement (L_single - L) / L_single
saturates near 1 and says little about STE. Over epsilon on a log grid from 1e-3 to 1e-1, for the FP
(red in the report) and the binary MLP (blue): how does the relative improvement of multi-step STE
(SGD) and of single-step DG (multi-step DG, S = 4 and 8, in the full profile) over the single-step
STE lr scan change, on the probe batch and on a held-out batch of the same size that no method
sees, and at which epsilon does it stop growing (the budget stops binding)? Each trial also reports ``reach_frac``:
binary, the fraction of first-layer weights with |w0| <= epsilon (the flippable ones); FP, mean
|delta| / mean |w0| of the answer. Step sizes are in units of epsilon (the scan covers 0.01..1 x
epsilon, multi-step SGD moves the largest coordinate by epsilon / 20 per step), so every epsilon gets
the same search.

Expected: at small epsilon the box binds: few binary weights can flip (reach_frac ~ epsilon / typical
|w0|), every method stays near the start and the relative improvements are small; they grow with
epsilon and saturate (within 10% of their largest value) once the box holds most of what the
search wants to do; the held-out improvement is smaller than the batch's and turns negative where the
search memorizes the batch. Measured (default profile, 3 seeds): on MNIST multi-step STE's batch
improvement rises from +0.16 (binary) / +0.13 (FP) at epsilon = 1e-3 to +0.93 / +0.99 at 0.1 and is
within 10% of that from epsilon = 0.02 (where half the binary weights can flip); its held-out
improvement is positive only for epsilon <= 2e-3 (+0.04) and falls to -0.32 / -0.73 at 0.1. On the
synthetic task the batch improvement is still rising at 0.1 (+0.48 binary, +0.90 FP).

Cost (2 CPU cores, shared with other jobs when measured): smoke ~1 min (8 trials); default 84
trials (2 kinds x 7 epsilons x {multi-step STE, DG} x 3 seeds; 128-128 MLP, batch 1024), measured
10 min on the synthetic task and 40 min on MNIST (784-128-128: 100,352 first-layer weights);
full (batch 8192, the 10^4-point scan, 1000 SGD steps, DG S in {1, 4, 8}, 11 epsilons, 5 seeds)
meant for a cluster.

Command: python launch/sweep.py sweeps/budget_curve.py [--smoke | --profile full]
         [--set data.name=mnist --set data.root=DIR]   (DIR/MNIST/raw/ holds the unpacked IDX files)
then:    python analysis/report.py results/budget_curve
"""
from lowbit_core.sweep import Profile, Resources, Sweep, grid

EPSILONS = grid(1e-3, 2e-3, 5e-3, 1e-2, 2e-2, 5e-2, 1e-1)

SWEEP = Sweep(
    name="budget_curve",
    family="probe",
    questions=("budget-binds", "multistep-vs-single", "dg-upper-bound"),
    base={"scan.unit": "epsilon", "scan.lr_min": 0.01, "scan.lr_max": 1.0, "scan.lr_step": 0.01,
          "multi.optimizer": "sgd", "multi.lr_unit": "epsilon", "multi.lr": 0.05, "multi.steps": 200,
          "multi.report_every": 20, "dg.fp_moves": (1.0,)},
    space={
        "model.kind": grid("fp", "binary"),
        "budget.epsilon": EPSILONS,
        "method": grid("ste", "dg"),
    },
    metric="rel_improvement_best",
    mode="max",
    seeds=(0, 1, 2),
    resources=Resources(cpu=1, gpu=0.25),
    profiles={
        "smoke": Profile(
            base={"model.hidden": (16, 16), "model.pretrain_steps": 50, "data.batch_size": 256,
                  "scan.lr_step": 0.1, "multi.steps": 20, "multi.report_every": 10},
            space={"budget.epsilon": grid(0.01, 0.1)},
            seeds=(0,),
            description="1 seed, tiny MLP, batch 256, epsilon in {0.01, 0.1}",
        ),
        "full": Profile(
            base={"data.batch_size": 8192, "scan.lr_min": 1e-4, "scan.lr_step": 1e-4, "multi.steps": 1000,
                  "multi.lr": 0.01, "multi.report_every": 50},
            space={"budget.epsilon": grid(1e-3, 2e-3, 3e-3, 5e-3, 7e-3, 1e-2, 2e-2, 3e-2, 5e-2, 7e-2, 1e-1),
                   "dg.steps": grid(1, 4, 8)},
            seeds=(0, 1, 2, 3, 4),
            description="the seed's scale: batch 8192, 10^4-point scan (1e-4..1 x epsilon), 1000 SGD steps",
        ),
    },
)
