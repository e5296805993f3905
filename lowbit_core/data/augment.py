"""Batched CIFAR augmentation on uint8 tensors, on whatever device the images are (CPU or CUDA).

The standard CIFAR recipe (He et al., 2016): a random 32x32 crop of the image zero-padded by 4 pixels
on every side, then a horizontal flip with probability 1/2 -- the same as torchvision's
``RandomCrop(32, padding=4)`` followed by ``RandomHorizontalFlip()``, but for a whole batch at once
instead of per image in PIL.

Exact rule, per sample n with offsets ``(dy, dx)`` uniform in ``{0, ..., 2p}`` and flip bit ``f``::

    P = zero-pad(x[n], p)                        # (C, H + 2p, W + 2p)
    out[n, c, i, j] = P[c, dy + i, dx + j]             if f == 0
    out[n, c, i, j] = P[c, dy + i, dx + W - 1 - j]     if f == 1   (mirror image of the crop)

Implemented without a Python loop over images: the batch and its mirror are zero-padded into one
buffer and the crops are gathered row by row with one ``index_select`` (see :func:`crop_flip`); the
flip is a per-sample choice (``torch.where`` on the flip mask) of the mirrored buffer, with column
offset ``2p - dx``, which is exactly the mirror of the crop at ``dx``.
The random numbers come from a ``torch.Generator`` (drawn on the generator's device, then moved to
the images' device), so a seeded CPU generator gives the same crops whether the images are on the
CPU or on CUDA.
"""
from __future__ import annotations

from collections.abc import Iterator

import torch

from .cifar import normalize

__all__ = ["random_offsets", "crop_flip", "random_crop_flip", "augment", "batches"]


def _gen_device(generator: torch.Generator | None) -> torch.device:
    return generator.device if generator is not None else torch.device("cpu")


def random_offsets(n: int, padding: int, generator: torch.Generator | None, flip: bool = True,
                   device: torch.device | str | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(dy, dx, f)``: n crop offsets uniform in ``0..2*padding`` (int64) and n flip bits (bool, p = 1/2).

    Drawn from ``generator`` in the order dy, dx, f; ``f`` is all False when ``flip`` is False.
    """
    g_dev = _gen_device(generator)
    dy = torch.randint(0, 2 * padding + 1, (n,), generator=generator, device=g_dev)
    dx = torch.randint(0, 2 * padding + 1, (n,), generator=generator, device=g_dev)
    if flip:
        f = torch.randint(0, 2, (n,), generator=generator, device=g_dev).bool()
    else:
        f = torch.zeros(n, dtype=torch.bool, device=g_dev)
    if device is not None and torch.device(device) != g_dev:  # one host-to-device copy, not three
        dy, dx, f = torch.stack((dy, dx, f.long())).to(device).unbind(0)
        f = f.bool()
    return dy, dx, f


def crop_flip(x: torch.Tensor, dy: torch.Tensor, dx: torch.Tensor, flip: torch.Tensor, padding: int = 4) -> torch.Tensor:
    """Deterministic part: crop each zero-padded image at ``(dy[n], dx[n])``, mirror it where ``flip[n]``.

    ``x`` (N, C, H, W) of any dtype; output has the shape, dtype and device of ``x``. How: the batch
    and its mirror image are zero-padded into one buffer; a mirrored crop at ``dx`` is the crop of the
    padded mirror at ``2p - dx``. Every output row is then a run of W contiguous values in that buffer,
    so one ``index_select`` over a sliding-window view of the flat buffer (``as_strided`` with stride 1)
    copies all N*C*H rows at once.
    """
    n, c, h, w = x.shape
    dev = x.device
    dy, dx, flip = dy.to(dev), dx.to(dev), flip.to(dev)
    p = padding
    hp, wp = h + 2 * p, w + 2 * p
    buf = x.new_zeros(2, n, c, hp, wp)  # [0]: padded images, [1]: padded mirror images
    buf[0, :, :, p:p + h, p:p + w] = x
    buf[1, :, :, p:p + h, p:p + w] = x.flip(-1)
    flat = buf.view(-1)
    col = torch.where(flip, 2 * p - dx, dx)
    image = torch.arange(n, device=dev) + flip.long() * n  # index into the 2N padded images
    first = image * (c * hp * wp) + dy * wp + col  # flat offset of output row (c=0, i=0) per sample
    starts = (first.view(n, 1, 1) + (torch.arange(c, device=dev) * (hp * wp)).view(1, c, 1)
              + (torch.arange(h, device=dev) * wp).view(1, 1, h)).reshape(-1)
    windows = flat.as_strided((flat.numel() - w + 1, w), (1, 1))  # windows[k] = flat[k : k + w]
    return windows.index_select(0, starts).view(n, c, h, w)


def random_crop_flip(x: torch.Tensor, generator: torch.Generator | None, padding: int = 4,
                     flip: bool = True) -> torch.Tensor:
    """Random crop with zero padding ``padding`` and random horizontal flip of a batch; same dtype/device as ``x``."""
    dy, dx, f = random_offsets(x.shape[0], padding, generator, flip, device=x.device)
    return crop_flip(x, dy, dx, f, padding)


def augment(x: torch.Tensor, generator: torch.Generator | None, name: str = "cifar10", padding: int = 4,
            flip: bool = True, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """uint8 batch (N, 3, H, W) -> random crop + flip -> normalised float (``cifar.normalize``), on ``x``'s device."""
    return normalize(random_crop_flip(x, generator, padding, flip), name, dtype)


def batches(x: torch.Tensor, y: torch.Tensor, batch_size: int, generator: torch.Generator | None = None,
            shuffle: bool = True, drop_last: bool = True) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """One epoch of ``(x[idx], y[idx])`` mini-batches; the data stays on its device.

    With ``shuffle`` the order is ``torch.randperm`` from ``generator`` (drawn on its device, moved to
    ``x``'s); ``drop_last`` drops the final short batch.
    """
    if len(x) != len(y):
        raise ValueError(f"x has {len(x)} samples but y has {len(y)}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    n = len(x)
    order = None
    if shuffle:
        order = torch.randperm(n, generator=generator, device=_gen_device(generator)).to(x.device)
    end = n - n % batch_size if drop_last else n
    for start in range(0, end, batch_size):
        if order is None:
            yield x[start:start + batch_size], y[start:start + batch_size]
        else:
            idx = order[start:start + batch_size]
            yield x.index_select(0, idx), y.index_select(0, idx.to(y.device))
