"""Training state <-> a checkpoint folder (Ray-free; the trainable wraps the folder in ``tune.Checkpoint``).

The state the loop hands to ``report(metrics, state=...)`` is a plain dict of CPU tensors, numbers,
strings, lists and dicts -- exactly what ``torch.load(..., weights_only=True)`` accepts, so loading a
checkpoint never unpickles arbitrary objects::

    {"format": 1, "epoch": epochs completed (global), "phase": "pretrain" | "finetune" | "scratch",
     "train_steps": optimizer steps so far, "best_test_acc": float,
     "selection": {"best_val_acc", "selected_epoch", "selected_test_acc"} (absent in older states),
     "model": model.state_dict(), "optimizer": optimizer.state_dict(),
     "scheduler": {"kind": "cosine", "phase_step": steps done in the phase, "phase_steps": its total},
     "rng": {"data": data generator state, "perturb": perturbation generator state,
             "torch": torch.get_rng_state(), "cuda": [per-device states]}}

The lr schedule is a pure function of the phase step (:func:`lowbit_core.train.loop.cosine_lr`), so
its state is that counter.

Next to ``state.pt`` the trainable writes a marker, ``lowbit_checkpoint.json`` (:func:`write_marker`):
``{"format": 1, "trial_key": ..., "step": last reported step, "epoch": state["epoch"], "size": bytes,
"sha256": hex digest of state.pt}``. It is what finds a trial's checkpoints again after the driver was
killed (``--resume`` matches on the trial key, not on Ray's folder names), and what tells a complete
checkpoint from one cut short while it was being written or copied: :func:`load_checkpoint` accepts a
folder only if the marker names the trial, the file has that size and digest, and the state loads
(``weights_only=True``) with that epoch; :func:`load_first_valid` skips the folders that fail.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any, Iterable

import torch

STATE_FILE = "state.pt"
MARKER_FILE = "lowbit_checkpoint.json"
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


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def write_marker(folder: str | Path, trial_key: str, step: int, epoch: int) -> Path:
    """Write ``<folder>/lowbit_checkpoint.json`` for the ``state.pt`` already in ``folder``: the trial
    key, the step reported with it, the state's epoch, and the file's size and sha256."""
    folder = Path(folder)
    state_path = folder / STATE_FILE
    marker = {"format": FORMAT, "trial_key": trial_key, "step": int(step), "epoch": int(epoch),
              "size": state_path.stat().st_size, "sha256": _sha256(state_path)}
    path = folder / MARKER_FILE
    tmp = path.with_name(f".{MARKER_FILE}.tmp")
    tmp.write_text(json.dumps(marker, sort_keys=True))
    os.replace(tmp, path)
    return path


def read_marker(folder: str | Path) -> dict:
    """The marker of a checkpoint folder; ValueError (or OSError) if it is missing or malformed."""
    path = Path(folder) / MARKER_FILE
    try:
        marker = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: not JSON ({exc})") from None
    if not isinstance(marker, dict) or marker.get("format") != FORMAT:
        raise ValueError(f"{path}: not a checkpoint marker of format {FORMAT}")
    for name, tp in (("trial_key", str), ("step", int), ("epoch", int), ("size", int), ("sha256", str)):
        if not isinstance(marker.get(name), tp):
            raise ValueError(f"{path}: {name} missing or not {tp.__name__}")
    return marker


def load_checkpoint(folder: str | Path, trial_key: str) -> dict:
    """The state in ``folder`` if it is a complete checkpoint of ``trial_key`` (marker, size, sha256,
    ``torch.load(weights_only=True)``, epoch); raises (ValueError, OSError, ...) otherwise."""
    folder = Path(folder)
    marker = read_marker(folder)
    if marker["trial_key"] != trial_key:
        raise ValueError(f"{folder} holds a checkpoint of trial {marker['trial_key']}, not {trial_key}")
    state_path = folder / STATE_FILE
    size = state_path.stat().st_size
    if size != marker["size"]:
        raise ValueError(f"{state_path}: {size} bytes, the marker says {marker['size']} (incomplete)")
    if _sha256(state_path) != marker["sha256"]:
        raise ValueError(f"{state_path}: sha256 differs from the marker's (corrupt)")
    state = load_state(folder)
    if int(state["epoch"]) != marker["epoch"]:
        raise ValueError(f"{state_path}: epoch {state['epoch']}, the marker says {marker['epoch']}")
    return state


def load_first_valid(folders: Iterable[str | Path], trial_key: str) -> tuple[dict | None, Path | None, list[str]]:
    """``(state, folder, skipped)``: the first of ``folders`` (best first) that :func:`load_checkpoint`
    accepts, or ``(None, None, skipped)`` if none does; ``skipped`` has one line per rejected folder.
    Never raises for a bad checkpoint: a caller starts fresh instead."""
    skipped = []
    for folder in folders:
        try:
            return load_checkpoint(folder, trial_key), Path(folder), skipped
        except Exception as exc:  # noqa: BLE001 -- any unreadable checkpoint is skipped, not fatal
            skipped.append(f"skipped checkpoint {folder}: {type(exc).__name__}: {exc}")
    return None, None, skipped


__all__ = ["STATE_FILE", "MARKER_FILE", "FORMAT", "to_cpu", "save_state", "load_state", "write_marker",
           "read_marker", "load_checkpoint", "load_first_valid"]
