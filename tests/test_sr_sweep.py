"""sweeps/sr_lowbit.py: the plans of its profiles (counts by hand from the grids), its docstring, and
the smoke profile end to end through the real CLI (Ray on this machine) with a trial that fails once
and continues from its epoch checkpoint, then the report with its figures."""
from __future__ import annotations

import json

import pandas as pd
import pyarrow.parquet as pq
import pytest
from PIL import Image

from conftest import ROOT, run_script, run_sweep
from lowbit_core.config import ConfigError
from lowbit_core.data.sr_images import generated_image
from lowbit_core.sweep import load_sweep, plan, resolve_trial

SWEEP_FILE = ROOT / "sweeps" / "sr_lowbit.py"


@pytest.fixture(scope="module")
def sweep():
    return load_sweep(SWEEP_FILE)


def fake_folders(root, names, n=1, size=60):
    for name in names:
        (root / name).mkdir(parents=True)
        for i in range(n):
            Image.fromarray(generated_image(i, size)).save(root / name / f"{i}.png")
    return root


def test_docstring_and_declaration(sweep):
    assert sweep.family == "sr" and sweep.metric == "val_psnr_y" and sweep.mode == "max" and sweep.retries >= 1
    for word in ("Question", "Expected", "Cost", "Command"):
        assert any(line.startswith(word) for line in sweep.doc.splitlines()), word


def test_profiles_plan(sweep, tmp_path):
    smoke = plan(sweep, "smoke")
    # FP once (the parts do not act), {4, 1} bits x {body, skip}; one seed
    assert smoke.n_trials == 5 and {t.config.data.train for t in smoke.trials} == {"generated"}
    assert sorted((t.config.quant.bits, t.config.quant.parts) for t in smoke.trials) == [
        (1, ("body",)), (1, ("skip",)), (4, ("body",)), (4, ("skip",)), (32, ("body",))]
    data = fake_folders(tmp_path / "sr", ["Set5", "Set14"])
    fake_folders(data, ["T91"], n=11)                              # 10 held out for validation, 1 to train
    default = plan(sweep, "default", {"data.root": str(data / "T91"), "data.test_root": str(data)})
    # (FP once + {4, 1} bits x 5 part sets) x 2 seeds
    assert default.n_trials == (1 + 2 * 5) * 2
    assert {t.config.data.test_sets for t in default.trials} == {("Set5", "Set14")}
    assert {t.config.data.val_images for t in default.trials} == {10}
    with pytest.raises(ConfigError, match=r"data.root: image folder .*T91 not found"):
        plan(sweep, "default", {"data.root": str(tmp_path / "nothing" / "T91"), "data.test_root": str(data)})
    for t in smoke.trials + default.trials:   # the runner's JSON text gives back the planned config and key
        assert resolve_trial(default.family, {"base": t.ray_base, "study": ""}) == (t.config, t.key)
    full_root = fake_folders(tmp_path / "full", ["bench/Set5", "bench/Set14", "bench/B100", "bench/Urban100"])
    fake_folders(full_root, ["DIV2K_train_HR"], size=192)          # holds x4's 192 px HR patch
    fake_folders(full_root, ["DIV2K_valid_HR"], n=2)
    full = plan(sweep, "full", {"data.root": str(full_root), "data.test_root": str(full_root / "bench"),
                                "data.val_root": str(full_root / "DIV2K_valid_HR")})
    # (FP once + {8, 4, 2, 1} bits x 7 part sets) x 3 scales x 3 seeds
    assert full.n_trials == (1 + 4 * 7) * 3 * 3
    assert {(t.config.model.blocks, t.config.model.channels, t.config.train.epochs) for t in full.trials} == {(16, 64, 300)}


@pytest.mark.slow
def test_smoke_end_to_end_with_a_retried_trial_and_the_report(tmp_path, shared_ray):
    marks = tmp_path / "marks"
    marks.mkdir()
    faulty = {"quant.bits": 4, "quant.parts": '["skip"]'}
    env = {"LOWBIT_FAULT_INJECT": json.dumps(
        {"dir": str(marks), "rules": [{"match": faulty, "action": "raise", "step": 2, "times": 1}]})}
    res = run_sweep(SWEEP_FILE, "--smoke", "--results", tmp_path / "res", env=env, timeout=300, ray=shared_ray)
    assert res.returncode == 0, res.stderr[-3000:]
    assert "all 5 trials finished" in res.stdout
    folder = tmp_path / "res" / "sr_lowbit"
    df = pd.read_parquet(folder)
    assert len(df) == 5 * 2 and not df.duplicated(["trial_key", "step"]).any()
    assert set(df.family) == {"sr"} and (df.epoch == df.step).all()
    assert (df["bicubic_psnr_y.generated"] == df["bicubic_psnr_y.generated"].iloc[0]).all()
    assert df["psnr_y"].notna().all() and df["psnr_y.Set5"].isna().all()
    assert df["val_psnr_y"].notna().all() and (df["n_val_images"] == 2).all() and (df["val_names"] == "gen000,gen001").all()
    assert (df["ops"] > 0).all() and (df["param_bits"] > 0).all()
    # quantized body convs cost fewer OPs than FP ones; a quantized skip adds no MAC: FP's OPs
    ops = df.groupby(["cfg.quant.bits", "cfg.quant.parts"])["ops"].first()
    assert ops[4, '["body"]'] < ops[32, '["body"]'] and ops[1, '["body"]'] < ops[4, '["body"]']
    assert ops[4, '["skip"]'] == ops[1, '["skip"]'] == ops[32, '["body"]']
    last = df[df.step == 2]
    assert last["crop_sr"].map(len).eq(24 * 24 * 3).all() and df[df.step == 1]["crop_sr"].isna().all()
    status = pq.read_table(folder / "_trials").to_pandas()
    assert set(status.drop_duplicates("trial_key", keep="last").status) == {"TERMINATED"}
    assert len(list(marks.glob("raise-*"))) == 1
    retried = df[(df["cfg.quant.bits"] == 4) & (df["cfg.quant.parts"] == '["skip"]')].sort_values("step")
    assert list(retried.resumed_from_epoch) == [0, 1]                     # continued from its epoch-1 checkpoint
    rep = run_script("analysis/report.py", folder)
    assert rep.returncode == 0, rep.stderr[-2000:]
    out = folder / "_report"
    assert {p.name for p in out.iterdir()} >= {"report.md", "psnr_vs_bits.png", "crops.png", "psnr_vs_cost_x2.png"}
    md = (out / "report.md").read_text()
    assert "## generated x2: PSNR-Y / SSIM-Y" in md and "| bicubic |" in md and "| FP |" in md
    assert "4-bit pams: skip" in md and "1-bit sign: body" in md
