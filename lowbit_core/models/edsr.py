"""EDSR-baseline (Lim, Son, Kim, Nah, Lee; "Enhanced Deep Residual Networks for Single Image
Super-Resolution", CVPRW 2017) in FP, k-bit and binary, with configurable quantized parts.

Architecture (the authors' EDSR-PyTorch ``edsr.py``, baseline configuration), input and output in
0..255 (``rgb_range`` 255)::

    x0 = x - 255 * mean_RGB                      mean_RGB = (0.4488, 0.4371, 0.4040) (DIV2K)
    h  = head(x0)                                3x3 conv, 3 -> C
    r  = body_end(blocks(h)) + h                 B residual blocks, then a 3x3 conv C -> C
    y  = tail(r) + 255 * mean_RGB                upsampler, then a 3x3 conv C -> 3

    block(x) = skip_res(res_scale * conv2(act(conv1(x)))) + skip_in(x)     (no batch norm)

with B = 16 blocks, C = 64 channels and ``res_scale`` 1 for EDSR-baseline (0.1 is for the 32-block
EDSR). The upsampler is sub-pixel convolution (Shi et al. 2016): for scale 2 or 3 one 3x3 conv
C -> s^2 C and ``PixelShuffle(s)``; for 4, two (conv C -> 4C, ``PixelShuffle(2)``) stages. Every conv
has a bias and PyTorch's default initialisation, as in the reference code.

Quantized parts (:data:`PARTS`); each is built from its own
:class:`~lowbit_core.quant.layers.QuantSpec` (None = full precision):

- ``head``: the first conv; ``tail``: every upsampler conv and the last conv; ``body_end``: the
  conv closing the body -- these are :class:`~lowbit_core.quant.layers.QuantConv2d`, which quantize
  their weight and their input activation;
- ``body``: both convs of every residual block (weights and input activations);
- ``skip``: the two addends of each block's residual sum, the shortcut ``skip_in(x)`` and the scaled
  branch ``skip_res(...)``, each through the spec's activation quantizer (PAMS's ``quant_act1`` and
  ``quant_act3``; Li et al., ECCV 2020).

The PAMS reference setting quantizes ``body`` and ``skip`` and keeps head, body_end and tail FP, as
the PAMS code does; it differs from that code in one point: PAMS leaves the input of each block's
first conv unquantized (it is the sum of two quantized tensors), here every quantized conv
quantizes its input, so that each quantized conv is a k-bit x k-bit operation.

Nonlinearity ``act`` inside the blocks (``nonlin``): ``relu`` (EDSR), or ``hardtanh``; ``auto`` is
``hardtanh`` where the body binarizes its activations with ``sign`` (a ReLU output is >= 0, so its
sign would be the constant +1: the rule of :func:`lowbit_core.models.resnet.resolve_nonlin`), else ReLU.
"""
from __future__ import annotations

from typing import Mapping

import torch
from torch import nn

from lowbit_core.models.resnet import resolve_nonlin
from lowbit_core.quant.layers import QuantConv2d, QuantSpec, as_spec
from lowbit_core.quant.registry import make_quantizer

PARTS = ("head", "body", "body_end", "skip", "tail")
SCALES = (2, 3, 4)
DIV2K_RGB_MEAN = (0.4488, 0.4371, 0.4040)
RGB_RANGE = 255.0


def _conv(c_in: int, c_out: int, spec: QuantSpec | None) -> QuantConv2d:
    return QuantConv2d(c_in, c_out, 3, padding=1, bias=True, spec=spec)


class QuantSkip(nn.Module):
    """One addend of a residual sum through an activation quantizer (identity when ``spec`` is None)."""

    def __init__(self, spec: QuantSpec | None):
        super().__init__()
        self.act_quantizer = make_quantizer(as_spec(spec).act_quantizer())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act_quantizer(x)


class ResBlock(nn.Module):
    """``skip_res(res_scale * conv2(act(conv1(x)))) + skip_in(x)`` (module docstring)."""

    def __init__(self, channels: int, res_scale: float, body: QuantSpec | None, skip: QuantSpec | None,
                 nonlin: str):
        super().__init__()
        self.conv1, self.conv2 = _conv(channels, channels, body), _conv(channels, channels, body)
        self.act = nn.Hardtanh() if nonlin == "hardtanh" else nn.ReLU()
        self.skip_in, self.skip_res = QuantSkip(skip), QuantSkip(skip)
        self.res_scale = res_scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.skip_res(self.conv2(self.act(self.conv1(x))) * self.res_scale) + self.skip_in(x)


def upsampler(scale: int, channels: int, spec: QuantSpec | None) -> nn.Sequential:
    """Sub-pixel upsampler: ``[conv C -> s^2 C, PixelShuffle(s)]`` for s = 2, 3; two x2 stages for 4."""
    if scale not in SCALES:
        raise ValueError(f"EDSR scale must be one of {SCALES}, got {scale}")
    stages = [2, 2] if scale == 4 else [scale]
    layers: list[nn.Module] = []
    for s in stages:
        layers += [_conv(channels, s * s * channels, spec), nn.PixelShuffle(s)]
    return nn.Sequential(*layers)


class EDSR(nn.Module):
    """EDSR(-baseline) with per-part quantization specs (module docstring). ``specs``: part -> spec
    (a missing part, or None, is full precision); unknown part names raise listing :data:`PARTS`."""

    def __init__(self, scale: int, blocks: int = 16, channels: int = 64, res_scale: float = 1.0,
                 specs: Mapping[str, QuantSpec | None] | None = None, nonlin: str = "auto"):
        super().__init__()
        specs = dict(specs or {})
        unknown = sorted(set(specs) - set(PARTS))
        if unknown:
            raise KeyError(f"unknown EDSR part {unknown[0]!r}; valid: {', '.join(PARTS)}")
        if blocks < 1 or channels < 1:
            raise ValueError(f"EDSR needs blocks >= 1 and channels >= 1, got {blocks}, {channels}")
        self.scale, self.specs = scale, specs
        act = resolve_nonlin(nonlin, specs.get("body"))
        self.register_buffer("rgb_mean", RGB_RANGE * torch.tensor(DIV2K_RGB_MEAN).view(1, 3, 1, 1))
        self.head = _conv(3, channels, specs.get("head"))
        self.body = nn.Sequential(*(ResBlock(channels, res_scale, specs.get("body"), specs.get("skip"), act)
                                    for _ in range(blocks)))
        self.body_end = _conv(channels, channels, specs.get("body_end"))
        self.tail = nn.Sequential(upsampler(scale, channels, specs.get("tail")), _conv(channels, 3, specs.get("tail")))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.head(x - self.rgb_mean)
        return self.tail(self.body_end(self.body(h)) + h) + self.rgb_mean


def part_modules(model: EDSR, part: str) -> list[nn.Module]:
    """The modules a part quantizes: its convs (head, body, body_end, tail) or its skip quantizers."""
    if part == "head":
        return [model.head]
    if part == "body_end":
        return [model.body_end]
    if part == "tail":
        return [m for m in model.tail.modules() if isinstance(m, QuantConv2d)]
    if part == "body":
        return [c for b in model.body for c in (b.conv1, b.conv2)]
    if part == "skip":
        return [s for b in model.body for s in (b.skip_in, b.skip_res)]
    raise KeyError(f"unknown EDSR part {part!r}; valid: {', '.join(PARTS)}")


__all__ = ["PARTS", "SCALES", "DIV2K_RGB_MEAN", "QuantSkip", "ResBlock", "upsampler", "EDSR", "part_modules"]
