"""MATLAB-compatible bicubic imresize (lowbit_core/data/imresize.py) against MATLAB's own outputs.

Reference values: MATLAB's ``imresize(A, [rows cols], 'bicubic', 'antialiasing', true|false)`` on
small ramps, as computed in MATLAB by ``test_answer/gen_test.m`` of github.com/sanghyun-son/
bicubic_pytorch (commit da432d1; the ``.mat`` files there, read with scipy.io.loadmat and printed to
12 digits here). The hand-derived weights follow ``contributions`` and ``cubic`` of MATLAB's
``imresize.m`` (kernel (1.5|x|^3 - 2.5|x|^2 + 1 on |x| <= 1, -0.5|x|^3 + 2.5|x|^2 - 4|x| + 2 on
1 < |x| <= 2), stretched by 1/scale when shrinking, symmetric padding).
"""
import numpy as np
import pytest

from lowbit_core.data.imresize import contributions, cubic, imresize, output_size, _round_uint8

RAMP_8 = np.arange(64.0).reshape(8, 8)       # MATLAB: reshape(linspace(0, 63, 64), [8, 8])'
RAMP_4 = np.arange(16.0).reshape(4, 4)
RAMP_15 = np.arange(225.0).reshape(15, 15)
TOPLEFT = np.zeros((4, 4))
TOPLEFT[0, 0], TOPLEFT[1, 0], TOPLEFT[0, 1], TOPLEFT[0, 3] = 100, 10, 1, 100

MATLAB = {  # name: (input, output size, antialiasing, MATLAB's output)
    "8x8 -> 4x4 (x2) AA": (RAMP_8, (4, 4), True, [
        [4.04296875, 6.08203125, 8.10546875, 10.14453125],
        [20.35546875, 22.39453125, 24.41796875, 26.45703125],
        [36.54296875, 38.58203125, 40.60546875, 42.64453125],
        [52.85546875, 54.89453125, 56.91796875, 58.95703125]]),
    "15x15 -> 5x5 (x3) AA": (RAMP_15, (5, 5), True, [
        [14.41975308642, 17.506172839506, 20.518518518519, 23.530864197531, 26.617283950617],
        [60.716049382716, 63.802469135802, 66.814814814815, 69.827160493827, 72.913580246914],
        [105.901234567901, 108.987654320988, 112.0, 115.012345679012, 118.098765432099],
        [151.086419753086, 154.172839506173, 157.185185185185, 160.197530864198, 163.283950617284],
        [197.382716049383, 200.469135802469, 203.481481481481, 206.493827160494, 209.58024691358]]),
    "8x8 -> 2x2 (x4) AA": (RAMP_8, (2, 2), True, [[12.3837890625, 16.6318359375], [46.3681640625, 50.6162109375]]),
    "4x4 -> 3x3 AA": (RAMP_4, (3, 3), True, [
        [0.75055187638, 2.100441501104, 3.450331125828],
        [6.150110375276, 7.5, 8.849889624724],
        [11.549668874172, 12.899558498896, 14.24944812362]]),
    "4x4 -> 3x3 no AA": (RAMP_4, (3, 3), False, [
        [0.543981481481, 1.935185185185, 3.326388888889],
        [6.108796296296, 7.5, 8.891203703704],
        [11.673611111111, 13.064814814815, 14.456018518519]]),
    "8x8 -> 5x7 AA (two scales)": (RAMP_8, (5, 7), True, [
        [2.184525125377, 3.319137385557, 4.468841371478, 5.620459770115, 6.772078168752, 7.921782154673, 9.056394414853],
        [15.219771569951, 16.354383830131, 17.504087816052, 18.655706214689, 19.807324613326, 20.957028599247,
         22.091640859428],
        [28.064065355262, 29.198677615442, 30.348381601363, 31.5, 32.651618398637, 33.801322384558, 34.935934644738],
        [40.908359140573, 42.042971400753, 43.192675386674, 44.344293785311, 45.495912183948, 46.645616169869,
         47.780228430049],
        [53.943605585147, 55.078217845327, 56.227921831248, 57.379540229885, 58.531158628522, 59.680862614443,
         60.815474874623]]),
    "4x4 impulses -> 5x5 (enlarge)": (TOPLEFT, (5, 5), False, [
        [108.685225, 27.6970975, -12.4465625, 26.8841925, 109.2025],
        [35.471365, 8.970789, -3.5895625, 6.637437, 26.961],
        [-0.6503125, -0.21221875, 0.39453125, -1.60790625, -6.53125],
        [-0.768075, -0.18963, 0.0459375, 0.0, 0.0],
        [0.0, 0.0, 0.0, 0.0, 0.0]]),
}


@pytest.mark.parametrize("name", list(MATLAB))
def test_matches_matlab_outputs(name):
    image, size, aa, want = MATLAB[name]
    got = imresize(image, size=size, antialiasing=aa)
    assert got.shape == size and got.dtype == np.float64
    np.testing.assert_allclose(got, np.array(want), rtol=0, atol=1e-9)  # 12 printed digits


def test_scalar_scale_equals_the_size_form_on_the_x2_x3_x4_cases():
    # imresize(A, 1/s) and imresize(A, size(A)/s) are the same mapping when s divides the size
    for image, s in ((RAMP_8, 2), (RAMP_15, 3), (RAMP_8, 4)):
        n = image.shape[0] // s
        np.testing.assert_allclose(imresize(image, 1.0 / s), imresize(image, size=(n, n)), rtol=0, atol=1e-12)


def test_cubic_kernel_closed_form():
    x = np.array([0.0, 0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 1.75, 2.0, 2.5, -0.5, -1.5])
    # Keys (1981), a = -0.5, at hand-computed points
    want = [1.0, 0.8671875, 0.5625, 0.2265625, 0.0, -0.0703125, -0.0625, -0.0234375, 0.0, 0.0, 0.5625, -0.0625]
    np.testing.assert_allclose(cubic(x), want, rtol=0, atol=1e-15)


def test_contributions_shrink_by_two_by_hand():
    # Output pixel 1 of 4 -> 2 pixels: u = 1/0.5 + 0.5 (1 - 2) = 1.5, kernel width 4/0.5 = 8, taps
    # j = -3 .. 6 (1-based), weights 0.5 cubic(0.5 (1.5 - j)); the two end taps have weight 0 in every
    # row and are dropped; the rest sum to 1 exactly: (-3, -9, 29, 111, 111, 29, -9, -3) / 256.
    # Taps outside 1..4 are mirrored with the edge repeated: -2, -1, 0 -> 3, 2, 1 and 5 -> 4.
    w, idx = contributions(4, 2, 0.5)
    np.testing.assert_array_equal(w[0] * 256, [-3, -9, 29, 111, 111, 29, -9, -3])
    np.testing.assert_array_equal(idx[0], [2, 1, 0, 0, 1, 2, 3, 3])          # 0-based
    np.testing.assert_array_equal(idx[1], [0, 0, 1, 2, 3, 3, 2, 1])
    np.testing.assert_allclose(w.sum(1), 1.0, rtol=0, atol=1e-15)


def test_enlarging_uses_the_plain_kernel_and_antialiasing_changes_only_shrinking():
    w, _ = contributions(4, 8, 2.0)
    # u = i/2 + 0.25: offsets to the nearest taps are 0.25 and 0.75 -> cubic(0.25), cubic(0.75), ...
    np.testing.assert_allclose(sorted(w[0]), sorted([-0.0234375, 0.2265625, 0.8671875, -0.0703125]), atol=1e-15)
    np.testing.assert_array_equal(imresize(RAMP_4, 2.0, antialiasing=True), imresize(RAMP_4, 2.0, antialiasing=False))
    assert not np.allclose(imresize(RAMP_8, 0.5, antialiasing=True), imresize(RAMP_8, 0.5, antialiasing=False))


def test_output_size_rounds_up_and_keeps_the_given_scale():
    # MATLAB: imresize(A, scale) has ceil(scale * size) pixels and maps with scale itself
    assert output_size((7, 10), scale=0.5) == ((4, 5), (0.5, 0.5))
    assert output_size((7, 10), size=(4, 5)) == ((4, 5), (4 / 7, 0.5))
    assert imresize(np.zeros((7, 10)), 0.5).shape == (4, 5)
    # the scalar form (scale 0.5 on 7 rows) and the size form (4/7) differ on a non-divisible size
    a = np.random.default_rng(0).uniform(0, 255, (7, 10))
    assert not np.allclose(imresize(a, 0.5), imresize(a, size=(4, 5)))
    for bad in (dict(), dict(scale=0.5, size=(2, 2)), dict(scale=-1.0), dict(size=(0, 3))):
        with pytest.raises(ValueError):
            imresize(a, **bad)


def test_uint8_rounds_half_away_from_zero_and_saturates_after_each_pass():
    # MATLAB's double -> uint8 conversion
    np.testing.assert_array_equal(_round_uint8(np.array([0.5, 1.5, 2.5, 2.49, -0.6, 254.5, 300.0])),
                                  [1, 2, 3, 2, 0, 255, 255])
    rng = np.random.default_rng(1)
    img = rng.integers(0, 256, (12, 9, 3)).astype(np.uint8)
    # rows shrink by 1/3 (4 rows), columns by 2/3 (6 columns): rows have the smaller scale, so go first
    wr, ir = contributions(12, 4, 4 / 12)
    wc, ic = contributions(9, 6, 6 / 9)
    rows = _round_uint8(np.einsum("op,opwc->owc", wr, img[ir].astype(np.float64)))
    want = _round_uint8(np.einsum("op,hopc->hoc", wc, rows[:, ic].astype(np.float64)))
    got = imresize(img, size=(4, 6))
    assert got.dtype == np.uint8
    np.testing.assert_array_equal(got, want)
    # channels are independent, and float input stays float (no rounding)
    np.testing.assert_allclose(imresize(img.astype(np.float64), size=(4, 6))[..., 1],
                               imresize(img[..., 1].astype(np.float64), size=(4, 6)))


def test_bad_input_is_rejected():
    with pytest.raises(ValueError, match=r"\(H, W\)"):
        imresize(np.zeros((2, 2, 2, 2)), 0.5)
    with pytest.raises(TypeError, match="uint8 or floating"):
        imresize(np.zeros((4, 4), dtype=np.int32), 0.5)
