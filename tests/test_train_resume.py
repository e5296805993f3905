"""Training trials continue from their checkpoints after the driver was killed (``--resume``).

Unit tests (no Ray): checkpoint markers, the fallback past corrupt or partial checkpoints, and the
driver's search for earlier runs' checkpoints (matched by trial key, only where the rows up to the
checkpoint are on disk). Then one real CLI run: a two-trial training sweep is killed with SIGKILL after
a few epochs were checkpointed, one trial's newest checkpoint is corrupted, and ``--resume`` finishes
it; the rows equal an uninterrupted run's, with no duplicate and no missing (trial_key, step).
"""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import time
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pyarrow as pa
import pyarrow.compute  # noqa: F401 -- pa.compute
import pyarrow.parquet as pq
import pytest
import torch

from conftest import ROOT  # noqa: F401 -- puts the repository on sys.path for the imports below
from lowbit_sweeps.launch.runner import earlier_checkpoints
from lowbit_core.results import data_parts, finished_trials
from lowbit_core.sweep import load_sweep, plan
from lowbit_core.training.checkpoint import (MARKER_FILE, STATE_FILE, load_checkpoint, load_first_valid, save_state,
                                             write_marker)
from lowbit_core.families.train.run import TRAIN_METRICS, train
from test_faults import Driver, inject_env, kill_session, sessions, wait_for  # noqa: F401 -- fixture

KEY = "0123456789abcdef"


def _state(epoch: int) -> dict:
    return {"format": 1, "epoch": epoch, "phase": "scratch", "model": {"w": torch.full((64,), float(epoch))}}


def _checkpoint(folder: Path, epoch: int, key: str = KEY) -> Path:
    save_state(_state(epoch), folder)
    write_marker(folder, key, step=epoch, epoch=epoch)
    return folder


def _flip_byte(path: Path) -> None:
    """Corrupt a file without changing its size (only the digest can tell)."""
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def test_marker_describes_the_state(tmp_path):
    c = _checkpoint(tmp_path / "c", 3)
    marker = json.loads((c / MARKER_FILE).read_text())
    assert marker["trial_key"] == KEY and marker["step"] == marker["epoch"] == 3
    assert marker["size"] == (c / STATE_FILE).stat().st_size and len(marker["sha256"]) == 64
    assert torch.equal(load_checkpoint(c, KEY)["model"]["w"], torch.full((64,), 3.0))
    with pytest.raises(ValueError, match="not " + KEY[::-1]):
        load_checkpoint(c, KEY[::-1])  # another trial's checkpoint is never loaded


def test_corrupt_or_partial_checkpoints_fall_back_to_the_previous_then_fresh(tmp_path):
    c1, c2, c3 = (_checkpoint(tmp_path / f"c{e}", e) for e in (1, 2, 3))
    _flip_byte(c3 / STATE_FILE)  # same size, wrong digest
    with open(c2 / STATE_FILE, "r+b") as fh:  # cut short while being copied
        fh.truncate(100)
    state, used, skipped = load_first_valid([c3, c2, c1], KEY)
    assert state["epoch"] == 1 and used == c1
    assert len(skipped) == 2 and "sha256" in skipped[0] and "incomplete" in skipped[1]

    (c1 / MARKER_FILE).write_text('{"format": 1, "trial_')  # a marker cut short
    missing = _checkpoint(tmp_path / "c4", 4)
    (missing / MARKER_FILE).unlink()  # Ray copied the state but not yet the marker
    garbage = tmp_path / "c5"
    garbage.mkdir()
    (garbage / STATE_FILE).write_bytes(b"not a zip file")
    write_marker(garbage, KEY, 5, 5)  # a consistent marker for an unloadable file: torch.load fails
    state, used, skipped = load_first_valid([garbage, missing, c3, c2, c1, tmp_path / "gone"], KEY)
    assert state is None and used is None and len(skipped) == 6  # fresh start, no exception
    assert skipped[0].startswith(f"skipped checkpoint {garbage}: ") and MARKER_FILE in skipped[1]


def _rows(folder: Path, pairs: list[tuple[str, int]]) -> None:
    table = pa.table({"trial_key": [k for k, _ in pairs], "step": [s for _, s in pairs]})
    pq.write_table(table, folder / f"part-test-{len(list(folder.glob('part-*')))}.parquet")


def test_driver_finds_earlier_checkpoints_by_key_where_the_rows_are_on_disk(tmp_path):
    folder = tmp_path / "sweep"
    ray = folder / "_ray"
    other, done = "f" * 16, "d" * 16
    for run, trial, epoch, key in [("r1", "t0", 1, KEY), ("r1", "t0", 2, KEY), ("r2", "x9", 3, KEY),
                                   ("r2", "x9", 4, KEY), ("r1", "t1", 2, other), ("r1", "t2", 2, done)]:
        _checkpoint(ray / run / trial / f"checkpoint_00000{epoch}", epoch, key)
    (ray / "r2" / "partial").mkdir()
    (ray / "r2" / "partial" / MARKER_FILE).write_text("{")
    truncated = _checkpoint(ray / "r3" / "t0" / "ckpt", 3, KEY)
    with open(truncated / STATE_FILE, "r+b") as fh:
        fh.truncate(50)
    folder.mkdir(exist_ok=True)
    # rows on disk: KEY steps 1..3 (step 4's row was lost with the driver), other: only step 2
    _rows(folder, [(KEY, 1), (KEY, 2), (KEY, 3), (other, 2)])

    found = earlier_checkpoints(folder, done={done})
    assert set(found) == {KEY}  # `other` lacks its step-1 row; `done` finished
    assert found[KEY] == [str((ray / "r2" / "x9" / "checkpoint_000003").resolve()),
                          str((ray / "r1" / "t0" / "checkpoint_000002").resolve())]
    assert earlier_checkpoints(folder, done={done}, keep=3)[KEY][-1].endswith("checkpoint_000001")
    assert earlier_checkpoints(tmp_path / "nothing", done=set()) == {}


class _Tune:
    """``ray.tune`` as :func:`lowbit_core.trainables.run_trial` uses it, without Ray: reports are kept
    with a copy of their checkpoint folder; ``get_checkpoint`` returns what the test sets."""

    def __init__(self, keep: Path):
        self.keep, self.reports, self.checkpoint, self.saved = keep, [], None, 0

    def report(self, metrics, checkpoint=None):
        saved = None
        if checkpoint is not None:
            self.saved += 1
            saved = self.keep / f"ckpt{self.saved}"
            shutil.copytree(checkpoint.path, saved)
        self.reports.append((dict(metrics), saved))

    def get_checkpoint(self):
        return self.checkpoint

    class Checkpoint(SimpleNamespace):
        @classmethod
        def from_directory(cls, path):
            return cls(path=path, as_directory=lambda: contextlib.nullcontext(path))


@pytest.mark.parametrize("how", ["resume", "tune-retry"])
def test_a_trial_restarted_from_its_final_checkpoint_reports_its_last_result_again(tmp_path, monkeypatch, how):
    """The driver died after a trial's last checkpoint, before its TERMINATED status was written:
    ``--resume`` (or Tune's retry) restarts it from its final state, with no epoch left to run. It must
    report its last result again (Tune's strict metric check fails a trial that reports nothing, and a
    searcher must learn the trial's value), with the same step and metrics. Before the fix the trial
    reported nothing (CI: ``Trial returned a result which did not include ... val_acc``)."""
    from lowbit_core import trainables
    from lowbit_core.families import get_family
    from lowbit_core.sweep import resolve_points

    fake = _Tune(tmp_path)
    monkeypatch.setattr(trainables, "tune", fake)
    monkeypatch.setattr(trainables, "provenance", lambda: {"_node_id": "n"})
    monkeypatch.setattr(trainables.ray, "get_runtime_context",
                        lambda: SimpleNamespace(get_assigned_resources=lambda: {"CPU": 1}))
    sweep_file = tmp_path / "resume_train.py"
    sweep_file.write_text(SWEEP_TEXT)
    t = plan(load_sweep(sweep_file), "default").trials[0]
    config = {"base": json.dumps({**t.flat, "train.epochs": 2, "data.n_train": 64, "train.steps_per_epoch": 2}),
              "study": ""}
    (_, key), = resolve_points(get_family("train"), config)
    trainables.run_trial("train", config)
    first = fake.reports
    assert [m["step"] for m, _ in first] == [1, 2] and all(c is not None for _, c in first)
    final_metrics, final = first[-1]
    assert json.loads((final / MARKER_FILE).read_text())["metrics"]["val_acc"] == final_metrics["val_acc"]

    fake.reports = []
    if how == "resume":
        trainables.run_trial("train", config, resume={key: [str(final)]})
    else:
        fake.checkpoint = _Tune.Checkpoint.from_directory(final)
        trainables.run_trial("train", config)
    (again, ckpt), = fake.reports
    same = json.dumps(again, sort_keys=True) == json.dumps(final_metrics, sort_keys=True)  # NaN equals NaN
    assert same and again["step"] == 2  # same step, metrics and provenance
    assert load_checkpoint(ckpt, key)["epoch"] == 2


# ------------------------------------------------------------------ the CLI: SIGKILL, then --resume
EPOCHS = 8

SWEEP_TEXT = f'''"""Tiny training sweep for the resume test: 2 trials of {EPOCHS} epochs."""
from lowbit_core.sweep import Resources, Sweep, grid

SWEEP = Sweep(name="resume_train", family="train", metric="test_acc", mode="max",
              base={{"data.name": "synthetic", "data.n_train": 256, "data.n_test": 64, "model.width": 4,
                     "model.kind": "binary", "train.batch_size": 32, "train.epochs": {EPOCHS},
                     "train.optimizer": "adam", "train.lr": 0.01, "perturb.amplitude": 0.1,
                     "perturb.period": 3}},
              space={{"model.init": grid("xavier", "kaiming")}}, seeds=(0,), resources=Resources(cpu=1))
'''

TIMING = {"images_per_s", "epoch_time_s"}


def _markers(folder: Path) -> list[dict]:
    out = []
    for m in (folder / "_ray").rglob(MARKER_FILE):
        try:
            out.append({**json.loads(m.read_text()), "path": m.parent})
        except (OSError, ValueError):
            pass
    return out


def _reference(cfg) -> list[dict]:
    """The uninterrupted run, in this process, on one thread like a 1-CPU Ray trial."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    rows = []
    try:
        train(cfg, lambda m, state=None: rows.append(m), torch.device("cpu"))
    finally:
        torch.set_num_threads(threads)
    return rows


@pytest.mark.slow
def test_sigkill_then_resume_continues_training_from_checkpoints(tmp_path, sessions):  # noqa: F811
    sweep_file = tmp_path / "resume_train.py"
    sweep_file.write_text(SWEEP_TEXT)
    p = plan(load_sweep(sweep_file), "default")
    keys = {t.key: t.config for t in p.trials}
    folder = tmp_path / "res" / "resume_train"
    env = inject_env(tmp_path / "marks", [{"action": "sleep", "seconds": 0.8}])  # rows flushed at once
    base = [sweep_file, "--results", tmp_path / "res"]

    def checkpointed(step: int) -> bool:  # both trials: a checkpoint of `step` and its rows on disk
        if not data_parts(folder):
            return False
        rows = pd.read_parquet(folder, columns=["trial_key", "step"])
        marked = {m["trial_key"] for m in _markers(folder) if m["step"] >= step}
        return all(k in marked and set(range(1, step + 1)) <= set(rows[rows.trial_key == k].step) for k in keys)

    t0 = time.monotonic()
    d = Driver(base, env)
    sessions.append(d.sid)
    wait_for(lambda: checkpointed(3), "3 checkpointed epochs in both trials", d, timeout=150)
    os.kill(d.proc.pid, signal.SIGKILL)
    d.wait()
    kill_session(d.sid)  # its Ray workers too: nothing writes to the folder any more
    t_kill = time.monotonic() - t0
    assert not finished_trials(folder), "a trial finished before the kill; the test needs slower trials"
    before = pd.read_parquet(folder)
    run1 = before.run_id.iloc[0]

    # corrupt the newest checkpoint of one trial (same size: only the digest check catches it); Ray
    # kept 2 per trial, so that trial falls back to the one before, the other uses its newest
    markers = _markers(folder)
    assert all(sum(m["trial_key"] == k for m in markers) <= 2 for k in keys)  # num_to_keep=2
    corrupted_key = sorted(keys)[0]
    newest = max((m for m in markers if m["trial_key"] == corrupted_key), key=lambda m: m["step"])
    _flip_byte(newest["path"] / STATE_FILE)
    markers.remove(newest)
    expect = {}
    for k in keys:
        on_disk = set(before[before.trial_key == k].step)
        expect[k] = max(m["step"] for m in markers if m["trial_key"] == k and set(range(1, m["step"] + 1)) <= on_disk)
    assert expect[corrupted_key] == newest["step"] - 1 and all(e >= 2 for e in expect.values()), expect

    t1 = time.monotonic()
    rc, out, err = Driver(base + ["--resume"], {**env, "LOWBIT_FAULT_INJECT": ""}).wait(timeout=300)
    t_resume = time.monotonic() - t1
    assert rc == 0, err[-3000:]
    assert "all 2 trials finished" in out
    df = pd.read_parquet(folder)
    print(f"\nkilled after {t_kill:.1f} s; resume took {t_resume:.1f} s; resumed from epochs {expect} "
          f"(trial {corrupted_key}'s newest checkpoint, epoch {newest['step']}, corrupted)")

    # no duplicate, no missing (trial_key, step); nothing written before the kill was rewritten
    assert not df.duplicated(["trial_key", "step"]).any()
    assert sorted(map(tuple, df[["trial_key", "step"]].values.tolist())) == sorted(
        (k, s) for k in keys for s in range(1, EPOCHS + 1))
    kept = before.merge(df, on=["trial_key", "step"], suffixes=("_before", ""))
    assert len(kept) == len(before) and (kept.run_id == run1).all()
    for key, cfg in keys.items():
        rows = df[df.trial_key == key].sort_values("step")
        resumed = rows[rows.run_id != run1]
        # the rerun started at the checkpoint: rows it wrote say where it continued from
        assert len(resumed) and (resumed.resumed_from_epoch == expect[key]).all(), rows.resumed_from_epoch.tolist()
        assert resumed.step.min() > expect[key]
        assert (rows[rows.run_id == run1].resumed_from_epoch == 0).all()
        # every metric equals an uninterrupted run's (bit for bit on the CPU)
        ref = _reference(cfg)
        names = sorted(set(TRAIN_METRICS) - TIMING - {"resumed_from_epoch"})
        assert [r["step"] for r in ref] == rows.step.tolist()
        for r, got in zip(ref, rows.to_dict("records")):
            differ = {n: (got[n], r[n]) for n in names if not (got[n] == r[n] or (got[n] != got[n] and r[n] != r[n]))}
            assert not differ, (key, r["step"], differ)  # (NaN == NaN here: dsq_alpha, ede_t)
    st = pq.read_table(folder / "_trials").to_pandas()
    assert set(st.status) == {"TERMINATED"} and st.trial_key.value_counts().max() == 1

    # killed after a trial's last checkpoint, before its status was written (CI saw it in an Optuna
    # sweep): its status rows are taken away, --resume restarts it from its final state with no epoch
    # left, and it reports its last result again (before: no result, Tune's strict metric check ended
    # the sweep with exit 1); no row is added or changed
    unfinished = sorted(keys)[1]
    for part in sorted((folder / "_trials").glob("*.parquet")):
        table = pq.read_table(part)
        pq.write_table(table.filter(pa.compute.not_equal(table["trial_key"], unfinished)), part)
    assert finished_trials(folder) == set(keys) - {unfinished}
    rc, out, err = Driver(base + ["--resume"], {"LOWBIT_FAULT_INJECT": ""}).wait(timeout=300)
    assert rc == 0, err[-3000:]
    assert "all 2 trials finished" in out
    assert pd.read_parquet(folder).equals(df)
    assert finished_trials(folder) == set(keys)
