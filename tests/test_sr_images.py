"""Reading SR image files (lowbit_core/data/sr_images.py) and the sr family's preflight on them:
16-bit PNGs (grey through Pillow's ``I;16``, colour written here byte by byte) read as their 8-bit
copies and give the same PSNR; RGBA, palette and grey files; modes that are refused in one line;
JPEG folders; undecodable, non-image, truncated and too-small files named in one preflight line.
Every image is made here in a tmp folder."""
from __future__ import annotations

import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from lowbit_core.config import with_overrides
from lowbit_core.data.sr_images import (ImageError, bicubic_upscale, check_image, check_images, generated_image, load_pairs,
                                         read_rgb)
from lowbit_core.data.sr_metrics import psnr_ssim_y
from lowbit_core.families import get_family
from lowbit_core.families.sr.config import SRConfig, min_eval_side

FAMILY = get_family("sr")


def png_bytes(samples: np.ndarray, colour_type: int) -> bytes:
    """A PNG written from the specification (ISO/IEC 15948): 16-bit big-endian samples, filter 0 on
    every row; ``colour_type`` 0 (grey, (H, W)) or 2 (RGB, (H, W, 3))."""
    h, w = samples.shape[:2]

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    rows = samples.astype(">u2").reshape(h, -1)
    raw = b"".join(b"\x00" + row.tobytes() for row in rows)
    header = struct.pack(">IIBBBBB", w, h, 16, colour_type, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")


def test_sixteen_bit_pngs_read_as_their_8_bit_copies_and_give_the_same_psnr(tmp_path):
    img8 = generated_image(7, 40)
    for name in ("png8", "png16"):
        (tmp_path / name).mkdir()
    Image.fromarray(img8).save(tmp_path / "png8" / "a.png")
    Image.fromarray(img8[:, :, 0]).save(tmp_path / "png8" / "b.png")
    (tmp_path / "png16" / "a.png").write_bytes(png_bytes(img8.astype(np.uint16) * 257, 2))      # 48-bit RGB
    Image.fromarray(img8[:, :, 0].astype(np.uint16) * 257).save(tmp_path / "png16" / "b.png")   # I;16 grey
    with Image.open(tmp_path / "png16" / "b.png") as im:
        assert im.mode == "I;16"
    # Pillow's 8-bit conversion of I;16 clips at 255: every level above 0 of this image would be white
    with Image.open(tmp_path / "png16" / "b.png") as im:
        assert (np.asarray(im.convert("L")) == 255).mean() > 0.95
    for f in ("a.png", "b.png"):
        a, grey_a = read_rgb(tmp_path / "png8" / f)
        b, grey_b = read_rgb(tmp_path / "png16" / f)
        assert np.array_equal(a, b) and grey_a == grey_b == (f == "b.png")
    p8, p16 = load_pairs(tmp_path / "png8", 2), load_pairs(tmp_path / "png16", 2)
    for x, y in zip(p8, p16):
        s8 = psnr_ssim_y(bicubic_upscale(x.lr, 2), x.hr, 2, x.grey)
        s16 = psnr_ssim_y(bicubic_upscale(y.lr, 2), y.hr, 2, y.grey)
        assert s8 == s16 and 20 < s8[0] < 60


def test_sixteen_bit_values_round_to_the_nearest_8_bit_level(tmp_path):
    v = np.arange(0, 65536, 7, dtype=np.int64)[:64 * 64].reshape(64, 64)
    v[0, :4] = [0, 128, 129, 65535]          # 128/257 = 0.498 -> 0, 129/257 = 0.502 -> 1
    Image.fromarray(v.astype(np.uint16)).save(tmp_path / "w.png")
    rgb, grey = read_rgb(tmp_path / "w.png")
    assert grey and rgb.dtype == np.uint8
    assert rgb[0, :4, 0].tolist() == [0, 0, 1, 255]
    assert np.array_equal(rgb[:, :, 0], np.rint(v / 257.0).astype(np.uint8))


def test_rgba_palette_and_grey_files(tmp_path):
    img = generated_image(3, 24)
    rgba = np.dstack([img, np.arange(24 * 24).reshape(24, 24) % 256]).astype(np.uint8)
    Image.fromarray(rgba, "RGBA").save(tmp_path / "rgba.png")
    assert np.array_equal(read_rgb(tmp_path / "rgba.png")[0], img)                 # alpha dropped, colour kept
    pal = Image.fromarray(img).quantize(16)
    pal.save(tmp_path / "pal.png")
    got, grey = read_rgb(tmp_path / "pal.png")
    assert not grey and np.array_equal(got, np.asarray(pal.convert("RGB")))         # through its palette
    Image.fromarray(img[:, :, 1]).convert("LA").save(tmp_path / "la.png")
    got, grey = read_rgb(tmp_path / "la.png")
    assert grey and np.array_equal(got, np.repeat(img[:, :, 1:2], 3, axis=2))
    Image.fromarray(img[:, :, 1] > 128).save(tmp_path / "one.png")                # 1-bit
    assert set(np.unique(read_rgb(tmp_path / "one.png")[0])) == {0, 255}


def test_other_modes_are_refused_in_one_line(tmp_path):
    Image.fromarray(np.zeros((20, 20), np.float32)).save(tmp_path / "f.tif")
    with pytest.raises(ImageError, match=r"f.tif: image mode F is not read \(valid: 8/16-bit grey") as e:
        read_rgb(tmp_path / "f.tif")
    assert "\n" not in str(e.value)
    Image.fromarray(np.full((20, 20), 70000, np.int32)).save(tmp_path / "i.tif")
    with pytest.raises(ImageError, match=r"i.tif: mode I values 70000..70000 are outside 0..65535"):
        read_rgb(tmp_path / "i.tif")


def write_set(folder, n, size, suffix=".png", seed=0):
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        Image.fromarray(generated_image(seed + i, size)).save(folder / f"img{i}{suffix}")


def folder_cfg(tmp_path, **over) -> SRConfig:
    base = {"data.train": "folder", "data.root": str(tmp_path / "train"), "data.test_root": str(tmp_path),
            "data.test_sets": ("Set5",), "data.lr_patch": 8, "model.blocks": 1, "model.channels": 4}
    return FAMILY.canonicalize(with_overrides(SRConfig(), {**base, **over}))


def test_jpeg_folders_are_read(tmp_path):
    write_set(tmp_path / "train", 2, 40, ".jpg")
    write_set(tmp_path / "Set5", 2, 30, ".JPEG", seed=10)
    cfg = folder_cfg(tmp_path)
    assert FAMILY.preflight(cfg) is None
    pairs = load_pairs(tmp_path / "Set5", 2)
    assert [p.name for p in pairs] == ["img0", "img1"]
    with Image.open(tmp_path / "Set5" / "img0.JPEG") as im:
        assert np.array_equal(pairs[0].hr, np.asarray(im.convert("RGB")))
    from lowbit_core.families.sr.run import train_sr
    rows = []
    train_sr(with_overrides(cfg, {"train.epochs": 1, "train.steps_per_epoch": 1, "train.batch_size": 2,
                                  "data.crop_size": 8}), lambda m, state=None: rows.append(m))
    assert rows[0]["n_images.Set5"] == 2 and rows[0]["n_train_images"] == 2 and np.isfinite(rows[0]["psnr_y"])


def test_preflight_names_an_undecodable_non_image_truncated_or_too_small_file(tmp_path):
    write_set(tmp_path / "train", 3, 40)
    write_set(tmp_path / "Set5", 2, 30, seed=10)
    cfg = folder_cfg(tmp_path)
    assert FAMILY.preflight(cfg) is None
    # a text file named *.png, sorted first: no traceback, one line naming it
    (tmp_path / "train" / "0notes.png").write_text("not an image\n")
    msg = FAMILY.preflight(cfg)
    assert msg.startswith(f"data.root: {tmp_path / 'train' / '0notes.png'}: not a readable image (") and "\n" not in msg
    (tmp_path / "train" / "0notes.png").unlink()
    # a truncated test image, sorted last
    good = (tmp_path / "Set5" / "img1.png").read_bytes()
    (tmp_path / "Set5" / "img1.png").write_bytes(good[:len(good) // 2])
    msg = FAMILY.preflight(cfg)
    assert msg.startswith(f"data.test_sets (Set5): {tmp_path / 'Set5' / 'img1.png'}: not a readable image (")
    assert "\n" not in msg
    (tmp_path / "Set5" / "img1.png").write_bytes(good)
    assert FAMILY.preflight(cfg) is None                          # the cache follows the file's new version
    # a PNG whose pixel data is damaged (CRC no longer matches)
    bad = bytearray(good)
    bad[good.index(b"IDAT") + 20] ^= 0xFF
    (tmp_path / "Set5" / "img1.png").write_bytes(bytes(bad))
    assert "img1.png: not a readable image" in FAMILY.preflight(cfg)
    (tmp_path / "Set5" / "img1.png").write_bytes(good)
    # a 1-px test image
    Image.fromarray(np.zeros((1, 1, 3), np.uint8)).save(tmp_path / "Set5" / "tiny.png")
    assert FAMILY.preflight(cfg) == (
        f"data.test_sets (Set5): {tmp_path / 'Set5' / 'tiny.png'} is 1x1 px; at scale 2 an evaluated image needs at "
        "least 15 px per side after cropping to a multiple of 2 (2 px shaved per side, then SSIM's 11 px window)")


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_the_smallest_evaluated_image_is_measured_and_one_px_less_is_refused(scale, tmp_path):
    m = min_eval_side(scale)
    side = m + (-m) % scale                                       # the smallest multiple of the scale >= m
    write_set(tmp_path / "train", 1, 4 * 8 * scale)
    write_set(tmp_path / "Set5", 1, side)
    cfg = folder_cfg(tmp_path, scale=scale)
    assert FAMILY.preflight(cfg) is None
    (pair,) = load_pairs(tmp_path / "Set5", scale)
    psnr, ssim = psnr_ssim_y(bicubic_upscale(pair.lr, scale), pair.hr, scale)
    assert np.isfinite(psnr) and -1 <= ssim <= 1
    (tmp_path / "Set5" / "img0.png").unlink()
    write_set(tmp_path / "Set5", 1, side - 1)                     # cropped to side - scale < m
    assert "is %dx%d px" % (side - 1, side - 1) in FAMILY.preflight(cfg)


def test_generated_evaluation_images_must_fit_the_metric(tmp_path):
    cfg = FAMILY.canonicalize(with_overrides(SRConfig(), {"scale": 4, "data.generated_size": 16, "data.lr_patch": 4}))
    assert FAMILY.preflight(cfg) == ("data.generated_size=16: generated test/validation images need at least 19 px "
                                     "at scale 4 (4 px shaved per side, then SSIM's 11 px window)")


def test_check_image_is_cached_per_file_version(tmp_path):
    write_set(tmp_path, 1, 20)
    f = tmp_path / "img0.png"
    assert check_image(f) == (20, 20)
    Image.fromarray(generated_image(0, 24)[:22]).save(f)          # a new version: size or mtime changes
    assert check_image(f) == (22, 24)


def test_check_images_keeps_the_order_and_gives_each_problem_its_line(tmp_path):
    write_set(tmp_path, 3, 20)
    (tmp_path / "img1.png").write_text("text")
    out = check_images([tmp_path / "img0.png", tmp_path / "img1.png", tmp_path / "gone.png", tmp_path / "img2.png"])
    assert out[0] == out[3] == (20, 20)
    assert out[1].startswith(f"{tmp_path / 'img1.png'}: not a readable image (")
    assert out[2].startswith(f"{tmp_path / 'gone.png'}: cannot be read (")
