"""Random-generator state of a training run, for a checkpoint and for continuing from one.

A run draws from named CPU generators of its own (``{"data": g, ...}``), torch's global CPU
generator (model init, dropout-like ops) and, where CUDA is present, every device's generator.
:func:`rng_state` records all of them; :func:`set_rng_state` puts them back, so a run continued from
a checkpoint draws the same numbers as the uninterrupted run (bit-identical on the CPU).
"""
from __future__ import annotations

import torch


def rng_state(gens: dict[str, torch.Generator]) -> dict:
    """``{name: g.get_state() for each generator, "torch": the global CPU state, "cuda": [per-device
    states] (empty without CUDA)}`` -- CPU tensors, loadable with ``weights_only=True``."""
    out = {name: g.get_state() for name, g in gens.items()}
    out["torch"] = torch.get_rng_state()
    out["cuda"] = torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []
    return out


def set_rng_state(gens: dict[str, torch.Generator], state: dict) -> None:
    """Restore what :func:`rng_state` recorded into ``gens`` (by name) and torch's global generators.
    The CUDA states are restored only where this process sees as many devices as were recorded (a
    state written on another machine leaves them as they are)."""
    for name, g in gens.items():
        g.set_state(state[name])
    torch.set_rng_state(state["torch"])
    if torch.cuda.is_available() and state.get("cuda") and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])


__all__ = ["rng_state", "set_rng_state"]
