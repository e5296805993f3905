"""Y-channel PSNR/SSIM (lowbit_core/data/sr_metrics.py) against scikit-image, and the bicubic baseline
against the literature's figures on the real benchmark sets (skipped where ../shared/data is absent).

Independent reference: scikit-image 0.26 (pinned in the test extras): ``skimage.color.rgb2ycbcr``
(ITU-R BT.601, Y in 16..235, the MATLAB convention), ``peak_signal_noise_ratio(data_range=255)`` and
``structural_similarity(gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
data_range=255)`` -- the settings skimage documents as matching Wang et al.'s MATLAB ssim_index.m.
"""
from pathlib import Path

import numpy as np
import pytest
from skimage.color import rgb2ycbcr
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from lowbit_core.data.sr_images import bicubic_upscale, generated_image, load_pairs, make_pair
from lowbit_core.data.sr_metrics import gaussian_window, luma, psnr, psnr_ssim_y, quantize, rgb_to_y, shave, ssim

SR_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "sr"
# Bicubic on Y, `scale` px cropped (e.g. Kim et al., VDSR, CVPR 2016, Table 3; Lim et al., EDSR, 2017)
LITERATURE = {("Set5", 2): (33.66, 0.9299), ("Set5", 3): (30.39, 0.8682), ("Set5", 4): (28.42, 0.8104),
              ("Set14", 2): (30.24, 0.8688), ("Set14", 3): (27.55, 0.7742), ("Set14", 4): (26.00, 0.7027)}


def sk_ssim(a, b):
    return structural_similarity(a, b, data_range=255, gaussian_weights=True, sigma=1.5, use_sample_covariance=False)


def pairs_of_images():
    rng = np.random.default_rng(0)
    noise = rng.integers(0, 256, (40, 52, 3)).astype(np.uint8)
    yield "uniform noise", noise, np.clip(noise + rng.normal(0, 12, noise.shape), 0, 255).astype(np.uint8)
    img = generated_image(3, 96)                         # real-like: edges and textures
    yield "generated, bicubic x2", img, bicubic_upscale(make_pair("g", img, 2).lr, 2)
    yield "generated, bicubic x4", img, bicubic_upscale(make_pair("g", img, 4).lr, 4)
    if (SR_DATA / "Set5").is_dir():
        p = load_pairs(SR_DATA / "Set5", 3)[2]            # butterfly
        yield "Set5 butterfly, bicubic x3", p.hr, bicubic_upscale(p.lr, 3)


@pytest.mark.parametrize("case", list(pairs_of_images()), ids=lambda c: c[0])
def test_psnr_and_ssim_equal_scikit_image_on_the_same_y(case):
    _, hr, sr = case
    y_hr, y_sr = rgb2ycbcr(hr)[..., 0], rgb2ycbcr(sr)[..., 0]       # skimage's BT.601 Y, 16..235
    np.testing.assert_allclose(rgb_to_y(hr), y_hr, rtol=0, atol=1e-9)
    for border in (0, 2, 4):
        a, b = shave(y_sr, border), shave(y_hr, border)
        assert psnr(a, b) == pytest.approx(peak_signal_noise_ratio(b, a, data_range=255), rel=0, abs=1e-9)
        assert ssim(a, b) == pytest.approx(sk_ssim(a, b), rel=0, abs=1e-9)
    p, s = psnr_ssim_y(sr, hr, 4)
    assert p == pytest.approx(peak_signal_noise_ratio(shave(y_hr, 4), shave(y_sr, 4), data_range=255), abs=1e-9)
    assert s == pytest.approx(sk_ssim(shave(y_sr, 4), shave(y_hr, 4)), abs=1e-9)


def test_closed_forms():
    a = np.full((20, 20), 100.0)
    assert psnr(a, a) == float("inf") and ssim(a, a) == pytest.approx(1.0, abs=1e-12)
    # MSE 1 -> 20 log10(255) = 48.1308 dB
    assert psnr(a, a + 1) == pytest.approx(20 * np.log10(255), abs=1e-12)
    rgb = np.array([[[255, 255, 255], [0, 0, 0], [255, 0, 0]]], dtype=np.uint8)
    np.testing.assert_allclose(rgb_to_y(rgb)[0], [235.0, 16.0, 16 + 65.481], atol=1e-12)
    g = gaussian_window()
    assert len(g) == 11 and g.sum() == pytest.approx(1.0) and g[5] == g.max() and g[0] == pytest.approx(g[10])
    np.testing.assert_array_equal(quantize(np.array([-3.0, 0.5, 1.49, 254.5, 300.0])), [0, 1, 1, 255, 255])


def test_grey_images_are_measured_on_their_grey_level():
    rng = np.random.default_rng(2)
    g = rng.integers(0, 256, (30, 30)).astype(np.uint8)
    rgb = np.repeat(g[:, :, None], 3, axis=2)
    np.testing.assert_allclose(luma(rgb, grey=True), g, atol=1e-9)
    noisy = np.clip(rgb.astype(float) + rng.normal(0, 5, rgb.shape), 0, 255)
    p_grey, _ = psnr_ssim_y(noisy, rgb, 0, grey=True)
    assert p_grey == pytest.approx(peak_signal_noise_ratio(g.astype(float), luma(noisy, True), data_range=255), abs=1e-9)
    # the studio-range Y scales a grey image's differences by 219/255: 1.32 dB more PSNR
    p_y, _ = psnr_ssim_y(rgb + np.zeros(3), np.clip(rgb + 0.0 + (rgb < 250) * 3, 0, 255), 0)
    p_g, _ = psnr_ssim_y(rgb + np.zeros(3), np.clip(rgb + 0.0 + (rgb < 250) * 3, 0, 255), 0, grey=True)
    assert p_y - p_g == pytest.approx(20 * np.log10(255 / 219), abs=1e-9)


def test_shave_and_shape_errors():
    a = np.zeros((10, 12))
    assert shave(a, 3).shape == (4, 6) and shave(a, 0) is a
    with pytest.raises(ValueError, match="cannot crop"):
        shave(a, 5)
    with pytest.raises(ValueError, match="sizes differ"):
        psnr_ssim_y(np.zeros((8, 8, 3)), np.zeros((8, 9, 3)), 0)
    with pytest.raises(ValueError, match="at least 11x11"):
        ssim(np.zeros((10, 30)), np.zeros((10, 30)))


@pytest.mark.skipif(not (SR_DATA / "Set14").is_dir(), reason="../shared/data/sr (Set5, Set14) not present")
@pytest.mark.parametrize("name,scale", list(LITERATURE))
def test_bicubic_baseline_reproduces_the_literature(name, scale):
    # MATLAB imresize both ways on modcropped HR, Y channel, scale px cropped: within 0.02 dB / 0.001
    pairs = load_pairs(SR_DATA / name, scale)
    vals = np.array([psnr_ssim_y(bicubic_upscale(p.lr, scale), p.hr, scale, p.grey) for p in pairs])
    want_psnr, want_ssim = LITERATURE[name, scale]
    assert vals[:, 0].mean() == pytest.approx(want_psnr, abs=0.02)
    assert vals[:, 1].mean() == pytest.approx(want_ssim, abs=0.001)
    if name == "Set14":
        assert [p.name for p in pairs if p.grey] == ["bridge"]   # the one single-channel file
