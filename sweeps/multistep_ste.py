"""Multi-step vs single-step STE inside one budget, from clean and noisy starts.

Question (meeting record, "multi-step STE vs single-step STE, same budget"): inside the L-inf box
|w - w0| <= 0.1 on the first layer of a toy MLP, does a multi-step search (SGD, SGD with momentum,
Adam; delta clipped back into the box after every step) reach a lower loss than the best single
normalized STE step (lr scanned over [1e-5, 1e-1])? Starting from w0 + U(-a, a) noise (a <= 0.1)
probes what lies in the neighbourhood. FP MLP (exact gradient, red in the report) vs binary MLP
(nSTE, blue): if both behave alike, the effect is gradient descent's, not binarization's.

Expected (the seed's finding): multi-step beats single-step (relative improvement > 0) for both the
FP and the binary MLP, SGD and SGDm nearly equal, Adam noisier; noisy starts do not hurt and can
help.

Cost (2 CPU cores): smoke ~1 min; default 72 trials, ~2 min; full (batch 8192, 10^4-point scan,
5 seeds, 1000 iterations) meant for a cluster.

Command: python launch/sweep.py sweeps/multistep_ste.py [--smoke | --profile full]
then:    python analysis/report.py results/multistep_ste
"""
from lowbit_core.sweep import Profile, Resources, Sweep, grid

SWEEP = Sweep(
    name="multistep_ste",
    family="probe",
    questions=("multistep-vs-single",),
    base={"multi.lr": 0.002, "multi.steps": 200, "multi.report_every": 10, "estimator.name": "identity"},
    space={
        "model.kind": grid("fp", "binary"),
        "multi.optimizer": grid("sgd", "sgdm", "adam"),
        "multi.noise": grid(0.0, 0.025, 0.05, 0.1),
    },
    metric="rel_improvement_best",
    mode="max",
    seeds=(0, 1, 2),
    resources=Resources(cpu=1, gpu=0.25),
    profiles={
        "smoke": Profile(
            base={"model.hidden": (32, 32), "model.pretrain_steps": 50, "scan.lr_step": 1e-2,
                  "multi.steps": 20, "multi.report_every": 5},
            space={"multi.noise": grid(0.0, 0.05)},
            seeds=(0, 1),
            description="2 seeds, 2 noise levels, 20 iterations, tiny MLP",
        ),
        "full": Profile(
            base={"data.batch_size": 8192, "scan.lr_step": 1e-5, "multi.steps": 1000, "multi.report_every": 20},
            space={"multi.noise": grid(0.0, 0.01, 0.025, 0.05, 0.075, 0.1)},
            seeds=(0, 1, 2, 3, 4),
            description="the seed's scale: batch 8192, 10^4-point lr scan, 1000 iterations",
        ),
    },
)
