"""The sr family's validation set (lowbit_core/families/sr/config.py, run.py): a fixed hold-out of the
training folder that training never samples, a named validation folder, generated validation images;
rows carry ``val_psnr_y`` / ``val_ssim_y`` equal to an independent computation on exactly those
images; preflight on a hold-out that leaves no training image; the sweep's validation metric and its
ASHA profiles. Images are made here in tmp folders."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import ROOT
from lowbit_core.config import with_overrides
from lowbit_core.data.sr_images import bicubic_upscale, generated_image, holdout_split, load_file_pairs, load_pairs
from lowbit_core.data.sr_metrics import psnr_ssim_y
from lowbit_core.families import get_family
from lowbit_core.sweep import ASHA, load_sweep, plan
from lowbit_core.families.sr.config import SRConfig, has_validation, train_files, val_files
from lowbit_core.families.sr.run import (SELECTION_METRICS, SR_METRICS, build_model, evaluate, load_train_pairs,
                                         load_val_set, super_resolve, train_sr)

FAMILY = get_family("sr")
TINY = {"model.blocks": 1, "model.channels": 4, "data.lr_patch": 8, "data.crop_size": 8, "train.epochs": 2,
        "train.steps_per_epoch": 2, "train.batch_size": 2, "train.lr": 1e-3}


def write_set(folder, n, size, seed=0):
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        Image.fromarray(generated_image(seed + i, size)).save(folder / f"img{i:02d}.png")


def cfg_of(**over) -> SRConfig:
    return FAMILY.canonicalize(with_overrides(SRConfig(), {**TINY, **over}))


def run(cfg):
    rows = []
    train_sr(cfg, lambda m, state=None: rows.append(dict(m)), torch.device("cpu"))
    return rows


def bicubic_mean(pairs, scale):
    return np.mean([psnr_ssim_y(bicubic_upscale(p.lr, scale), p.hr, scale, p.grey) for p in pairs], axis=0)


def test_holdout_is_the_seed_0_permutation_and_leaves_one_for_training(tmp_path):
    files = [tmp_path / f"f{i}" for i in range(10)]
    # numpy.random.default_rng(0).permutation(10) = [4, 6, 2, 7, 3, 5, 9, 0, 8, 1]
    assert np.random.default_rng(0).permutation(10).tolist() == [4, 6, 2, 7, 3, 5, 9, 0, 8, 1]
    train, held = holdout_split(files, 3)
    assert [f.name for f in held] == ["f2", "f4", "f6"]
    assert [f.name for f in train] == ["f0", "f1", "f3", "f5", "f7", "f8", "f9"]
    assert holdout_split(files, 0) == (files, [])
    with pytest.raises(ValueError, match="cannot hold out 10 of 10 images and keep one for training"):
        holdout_split(files, 10)


def test_held_out_images_are_never_trained_on_and_give_the_val_columns(tmp_path):
    write_set(tmp_path / "train", 6, 40)
    write_set(tmp_path / "Set5", 2, 30, seed=50)
    cfg = cfg_of(**{"data.train": "folder", "data.root": str(tmp_path / "train"), "data.test_root": str(tmp_path),
                    "data.test_sets": ("Set5",), "data.val_images": 2})
    assert has_validation(cfg.data) and FAMILY.preflight(cfg) is None
    held = holdout_split(sorted((tmp_path / "train").glob("*.png")), 2)[1]
    assert [f.name for f in held] == ["img02.png", "img03.png"]           # permutation(6) = [3, 2, 5, 4, 0, 1]
    assert val_files(cfg.data) == held and not set(held) & set(train_files(cfg.data))
    train_names = {p.name for p in load_train_pairs(cfg)}
    assert len(train_names) == 4 and not train_names & {f.stem for f in held}
    # n_train keeps the first n of what is left, and never changes the validation set
    fewer = with_overrides(cfg, {"data.n_train": 2})
    assert val_files(fewer.data) == held and len(train_files(fewer.data)) == 2
    rows = run(cfg)
    val_pairs = load_file_pairs(held, 2)
    bic = bicubic_mean(val_pairs, 2)
    test_bic = bicubic_mean(load_pairs(tmp_path / "Set5", 2), 2)
    for r in rows:
        assert set(r) - {"step"} <= set(FAMILY.metrics)
        assert r["val_bicubic_psnr_y"] == pytest.approx(bic[0], abs=1e-12)
        assert r["val_bicubic_ssim_y"] == pytest.approx(bic[1], abs=1e-12)
        assert r["bicubic_psnr_y.Set5"] == pytest.approx(test_bic[0], abs=1e-12) != r["val_bicubic_psnr_y"]
        assert r["n_val_images"] == 2 and r["val_names"] == ",".join(f.stem for f in held)
        assert r["n_train_images"] == 4 and np.isfinite(r["val_psnr_y"]) and 0 < r["val_ssim_y"] <= 1
    # val_psnr_y is the mean over the held-out images of the model's 8-bit output, measured as a test set is
    val = load_val_set(cfg)
    model = build_model(cfg, "fp")
    scores, _ = evaluate(model, [val], 2, torch.device("cpu"))
    by_hand = np.mean([psnr_ssim_y(super_resolve(model, p.lr, torch.device("cpu")), p.hr, 2)[0] for p in val_pairs])
    assert scores["psnr_y"] == pytest.approx(by_hand, abs=1e-12)


def test_a_named_validation_folder_and_generated_validation_images(tmp_path):
    write_set(tmp_path / "train", 3, 40)
    write_set(tmp_path / "valid", 3, 32, seed=80)
    cfg = cfg_of(**{"data.train": "folder", "data.root": str(tmp_path / "train"), "data.val_root": str(tmp_path / "valid"),
                    "data.val_images": 2, "train.epochs": 1})
    assert FAMILY.preflight(cfg) is None and len(train_files(cfg.data)) == 3       # nothing held out of training
    r = run(cfg)[-1]
    assert r["val_names"] == "img00,img01" and r["n_train_images"] == 3
    assert r["val_bicubic_psnr_y"] == pytest.approx(bicubic_mean(load_pairs(tmp_path / "valid", 2, 2), 2)[0], abs=1e-12)
    gen = cfg_of(**{"data.generated_size": 32, "data.n_train": 3, "data.n_test": 1, "data.val_images": 2,
                    "train.epochs": 1})
    r = run(gen)[-1]
    assert r["val_names"] == "gen000,gen001" and r["n_val_images"] == 2
    assert r["val_bicubic_psnr_y"] == pytest.approx(bicubic_mean(load_pairs(None, 2, 2, 32, 3000), 2)[0], abs=1e-12)
    assert r["val_bicubic_psnr_y"] != r["bicubic_psnr_y"]                          # seed 3000, not the test images
    none = run(cfg_of(**{"data.generated_size": 32, "data.n_train": 3, "data.n_test": 1, "train.epochs": 1}))[-1]
    assert not any(k.startswith("val_") for k in none)


def test_preflight_on_the_validation_set(tmp_path):
    write_set(tmp_path / "train", 3, 40)
    base = {"data.train": "folder", "data.root": str(tmp_path / "train")}
    assert FAMILY.preflight(cfg_of(**base, **{"data.val_images": 3})) == (
        f"data.val_images=3: cannot hold out 3 of 3 images and keep one for training in {tmp_path / 'train'}; "
        "lower data.val_images or set data.val_root")
    msg = FAMILY.preflight(cfg_of(**base, **{"data.val_root": str(tmp_path / "nowhere")}))
    assert msg.startswith(f"data.val_root: image folder {tmp_path / 'nowhere'} not found")
    (tmp_path / "valid").mkdir()
    (tmp_path / "valid" / "a.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    msg = FAMILY.preflight(cfg_of(**base, **{"data.val_root": str(tmp_path / "valid")}))
    assert msg.startswith(f"data.val_root: {tmp_path / 'valid' / 'a.png'}: not a readable image (")
    # permutation(4) = [2, 0, 1, 3]: with val_images=1 the third file is held out and measured, so it must
    # fit the metric; a small training image is only skipped for patches
    Image.fromarray(generated_image(9, 12)).save(tmp_path / "train" / "img02.png")
    Image.fromarray(generated_image(9, 12)).save(tmp_path / "train" / "img03.png")
    held_out = cfg_of(**base, **{"data.val_images": 1})
    assert [f.name for f in val_files(held_out.data)] == ["img02.png"]
    assert FAMILY.preflight(held_out).startswith(
        f"data.val_images (held out of data.root): {tmp_path / 'train' / 'img02.png'} is 12x12 px; ")
    Image.fromarray(generated_image(9, 40)).save(tmp_path / "train" / "img02.png")
    assert FAMILY.preflight(held_out) is None


def test_declared_selection_metrics_and_the_sweep():
    assert set(SELECTION_METRICS) == {"val_psnr_y", "val_ssim_y"} and set(SELECTION_METRICS) <= set(SR_METRICS)
    sweep = load_sweep(ROOT / "sweeps" / "sr_lowbit.py")
    assert sweep.metric == "val_psnr_y" and sweep.mode == "max"
    for name in ("smoke", "asha_smoke"):
        p = plan(sweep, name)
        assert {t.config.data.val_images for t in p.trials} == {2} and p.n_trials == 5
    p = plan(sweep, "asha_smoke")
    assert p.scheduler == ASHA(grace_period=1, reduction_factor=2, max_epochs=3)
    assert plan(sweep, "smoke").scheduler is None
