"""MATLAB-compatible bicubic ``imresize`` (Image Processing Toolbox), written out in numpy.

The super-resolution literature makes its low-resolution images with MATLAB's
``imresize(HR, 1/s, 'bicubic')`` (antialiasing on, the default) and measures the bicubic baseline
with ``imresize(LR, s, 'bicubic')``; PIL's and ``torch.nn.functional.interpolate``'s bicubic use
another kernel support and no antialiasing, and give other numbers. This module follows MATLAB's
``imresize.m`` (functions ``contributions``, ``cubic``, ``resizeAlongDim``) step by step:

- **Kernel** (Keys 1981, a = -0.5; ``cubic`` in imresize.m), width 4::

      k(x) = 1.5|x|^3 - 2.5|x|^2 + 1              for |x| <= 1
             -0.5|x|^3 + 2.5|x|^2 - 4|x| + 2       for 1 < |x| <= 2
             0                                     otherwise

- **Antialiasing** when shrinking (scale s < 1): the kernel is stretched, ``h(x) = s k(s x)``,
  and its width becomes ``4 / s``; when enlarging, ``h = k``.
- **Contributions** of output pixel ``i`` (1-based, ``i = 1 .. out``): its centre in input
  coordinates is ``u_i = i / s + (1 - 1/s) / 2`` (so output pixel edges map onto input pixel
  edges), the taps are ``j = floor(u_i - width/2) + (0 .. ceil(width) + 1)``, their weights
  ``h(u_i - j)`` normalised to sum 1; taps outside ``1 .. n`` are mirrored (symmetric padding,
  the edge pixel repeated: ``aux = [1..n, n..1]``, ``j -> aux(mod(j - 1, 2n) + 1)``); tap columns
  whose weight is 0 for every output pixel are dropped.
- **Scale handling**: ``imresize(A, scale)`` gives an output of ``ceil(scale * size)`` and uses
  ``scale`` itself (not out/in) for the mapping; ``imresize(A, [rows cols])`` uses
  ``scale = out / in`` per dimension. The two dimensions are resized one after the other, the one
  with the smaller scale first (rows first on ties), as ``imresize.m`` orders them.
- **uint8 input**: MATLAB's resampling MEX returns the input's class, so after *each* of the two
  passes the result is rounded (half away from zero) and saturated to 0..255; floating input stays
  floating (float64 here).

Checked against MATLAB R2017-era outputs in ``tests/test_imresize.py``.
"""
from __future__ import annotations

import math

import numpy as np

KERNEL_WIDTH = 4.0


def cubic(x: np.ndarray) -> np.ndarray:
    """Keys' cubic convolution kernel with a = -0.5 (MATLAB's ``cubic``; formula in the module docstring)."""
    ax = np.abs(x)
    ax2, ax3 = ax * ax, ax * ax * ax
    return ((1.5 * ax3 - 2.5 * ax2 + 1) * (ax <= 1)
            + (-0.5 * ax3 + 2.5 * ax2 - 4 * ax + 2) * ((ax > 1) & (ax <= 2)))


def contributions(in_length: int, out_length: int, scale: float,
                  antialiasing: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """``(weights, indices)``, both ``(out_length, P)``: output pixel ``i`` is
    ``sum_p weights[i, p] * input[indices[i, p]]`` (0-based indices; rule in the module docstring)."""
    if scale < 1 and antialiasing:
        def h(x):
            return scale * cubic(scale * x)
        width = KERNEL_WIDTH / scale
    else:
        h, width = cubic, KERNEL_WIDTH
    x = np.arange(1, out_length + 1, dtype=np.float64)
    u = x / scale + 0.5 * (1 - 1 / scale)
    left = np.floor(u - width / 2)
    taps = int(math.ceil(width)) + 2
    indices = left[:, None] + np.arange(taps)[None, :]          # 1-based, may fall outside 1..n
    weights = h(u[:, None] - indices)
    weights = weights / weights.sum(axis=1, keepdims=True)
    aux = np.concatenate([np.arange(in_length), np.arange(in_length)[::-1]])  # 0-based mirror
    indices = aux[np.mod(indices.astype(np.int64) - 1, 2 * in_length)]
    keep = np.any(weights != 0, axis=0)
    return weights[:, keep], indices[:, keep]


def _round_uint8(x: np.ndarray) -> np.ndarray:
    """MATLAB's conversion of a double to uint8: round half away from zero, saturate to 0..255."""
    return np.clip(np.floor(x + 0.5), 0, 255).astype(np.uint8)


def _resize_along(a: np.ndarray, dim: int, weights: np.ndarray, indices: np.ndarray) -> np.ndarray:
    """One pass along axis ``dim`` (0 rows, 1 columns) in float64; uint8 in, uint8 out (rounded)."""
    src = np.moveaxis(a.astype(np.float64, copy=False), dim, 0)
    out = np.einsum("op,op...->o...", weights, src[indices])
    out = np.moveaxis(out, 0, dim)
    return _round_uint8(out) if a.dtype == np.uint8 else out


def output_size(shape: tuple[int, int], scale: float | None = None,
                size: tuple[int, int] | None = None) -> tuple[tuple[int, int], tuple[float, float]]:
    """``((rows, cols), (row_scale, col_scale))`` as MATLAB derives them from a scale or a size."""
    if (scale is None) == (size is None):
        raise ValueError("give exactly one of scale and size")
    if scale is not None:
        if not scale > 0:
            raise ValueError(f"scale must be > 0, got {scale}")
        return (math.ceil(scale * shape[0]), math.ceil(scale * shape[1])), (float(scale), float(scale))
    rows, cols = size
    if rows < 1 or cols < 1:
        raise ValueError(f"output size must be positive, got {size}")
    return (int(rows), int(cols)), (rows / shape[0], cols / shape[1])


def imresize(image: np.ndarray, scale: float | None = None, size: tuple[int, int] | None = None,
             antialiasing: bool = True) -> np.ndarray:
    """MATLAB's ``imresize(image, scale)`` or ``imresize(image, [rows cols])``, bicubic.

    ``image``: ``(H, W)`` or ``(H, W, C)``, uint8 (result uint8, rounded after each pass, as MATLAB)
    or floating (result float64). Channels are resized independently."""
    image = np.asarray(image)
    if image.ndim not in (2, 3):
        raise ValueError(f"imresize takes (H, W) or (H, W, C) arrays, got shape {image.shape}")
    if image.dtype != np.uint8 and not np.issubdtype(image.dtype, np.floating):
        raise TypeError(f"imresize takes uint8 or floating images, got {image.dtype}")
    out_shape, scales = output_size(image.shape[:2], scale, size)
    order = sorted(range(2), key=lambda d: (scales[d], d))
    out = image
    for dim in order:
        w, idx = contributions(image.shape[dim], out_shape[dim], scales[dim], antialiasing)
        out = _resize_along(out, dim, w, idx)
    return out


__all__ = ["cubic", "contributions", "imresize", "output_size", "KERNEL_WIDTH"]
