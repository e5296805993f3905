"""CIFAR ResNets (FP, binary, k-bit) built from one :class:`~lowbit_core.quant.layers.QuantSpec`.

- :func:`resnet20`: He et al., "Deep Residual Learning for Image Recognition", CVPR 2016, Sec. 4.2:
  a 3x3 stem conv (16 channels), three stages of 3 basic blocks with 16, 32, 64 channels (the first
  block of stages 2 and 3 has stride 2), global average pooling, a linear classifier. Shortcuts are
  option A: identity, and where the shape changes ``x[:, :, ::2, ::2]`` zero-padded with
  ``planes // 4`` channels on each side (no parameters). 0.27M parameters for 10 classes.
- :func:`resnet18`: the common CIFAR variant of ResNet-18 (3x3 stride-1 stem with 64 channels, no
  max-pool; stages of 2 basic blocks with 64, 128, 256, 512 channels; option-B shortcuts: a 1x1
  conv + BN where the shape changes). 11.2M parameters for 10 classes.

Quantization: every *inner* conv (the two 3x3 convs of each block) is a
:class:`~lowbit_core.quant.layers.QuantConv2d` with ``spec``: it quantizes its weight and its input
activation. The stem conv, the classifier and ResNet-18's 1x1 shortcut convs stay full precision
(the standard choice since XNOR-Net / Bi-Real Net). ``spec=None`` gives the FP network; its
``state_dict`` has the same keys as a quantized one's except the quantizers' own parameters and
buffers (LSQ steps, DSQ bounds/alpha), so FP weights load into a quantized model with
``load_state_dict(strict=False)`` (:func:`load_fp_weights`).

Blocks (``block``):

- ``basic`` (He et al.): ``y = act(bn2(conv2(act(bn1(conv1(x))))) + shortcut(x))``;
- ``bireal`` (Bi-Real Net, Liu et al. ECCV 2018; IR-Net's ResNet-20): a shortcut around each conv,
  ``h = act(bn1(conv1(x)) + shortcut(x))``, ``y = act(bn2(conv2(h)) + h)``.

Non-linearity ``act`` (``nonlin``): ``relu``, or ``hardtanh`` (clip to [-1, 1]). ``auto`` picks
``hardtanh`` when the inner convs binarize their inputs with ``sign`` (a ReLU output is >= 0, so
its sign would be the constant +1) and ``relu`` otherwise.
"""
from __future__ import annotations

from typing import Iterator

import torch
from torch import nn
from torch.nn import functional as F

from lowbit_core.models.registry import get_model
from lowbit_core.quant.layers import QuantConv2d, QuantSpec, as_spec

BLOCKS = ("basic", "bireal")
NONLINS = ("auto", "relu", "hardtanh")


def resolve_nonlin(name: str, spec: QuantSpec | dict | None) -> str:
    """``relu`` or ``hardtanh``: ``auto`` means ``hardtanh`` when ``spec``'s inner convs binarize their
    inputs with ``sign``, else ``relu``. An FP network that initializes a binary one (pretraining)
    resolves ``auto`` from the binary network's spec, so both phases share one nonlinearity."""
    if name not in NONLINS:
        raise KeyError(f"unknown nonlin {name!r}; valid: {', '.join(NONLINS)}")
    if name == "auto":
        return "hardtanh" if as_spec(spec).act == "sign" else "relu"
    return name


def _nonlin(name: str, spec: QuantSpec) -> nn.Module:
    return nn.Hardtanh() if resolve_nonlin(name, spec) == "hardtanh" else nn.ReLU()


class _ShortcutA(nn.Module):
    """Option A: subsample by 2 and zero-pad ``pad`` channels on each side (parameter-free)."""

    def __init__(self, pad: int):
        super().__init__()
        self.pad = pad

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, self.pad, self.pad))


class BasicBlock(nn.Module):
    """Two 3x3 quantized convs with BN; ``block`` = ``basic`` or ``bireal`` (module docstring)."""

    def __init__(self, in_planes: int, planes: int, stride: int, spec: QuantSpec, shortcut: str,
                 block: str, nonlin: str):
        super().__init__()
        if block not in BLOCKS:
            raise KeyError(f"unknown block {block!r}; valid: {', '.join(BLOCKS)}")
        self.block = block
        self.conv1 = QuantConv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False, spec=spec)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = QuantConv2d(planes, planes, 3, stride=1, padding=1, bias=False, spec=spec)
        self.bn2 = nn.BatchNorm2d(planes)
        self.act1, self.act2 = _nonlin(nonlin, spec), _nonlin(nonlin, spec)
        if stride == 1 and in_planes == planes:
            self.shortcut: nn.Module = nn.Identity()
        elif shortcut == "A":
            if planes != 2 * in_planes or stride != 2:
                raise ValueError("option-A shortcuts need planes = 2 * in_planes and stride 2")
            self.shortcut = _ShortcutA(planes // 4)
        else:  # option B: FP 1x1 conv + BN
            self.shortcut = nn.Sequential(nn.Conv2d(in_planes, planes, 1, stride=stride, bias=False),
                                          nn.BatchNorm2d(planes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.block == "basic":
            out = self.act1(self.bn1(self.conv1(x)))
            return self.act2(self.bn2(self.conv2(out)) + self.shortcut(x))
        h = self.act1(self.bn1(self.conv1(x)) + self.shortcut(x))
        return self.act2(self.bn2(self.conv2(h)) + h)


class CifarResNet(nn.Module):
    """Stem (FP 3x3 conv, BN, act) -> stages of :class:`BasicBlock` -> global average pool -> FP linear."""

    def __init__(self, stage_widths: tuple[int, ...], blocks_per_stage: tuple[int, ...], num_classes: int,
                 spec: QuantSpec | dict | None = None, shortcut: str = "A", block: str = "basic",
                 nonlin: str = "auto"):
        super().__init__()
        spec = as_spec(spec)
        self.spec = spec
        w0 = stage_widths[0]
        self.conv1 = nn.Conv2d(3, w0, 3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(w0)
        self.act = _nonlin(nonlin, spec)
        layers, in_planes = [], w0
        for i, (width, n) in enumerate(zip(stage_widths, blocks_per_stage)):
            for j in range(n):
                stride = 2 if i > 0 and j == 0 else 1
                layers.append(BasicBlock(in_planes, width, stride, spec, shortcut, block, nonlin))
                in_planes = width
        self.layers = nn.Sequential(*layers)
        self.fc = nn.Linear(in_planes, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.layers(self.act(self.bn1(self.conv1(x))))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(out, 1), 1))


def resnet20(num_classes: int = 10, spec: QuantSpec | dict | None = None, width: int = 16, block: str = "basic",
             nonlin: str = "auto") -> CifarResNet:
    """ResNet-20 (3 x 3 blocks, widths ``width, 2 width, 4 width``; He et al. use 16), option-A shortcuts."""
    return CifarResNet((width, 2 * width, 4 * width), (3, 3, 3), num_classes, spec, "A", block, nonlin)


def resnet18(num_classes: int = 10, spec: QuantSpec | dict | None = None, width: int = 64, block: str = "basic",
             nonlin: str = "auto") -> CifarResNet:
    """CIFAR ResNet-18 (4 x 2 blocks, widths ``width .. 8 width``; usually 64), option-B shortcuts."""
    return CifarResNet((width, 2 * width, 4 * width, 8 * width), (2, 2, 2, 2), num_classes, spec, "B", block,
                       nonlin)


def build_resnet(arch: str, num_classes: int, spec: QuantSpec | dict | None = None, width: int = 0,
                 block: str = "basic", nonlin: str = "auto") -> nn.Module:
    """The registered model ``arch`` (:mod:`lowbit_core.models.registry`: the ResNets and any
    plug-in); ``width=0`` takes the model's standard width. KeyError listing the valid names."""
    return get_model(arch).build(num_classes, spec, width, block, nonlin)


def inner_convs(model: nn.Module) -> Iterator[QuantConv2d]:
    """The convs built from the spec (quantized unless the model is FP)."""
    return (m for m in model.modules() if isinstance(m, QuantConv2d))


def load_fp_weights(model: nn.Module, fp_state: dict[str, torch.Tensor]) -> list[str]:
    """Load an FP model's ``state_dict`` into a (quantized) model of the same architecture.

    Every FP tensor must land (no unexpected keys); the keys left missing must all belong to
    quantizers (they keep their initial values / lazy init). Returns the missing keys.
    """
    missing, unexpected = model.load_state_dict(fp_state, strict=False)
    if unexpected:
        raise KeyError(f"FP state has keys the model lacks: {unexpected[:5]}")
    stray = [k for k in missing if ".weight_quantizer." not in k and ".act_quantizer." not in k]
    if stray:
        raise KeyError(f"FP state lacks model weights: {stray[:5]}")
    return list(missing)


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


__all__ = ["BLOCKS", "NONLINS", "BasicBlock", "CifarResNet", "resnet20", "resnet18",
           "build_resnet", "inner_convs", "load_fp_weights", "count_params"]
