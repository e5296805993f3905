"""The SR report's validation part (analysis/sr/report.py) on the fake sweep of test_sr_report.py with
closed-form validation scores: the header names the validation set, a table gives each setting's
final-epoch val PSNR/SSIM (mean ± std, n over seeds; unfinished and failed trials left out), and the
test-set tables stay the headline; rows without validation columns show neither."""
from __future__ import annotations

import numpy as np

from lowbit_sweeps.analysis.common.format import fmt_mean_std
from lowbit_sweeps.analysis.sr.report import SRAnalysis
from test_sr_report import fake_sweep

VAL_OFFSET = -1.25           # val PSNR = Set5 PSNR - 1.25 dB in every row (closed form)


def with_validation(df):
    df = df.copy()
    df["val_psnr_y"] = df["psnr_y.Set5"] + VAL_OFFSET
    df["val_ssim_y"] = df["ssim_y.Set5"] - 0.01
    df["val_bicubic_psnr_y"], df["val_bicubic_ssim_y"] = 32.5, 0.9
    df["n_val_images"], df["val_names"], df["cfg.data.val_images"], df["cfg.data.val_root"] = 10, "t1,t7", 10, ""
    return df


def test_validation_fact_and_table():
    df, status = fake_sweep()
    md = SRAnalysis(with_validation(df), status).markdown([])
    assert ("- **validation**: 10 images, held out of the training folder (t1,t7); model selection and early "
            "stopping read val_psnr_y only") in md
    assert "## Validation set x2: PSNR-Y / SSIM-Y at the final epoch (mean ± std over seeds, n)" in md
    assert md.index("## Set5 x2") < md.index("## Validation set x2")            # the test sets stay the headline
    assert "| bicubic | 32.5 ± 0 (n=12) | 0.9 ± 0 (n=12) |" in md               # 12 ok trials, 3 left out
    fp = fmt_mean_std(np.mean([35.0, 35.1]) + VAL_OFFSET, np.std([35.0, 35.1], ddof=1), 2)
    assert f"| FP | {fp} |" in md
    tail = fmt_mean_std(np.mean([32.0, 32.5]) + VAL_OFFSET, np.std([32.0, 32.5], ddof=1), 2)
    assert f"| 1-bit sign: tail | {tail} |" in md


def test_no_validation_columns_no_validation_part():
    df, status = fake_sweep()
    md = SRAnalysis(df, status).markdown([])
    assert "validation" not in md.lower()
