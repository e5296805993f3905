"""Driver-side checks of a ``train``-family trial before Ray starts (:func:`preflight`). Apart from
:mod:`.config`, so that the config imports nothing else of the family: the checks read the data
loader's defaults (:mod:`.data`) and build the trial's model (:mod:`.model`).
"""
from __future__ import annotations

import functools
import os

from lowbit_core.families.train.config import TrainConfig
from lowbit_core.families.train.data import SYNTHETIC_DEFAULT
from lowbit_core.families.train.model import init_from_problem, quant_spec
from lowbit_core.quant.registry import kbit_problem


def _stamp(path: str):
    try:
        st = os.stat(path)
        return st.st_size, st.st_mtime_ns
    except OSError:
        return None


@functools.lru_cache(maxsize=16)
def _npz_summary(path: str, stamp) -> tuple[str | None, int, int]:
    """``(problem, n_train, n_classes)`` of an ``.npz`` (read once per planning run: cached on its
    path, size and mtime)."""
    from lowbit_core.data.cifar import read_cifar_npz

    try:
        x_train, _, _, _, n_classes = read_cifar_npz(path)
    except (OSError, ValueError) as exc:
        return str(exc), 0, 0
    return None, len(x_train), n_classes


def preflight(cfg: TrainConfig) -> str | None:
    """Driver-side, before Ray starts; the first problem as one line, or None:

    1. the data set's files must be readable (the message says where to put them); an ``.npz`` is
       read and checked whole (:func:`lowbit_core.data.cifar.read_cifar_npz`: image layout and
       dtype, labels, lengths, empty splits, class range);
    2. where the training-set size is known here (``npz``, ``synthetic``), ``data.val_fraction``
       must leave training images (the rule of :func:`lowbit_core.families.train.data.split_validation`);
    3. a ``model.init_from`` file must hold weights of the model this trial builds: its ``arch``
       record where it has one, and the tensor names and shapes of the model built on the CPU with
       the data's classes (:func:`lowbit_core.families.train.model.init_from_problem`);
    4. a k-bit model's quantizer must take its settings (each quantizer's ``check``, a plug-in's
       included: :func:`lowbit_core.quant.registry.kbit_problem`).
    """
    if cfg.model.kind == "kbit":
        problem = kbit_problem(lambda: quant_spec(cfg, "kbit"), cfg.quant.kbit, cfg.quant.bits)
        if problem:
            return problem
    d = cfg.data
    n_train = None
    if d.name == "synthetic":
        n_train, n_classes = d.n_train or SYNTHETIC_DEFAULT[0], d.n_classes
    elif d.name == "npz":
        problem, n_train, n_classes = _npz_summary(d.root, _stamp(d.root))
        if problem:
            return problem
    else:
        from lowbit_core.data.cifar import N_CLASSES, cifar_missing

        problem = cifar_missing(d.name, d.root)
        if problem:
            return problem
        n_classes = N_CLASSES[d.name]
    if n_train is not None:
        n = n_train if d.n_train <= 0 else min(d.n_train, n_train)
        if round(d.val_fraction * n) >= n:
            return f"data.val_fraction={d.val_fraction} leaves no training images of {n}"
    if cfg.model.init_from:
        return init_from_problem(cfg, n_classes)
    return None


__all__ = ["preflight"]
