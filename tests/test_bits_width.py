"""sweeps/bits_width.py: its grid in every profile (bit-widths 1, 2, 3, 4, 32 x widths, FP and binary once
per width), equal-bits comparisons possible in every profile, the dry run's cost columns, and the smoke
profile end to end through the CLI with the cost columns in every row and the report's fronts."""
from __future__ import annotations

import re

import pandas as pd
import pytest

from conftest import ROOT, run_script, run_sweep
from lowbit_core.cost import COST_METRICS
from lowbit_core.families.train.cost import train_cost
from lowbit_core.sweep import load_sweep, plan
from test_cifar_data import _fake_cifar10

SWEEP_FILE = ROOT / "sweeps" / "bits_width.py"
# profile -> (bit-widths, widths, seeds)
GRIDS = {"smoke": ({1, 4}, {4, 8}, (0, 1)), "default": ({1, 2, 4, 32}, {4, 8, 12}, (0, 1)),
         "full": ({1, 2, 3, 4, 32}, {16, 24, 32, 48}, (0, 1, 2))}


def bits_of(cfg) -> int:
    return {"fp": 32, "binary": 1}.get(cfg.model.kind, cfg.quant.bits)


@pytest.fixture(scope="module")
def sweep():
    return load_sweep(SWEEP_FILE)


@pytest.fixture(scope="module")
def cifar_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("cifar")
    _fake_cifar10(root)
    return root


def planned(sweep, profile, cifar_root):
    return plan(sweep, profile, {} if profile == "smoke" else {"data.root": str(cifar_root)})


@pytest.mark.parametrize("profile", list(GRIDS))
def test_grid_of_every_profile(sweep, profile, cifar_root):
    bits, widths, seeds = GRIDS[profile]
    p = planned(sweep, profile, cifar_root)
    got = [(bits_of(t.config), t.config.model.width, t.config.seed) for t in p.trials]
    assert sorted(got) == sorted((b, w, s) for b in bits for w in widths for s in seeds)  # each cell once
    assert {t.config.model.arch for t in p.trials} == {"resnet20"}
    assert {t.config.quant.kbit for t in p.trials if t.config.model.kind == "kbit"} == {"dorefa"}
    data = {t.config.data.name for t in p.trials}
    assert data == ({"synthetic"} if profile == "smoke" else {"cifar10"})
    stated = {"smoke": r"(\d+) trials: synthetic", "default": r"Default: (\d+)\s+trials",
              "full": r"seeds, (\d+) trials"}
    assert int(re.search(stated[profile], sweep.doc).group(1)) == p.n_trials


@pytest.mark.parametrize("profile", list(GRIDS))
def test_every_profile_has_equal_bits_comparisons(sweep, profile, cifar_root):
    """Some higher-bit group's parameter bits lie within a lower bit-width's range of widths, so the
    report's equal-bits comparison (a curve interpolated in log bits) has points."""
    cost = {(bits_of(t.config), t.config.model.width): train_cost(t.config).param_bits
            for t in planned(sweep, profile, cifar_root).trials}
    ranges = {}
    for (b, _), pb in cost.items():
        lo, hi = ranges.get(b, (pb, pb))
        ranges[b] = (min(lo, pb), max(hi, pb))
    pairs = [(b, w, lo) for (b, w), pb in cost.items() for lo, (a, z) in ranges.items() if lo < b and a <= pb <= z]
    assert len(pairs) >= (1 if profile == "smoke" else 4), pairs


def test_docstring(sweep):
    for word in ("Question", "Expected", "Cost", "Command"):
        assert re.search(rf"^{word}\b", sweep.doc, re.M), word
    assert "python launch/sweep.py sweeps/bits_width.py" in sweep.doc
    assert "python analysis/report.py results/bits_width" in sweep.doc
    assert sweep.family == "train" and sweep.metric == "test_acc" and sweep.retries >= 1
    assert set(sweep.profiles) == {"smoke", "full"}
    assert sweep.resources.cpu <= 2


def test_dry_run_prints_ops_and_size(cifar_root):
    res = run_sweep(SWEEP_FILE, "--profile", "full", "--dry-run", "--set", f"data.root={cifar_root}", timeout=120)
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    assert lines[1].split()[-2:] == ["OPs", "size"]
    fp16 = [ln for ln in lines if re.search(r"\s16\s+fp\s", ln)]
    bin16 = [ln for ln in lines if re.search(r"\s16\s+binary\s", ln)]
    assert len(fp16) == 3 and all("40.55M" in ln and "8.675 Mbit" in ln for ln in fp16)  # one per seed
    assert len(bin16) == 3 and all("1.07M" in ln and "411.5 kbit" in ln for ln in bin16)


@pytest.mark.slow
def test_smoke_end_to_end_with_cost_columns_and_fronts(sweep, tmp_path, shared_ray):
    """The smoke profile (8 trials, ~1 min on 2 cores), then its report."""
    res = run_sweep(SWEEP_FILE, "--smoke", "--results", tmp_path, timeout=400, ray=shared_ray)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    assert "all 8 trials finished" in res.stdout
    folder = tmp_path / "bits_width"
    df = pd.read_parquet(folder)
    assert len(df) == 8 * 3 and set(COST_METRICS) <= set(df.columns)
    assert df[list(COST_METRICS)].notna().all().all()
    by_key = {t.key: t.config for t in plan(sweep, "smoke").trials}
    for key, rows in df.groupby("trial_key"):
        expected = train_cost(by_key[key]).metrics()
        for col in COST_METRICS:
            assert set(rows[col]) == {expected[col]}, (key, col)
    rep = run_script("analysis/report.py", folder, timeout=180)
    assert rep.returncode == 0, rep.stderr
    md = (folder / "_report" / "report.md").read_text()
    assert "**At equal parameter bits, more bits per weight − more weights**" in md
    assert "DoReFa 4-bit (4 bit) − binary (1 bit) at DoReFa 4-bit's bits (width=4)" in md
    assert md.count("<details><summary>Per layer:") == 4 and "## Cost per inference" in md
    assert (folder / "_report" / "cost_fronts.png").read_bytes()[:4] == b"\x89PNG"
