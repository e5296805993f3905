"""Training state <-> a checkpoint folder (Ray-free; the trainable wraps the folder in ``tune.Checkpoint``).

The state the loop hands to ``report(metrics, state=...)`` is a plain dict of CPU tensors, numbers,
strings, lists and dicts -- exactly what ``torch.load(..., weights_only=True)`` accepts, so loading a
checkpoint never unpickles arbitrary objects::

    {"format": 1, "epoch": epochs completed (global), "phase": "pretrain" | "finetune" | "scratch",
     "train_steps": optimizer steps so far, "best_test_acc": float,
     "model": model.state_dict(), "optimizer": optimizer.state_dict(),
     "scheduler": {"kind": "cosine", "phase_step": steps done in the phase, "phase_steps": its total},
     "rng": {"data": data generator state, "perturb": perturbation generator state,
             "torch": torch.get_rng_state(), "cuda": [per-device states]}}

The lr schedule is a pure function of the phase step (:func:`lowbit_core.train.loop.cosine_lr`), so
its state is that counter.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

STATE_FILE = "state.pt"
FORMAT = 1


def to_cpu(obj: Any) -> Any:
    """A deep copy of ``obj`` with every tensor detached, cloned and moved to the CPU."""
    if isinstance(obj, torch.Tensor):
        return obj.detach().to("cpu", copy=True)
    if isinstance(obj, dict):
        return {k: to_cpu(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(to_cpu(v) for v in obj)
    return obj


def save_state(state: dict, folder: str | Path) -> Path:
    """Write ``state`` to ``<folder>/state.pt`` (the folder is created); returns the file."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / STATE_FILE
    torch.save(state, path)
    return path


def load_state(folder: str | Path) -> dict:
    """Read ``<folder>/state.pt`` with ``weights_only=True`` onto the CPU; checks the format."""
    path = Path(folder) / STATE_FILE
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint folder {folder} has no {STATE_FILE}")
    state = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise ValueError(f"{path}: not a training state of format {FORMAT}")
    return state


__all__ = ["STATE_FILE", "FORMAT", "to_cpu", "save_state", "load_state"]
