"""Driver-side checks of an ``sr``-family trial before Ray starts (:func:`preflight`). Apart from
:mod:`.config`, so that the config imports nothing else of the family: the k-bit check builds the
trial's quantizer specs (:func:`lowbit_core.families.sr.run.quant_spec`), as the ``train`` family's
preflight does.
"""
from __future__ import annotations

from pathlib import Path

from lowbit_core.data.sr_images import check_images, list_images
from lowbit_core.data.sr_metrics import SSIM_WINDOW
from lowbit_core.families.sr.config import (SRConfig, min_eval_side, test_files, test_folder, train_files,
                                             train_folder, val_files)
from lowbit_core.families.sr.run import quant_spec
from lowbit_core.quant.registry import kbit_problem


def preflight(cfg: SRConfig) -> str | None:
    """Driver-side, one line naming the setting, folder or file, or None:

    1. a k-bit ``quant.kbit`` must take ``quant.bits`` (each quantizer's ``check``, a plug-in's
       included: :func:`lowbit_core.quant.registry.kbit_problem`);
    2. every folder the trial reads holds images; the validation hold-out leaves a training image;
    3. every image the trial reads (training, validation, test) verifies and decodes
       (:func:`~lowbit_core.data.sr_images.check_images`, on threads, cached per file, so a sweep's
       points decode each file once);
    4. every validation and test image is at least :func:`min_eval_side` px per side after the crop
       to a multiple of the scale (generated ones too); some training image holds an HR patch."""
    if cfg.quant.kind == "kbit":
        problem = kbit_problem(lambda: quant_spec(cfg, "kbit"), cfg.quant.kbit, cfg.quant.bits)
        if problem:
            return problem
    d, s = cfg.data, cfg.scale
    folders = [("data.root", train_folder(d)), ("data.val_root", d.val_root or None)]
    folders += [(f"data.test_sets ({name})", test_folder(d, name)) for name in d.test_sets]
    for key, folder in folders:
        if folder is None:
            continue
        try:
            list_images(folder)
        except FileNotFoundError as exc:
            return f"{key}: {exc} (put the HR images there, or change the key)"
    try:
        train = train_files(d)
    except ValueError as exc:
        return f"data.val_images={d.val_images}: {exc} in {train_folder(d)}; lower data.val_images or set data.val_root"
    val_key = "data.val_root" if d.val_root else "data.val_images (held out of data.root)"
    read = [("data.root", train or [], 0), (val_key, val_files(d) or [], min_eval_side(s))]
    read += [(f"data.test_sets ({name})", test_files(d, name) or [], min_eval_side(s)) for name in d.test_sets]
    generated_eval = "generated" in d.test_sets or (d.val_images and not d.val_root and train is None)
    if generated_eval and d.generated_size - d.generated_size % s < min_eval_side(s):
        return (f"data.generated_size={d.generated_size}: generated test/validation images need at least "
                f"{min_eval_side(s)} px at scale {s} ({s} px shaved per side, then SSIM's {SSIM_WINDOW} px window)")
    checked = iter(check_images([f for _, files, _ in read for f in files]))
    sizes: dict[Path, tuple[int, int]] = {}
    for key, files, min_side in read:
        for f in files:
            out = next(checked)
            if isinstance(out, str):
                return f"{key}: {out}"
            h, w = sizes[f] = out
            if min_side and min(h - h % s, w - w % s) < min_side:
                return (f"{key}: {f} is {w}x{h} px; at scale {s} an evaluated image needs at least {min_side} px per "
                        f"side after cropping to a multiple of {s} ({s} px shaved per side, then SSIM's "
                        f"{SSIM_WINDOW} px window)")
    return _patch_fits(cfg, [sizes[f] for f in train] if train is not None else None)


def _patch_fits(cfg: SRConfig, train_sizes: list[tuple[int, int]] | None) -> str | None:
    """An error line unless some training image holds an HR patch (``scale x data.lr_patch``)."""
    if train_sizes is None:
        return None
    hr_patch = cfg.scale * cfg.data.lr_patch
    if any(min(size) >= hr_patch for size in train_sizes):
        return None
    return (f"data.lr_patch={cfg.data.lr_patch}: no training image in {train_folder(cfg.data)} is at least {hr_patch} "
            f"px on each side (scale {cfg.scale} x data.lr_patch); lower data.lr_patch")


__all__ = ["preflight"]
