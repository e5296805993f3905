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

The lr schedule is a pure function of the phase step (:func:`lowbit_core.families.train.run.cosine_lr`), so
its state is that counter.

Next to ``state.pt`` the trainable writes a marker, ``lowbit_checkpoint.json`` (:func:`write_marker`):
``{"format": 1, "trial_key": ..., "step": last reported step, "epoch": state["epoch"], "size": bytes,
"sha256": hex digest of state.pt, "metrics": the family's metrics reported with the state}``. It is
what finds a trial's checkpoints again after the driver was killed (``--resume`` matches on the trial
key, not on Ray's folder names), what a trial restarted from its final state reports again (no epoch
is left to run; Tune and a searcher need its last result: :func:`lowbit_core.trainables.run_trial`),
and what tells a complete checkpoint from one cut short while it was being written or copied:
:func:`load_checkpoint` accepts a folder only if the marker names the trial, the file has that size
and digest, and the state loads (``weights_only=True``) with that epoch; :func:`load_first_valid`
skips the folders that fail.

Starting another trial from a state (``model.init_from``): :func:`read_model_state` reads the
``"model"`` weights (and the ``"arch"`` record the loop writes: arch, width, block, nonlinearity,
classes) of a ``state.pt`` or its checkpoint folder -- or a bare ``state_dict`` -- with
``weights_only=True``; :func:`load_model_weights` loads them into a model after checking that the
architecture is the same. Every failure is one line naming the file.
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


def _plain(value: Any) -> Any:
    """A JSON-able copy of a reported metric value (numpy and torch scalars become Python numbers)."""
    return value.item() if hasattr(value, "item") else str(value)


def write_marker(folder: str | Path, trial_key: str, step: int, epoch: int, metrics: dict | None = None) -> Path:
    """Write ``<folder>/lowbit_checkpoint.json`` for the ``state.pt`` already in ``folder``: the trial
    key, the step reported with it, the state's epoch, the file's size and sha256, and ``metrics``
    (what the family reported with the state; ``{}`` when not given)."""
    folder = Path(folder)
    state_path = folder / STATE_FILE
    marker = {"format": FORMAT, "trial_key": trial_key, "step": int(step), "epoch": int(epoch),
              "size": state_path.stat().st_size, "sha256": _sha256(state_path),
              "metrics": dict(metrics or {})}
    path = folder / MARKER_FILE
    tmp = path.with_name(f".{MARKER_FILE}.tmp")
    tmp.write_text(json.dumps(marker, sort_keys=True, default=_plain))
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


def reported_metrics(folder: str | Path) -> dict:
    """The metrics reported with the checkpoint in ``folder`` (its marker's ``metrics``; ``{}`` for a
    marker written before they were recorded)."""
    metrics = read_marker(folder).get("metrics")
    return dict(metrics) if isinstance(metrics, dict) else {}


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


def _first_line(exc: Exception) -> str:
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0] if lines else ''}"


def read_model_state(path: str | Path) -> dict:
    """``{"model": state_dict, "arch": dict | None}`` from a state file or a checkpoint folder holding
    ``state.pt`` (a training state, or a bare ``state_dict``), read with ``weights_only=True``;
    ``FileNotFoundError`` / ``ValueError`` with one line otherwise."""
    p = Path(path)
    file = p / STATE_FILE if p.is_dir() else p
    if not file.is_file():
        raise FileNotFoundError(f"{path}: no such state file (give a train trial's {STATE_FILE} or its checkpoint folder)")
    try:
        obj = torch.load(file, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 -- any unreadable file is one line for the user
        raise ValueError(f"{file}: cannot be loaded with torch.load(weights_only=True): {_first_line(exc)}") from None
    if isinstance(obj, dict) and isinstance(obj.get("model"), dict):
        return {"model": obj["model"], "arch": obj.get("arch")}
    if isinstance(obj, dict) and obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
        return {"model": obj, "arch": None}
    raise ValueError(f"{file}: holds no model weights (expected a training state with 'model', or a state_dict)")


ARCH_KEYS = ("arch", "width", "block", "nonlin", "n_classes")


def _describe_arch(arch: dict) -> str:
    classes = "" if arch.get("n_classes") is None else f", {arch['n_classes']} classes"
    return f"{arch.get('arch')} width {arch.get('width')} {arch.get('block')} {arch.get('nonlin')}{classes}"


def _is_quantizer_key(key: str) -> bool:
    return ".weight_quantizer." in key or ".act_quantizer." in key


def load_model_weights(model: torch.nn.Module | None, state: dict, arch: dict, source: str) -> None:
    """Load ``state["model"]`` into ``model`` if ``state`` fits architecture ``arch`` (a dict of
    :data:`ARCH_KEYS`; ``n_classes`` None is not compared); ``model=None`` checks only the record.

    Rules: where the state records its ``"arch"``, every key must be equal; then every model tensor
    but the quantizers' own (LSQ steps, DSQ bounds) must be in the state with the same shape, and
    the state may hold no other tensor except quantizers'. A precision change (FP weights into a
    binary model) is allowed: the weights are the same tensors. ``ValueError`` (one line naming
    ``source``) otherwise."""
    saved = state.get("arch")
    if saved is not None:
        differ = [k for k in ARCH_KEYS if not (k == "n_classes" and arch.get(k) is None) and saved.get(k) != arch.get(k)]
        if differ:
            raise ValueError(f"{source}: holds a {_describe_arch(saved)} state, this trial builds "
                             f"{_describe_arch(arch)} ({', '.join(differ)} differ)")
    if model is None:
        return
    weights, own = state["model"], model.state_dict()
    missing = [k for k in own if k not in weights and not _is_quantizer_key(k)]
    unexpected = [k for k in weights if k not in own and not _is_quantizer_key(k)]
    shapes = [f"{k} {tuple(weights[k].shape)} vs {tuple(own[k].shape)}" for k in own
              if k in weights and tuple(weights[k].shape) != tuple(own[k].shape)]
    if missing or unexpected or shapes:
        parts = [f"{len(missing)} missing ({', '.join(missing[:3])})" if missing else "",
                 f"{len(unexpected)} unexpected ({', '.join(unexpected[:3])})" if unexpected else "",
                 f"{len(shapes)} of another shape ({', '.join(shapes[:3])})" if shapes else ""]
        raise ValueError(f"{source}: not the architecture of this trial ({_describe_arch(arch)}): tensors "
                         + "; ".join(p for p in parts if p))
    model.load_state_dict({k: v for k, v in weights.items() if k in own}, strict=False)


__all__ = ["STATE_FILE", "MARKER_FILE", "FORMAT", "ARCH_KEYS", "to_cpu", "save_state", "load_state", "write_marker",
           "read_marker", "load_checkpoint", "load_first_valid", "read_model_state", "load_model_weights"]
