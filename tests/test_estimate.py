"""``--estimate`` (launch/estimate.py): the timing rules on a fake clock, the totals in closed form,
and the CLI: it prints every figure and writes nothing."""
from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import pytest

import lowbit_sweeps.launch.estimate as est
from lowbit_sweeps.launch.sweep import run
from lowbit_core.families import Family
from lowbit_core.sweep import Resources

ROOT = Path(__file__).resolve().parents[1]


class FakeClock:
    def __init__(self):
        self.t = 0.0

    def __call__(self):
        return self.t


@dataclasses.dataclass(frozen=True)
class Loop:
    epochs: int = 10


@dataclasses.dataclass(frozen=True)
class EpochCfg:
    train: Loop = Loop()
    seed: int = 0


@dataclasses.dataclass(frozen=True)
class Multi:
    steps: int = 1000


@dataclasses.dataclass(frozen=True)
class ProbeCfg:
    method: str = "ste"
    multi: Multi = Multi()


def test_per_epoch_family_is_cut_after_two_reports_and_extrapolated(monkeypatch):
    clock = FakeClock()
    monkeypatch.setattr(est.time, "perf_counter", clock)
    seen = []

    def run_fn(cfg, report, device):
        clock.t += 5.0  # set-up and the first epoch
        for epoch in range(1, cfg.train.epochs + 1):
            if epoch > 1:
                clock.t += 2.0
            seen.append(epoch)
            report({"epoch": epoch})

    fam = Family("train", EpochCfg, run_fn, {})
    seconds, measured, reports, how = est._time_kind(fam, EpochCfg(), "cpu", 1)
    assert seen == [1, 2] and reports == 2           # stopped by the private exception after 2 reports
    assert seconds == pytest.approx(5.0 + 9 * 2.0)   # t1 + (R - 1) d, R = 10 epochs
    assert measured == pytest.approx(7.0) and "extrapolated" in how


def test_gradstats_counts_its_start_row():
    assert est.EXTRA_REPORTS["gradstats"] == 1 and est.PER_EPOCH["gradstats"] == "train.epochs"


def test_per_step_family_cut_at_the_cap_extrapolates_by_step(monkeypatch):
    clock = FakeClock()
    monkeypatch.setattr(est.time, "perf_counter", clock)

    def run_fn(cfg, report, device):
        for step in range(0, 1001, 100):
            clock.t += 35.0
            report({"step": step})

    fam = Family("probe", ProbeCfg, run_fn, {})
    seconds, measured, reports, how = est._time_kind(fam, ProbeCfg(), "cpu", 1)
    # reports at t = 35 (step 0), 70 (step 100 > cap 60 s): cut there, 70 s * 1000 / 100
    assert reports == 2 and seconds == pytest.approx(700.0) and "cut at step 100 of 1000" in how


def test_per_step_family_that_ends_is_measured_not_extrapolated(monkeypatch):
    clock = FakeClock()
    monkeypatch.setattr(est.time, "perf_counter", clock)

    def run_fn(cfg, report, device):
        for step in (0, 10, 20):
            clock.t += 1.5
            report({"step": step})
        clock.t += 0.5

    seconds, _, reports, how = est._time_kind(Family("probe", ProbeCfg, run_fn, {}), ProbeCfg(), "cpu", 1)
    assert seconds == pytest.approx(5.0) and reports == 3 and how.startswith("ran to its end")


def test_makespan_is_longest_first_to_the_freest_slot():
    assert est.makespan([3, 3, 2, 2, 2], 2) == 7      # 3+2+2 | 3+2 (the greedy rule, not the optimum 6)
    assert est.makespan([4, 1, 1], 8) == 4
    assert est.makespan([], 2) == 0.0
    assert est.makespan([1.0] * 10, 1) == 10


def test_slots_and_sbatch_time():
    r = Resources(cpu=1, gpu=0.25)
    assert est.slots_for(r, 2, None, on_gpu=True) == 8
    assert est.slots_for(r, 2, None, on_gpu=False) == 2
    assert est.slots_for(r, 2, 3, on_gpu=True) == 3
    assert est.slots_for(Resources(cpu=2), 5, None) == 2
    assert est.sbatch_time(100 * 60) == "02:10:00"    # 130 min
    assert est.sbatch_time(0.5) == "00:01:00"
    assert est.sbatch_time(30 * 3600) == "1-15:00:00"  # 39 h


def test_work_key_ignores_seed_and_searched_values():
    a = est.work_key({"seed": 0, "multi.lr": 0.1, "model.kind": "fp", "data.batch_size": 1024})
    b = est.work_key({"seed": 1, "multi.lr": 0.01, "model.kind": "fp", "data.batch_size": 1024})
    c = est.work_key({"seed": 0, "multi.lr": 0.1, "model.kind": "binary", "data.batch_size": 1024})
    assert a == b != c


def test_cli_estimate_prints_every_figure_and_writes_nothing(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    results = tmp_path / "res"
    code = run([str(ROOT / "sweeps" / "vste_window.py"), "--smoke", "--estimate", "--devices", "2",
                "--results", str(results)])
    out = capsys.readouterr().out
    assert code == 0
    for field in ("12 trials of 2 kinds", "trial-hours:", "device-hours:", "wall on 2 device(s):", "sbatch --time=",
                  "% margin", "estimate-json: "):
        assert field in out, field
    assert not results.exists() and list(tmp_path.iterdir()) == []
    if "ray" in sys.modules:
        import ray

        assert not ray.is_initialized()


def test_cli_bad_devices_is_one_line(tmp_path, capsys):
    code = run([str(ROOT / "sweeps" / "vste_window.py"), "--smoke", "--estimate", "--devices", "0",
                "--results", str(tmp_path / "res")])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error: --devices must be >= 1") and err.count("\n") == 1


def test_per_epoch_trial_with_its_last_report_within_the_timed_ones_runs_to_its_end(monkeypatch):
    clock = FakeClock()
    monkeypatch.setattr(est.time, "perf_counter", clock)

    def run_fn(cfg, report, device):
        for epoch in range(1, cfg.train.epochs + 1):
            clock.t += 3.0
            report({"epoch": epoch})
        clock.t += 1.0  # the final evaluation after the last report is part of the trial

    seconds, measured, reports, how = est._time_kind(Family("train", EpochCfg, run_fn, {}), EpochCfg(Loop(2)), "cpu", 1)
    assert reports == 2 and seconds == measured == pytest.approx(7.0) and how.startswith("ran to its end")
