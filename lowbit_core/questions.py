"""The research questions of the group's meeting record (``../shared/seed/README.md``, 2021-06-16).

Each :class:`Question` has a short ``id`` (what a sweep file names in ``Sweep(questions=(...))``) and
its ``text``. The findings book (``lowbit-report --book``) is organized by these questions: for each,
the verdicts of the sweeps that bear on it, and for the unsettled ones the run that would settle it.
A plug-in sweep may bear on a question of its own: it passes a ``Question(id, text)`` object instead
of an id string (:func:`resolve`); the plan records it, so the book knows its text.

Torch-free: the book (``analysis/``) imports it.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from lowbit_core.config import ConfigError


@dataclass(frozen=True)
class Question:
    """One question: ``id`` (letters, digits, '-' and '_'), its ``text``, and ``findings``: a regular
    expression (case-insensitive) that picks, from a bearing sweep's findings lines, those about this
    question ("" = every line) -- a sweep's report answers several things at once.

    ``margin``: the smallest effect that matters, in ``unit`` (the unit of the paired differences the
    reports compute for it: ``fraction`` of a loss or an accuracy, ``dB``); ``why``: one line that
    justifies it. A comparison whose interval lies inside ±margin is an answer, "equivalent"
    (two one-sided tests); a run may override it (``lowbit-sweep --margin ID=VALUE``). None: no
    margin, so only directions can decide."""

    id: str
    text: str
    findings: str = ""
    margin: float | None = None
    unit: str = "fraction"
    why: str = ""

    def __post_init__(self):
        if not isinstance(self.id, str) or not self.id or not self.id.replace("-", "").replace("_", "").isalnum():
            raise ConfigError(f"question id must be letters, digits, '-' or '_', got {self.id!r}")
        if not isinstance(self.text, str) or not self.text.strip():
            raise ConfigError(f"question {self.id!r} needs a non-empty text")
        try:
            re.compile(self.findings)
        except (re.error, TypeError) as exc:
            raise ConfigError(f"question {self.id!r}: findings is not a regular expression: {exc}") from None
        check_margin(self.id, self.margin)


def check_margin(qid: str, margin) -> None:
    """ConfigError (one line) unless ``margin`` is None or a positive finite number."""
    if margin is None:
        return
    if isinstance(margin, bool) or not isinstance(margin, (int, float)) or not 0 < float(margin) < float("inf"):
        raise ConfigError(f"question {qid!r}: margin must be a positive number (the smallest effect that matters), "
                          f"got {margin!r}")


LOSS_MARGIN = dict(margin=0.01, unit="fraction",
                   why="1% of the probe loss: a smaller change would not alter which method one picks")
ACCURACY_MARGIN = dict(margin=0.01, unit="fraction",
                       why="1 percentage point of test accuracy, the finest difference CIFAR papers report")

QUESTIONS: tuple[Question, ...] = (
    Question("multistep-vs-single",
             "Inside the budget (L-inf box, epsilon = 0.1), does multi-step STE (SGD, SGDm, Adam) reach a lower "
             "loss than the best single STE step, and is that a property of binarization or of gradient "
             "descent (the FP MLP behaves the same)?", r"multi-step vs single-step|FP vs binary",
             **LOSS_MARGIN),
    Question("dg-upper-bound",
             "Is Discrete Gradient (single- or multi-step DG, CDG) strong enough to serve as an upper bound "
             "(reference) for STE inside the same budget?", r"\bDG\b|\bCDG\b",
             **LOSS_MARGIN),
    Question("vste-vs-nste",
             "Does a variant STE (gradient clipped to [-0.5, 0.5], or a window) find a different point than the "
             "normal STE on the toy MLP, or can the setting not tell them apart?", r"vSTE vs nSTE|estimators changed",
             **LOSS_MARGIN),
    Question("vste-resnet",
             "On a binary ResNet, do vSTE and nSTE (static windows, clips, thresholds) differ in the gradient's "
             "mean and variance, and in accuracy, on initialized and on pretrained models (DSQ's window as the "
             "reference)?", r"vSTE|nSTE|window|clip|threshold|DSQ",
             **ACCURACY_MARGIN),
    Question("pretrain-vs-scratch-mixup",
             "At an equal budget on CIFAR-10/100, is FP pretraining then binarize-and-finetune better than binary "
             "from scratch, with and without mixup?", r"pretrain|mixup",
             **ACCURACY_MARGIN),
    Question("sr-parts",
             "Which parts of a super-resolution network (EDSR) do not suit low bit-widths?", r"quantizing|part",
             margin=0.1, unit="dB", why="0.1 dB Y-channel PSNR, the smallest difference SR papers treat as a change"),
    Question("bits-vs-width",
             "More total bits: do more bits per weight or more (wider) weights make optimization easier, at equal "
             "parameter bits?", r"bits|width",
             **ACCURACY_MARGIN),
    Question("discrete-methods",
             "Do discrete methods for the discrete problem (ADMM with STE checkpoints, genetic algorithms, "
             "evolution strategies) beat STE at equal compute?", r"ADMM|\bGA\b|CMA-ES|\bES\b|equal compute",
             **LOSS_MARGIN),
    Question("escape-local-optima",
             "Do initialization schemes or perturbations help a binary network leave local optima?", r"init|perturb",
             **ACCURACY_MARGIN),
    Question("budget-binds",
             "Where does the budget epsilon bind: how does the gain of multi-step STE and DG over a single step "
             "change with epsilon?", r"epsilon|budget|ε",
             **LOSS_MARGIN),
)
"""The shipped questions, in the meeting record's order."""

BY_ID: dict[str, Question] = {q.id: q for q in QUESTIONS}


def resolve(items) -> tuple[Question, ...]:
    """The questions a sweep names: each item an id of :data:`QUESTIONS` or a :class:`Question` (a
    plug-in's own); ConfigError (one line) for an unknown id, another type, or an id named twice."""
    if isinstance(items, (str, Question)):
        items = (items,)
    out: list[Question] = []
    for item in items:
        if isinstance(item, Question):
            q = item
        elif isinstance(item, str):
            if item not in BY_ID:
                raise ConfigError(f"unknown question {item!r}; valid: {', '.join(BY_ID)} "
                                  "(or a lowbit_core.questions.Question(id, text) of the sweep's own)")
            q = BY_ID[item]
        else:
            raise ConfigError(f"sweep questions must be ids or Question objects, got {item!r}")
        if any(o.id == q.id for o in out):
            raise ConfigError(f"question {q.id!r} is named twice")
        out.append(q)
    return tuple(out)


def describe(questions: tuple[Question, ...]) -> list[dict]:
    """The questions as the plan records them: ``[{"id", "text", "findings", "margin", "unit", "why"}]``."""
    return [{"id": q.id, "text": q.text, "findings": q.findings, "margin": q.margin, "unit": q.unit, "why": q.why}
            for q in questions]
