"""The ``train`` family: CIFAR ResNets (FP, binary, k-bit) trained per epoch, with FP pretraining,
mixup, DSQ, perturbation and model selection on a validation split. The package: typed config
(:mod:`.config`), driver-side checks (:mod:`.preflight`), data (:mod:`.data`), init schemes and
perturbation (:mod:`.init`), the model of a phase (:mod:`.model`), the Ray-free loop (:mod:`.run`) and
the trial's cost (:mod:`.cost`); checkpoints, RNG state, phases and evaluation are the shared
:mod:`lowbit_core.training`. This module declares the family.

``run(cfg, report, device, start_state=None)`` reports once per epoch, with ``report(metrics,
state=...)`` on checkpoint epochs. Every row carries the cost of the trial's final model
(:mod:`lowbit_core.cost`). Selection (schedulers, searches) reads validation and training metrics only,
never a ``test_*`` one.
"""
from __future__ import annotations

from lowbit_core.families import Family, register_family

TEST_METRICS = ("test_loss", "test_acc", "best_test_acc", "selected_test_acc")


@register_family
def train_family() -> Family:
    from lowbit_core.families.train.config import TrainConfig, canonicalize
    from lowbit_core.families.train.cost import train_cost
    from lowbit_core.families.train.preflight import preflight
    from lowbit_core.families.train.run import TRAIN_METRICS, train

    return Family("train", TrainConfig, train, TRAIN_METRICS, canonicalize, preflight, epoch_key="train.epochs",
                  selection_metrics=frozenset(m for m in TRAIN_METRICS if m not in TEST_METRICS),
                  checkpoints=True, cost=train_cost, baseline={"quant.weight_estimator": "identity"})
