"""Discrete methods for a discrete problem: ADMM, a genetic algorithm and CMA-ES against multi-step
STE and DG at equal compute (forward-pass equivalents), as the probed layer grows.

Question (meeting record, notes: "routes to solve the optimization problem: discrete methods for a
discrete problem, e.g. ADMM (with STE checkpoints); genetic algorithms struggle in high
dimensions"): inside the box |w - w0| <= 0.1 on the first layer of the toy MLP (FP and binary), on
one fixed batch, and with every method given the same compute on that batch -- 2.5 forward-pass
equivalents per weight of the layer (``budget.fwd_equiv_per_weight``; fwd_equiv = loss_evals + 2 x
grad_evals: every forward pass counts 1 and every backward pass 2, the usual estimate that a backward
pass costs two forward passes, Kaplan et al. 2020; see lowbit_core/probes/evals.py) -- which method
reaches the lowest loss, and how does that change as the first layer widens from 8 to 128 units
(256 to 4096 weights)? Methods: multi-step STE (SGD), single-step DG, ADMM from the STE checkpoint
(Leng et al., AAAI 2018; lowbit_core/probes/admm.py), a genetic algorithm over the reachable coordinates
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

Measured at equal compute (2026-12-02, the default profile, 3 seeds; cap 2.5 forward-pass
equivalents per weight; (L - L_multi-step STE) / L_multi-step STE of the final best_loss, paired on
seed, mean ± std over the 3 seeds, n = 3 in every cell):

    binary   weights:  256           512           1024          2048          4096
      DG S=1         +0.6 ± 0.1%   +2.2 ± 0.9%   +7.0 ± 1.7%   +13.3 ± 1.6%  +28.6 ± 4.3%
      ADMM           +1.2 ± 0.6%   +1.4 ± 0.5%   +2.1 ± 0.6%   +1.5 ± 0.5%   +1.4 ± 0.5%
      GA             +1.6 ± 0.7%   +2.2 ± 0.3%   +4.1 ± 1.4%   +7.4 ± 1.5%   +13.9 ± 1.7%
      CMA-ES         +1.5 ± 0.3%   +3.3 ± 0.8%   +5.9 ± 1.4%   +12.9 ± 1.3%  +27.4 ± 2.3%
    fp
      DG S=1         +6.2 ± 1.4%   +12.6 ± 2.6%  +34.1 ± 4.5%  +72.2 ± 2.2%  +149.8 ± 15.4%
      ADMM           -0.3 ± 0.5%   -0.6 ± 0.3%   -0.7 ± 0.3%   -0.8 ± 0.1%   -0.1 ± 0.3%
      GA             +13.8 ± 0.9%  +21.8 ± 1.8%  +43.3 ± 1.8%  +81.3 ± 2.6%  +149.9 ± 8.8%
      CMA-ES         +8.1 ± 1.3%   +11.1 ± 1.6%  +21.0 ± 0.7%  +37.3 ± 0.9%  +66.5 ± 3.4%

In the old table's shape, 256 -> 4096 weights: binary GA +1.6% -> +13.9%, CMA-ES +1.5% -> +27.4%, DG
+0.6% -> +28.6%, ADMM +1.2% -> +1.4% (within 2.1% at every width); FP GA +14% -> +150%, CMA-ES +8% ->
+67%, ADMM -0.1% to -0.8%. Cost used (forward / backward / fwd_equiv, cap 640 at 256 weights and
10240 at 4096): multi-step STE 214 / 213 / 640 and 3414 / 3413 / 10240 (213 and 3413 steps);
ADMM 287-330 / 153-175 / 637 and 4438-4446 / 2897-2900 / 10240; GA and CMA-ES 621-632 and
10219-10232 forward passes, no backward; DG ends its single step below the cap (binary 160 and 2077,
FP 543 and 8227). The conclusions stand at equal compute: the population methods fall behind
multi-step STE as the layer grows (paired change of the ratio from 256 to 4096 weights, 95% interval:
binary GA +12.3 [+8.1, +16.5] pp, CMA-ES +25.9 [+19.7, +32.0] pp; FP GA +136 [+113, +159] pp, CMA-ES
+58 [+50, +66] pp), and ADMM from the STE checkpoint ends within 2.1% of multi-step STE. At the
two widths the old summary gives (256 and 4096), every ratio moved by at most 1.5 points (FP CMA-ES
at 4096: +68% -> +66.5%). On the held-out batch most of the gain is gone again (binary multi-step STE
at 4096 weights: rel_improvement_heldout +0.007 ± 0.022 vs +0.254 ± 0.013 on the probe batch).
Multi-step STE's loss still falls when the cap stops it, more on the narrow layers (FP, seed 0: 256
weights, best loss 1.167 after a third of its 213 steps, 1.088 at the end; 4096 weights, 0.186 and
0.183).
Command: python launch/sweep.py sweeps/discrete_baselines.py --results /work/coord/results_db
--max-concurrent 1 (run from a checkout of commit 2d01284), then python analysis/report.py
/work/coord/results_db/discrete_baselines; measured 25 min 14 s wall beside other work (load average
13 at one reading, 2 cores).

Why the budget stays 2.5 per weight: the cap now counts what the cap used to leave out, so a
multi-step STE step costs 3 instead of 1 and STE gets 0.83 steps per weight (213 steps at 256
weights, 3413 at 4096) instead of 2.5. That is still a meaningful budget: at lr 0.002 with
max-normalized gradients the coordinate with the largest gradient moves 0.002 per step and can cross
the box (2 epsilon = 0.2) in 100 steps, so even the smallest layer's STE can cross it twice. The
methods without backward passes (DG, GA, CMA-ES) get exactly the allowance they had (their fwd_equiv
is their forward count), so their runs are the old runs (by construction: same seeds, same cap on the
same counts) and the before/after difference isolates the accounting; tripling the budget to give
STE its old step count would have tripled the population methods' run time.

Measured before the change (2026-12-02, the same profile, but the cap, then budget.evals_per_weight =
2.5, counted forward passes only, so multi-step STE and ADMM had their backward passes free: about 3x
the compute of GA and CMA-ES for STE; (L - L_multi-step STE) / L_multi-step STE, paired on seed,
mean over seeds, at 256 -> 4096 first-layer weights): binary GA +1.5% -> +14.7%, CMA-ES +1.6% ->
+28.3%, DG +0.5% -> +29.5%, ADMM +0.7% -> +0.9% (within 1% at every width); FP GA +15% -> +151%,
CMA-ES +9% -> +68%, ADMM within 0.3%. The population methods fall behind as the dimension grows, as
the meeting record says; ADMM from the STE checkpoint ends where multi-step STE ends, never clearly
lower. On the held-out batch most of every method's gain is gone (binary multi-step STE at 4096
weights: +0.004 ± 0.017 vs +0.26 on the probe batch).

Cost (2 CPU cores): smoke ~1 min (10 trials); default 150 trials (5 methods x 2 kinds x 5 widths x 3
seeds; 32 input features, batch 1024), measured 26 min wall with --max-concurrent 1 beside other
work (2026-12-02, cap on forward passes) and 25 min at equal forward-pass equivalents; full
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
