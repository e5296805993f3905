"""What the training families share, as public names a family imports (never another family's
private ones): the checkpoint state on disk and a model state to start from (:mod:`.checkpoint`),
saving and restoring random generators (:mod:`.rng`), a training run's phases (:mod:`.phases`),
and classification evaluation (:mod:`.evaluate`). Ray-free.
"""
