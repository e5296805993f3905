"""Is Discrete Gradient (DG) a usable reference (upper bound) for STE inside the budget?

Question (meeting record, "DG validation"): on the first layer of a toy FP and binary MLP, inside
the L-inf box |w - w0| <= 0.1 shared by all methods and on one fixed batch, does DG -- exact
per-coordinate loss changes, sorted, the best coordinates taken until the measured loss stops
improving -- reach a lower loss than single-step STE (the normalized-gradient lr scan) and
multi-step STE (SGD, 100 steps)? Does multi-step DG (budget split evenly over S steps, objectives
recomputed at the updated point) improve with S? CDG (coordinate-descent DG, re-evaluating after
accepted moves) is the third discrete variant. Rules: lowbit_core/probes/dg.py.

Expected (the seed's finding): single-step DG is not strong enough to bound STE from above; more
DG steps help; CDG within a move cap of a few hundred moves changes few weights and stays weak.

Cost (2 CPU cores): smoke ~1 min; default 36 trials (64-64 MLP, batch 1024), 99 s measured; full
(128-128 MLP, batch 8192, S up to 16, 2000 CDG moves, 5 seeds) meant for a cluster.

Command: python launch/sweep.py sweeps/dg_vs_ste.py [--smoke | --profile full]
then:    python analysis/report.py results/dg_vs_ste
"""
from lowbit_core.sweep import Profile, Resources, Sweep, grid

SWEEP = Sweep(
    name="dg_vs_ste",
    family="probe",
    questions=("dg-upper-bound",),
    base={"model.hidden": (64, 64), "data.batch_size": 1024, "multi.optimizer": "sgd", "multi.lr": 0.002,
          "multi.steps": 100, "dg.fp_moves": (1.0,), "dg.cdg_max_moves": 200, "dg.cdg_refresh": 20, "dg.cdg_shortlist": 256,
          "dg.report_every": 10},
    space={
        "model.kind": grid("fp", "binary"),
        "method": grid("ste", "dg", "cdg"),
        "dg.steps": grid(1, 2, 4, 8),
    },
    metric="best_loss",
    mode="min",
    seeds=(0, 1, 2),
    resources=Resources(cpu=1, gpu=0.25),
    profiles={
        "smoke": Profile(
            base={"model.hidden": (16, 16), "model.pretrain_steps": 50, "data.batch_size": 256,
                  "scan.lr_step": 1e-2, "multi.steps": 20, "multi.report_every": 10,
                  "dg.cdg_max_moves": 10, "dg.cdg_refresh": 5, "dg.cdg_shortlist": 32, "dg.report_every": 5},
            space={"dg.steps": grid(1, 3)},
            seeds=(0,),
            description="1 seed, tiny MLP, batch 256, DG S in {1, 3}, 10 CDG moves",
        ),
        "full": Profile(
            base={"model.hidden": (128, 128), "data.batch_size": 8192, "scan.lr_step": 1e-5,
                  "multi.steps": 1000, "multi.report_every": 50, "dg.cdg_max_moves": 2000,
                  "dg.cdg_refresh": 50, "dg.report_every": 50},
            space={"dg.steps": grid(1, 2, 4, 8, 16)},
            seeds=(0, 1, 2, 3, 4),
            description="the seed's scale: batch 8192, 10^4-point lr scan, DG up to 16 steps",
        ),
    },
)
