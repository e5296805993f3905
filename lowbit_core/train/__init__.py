"""CIFAR classification training (the ``train`` family): typed config (:mod:`.config`), data
(:mod:`.data`), init schemes and perturbation (:mod:`.init`), the loop (:mod:`.loop`) and its
checkpoint state (:mod:`.checkpoint`). Ray-free: the trainable turns the loop's
``report(metrics, state=...)`` into ``ray.tune.report`` with a ``tune.Checkpoint``.
"""
