"""The phases of a training run: ``pretrain`` (an FP model), then ``finetune`` (the quantized model
it initializes), or one ``scratch`` phase. A phase covers global epochs ``start .. end - 1``, trains a
model of precision ``kind`` and starts its own optimizer and lr schedule at peak ``lr``.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Phase:
    name: str   # pretrain | finetune | scratch
    start: int  # first global epoch
    end: int    # one past the last
    kind: str   # fp | binary | kbit (sr: fp or the bit-width's kind)
    lr: float

    @property
    def epochs(self) -> int:
        return self.end - self.start


def pretrain_or_scratch(epochs: int, pretrain_epochs: int, kind: str, lr: float, finetune_lr: float) -> list[Phase]:
    """``pretrain_epochs`` P > 0 with a quantized ``kind``: ``[pretrain 0..P (fp, lr), finetune P..epochs
    (kind, finetune_lr or lr)]``; otherwise ``[scratch 0..epochs (kind, lr)]`` -- equal total epochs."""
    if pretrain_epochs > 0 and kind != "fp":
        return [Phase("pretrain", 0, pretrain_epochs, "fp", lr),
                Phase("finetune", pretrain_epochs, epochs, kind, finetune_lr or lr)]
    return [Phase("scratch", 0, epochs, kind, lr)]


__all__ = ["Phase", "pretrain_or_scratch"]
