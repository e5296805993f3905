"""Super-resolution metrics as the literature computes them: PSNR and SSIM on the Y channel.

Protocol (the MATLAB evaluation scripts of SRCNN/VDSR/EDSR/RCAN; numpy, float64):

1. **Y channel** of YCbCr, ITU-R BT.601 with MATLAB ``rgb2ycbcr``'s studio range (Y in 16..235):
   for R, G, B in 0..255, ``Y = 16 + (65.481 R + 128.553 G + 24.966 B) / 255`` (MATLAB's
   ``rgb2ycbcr(im2double(I)) * 255``; kept as a double, not rounded to uint8). A **grey** image
   (a single-channel file, such as Set14's ``bridge``) is measured on its grey level, as the MATLAB
   scripts do for one-channel images (they use the image itself as Y): the network sees it replicated
   to RGB (EDSR's ``set_channel``), and its output is reduced by the same luma without the studio
   offset, ``(65.481 R + 128.553 G + 24.966 B) / 219`` (= the grey level when R = G = B). With the
   studio-range Y instead, bridge's PSNR is 20 log10(255/219) = 1.32 dB higher and the published
   Set14 bicubic figures are not reproduced.
2. **Border**: ``scale`` pixels cropped from each of the four sides of both images (``shave``).
3. **PSNR** = ``10 log10(255^2 / MSE)`` over the cropped Y (data range 255); ``inf`` for equal images.
4. **SSIM** (Wang, Bovik, Sheikh, Simoncelli, "Image quality assessment: from error visibility to
   structural similarity", IEEE TIP 2004, and its reference ``ssim_index.m``): an 11x11 Gaussian
   window with sigma 1.5 (normalised to sum 1), ``C1 = (0.01 L)^2``, ``C2 = (0.03 L)^2``, L = 255,
   local means ``mu``, variances ``sigma^2`` and covariance ``sigma_xy`` by filtering (population
   moments, i.e. ``E[x^2] - mu^2``), filtered 'valid' (no padding: the map is 10 px smaller per
   axis), and ``SSIM = mean((2 mu_x mu_y + C1)(2 sigma_xy + C2) / ((mu_x^2 + mu_y^2 + C1)(sigma_x^2 +
   sigma_y^2 + C2)))``. No automatic downsampling (that is the later ``ssim.m``, not the SR scripts').

The super-resolved image is first brought to what would be saved as an 8-bit image:
``quantize(x) = round(clip(x, 0, 255))`` (EDSR's ``utility.quantize``), by the caller.
"""
from __future__ import annotations

import math

import numpy as np

RGB_TO_Y = np.array([65.481, 128.553, 24.966]) / 255.0
RGB_TO_GREY = np.array([65.481, 128.553, 24.966]) / 219.0
Y_OFFSET = 16.0
SSIM_WINDOW, SSIM_SIGMA, SSIM_K1, SSIM_K2 = 11, 1.5, 0.01, 0.03
DATA_RANGE = 255.0


def as_rgb(image: np.ndarray) -> np.ndarray:
    """``(H, W, 3)`` from ``(H, W)``, ``(H, W, 1)`` (grey replicated) or ``(H, W, 3)``; dtype kept."""
    image = np.asarray(image)
    if image.ndim == 2:
        image = image[:, :, None]
    if image.ndim != 3 or image.shape[2] not in (1, 3):
        raise ValueError(f"expected an (H, W), (H, W, 1) or (H, W, 3) image, got shape {image.shape}")
    return np.repeat(image, 3, axis=2) if image.shape[2] == 1 else image


def rgb_to_y(image: np.ndarray) -> np.ndarray:
    """BT.601 luma in MATLAB's studio range, ``16 + (65.481 R + 128.553 G + 24.966 B) / 255``
    (R, G, B in 0..255), float64 ``(H, W)``."""
    return Y_OFFSET + as_rgb(image).astype(np.float64) @ RGB_TO_Y


def luma(image: np.ndarray, grey: bool = False) -> np.ndarray:
    """The channel the metrics are computed on: :func:`rgb_to_y`, or for a ``grey`` image its grey
    level ``(65.481 R + 128.553 G + 24.966 B) / 219`` (module docstring), float64 ``(H, W)``."""
    return as_rgb(image).astype(np.float64) @ RGB_TO_GREY if grey else rgb_to_y(image)


def shave(image: np.ndarray, border: int) -> np.ndarray:
    """``image`` without ``border`` pixels on each side (``border = 0``: unchanged)."""
    if border < 0:
        raise ValueError(f"border must be >= 0, got {border}")
    if 2 * border >= min(image.shape[:2]):
        raise ValueError(f"cannot crop {border} px from each side of a {image.shape[0]}x{image.shape[1]} image")
    return image[border:image.shape[0] - border, border:image.shape[1] - border] if border else image


def psnr(a: np.ndarray, b: np.ndarray, data_range: float = DATA_RANGE) -> float:
    """``10 log10(data_range^2 / mean((a - b)^2))``; ``inf`` when ``a == b``."""
    if a.shape != b.shape:
        raise ValueError(f"shapes differ: {a.shape} vs {b.shape}")
    mse = float(np.mean((np.asarray(a, np.float64) - np.asarray(b, np.float64)) ** 2))
    return math.inf if mse == 0 else 10.0 * math.log10(data_range ** 2 / mse)


def gaussian_window(size: int = SSIM_WINDOW, sigma: float = SSIM_SIGMA) -> np.ndarray:
    """The 1-D factor of MATLAB's ``fspecial('gaussian', size, sigma)``: ``exp(-x^2 / (2 sigma^2))``
    on ``x = -(size-1)/2 .. (size-1)/2``, normalised to sum 1 (the 2-D window is its outer product)."""
    x = np.arange(size, dtype=np.float64) - (size - 1) / 2
    g = np.exp(-x * x / (2 * sigma * sigma))
    return g / g.sum()


def _filter_valid(x: np.ndarray, g: np.ndarray) -> np.ndarray:
    """Separable 'valid' correlation of a 2-D array with the window ``outer(g, g)``."""
    k = len(g)
    rows = sum(g[i] * x[i:x.shape[0] - k + 1 + i] for i in range(k))
    return sum(g[i] * rows[:, i:rows.shape[1] - k + 1 + i] for i in range(k))


def ssim(a: np.ndarray, b: np.ndarray, data_range: float = DATA_RANGE) -> float:
    """Mean SSIM of two 2-D images (Wang et al. 2004; constants and filtering in the module docstring)."""
    if a.shape != b.shape or a.ndim != 2:
        raise ValueError(f"ssim takes two 2-D images of one shape, got {a.shape} and {b.shape}")
    if min(a.shape) < SSIM_WINDOW:
        raise ValueError(f"ssim needs images of at least {SSIM_WINDOW}x{SSIM_WINDOW} px, got {a.shape}")
    x, y = np.asarray(a, np.float64), np.asarray(b, np.float64)
    g = gaussian_window()
    c1, c2 = (SSIM_K1 * data_range) ** 2, (SSIM_K2 * data_range) ** 2
    mx, my = _filter_valid(x, g), _filter_valid(y, g)
    sxx = _filter_valid(x * x, g) - mx * mx
    syy = _filter_valid(y * y, g) - my * my
    sxy = _filter_valid(x * y, g) - mx * my
    num = (2 * mx * my + c1) * (2 * sxy + c2)
    den = (mx * mx + my * my + c1) * (sxx + syy + c2)
    return float(np.mean(num / den))


def quantize(image: np.ndarray) -> np.ndarray:
    """``round(clip(x, 0, 255))`` as uint8 (half away from zero, as MATLAB and EDSR's ``quantize``)."""
    return np.floor(np.clip(np.asarray(image, np.float64), 0, 255) + 0.5).astype(np.uint8)


def psnr_ssim_y(sr: np.ndarray, hr: np.ndarray, border: int, grey: bool = False) -> tuple[float, float]:
    """``(PSNR, SSIM)`` on the Y channel (:func:`luma`) of two 0..255 images of one size, ``border``
    pixels cropped at each side (the protocol of the module docstring; pass ``border = scale``)."""
    if sr.shape[:2] != hr.shape[:2]:
        raise ValueError(f"image sizes differ: {sr.shape[:2]} vs {hr.shape[:2]}")
    ys, yh = shave(luma(sr, grey), border), shave(luma(hr, grey), border)
    return psnr(ys, yh), ssim(ys, yh)


__all__ = ["as_rgb", "rgb_to_y", "luma", "shave", "psnr", "ssim", "gaussian_window", "quantize", "psnr_ssim_y",
           "DATA_RANGE"]
