"""vSTE vs nSTE inside one budget: does the estimator change what a single STE step finds?

Question (meeting record, "variant STE vs normal STE"): with the first layer of a toy binary MLP
moved inside an L-inf box of radius 0.1 and all estimators on the same fixed batch, do the variant
STEs -- the gradient's values clipped to [-c, c] (the seed's c = 0.5) or a window g*1{|w| <= t} --
reach a different loss than the identity STE (nSTE)? The FP MLP (exact gradient) is the control.
Batch sizes 1024 and 8192, as in the seed.

Expected: at the seed's c = 0.5 the clip never binds (per-coordinate gradients of a mean loss are
orders of magnitude smaller), so vSTE == nSTE exactly; only clip values near the gradient's scale
(1e-3..1e-4 here) or windows narrower than the latent weights change the gradient
(``grad_clipped_frac`` > 0), and then by little. grad_cos_identity shows how much.

Cost (2 CPU cores): smoke ~1 min; default 48 trials, ~2 min; full (10^4-point lr scan, 5 seeds,
1000 multi-step iterations) ~an hour on CPU, meant for a cluster.

Command: python launch/sweep.py sweeps/vste_window.py [--smoke | --profile full]
then:    python analysis/report.py results/vste_window
"""
from lowbit_core.sweep import Profile, Resources, Sweep, grid

ESTIMATORS = grid("identity", "value_clip", "window")

SWEEP = Sweep(
    name="vste_window",
    family="probe",
    questions=("vste-vs-nste",),
    base={"multi.optimizer": "sgd", "multi.lr": 0.002, "multi.steps": 100, "multi.report_every": 10},
    space={
        "model.kind": grid("fp", "binary"),
        "estimator.name": ESTIMATORS,
        "estimator.clip": grid(0.5, 1e-3, 1e-4),
        "estimator.window": grid(1.0, 0.1, 0.05),
        "data.batch_size": grid(1024, 8192),
    },
    metric="single_best_loss",
    mode="min",
    seeds=(0, 1, 2),
    resources=Resources(cpu=1, gpu=0.25),
    profiles={
        "smoke": Profile(
            base={"model.hidden": (32, 32), "model.pretrain_steps": 50, "scan.lr_step": 1e-2,
                  "multi.steps": 20, "multi.report_every": 10},
            space={"estimator.clip": grid(0.5, 1e-3), "estimator.window": grid(1.0, 0.05),
                   "data.batch_size": grid(1024)},
            seeds=(0, 1),
            description="2 seeds, batch 1024, 10-point lr scan, tiny MLP",
        ),
        "full": Profile(
            base={"scan.lr_step": 1e-5, "multi.steps": 1000, "multi.report_every": 50},
            space={"estimator.clip": grid(0.5, 0.1, 1e-2, 1e-3, 3e-4, 1e-4),
                   "estimator.window": grid(1.0, 0.5, 0.1, 0.05, 0.02)},
            seeds=(0, 1, 2, 3, 4),
            description="the seed's scale: lr scan 1e-5..1e-1 by 1e-5 (10^4 points), batch 1024 and 8192",
        ),
    },
)
