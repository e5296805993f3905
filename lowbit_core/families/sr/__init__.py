"""The ``sr`` family: low-bit super-resolution (EDSR in FP / k-bit / binary) on HR folders with
MATLAB-bicubic LR images. The package: typed config (:mod:`.config`), driver-side checks
(:mod:`.preflight`) and the Ray-free loop with its cost (:mod:`.run`); checkpoints, RNG state and
phases are the shared :mod:`lowbit_core.training`. This module declares the family.

Reports once per epoch (checkpoints like ``train``). Every row carries the cost of the trial's final
EDSR for a 192 x 192 HR output. The test sets' PSNR/SSIM (and the bicubic baseline, crops and image
counts measured on them) are test metrics: a scheduler or a search reads the validation metrics
(``val_*``) and the training loss only.
"""
from __future__ import annotations

from lowbit_core.families import Family, register_family


@register_family
def sr_family() -> Family:
    from lowbit_core.families.sr.config import SRConfig, canonicalize
    from lowbit_core.families.sr.preflight import preflight
    from lowbit_core.families.sr.run import SET_METRICS, SR_METRICS, sr_cost, train_sr

    def is_test(metric: str) -> bool:
        return metric.split(".")[0] in SET_METRICS or metric.startswith(("n_images.", "crop_"))

    return Family("sr", SRConfig, train_sr, SR_METRICS, canonicalize, preflight,
                  path_keys=("data.root", "data.test_root", "data.custom_test", "data.val_root"), epoch_key="train.epochs",
                  selection_metrics=frozenset(m for m in SR_METRICS if not is_test(m)), checkpoints=True,
                  cost=sr_cost)
