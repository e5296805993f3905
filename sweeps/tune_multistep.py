"""Does a tuned Adam beat SGD inside the budget? Optuna (TPE) per optimizer, FP and binary MLP.

Question: the meeting record found Adam noisy and hard to tune for the multi-step search inside
the box |w - w0| <= 0.1. Tune each optimizer's hyperparameters separately -- lr (log scale) for all,
momentum for SGDm, beta1/beta2 for Adam -- with Optuna's TPE sampler through Ray Tune's
OptunaSearch, one study per (model kind, optimizer, seed), maximizing the relative improvement over
the best single STE step. Compare the tuned best per optimizer, mean +- std over the seeds.

Expected: tuned SGD and SGDm close; a tuned Adam at least matches them (its per-coordinate steps
fill the box quickly), so "hard to tune" is about the lr, not a weaker optimizer.

Cost (2 CPU cores): smoke ~1 min (4 samples per study); default 12 studies x 10 samples, ~4 min;
full 5 seeds x 40 samples, batch 8192, meant for a cluster.

Command: python launch/sweep.py sweeps/tune_multistep.py [--smoke | --profile full]
then:    python analysis/report.py results/tune_multistep
"""
from lowbit_core.sweep import LogUniform, Optuna, Profile, Resources, Sweep, Uniform, grid

SWEEP = Sweep(
    name="tune_multistep",
    family="probe",
    questions=("multistep-vs-single",),
    base={"multi.steps": 100, "multi.report_every": 20, "scan.lr_step": 2e-3},
    space={
        "model.kind": grid("fp", "binary"),
        "multi.optimizer": grid("sgd", "sgdm", "adam"),
        "multi.lr": LogUniform(1e-4, 5e-2),
        "multi.momentum": Uniform(0.5, 0.99, when={"multi.optimizer": "sgdm"}),
        "multi.beta1": Uniform(0.5, 0.99, when={"multi.optimizer": "adam"}),
        "multi.beta2": Uniform(0.9, 0.9999, when={"multi.optimizer": "adam"}),
    },
    metric="rel_improvement_best",
    mode="max",
    seeds=(0, 1),
    resources=Resources(cpu=1, gpu=0.25),
    search=Optuna(num_samples=10, sampler_seed=0),
    profiles={
        "smoke": Profile(
            base={"model.hidden": (32, 32), "model.pretrain_steps": 50, "scan.lr_step": 1e-2,
                  "multi.steps": 20, "multi.report_every": 10},
            space={"model.kind": grid("binary")},
            seeds=(0,),
            num_samples=4,
            description="binary MLP only, 1 seed, 4 samples per optimizer",
        ),
        "full": Profile(
            base={"data.batch_size": 8192, "scan.lr_step": 1e-5, "multi.steps": 500},
            seeds=(0, 1, 2, 3, 4),
            num_samples=40,
            description="batch 8192, 10^4-point scan, 5 seeds x 40 samples per optimizer",
        ),
    },
)
