"""The sr family's config and training loop (lowbit_core/families/sr/config.py, run.py), Ray-free:
one-line config errors, canonical keys, preflight on missing folders, the rows a trial reports (every
metric declared, the bicubic baseline equal to an independent computation, crops), checkpoints that
resume bit-identically (through PAMS calibration and the FP -> quantized switch), folders of PNGs with
a grey image, the optimizer's PAMS group and the step schedule. No file of ../shared/data is needed."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from PIL import Image

from lowbit_core.config import ConfigError, with_overrides
from lowbit_core.data.sr_images import bicubic_upscale, generated_image, load_pairs
from lowbit_core.data.sr_metrics import psnr_ssim_y
from lowbit_core.families import get_family
from lowbit_core.quant.pams import PAMSAct
from lowbit_core.sweep import config_key
from lowbit_core.training.checkpoint import load_state, save_state
from lowbit_core.families.sr.config import SRConfig
from lowbit_core.families.sr.run import build_model, crop_position, make_optimizer, step_lr_factor, train_sr

FAMILY = get_family("sr")
TINY = {"model.blocks": 1, "model.channels": 4, "data.generated_size": 32, "data.lr_patch": 8, "data.n_train": 3,
        "data.n_test": 2, "data.crop_size": 10, "train.epochs": 3, "train.steps_per_epoch": 2, "train.batch_size": 2,
        "train.lr": 1e-3}


def cfg_of(**over) -> SRConfig:
    return FAMILY.canonicalize(with_overrides(SRConfig(), {**TINY, **{k.replace("__", "."): v for k, v in over.items()}}))


def run(cfg, start_state=None):
    rows, states = [], {}

    def report(metrics, state=None):
        rows.append(dict(metrics))
        if state is not None:
            states[metrics["step"]] = state

    torch.manual_seed(123)  # train_sr seeds itself; this must not matter
    train_sr(cfg, report, torch.device("cpu"), start_state)
    return rows, states


@pytest.mark.parametrize("over, match", [
    ({"quant.bits": 9}, r"quant.bits=9 is not valid; valid: 1 \(binary\), 2..8 \(k-bit\), 32 \(FP\)"),
    ({"quant.parts": ("body", "neck")}, "quant.parts has 'neck'; valid: head, body, body_end, skip, tail"),
    ({"quant.parts": ("body", "body")}, "lists a value twice"),
    ({"data.test_sets": ("Set6",)}, "data.test_sets has 'Set6'; valid: Set5, Set14, B100, Urban100"),
    ({"data.test_sets": ()}, "must name at least one"),
    ({"data.test_sets": ("custom",)}, "data.custom_test"),
    ({"scale": 5}, "scale=5 is not valid; valid: 2, 3, 4"),
    ({"scale": 4, "data.generated_size": 48, "data.lr_patch": 16}, "data.generated_size=48 is smaller than the HR patch"),
    ({"quant.kbit": "dorefa"}, "quant.kbit='dorefa' is not valid; valid: 'lsq', 'dsq', 'pams'"),
    ({"quant.act_estimator": "swish"}, "quant.act_estimator='swish' is not valid; valid: 'identity'"),
    ({"train.epochs": 3, "train.pretrain_epochs": 3}, "0 <= train.pretrain_epochs < train.epochs"),
    ({"model.blocks": 0}, "model.blocks >= 1"),
    ({"train.lr_gamma": 0.0}, "0 < train.lr_gamma <= 1"),
    ({"data.lr_pach": 8}, "unknown key 'data.lr_pach'; valid keys: data.augment, "),
])
def test_bad_config_is_one_line_naming_the_key(over, match):
    with pytest.raises(ConfigError, match=match) as e:
        with_overrides(SRConfig(), over)
    assert "\n" not in str(e.value)


def test_canonical_configs_share_a_key():
    fp_a = cfg_of(quant__bits=32, quant__parts=("head",), quant__kbit="lsq", train__pretrain_epochs=1)
    fp_b = cfg_of(quant__bits=32)
    assert config_key(fp_a) == config_key(fp_b) and fp_a.train.pretrain_epochs == 0
    b1 = cfg_of(quant__bits=1, quant__ema_epochs=3, quant__act_param=0.7)   # ApproxSign has no parameter
    b2 = cfg_of(quant__bits=1)
    assert config_key(b1) == config_key(b2)
    k1 = cfg_of(quant__bits=4, quant__weight_estimator="window", quant__weight_param=0.5)
    assert config_key(k1) == config_key(cfg_of(quant__bits=4))
    assert config_key(cfg_of(quant__bits=4, quant__kbit="lsq", quant__act_clip_lr=0.5)) == \
        config_key(cfg_of(quant__bits=4, quant__kbit="lsq"))
    assert config_key(cfg_of(data__root="elsewhere")) == config_key(cfg_of())     # generated: root unused


def write_pngs(folder, n, size, grey_first=False, seed=0):
    folder.mkdir(parents=True)
    for i in range(n):
        img = generated_image(seed + i, size)
        im = Image.fromarray(img[:, :, 1] if grey_first and i == 0 else img)
        im.save(folder / f"img{i}.png")


def test_preflight_names_the_missing_folder(tmp_path):
    cfg = cfg_of(data__train="folder", data__root=str(tmp_path / "T91"), data__test_sets=("Set5",),
                 data__test_root=str(tmp_path))
    assert FAMILY.preflight(cfg).startswith(f"data.root: image folder {tmp_path / 'T91'} not found")
    write_pngs(tmp_path / "T91", 2, 40)
    msg = FAMILY.preflight(cfg)
    assert msg.startswith("data.test_sets (Set5): image folder") and "\n" not in msg
    (tmp_path / "Set5").mkdir()
    assert "holds no .png/.bmp/.jpg/.jpeg files" in FAMILY.preflight(cfg)
    write_pngs(tmp_path / "Set5" / "HR", 1, 40)                   # EDSR's benchmark layout <set>/HR/
    assert FAMILY.preflight(cfg) is None
    big = with_overrides(cfg, {"data.lr_patch": 24})               # 2 x 24 = 48 px > the 40 px images
    assert FAMILY.preflight(big) == (f"data.lr_patch=24: no training image in {tmp_path / 'T91'} is at least 48 px "
                                     "on each side (scale 2 x data.lr_patch); lower data.lr_patch")


def test_rows_are_declared_and_carry_their_own_bicubic_reference():
    cfg = cfg_of(quant__bits=4, quant__parts=("body", "skip"))
    rows, states = run(cfg)
    assert [r["step"] for r in rows] == [1, 2, 3] and [r["epoch"] for r in rows] == [1, 2, 3]
    for r in rows:
        assert set(r) - {"step"} <= set(FAMILY.metrics)
    assert set(states) == {1, 2}                                   # every epoch but the last
    # the bicubic baseline, computed independently from the same generated test images
    pairs = load_pairs(None, 2, 2, 32, 2000)
    bic = np.mean([psnr_ssim_y(bicubic_upscale(p.lr, 2), p.hr, 2) for p in pairs], axis=0)
    for r in rows:
        assert r["bicubic_psnr_y.generated"] == pytest.approx(bic[0], abs=1e-12) == r["bicubic_psnr_y"]
        assert r["bicubic_ssim_y.generated"] == pytest.approx(bic[1], abs=1e-12)
        assert r["n_images.generated"] == 2 and math.isfinite(r["psnr_y"]) and r["iterations"] == 2 * r["epoch"]
    assert "crop_sr" not in rows[0] and len(rows[-1]["crop_sr"]) == 10 * 10 * 3
    assert rows[-1]["crop_image"] == "generated/gen000"
    bic0 = bicubic_upscale(pairs[0].lr, 2)
    y, x = crop_position(pairs[0].hr, bic0, 10)
    assert rows[-1]["crop_hr"] == pairs[0].hr[y:y + 10, x:x + 10].astype(float).ravel().tolist()
    assert rows[-1]["crop_bicubic"] == bic0[y:y + 10, x:x + 10].astype(float).ravel().tolist()
    assert rows[0]["act_clip"] > 0 and rows[0]["lr"] == 1e-3


def test_crop_goes_where_bicubic_loses_most():
    hr = np.zeros((40, 30, 3), np.uint8)
    bic = hr.copy()
    bic[22:30, 17:24] = 50                          # the only error: inside the window at (20, 15)
    assert crop_position(hr, bic, 10) == (20, 15)   # grid 0, 5, ..., 30 x 0, 5, ..., 20; ties -> first
    assert crop_position(hr, hr, 10) == (0, 0)
    assert crop_position(hr, bic, 40)[0] == 0 and crop_position(hr, bic, 7)[0] in range(34)


@pytest.mark.parametrize("over", [
    {"quant__bits": 32},
    {"quant__bits": 4, "quant__parts": ("body", "skip"), "quant__ema_epochs": 2},   # resume inside calibration
    {"quant__bits": 1, "train__pretrain_epochs": 1, "train__lr_decay_every": 1},   # resume after the FP phase
])
def test_resume_from_a_checkpoint_is_bit_identical(over, tmp_path):
    cfg = cfg_of(**over)
    rows, states = run(cfg)
    save_state(states[1], tmp_path)                                # the round trip the trainable makes
    resumed, _ = run(cfg, start_state=load_state(tmp_path))
    assert [r["step"] for r in resumed] == [2, 3] and all(r["resumed_from_epoch"] == 1 for r in resumed)
    for a, b in zip(rows[1:], resumed):
        for k in ("train_loss", "psnr_y", "ssim_y", "phase", "lr", "iterations", "act_clip"):
            assert a[k] == b[k] or (isinstance(a[k], float) and math.isnan(a[k]) and math.isnan(b[k])), k
    assert resumed[-1]["crop_sr"] == rows[-1]["crop_sr"]
    if "train__pretrain_epochs" in over:
        assert [r["phase"] for r in rows] == ["pretrain", "finetune", "finetune"]
        assert [r["lr"] for r in rows] == [1e-3, 1e-3, 5e-4]     # a fresh step schedule per phase


def test_folders_of_pngs_with_a_grey_test_image(tmp_path):
    write_pngs(tmp_path / "train", 3, 40)
    write_pngs(tmp_path / "bench" / "Set14", 2, 30, grey_first=True, seed=50)
    cfg = cfg_of(data__train="folder", data__root=str(tmp_path / "train"), data__test_root=str(tmp_path / "bench"),
                 data__test_sets=("Set14", "generated"), data__n_test=0, train__epochs=1, scale=3, data__lr_patch=8)
    rows, _ = run(cfg)
    r = rows[-1]
    assert r["n_images.Set14"] == 2 and r["n_images.generated"] == 4 and r["n_train_images"] == 3
    pairs = load_pairs(tmp_path / "bench" / "Set14", 3)
    assert [p.grey for p in pairs] == [True, False] and pairs[0].hr.shape == (30, 30, 3)
    bic = np.mean([psnr_ssim_y(bicubic_upscale(p.lr, 3), p.hr, 3, p.grey) for p in pairs], axis=0)
    assert r["bicubic_psnr_y.Set14"] == pytest.approx(bic[0], abs=1e-12)
    assert r["psnr_y"] == pytest.approx((r["psnr_y.Set14"] + r["psnr_y.generated"]) / 2)
    assert r["crop_image"] == "Set14/img0"


def test_optimizer_groups_and_step_schedule():
    cfg = cfg_of(quant__bits=4, quant__parts=("skip",), quant__act_clip_lr=0.02)
    model = build_model(cfg, "kbit")
    opt = make_optimizer(model, cfg, 1e-4)
    alphas = [m.alpha for m in model.modules() if isinstance(m, PAMSAct)]
    assert len(alphas) == 2 and [g["lr"] for g in opt.param_groups] == [1e-4, 0.02]
    assert {id(p) for p in opt.param_groups[1]["params"]} == {id(a) for a in alphas}
    assert sum(len(g["params"]) for g in opt.param_groups) == len(list(model.parameters()))
    assert [step_lr_factor(e, 200, 0.5) for e in (0, 199, 200, 399, 400)] == [1, 1, 0.5, 0.5, 0.25]
    assert len(make_optimizer(build_model(cfg_of(), "fp"), cfg_of(), 1e-4).param_groups) == 1
