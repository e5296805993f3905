"""Smoke-sized results folders of four families for the book's tests, written without Ray: the
fake rows of the family report tests as Parquet parts, a ``_trials/`` status file and a
``_sweep.json`` plan naming the questions each bears on (sweep names must match the rows)."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from lowbit_core.questions import BY_ID
from lowbit_core.results import write_plan
from test_gradstats_report import rows_of as fake_gradstats_rows
from test_report import fake_probe_rows
from test_report_train import fake_train_rows, write_results
from test_sr_report import fake_sweep as fake_sr_sweep


def plan_record(name: str, family: str, questions, profile: str = "default", seeds=(0, 1, 2), base=None,
                defaults=None, git_sha: str = "abc1234", created: str = "2026-12-01T10:00:00+00:00") -> dict:
    """A ``_sweep.json`` as the driver writes it (the keys the book reads)."""
    return {"name": name, "family": family, "profile": profile, "metric": "", "mode": "min", "axes": {},
            "fold": [], "seeds": list(seeds), "canonical_defaults": defaults or {}, "base": base or {},
            "overrides": {}, "search": "grid", "scheduler": None, "sweep_sha256": None,
            "questions": [{"id": q, "text": BY_ID[q].text} for q in questions], "git_sha": git_sha,
            "command": ["lowbit-sweep", f"sweeps/{name}.py"], "created": created,
            "runs": [{"run_id": "run1", "time": created, "command": ["lowbit-sweep"], "resumed": False}]}


def write_folder(root: Path, name: str, df: pd.DataFrame, status: pd.DataFrame | None, record: dict) -> Path:
    folder = write_results(df, root / name, status)
    write_plan(folder, record)
    return folder


def probe_folder(root: Path, name: str = "fake_probe", profile: str = "default", questions=("multistep-vs-single",),
                 created: str = "2026-12-01T10:00:00+00:00") -> Path:
    df = fake_probe_rows(sweep=name)
    rec = plan_record(name, "probe", questions, profile, base={"data.batch_size": 1024}, created=created,
                      defaults={"data.name": "teacher", "data.batch_size": 1024, "multi.steps": 20})
    rec["metric"], rec["mode"] = "single_best_loss", "min"
    return write_folder(root, name, df, None, rec)


def train_folder(root: Path) -> Path:
    rec = plan_record("fake_train", "train", ("pretrain-vs-scratch-mixup",), "default",
                      defaults={"data.name": "synthetic", "data.n_train": 512, "train.epochs": 4})
    rec["metric"], rec["mode"] = "test_acc", "max"
    return write_folder(root, "fake_train", fake_train_rows(), None, rec)


def sr_folder(root: Path) -> Path:
    df, status = fake_sr_sweep()
    rec = plan_record("fake_sr", "sr", ("sr-parts",), "smoke", seeds=(0, 1),
                      defaults={"data.train": "folder", "train.epochs": 3}, git_sha="def5678-dirty")
    rec["metric"], rec["mode"] = "psnr_y", "max"
    return write_folder(root, "fake_sr", df, status, rec)


def gradstats_folder(root: Path) -> Path:
    rec = plan_record("fake_gradstats", "gradstats", ("vste-resnet",), "default", seeds=(0, 1, 2),
                      defaults={"data.name": "synthetic", "train.epochs": 1})
    rec["metric"], rec["mode"] = "test_acc", "max"
    return write_folder(root, "fake_gradstats", fake_gradstats_rows(), None, rec)


def four_families(root: Path) -> Path:
    for make in (probe_folder, train_folder, sr_folder, gradstats_folder):
        make(root)
    return root
