"""Discrete methods for a discrete problem: ADMM, a genetic algorithm and CMA-ES against multi-step
STE and DG at equal compute (forward-pass equivalents), as the probed layer grows.

Question (meeting record, notes: "routes to solve the optimization problem: discrete methods for a
discrete problem, e.g. ADMM (with STE checkpoints); genetic algorithms struggle in high
dimensions"): inside the box |w - w0| <= 0.1 on the first layer of the toy MLP (FP and binary), on
one fixed batch, and with every method given the same compute on that batch -- 2.5 forward-pass
equivalents per weight of the layer (``budget.fwd_equiv_per_weight``; fwd_equiv = loss_evals + 2 x
grad_evals: every forward pass counts 1 and every backward pass 2, the usual estimate that a backward
pass costs two forward passes, Kaplan et al. 2020; see lowbit_core/probes/evals.py) -- which method
reaches the lowest loss, and how does that change as the first layer widens from 8 to 128 units (256 to 4096 weights)? Methods: multi-step
STE (SGD), single-step DG, ADMM from the STE checkpoint (Leng et al., AAAI 2018;
lowbit_core/probes/admm.py), a genetic algorithm over the reachable coordinates
(lowbit_core/probes/genetic.py) and separable CMA-ES from the `cma` library
(lowbit_core/probes/evolution_strategy.py); the single-step STE scan is in every trial. Every
method's answer is also evaluated on a held-out batch. ADMM's penalty grows slowly here (x1.003 per
iteration): the runs are long (200 to 3400 iterations), and the default x1.05 freezes V on its
projection within about 200 iterations (measured on the widest binary layer: best loss 0.65 with
x1.05, 0.60 with x1.01, 0.58 with x1.003 at the same 10240 evaluations).

Expected (the meeting record's claim): the population methods (GA, CMA-ES) fall behind the
gradient and coordinate methods as the dimension grows at a fixed per-weight budget; ADMM from the
STE checkpoint is never worse than that checkpoint and ends near multi-step STE; DG (one exact
evaluation per coordinate) spends its budget on one step and ends behind multi-step STE.

Measured (default profile, 3 seeds; (L - L_multi-step STE) / L_multi-step STE, paired on seed, mean
± std over seeds, at 256 -> 4096 first-layer weights): binary GA +1.5% -> +14.7%, CMA-ES +1.6% ->
+28.3%, DG +0.5% -> +29.5%, ADMM +0.7% -> +0.9% (within 1% at every width); FP GA +15% -> +151%,
CMA-ES +9% -> +68%, ADMM within 0.3%. The population methods fall behind as the dimension grows, as
the meeting record says; ADMM from the STE checkpoint ends where multi-step STE ends, never clearly
lower. On the held-out batch most of every method's gain is gone (binary multi-step STE at 4096
weights: +0.004 ± 0.017 vs +0.26 on the probe batch).

Cost (2 CPU cores): smoke ~1 min (10 trials); default 150 trials (5 methods x 2 kinds x 5 widths x 3
seeds; 32 input features, batch 1024), measured 26 min wall with --max-concurrent 1 beside other
work (2026-12-02); full
(batch 8192, 64 input features, widths 16..256, 4 forward-pass equivalents per weight, 5 seeds) meant for a
cluster.

Command: python launch/sweep.py sweeps/discrete_baselines.py [--smoke | --profile full]
then:    python analysis/report.py results/discrete_baselines
"""
from lowbit_core.sweep import Profile, Resources, Sweep, grid

UNCAPPED = 10**7
"""Step counts of the methods: the compute cap (budget.fwd_equiv_per_weight) ends every run."""

SWEEP = Sweep(
    name="discrete_baselines",
    family="probe",
    questions=("discrete-methods",),
    base={"data.n_features": 32, "budget.fwd_equiv_per_weight": 2.5,
          "multi.optimizer": "sgd", "multi.lr": 0.002, "multi.steps": UNCAPPED, "multi.report_every": 50,
          "dg.fp_moves": (1.0,), "admm.start": "ste", "admm.iterations": UNCAPPED, "admm.rho_growth": 1.003,
          "admm.report_every": 20,
          "ga.generations": UNCAPPED, "ga.report_every": 5, "es.generations": UNCAPPED, "es.report_every": 5},
    space={
        "model.kind": grid("fp", "binary"),
        "model.hidden": grid((8, 64), (16, 64), (32, 64), (64, 64), (128, 64)),
        "method": grid("ste", "dg", "admm", "ga", "es"),
    },
    metric="best_loss",
    mode="min",
    seeds=(0, 1, 2),
    resources=Resources(cpu=1, gpu=0.25),
    profiles={
        "smoke": Profile(
            base={"model.pretrain_steps": 50, "data.batch_size": 256, "data.n_features": 16,
                  "scan.lr_step": 1e-2, "budget.fwd_equiv_per_weight": 1.5},
            space={"model.kind": grid("binary"), "model.hidden": grid((4, 16), (16, 16))},
            seeds=(0,),
            description="binary MLP, 1 seed, batch 256, widths 4 and 16 (64 and 256 weights), 1.5 forward-pass equivalents per weight",
        ),
        "full": Profile(
            base={"data.batch_size": 8192, "data.n_features": 64, "scan.lr_step": 1e-5,
                  "budget.fwd_equiv_per_weight": 4.0, "admm.rho_growth": 1.001, "multi.report_every": 200,
                  "admm.report_every": 100,
                  "ga.report_every": 20, "es.report_every": 20},
            space={"model.hidden": grid((16, 64), (32, 64), (64, 64), (128, 64), (256, 64))},
            seeds=(0, 1, 2, 3, 4),
            description="batch 8192, 64 inputs, widths 16..256 (1024..16384 weights), 4 forward-pass equivalents per weight, 5 seeds",
        ),
    },
)
