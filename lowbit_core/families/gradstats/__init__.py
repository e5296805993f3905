"""The ``gradstats`` family: gradient statistics of sign estimators on a binary CIFAR ResNet (rows at
the start state, initialized or FP-pretrained, and after each fine-tuning epoch; per-layer
statistics as list columns). The package: typed config (:mod:`.config`) and the Ray-free run
(:mod:`.run`); the probe itself is :mod:`lowbit_core.probes.gradient_stats`, fine-tuning is the
``train`` family's loop (its public :mod:`lowbit_core.families.train.run`). This module declares the
family. No checkpoints (a retried trial starts over); rows carry the cost of the trial's binary
model. Its rows are not one per epoch (a start row precedes the epochs), so it takes no scheduler.
"""
from __future__ import annotations

from lowbit_core.families import Family, register_family

TEST_METRICS = ("test_acc", "test_loss", "pretrain_test_acc")


@register_family
def gradstats_family() -> Family:
    from lowbit_core.families.gradstats.config import GradStatsConfig, canonicalize, finetune_config, preflight
    from lowbit_core.families.gradstats.run import GRADSTATS_METRICS, run_gradstats
    from lowbit_core.families.train.cost import train_cost
    from lowbit_core.quant.estimator_registry import REFERENCE

    def cost(cfg):
        return train_cost(finetune_config(cfg))

    return Family("gradstats", GradStatsConfig, run_gradstats, GRADSTATS_METRICS, canonicalize, preflight,
                  path_keys=("data.root", "model.init_from"),
                  selection_metrics=frozenset(m for m in GRADSTATS_METRICS if m not in TEST_METRICS),
                  cost=cost, baseline={"quant.weight_estimator": REFERENCE})
