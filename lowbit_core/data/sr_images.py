"""Super-resolution image pairs: HR folders, MATLAB-bicubic LR images, random training patches.

Protocol (Lim et al., "Enhanced Deep Residual Networks for Single Image Super-Resolution", CVPRW
2017, and their code, EDSR-PyTorch):

- **HR images** are read as RGB uint8 (a single-channel file is replicated to three channels,
  EDSR's ``set_channel``, and flagged ``grey`` for the metrics, :mod:`lowbit_core.data.sr_metrics`)
  and cropped to a multiple of the scale s at the bottom/right (``modcrop``). 16-bit samples are
  brought to 8 bits by ``round(v / 257)`` (65535 -> 255, and ``257 k -> k`` exactly, so a 16-bit copy
  of an 8-bit image reads back as that image): Pillow opens 16-bit grey PNGs as ``I;16`` and read
  them that way; 16-bit colour PNGs Pillow itself reduces to their high byte (``floor(v / 256)``, equal
  to ``round(v / 257)`` for ``v = 257 k`` and at most one level off otherwise). Alpha is dropped; palette
  images go through their palette (colour); other modes are refused in one line.
- **LR images** are ``imresize(HR, 1/s, 'bicubic')`` of MATLAB (:mod:`lowbit_core.data.imresize`,
  uint8 in and out), made once per image; the **bicubic baseline** is ``imresize(LR, s)``.
- **Training patches**: per sample, an image uniformly at random, an LR patch of ``p x p`` at a
  uniform position ``(y, x)`` and the HR patch ``(s y, s x)`` of ``s p x s p``; then EDSR's
  ``augment``: a horizontal flip, a vertical flip and a transpose (90-degree rotation together with
  the flips), each with probability 1/2, applied identically to both patches. Values stay in
  0..255 (EDSR's ``rgb_range`` 255). Training images smaller than ``s p`` after modcrop are skipped.

Folders: a **folder** of images (``*.png``, ``*.bmp``, ``*.jpg``/``*.jpeg``; e.g. T91), **DIV2K**'s layout
(``<root>/DIV2K_train_HR/*.png``), and benchmark sets ``<test_root>/<name>/`` (or
``<test_root>/<name>/HR/``) for Set5, Set14, B100, Urban100 -- any folder of PNGs works.

**Generated** images (no files; smoke runs and tests): each image is a fixed function of its seed,
``clip(128 + sum of 3 sinusoidal gratings (random direction, period 3..16 px, amplitude 20..50)
+ 4 hard-edged discs (random centre, radius, +-60 per channel), 0, 255)`` per channel, so it has
edges and textures at several frequencies that bicubic upsampling blurs (bicubic x2 on 96 px
images: about 32 dB).
"""
from __future__ import annotations

import functools
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from lowbit_core.data.imresize import imresize
from lowbit_core.data.sr_metrics import as_rgb

IMAGE_SUFFIXES = (".png", ".bmp", ".jpg", ".jpeg")
DIV2K_TRAIN = "DIV2K_train_HR"


def list_images(folder: str | Path) -> list[Path]:
    """The image files directly in ``folder`` (:data:`IMAGE_SUFFIXES`), sorted by name; an error line
    naming the folder when there are none."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"image folder {folder} not found")
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not files:
        raise FileNotFoundError(f"image folder {folder} holds no {'/'.join(IMAGE_SUFFIXES)} files")
    return files


GREY_MODES = ("1", "L", "LA", "La")
WIDE_GREY_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I")
"""Single-channel modes holding up to 16 bits (``I``: 32-bit integers, accepted for values 0..65535,
as older Pillow opened 16-bit PNGs)."""
COLOUR_MODES = ("RGB", "RGBA", "RGBa", "RGBX", "P", "PA", "CMYK", "YCbCr")
WIDE_MAX = 65535


class ImageError(ValueError):
    """An image file that cannot be read as an HR image; the message is one line naming the file."""


def _pixels(im: Image.Image, path) -> tuple[np.ndarray, bool]:
    if im.mode in GREY_MODES:
        return np.asarray(im.convert("L")), True
    if im.mode in WIDE_GREY_MODES:
        wide = np.asarray(im).astype(np.int64)
        if wide.size and (wide.min() < 0 or wide.max() > WIDE_MAX):
            raise ImageError(f"{path}: mode {im.mode} values {wide.min()}..{wide.max()} are outside 0..{WIDE_MAX}")
        return ((2 * wide + 257) // 514).astype(np.uint8), True     # round(v / 257); no ties
    if im.mode in COLOUR_MODES:
        rgb = im.convert("RGBA").convert("RGB") if im.mode in ("P", "PA") else im.convert("RGB")
        return np.asarray(rgb), False
    raise ImageError(f"{path}: image mode {im.mode} is not read (valid: 8/16-bit grey, RGB, RGBA, palette)")


def read_rgb(path: str | Path) -> tuple[np.ndarray, bool]:
    """``(RGB uint8 (H, W, 3), grey)``: a single-channel file (``grey`` True) is replicated; alpha
    dropped; 16-bit samples ``v`` become ``round(v / 257)`` (module docstring). :class:`ImageError`
    for a mode it does not read."""
    with Image.open(path) as im:
        arr, grey = _pixels(im, path)
    return as_rgb(arr.astype(np.uint8, copy=False)), grey


def image_size(path: str | Path) -> tuple[int, int]:
    """``(height, width)`` of an image file, from its header (the pixels are not decoded)."""
    with Image.open(path) as im:
        return im.height, im.width


@functools.lru_cache(maxsize=4096)
def _checked(path: str, size: int, mtime_ns: int) -> tuple[int, int] | str:
    try:
        with Image.open(path) as im:
            im.verify()                     # chunk CRCs and the end of the stream (PNG)
        with Image.open(path) as im:
            im.load()                       # the pixels themselves (truncated data raises here)
            arr, _ = _pixels(im, path)
    except ImageError as exc:
        return str(exc)
    except Exception as exc:  # noqa: BLE001 -- any decoder failure becomes one line naming the file
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        return f"{path}: not a readable image ({reason})"
    return int(arr.shape[0]), int(arr.shape[1])


def check_image(path: str | Path) -> tuple[int, int]:
    """``(height, width)`` of an image file after verifying and decoding it as :func:`read_rgb` would;
    :class:`ImageError` (one line naming the file) when it cannot be. Cached per file version (path,
    size, modification time), so a plan's many points decode each file once."""
    out = _check_or_message(path)
    if isinstance(out, str):
        raise ImageError(out)
    return out


def _check_or_message(path) -> tuple[int, int] | str:
    try:
        st = Path(path).stat()
    except OSError as exc:
        return f"{path}: cannot be read ({exc.strerror or exc})"
    return _checked(str(path), st.st_size, st.st_mtime_ns)


CHECK_THREADS = 8


def check_images(paths) -> list[tuple[int, int] | str]:
    """:func:`check_image` of every path, in order: ``(height, width)`` or the error line. Decoded on
    up to :data:`CHECK_THREADS` threads (Pillow's decoders release the GIL; a 2040 x 1356 DIV2K-sized
    PNG takes about 0.3-0.45 s to decode on one core of the development machine)."""
    paths = list(paths)
    if len(paths) < 2:
        return [_check_or_message(p) for p in paths]
    with ThreadPoolExecutor(max_workers=min(CHECK_THREADS, os.cpu_count() or 1, len(paths))) as pool:
        return list(pool.map(_check_or_message, paths))


def modcrop(image: np.ndarray, scale: int) -> np.ndarray:
    """``image`` cropped at the bottom/right to a multiple of ``scale`` in both dimensions."""
    h, w = image.shape[0] - image.shape[0] % scale, image.shape[1] - image.shape[1] % scale
    return image[:h, :w]


def downscale(hr: np.ndarray, scale: int) -> np.ndarray:
    """The LR image: MATLAB ``imresize(hr, 1/scale)`` (bicubic, antialiased) of a modcropped HR."""
    if hr.shape[0] % scale or hr.shape[1] % scale:
        raise ValueError(f"HR size {hr.shape[:2]} is not a multiple of scale {scale}; modcrop it first")
    return imresize(hr, 1.0 / scale)


def bicubic_upscale(lr: np.ndarray, scale: int) -> np.ndarray:
    """The bicubic baseline: MATLAB ``imresize(lr, scale)``."""
    return imresize(lr, float(scale))


@dataclass(frozen=True)
class SRPair:
    """One image: ``hr`` (modcropped) and ``lr`` uint8 ``(H, W, 3)``, the file stem, and whether the
    file was single-channel (``grey``: measured on its grey level)."""

    name: str
    hr: np.ndarray
    lr: np.ndarray
    grey: bool = False


def make_pair(name: str, image: np.ndarray, scale: int, grey: bool = False) -> SRPair:
    hr = modcrop(image, scale)
    return SRPair(name, hr, downscale(hr, scale), grey)


def generated_image(seed: int, size: int) -> np.ndarray:
    """One generated ``size x size`` RGB uint8 image (recipe in the module docstring)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    img = np.full((size, size, 3), 128.0)
    for _ in range(3):
        theta, period = rng.uniform(0, np.pi), rng.uniform(3, 16)
        phase, amp = rng.uniform(0, 2 * np.pi), rng.uniform(20, 50, size=3)
        wave = np.sin(2 * np.pi * (xx * np.cos(theta) + yy * np.sin(theta)) / period + phase)
        img += wave[:, :, None] * amp
    for _ in range(4):
        cy, cx, r = rng.uniform(0, size), rng.uniform(0, size), rng.uniform(size / 8, size / 3)
        disc = ((yy - cy) ** 2 + (xx - cx) ** 2) <= r * r
        img += disc[:, :, None] * rng.choice([-60.0, 60.0], size=3)
    return np.floor(np.clip(img, 0, 255) + 0.5).astype(np.uint8)


def generated_images(n: int, size: int, seed: int) -> list[tuple[str, np.ndarray, bool]]:
    """``n`` generated colour images named ``gen000``, ... from seeds ``seed, seed + 1, ...``."""
    return [(f"gen{i:03d}", generated_image(seed + i, size), False) for i in range(n)]


def folder_images(folder: str | Path, n: int = 0) -> list[tuple[str, np.ndarray, bool]]:
    """``(stem, RGB uint8, grey)`` of the first ``n`` images of ``folder`` by name (0: all)."""
    files = list_images(folder)
    return [(p.stem, *read_rgb(p)) for p in (files[:n] if n else files)]


HOLDOUT_SEED = 0


def holdout_split(files: list[Path], n_val: int) -> tuple[list[Path], list[Path]]:
    """``(training files, held-out files)`` of a folder's sorted file list: the held-out ones are the
    first ``n_val`` of ``numpy.random.default_rng(0).permutation(len(files))``, both parts kept in
    name order. A function of the file list and ``n_val`` only (never of a trial's seed or
    ``data.n_train``), so every trial of a sweep holds out the same images; ``n_val`` must leave at
    least one training file."""
    if not 0 <= n_val < len(files):
        raise ValueError(f"cannot hold out {n_val} of {len(files)} images and keep one for training")
    held = set(np.random.default_rng(HOLDOUT_SEED).permutation(len(files))[:n_val].tolist())
    return [f for i, f in enumerate(files) if i not in held], [f for i, f in enumerate(files) if i in held]


def benchmark_folder(test_root: str | Path, name: str) -> Path:
    """``<test_root>/<name>/HR`` where it exists (EDSR's benchmark layout), else ``<test_root>/<name>``."""
    base = Path(test_root) / name
    return base / "HR" if (base / "HR").is_dir() else base


@functools.lru_cache(maxsize=32)
def _cached_pairs(source: str, scale: int, n: int, size: int, seed: int) -> tuple[SRPair, ...]:
    images = generated_images(n, size, seed) if source == "" else folder_images(source, n)
    return tuple(make_pair(name, img, scale, grey) for name, img, grey in images)


@functools.lru_cache(maxsize=32)
def _cached_file_pairs(files: tuple[str, ...], scale: int) -> tuple[SRPair, ...]:
    pairs = []
    for f in files:
        image, grey = read_rgb(f)
        pairs.append(make_pair(Path(f).stem, image, scale, grey))
    return tuple(pairs)


def load_file_pairs(files, scale: int) -> tuple[SRPair, ...]:
    """HR/LR pairs of the image files ``files`` in their order; cached per process like :func:`load_pairs`."""
    return _cached_file_pairs(tuple(str(Path(f).resolve()) for f in files), scale)


def load_pairs(folder: str | Path | None, scale: int, n: int = 0, size: int = 0, seed: int = 0) -> tuple[SRPair, ...]:
    """HR/LR pairs of a folder (``folder``; first ``n`` images, 0 all) or, with ``folder=None``, of
    ``n`` generated ``size``-px images from ``seed``. Cached per process (trials of one worker share
    the LR images and their bicubic baselines)."""
    if folder is None:
        return _cached_pairs("", scale, n, size, seed)
    return _cached_pairs(str(Path(folder).resolve()), scale, n, 0, 0)


class PatchSampler:
    """Random training patches from HR/LR pairs held as uint8 tensors on ``device`` (module docstring).

    ``pairs`` smaller than ``scale * lr_patch`` are skipped (``len(self)`` counts the ones kept)."""

    def __init__(self, pairs, scale: int, lr_patch: int, device: torch.device, augment: bool = True):
        hr_patch = scale * lr_patch
        kept = [p for p in pairs if min(p.hr.shape[:2]) >= hr_patch]
        if not kept:
            raise ValueError(f"no training image is at least {hr_patch} px on each side (scale {scale} x "
                             f"LR patch {lr_patch}); lower data.lr_patch")
        self.scale, self.lr_patch, self.augment = scale, lr_patch, augment
        self.hr = [torch.from_numpy(np.array(p.hr)).permute(2, 0, 1).to(device) for p in kept]
        self.lr = [torch.from_numpy(np.array(p.lr)).permute(2, 0, 1).to(device) for p in kept]

    def __len__(self) -> int:
        return len(self.hr)

    def sample(self, batch: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """``(lr, hr)`` float32 batches ``(B, 3, p, p)`` and ``(B, 3, s p, s p)``, values 0..255.

        Random numbers from ``generator`` (CPU) per sample, in this order: image, y, x, three flip bits."""
        p, s = self.lr_patch, self.scale
        lrs, hrs = [], []
        for _ in range(batch):
            i = int(torch.randint(len(self.lr), (1,), generator=generator))
            lr, hr = self.lr[i], self.hr[i]
            y = int(torch.randint(lr.shape[1] - p + 1, (1,), generator=generator))
            x = int(torch.randint(lr.shape[2] - p + 1, (1,), generator=generator))
            flips = torch.randint(2, (3,), generator=generator).tolist()
            lp, hp = lr[:, y:y + p, x:x + p], hr[:, s * y:s * (y + p), s * x:s * (x + p)]
            if self.augment:
                lp, hp = augment_pair(lp, hp, *flips)
            lrs.append(lp)
            hrs.append(hp)
        return torch.stack(lrs).float(), torch.stack(hrs).float()


def augment_pair(lr: torch.Tensor, hr: torch.Tensor, hflip: int, vflip: int, transpose: int):
    """EDSR's ``augment`` on ``(C, H, W)`` patches: flip columns, flip rows, swap rows and columns."""
    out = []
    for t in (lr, hr):
        if hflip:
            t = t.flip(2)
        if vflip:
            t = t.flip(1)
        if transpose:
            t = t.transpose(1, 2)
        out.append(t)
    return tuple(out)


__all__ = ["IMAGE_SUFFIXES", "DIV2K_TRAIN", "list_images", "read_rgb", "image_size", "check_image", "check_images", "ImageError", "modcrop",
           "downscale", "bicubic_upscale", "GREY_MODES", "WIDE_GREY_MODES", "COLOUR_MODES", "SRPair", "make_pair",
           "generated_image", "generated_images", "folder_images", "holdout_split", "benchmark_folder", "load_pairs",
           "load_file_pairs", "PatchSampler", "augment_pair"]
