"""The ``gradstats`` family: gradient statistics of sign estimators on a binary CIFAR ResNet, on an
initialized or an FP-pretrained state, before and after a short fine-tuning budget with the trial's
estimators. Typed config in :mod:`.config`; the Ray-free run function in :mod:`.run`; the probe
itself is :mod:`lowbit_core.probes.gradient_stats`; training uses :mod:`lowbit_core.train.loop`."""
