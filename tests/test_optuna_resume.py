"""Optuna sweeps resume and extend without losing or re-running trials (launch/optuna_state.py and the
runner's ``_fit_optuna``), and the driver never says "done" with rows missing (``verify_finished``).

Fast tests drive Optuna directly through the journal: a study continued in a new process-like study
proposes what an uninterrupted one does, an unfinished trial is replayed with its exact parameters
(same trial key), ``--extend`` samples new configurations, a torn or damaged journal is repaired or
set aside; ASHA starts with the earlier trials' rung records. Slow tests run
``sweeps/train_search.py --smoke`` through the real CLI, SIGKILL it at several points, ``--resume``
and compare the (trial, step) rows and the best trial with an uninterrupted run.
"""
from __future__ import annotations

import io
import json
import math
import os
import signal
from contextlib import redirect_stderr
from datetime import datetime, timedelta, timezone
from pathlib import Path
from types import SimpleNamespace

import optuna
import pandas as pd
import pytest
from optuna.distributions import FloatDistribution

from conftest import ROOT, run_sweep
from lowbit_sweeps.launch.optuna_state import (Known, Rows, TrialSeededTPE, continue_study, journal_path, journal_trials,
                                 new_study, open_journal, warm_asha)
from lowbit_sweeps.launch.runner import Outcome, _params_key, make_scheduler, verify_finished
from lowbit_core.results import ResultsWriter, data_parts, finished_trials, latest_status, results_schema
from lowbit_core.sweep import ASHA, LogUniform, Optuna, Sweep, grid, plan
from test_faults import Driver, inject_env, sessions, wait_for  # noqa: F401 -- fixture

optuna.logging.set_verbosity(optuna.logging.WARNING)

DISTS = {"x": FloatDistribution(1e-4, 1e-1, log=True), "y": FloatDistribution(0.0, 1.0)}


def key_of(params: dict) -> str:
    return json.dumps(params, sort_keys=True)


def objective(params: dict) -> float:
    """A smooth function with its maximum at x = 1e-2, y = 0.3 (TPE has something to find)."""
    return -(math.log10(params["x"]) + 2) ** 2 - (params["y"] - 0.3) ** 2


def run_trials(study: optuna.Study, n: int, kill_at: int | None = None) -> list[str]:
    """Ask and tell ``n`` trials one at a time; the trial asked as number ``kill_at`` is left RUNNING
    (the driver died with it) and the loop ends there. Returns the asked trials' keys."""
    keys = []
    for _ in range(n):
        trial = study.ask(DISTS)
        keys.append(key_of(trial.params))
        if trial.number == kill_at:
            break
        study.tell(trial, objective(trial.params))
    return keys


def resumed(folder: Path, run_id: str, done: set[str], num_samples: int, seed: int = 7):
    """The runner's continuation, Ray left out: the newest study of the journal, continued in a new
    study named ``run_id``."""
    storage = open_journal(folder, "s", run_id)
    cont = continue_study(journal_trials(storage, key_of), {}, done, num_samples)
    sampler = TrialSeededTPE(seed)
    study = new_study(storage, run_id, "maximize", DISTS, cont, sampler)
    return study, cont


def fresh(folder: Path, run_id: str, seed: int = 7) -> optuna.Study:
    return new_study(open_journal(folder, "s", run_id), run_id, "maximize", DISTS,
                     continue_study([], {}, set(), 0), TrialSeededTPE(seed))


# ---------------------------------------------------------------- the study's lineage (no Ray)
@pytest.mark.parametrize("kill_at", [0, 3, 11])
def test_a_killed_study_continued_proposes_what_an_uninterrupted_one_does(tmp_path, kill_at):
    """14 trials (past TPE's 10 random start-up trials): killed with trial ``kill_at`` running,
    continued in a new study; every configuration equals the uninterrupted study's, the killed one is
    asked again with its exact parameters, no finished one is asked twice."""
    straight = run_trials(fresh(tmp_path / "a", "r0"), 14)
    assert len(set(straight)) == 14
    first = run_trials(fresh(tmp_path / "b", "r0"), 14, kill_at=kill_at)
    study, cont = resumed(tmp_path / "b", "r1", set(first[:kill_at]), 14)
    assert [k.key for k in cont.finished] == straight[:kill_at] and [k.key for k in cont.replays] == [first[kill_at]]
    assert cont.remaining == 14 - kill_at
    again = run_trials(study, cont.remaining)
    assert again[0] == straight[kill_at]  # the replay, exact parameters through the journal file
    assert first[:kill_at] + again == straight


def test_extend_samples_new_configurations_and_equals_a_longer_run(tmp_path):
    straight = run_trials(fresh(tmp_path / "a", "r0"), 7)
    first = run_trials(fresh(tmp_path / "b", "r0"), 4)
    study, cont = resumed(tmp_path / "b", "r1", set(first), 7)
    assert len(cont.finished) == 4 and not cont.replays and cont.remaining == 3
    more = run_trials(study, 3)
    assert not set(more) & set(first) and len(set(more)) == 3
    assert first + more == straight


def test_the_old_reseeded_search_proposed_finished_configurations_again(tmp_path):
    """Why the sampler is seeded per trial number: a TPESampler re-seeded on resume (the earlier
    runner) draws its stream from the start and proposes the first finished configuration again."""
    first = run_trials(optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=7)), 2)
    again = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=7))
    for k in first:
        params = json.loads(k)
        again.add_trial(optuna.trial.create_trial(params=params, distributions=DISTS, value=objective(params)))
    assert key_of(again.ask(DISTS).params) == first[0]
    lineage = fresh(tmp_path, "r0")
    done = run_trials(lineage, 2)
    study, _ = resumed(tmp_path, "r1", set(done), 3)
    assert key_of(study.ask(DISTS).params) not in done


def test_second_resume_and_a_trial_finished_in_optuna_but_not_on_disk(tmp_path):
    """Ray tells Optuna a trial completed before the Parquet record is flushed: killed in between,
    the trial is not finished on disk, so it is replayed, and counted once. A second resume continues
    the newest study."""
    first = run_trials(fresh(tmp_path, "r0"), 3)  # all three told COMPLETE
    study, cont = resumed(tmp_path, "r1", {first[0]}, 5)  # only the first has its rows and status
    assert [k.key for k in cont.replays] == first[1:] and cont.remaining == 4
    second = run_trials(study, 4, kill_at=4)  # numbers 1, 2: the replays; 3: new; 4: new, killed
    assert second[:2] == first[1:]
    study, cont = resumed(tmp_path, "r2", set(first + second[:3]), 5)
    assert [k.key for k in cont.finished] == first + [second[2]]
    assert [k.key for k in cont.replays] == [second[3]]
    assert len(study.trials) == 5 and sum(t.state.name == "COMPLETE" for t in study.trials) == 4


def test_parquet_rows_without_a_journal_replay_the_unfinished_trials(tmp_path):
    """A folder from before the journal (or whose journal was damaged): the Parquet rows give the
    keys, parameters and values; unfinished keys are replayed in order of their first row."""
    t0 = datetime(2026, 1, 1, tzinfo=timezone.utc)
    rows = {"b": Rows({"x": 0.01, "y": 0.5}, t0 + timedelta(seconds=5), 3, 0.7),
            "a": Rows({"x": 0.02, "y": 0.1}, t0, 3, 0.4),
            "c": Rows({"x": 0.03, "y": 0.9}, t0 + timedelta(seconds=9), 1, 0.1)}
    cont = continue_study([], rows, {"a", "b"}, 4)
    assert [(k.key, k.value) for k in cont.finished] == [("a", 0.4), ("b", 0.7)]
    assert [(k.key, k.params) for k in cont.replays] == [("c", {"x": 0.03, "y": 0.9})]
    assert cont.remaining == 2
    # the journal's own value wins; a NaN value is recorded as a failed trial
    cont = continue_study([Known("a", rows["a"].params, 0.45), Known("b", rows["b"].params, math.nan)], rows,
                          {"a", "b"}, 4)
    assert [k.value for k in cont.finished] == [0.45, 0.7]


def test_torn_journal_tail_is_cut_and_a_damaged_journal_set_aside(tmp_path):
    keys = run_trials(fresh(tmp_path, "r0"), 2)
    path = journal_path(tmp_path, "s")
    with open(path, "ab") as fh:
        fh.write(b'{"op_code": 4, "worker_id"')  # a write cut short by SIGKILL
    path.with_name(path.name + ".lock").symlink_to(path)  # and the lock it held
    assert [k.key for k in journal_trials(open_journal(tmp_path, "s", "r1"), key_of)] == keys
    run_trials(fresh(tmp_path, "r1b"), 1)  # appending after the repair keeps the file readable
    assert len(journal_trials(open_journal(tmp_path, "s", "r1c"), key_of)) == 1
    path.write_text('{"op_code": 0, "worker_id": "w", "study_name": "x", "directions": [1]}\nnot json\n{}\n')
    err = io.StringIO()
    with redirect_stderr(err):
        storage = open_journal(tmp_path, "s", "r2")
    assert journal_trials(storage, key_of) == []
    assert "damaged Optuna journal" in err.getvalue() and (tmp_path / "_damaged" / "_optuna-s-r2.log").exists()


# ---------------------------------------------------------------- ASHA with the earlier rungs
def fake_trial(trial_id: str, lr: float):
    return SimpleNamespace(trial_id=trial_id, config={"lr": lr})


def test_warm_asha_stops_what_the_uninterrupted_run_stopped():
    """Rungs at epochs 1, 2 (grace 1, factor 2, 4 epochs). Two earlier trials reached val_acc 0.5 and
    0.6 at epoch 1; a new trial at 0.4 is below the rung's median (0.5) and stopped by the warm ASHA;
    a cold one has no records and lets it go on. A replayed trial (earlier key) takes its records
    over and is not decided again at a rung it passed."""
    p = plan(Sweep(name="t", family="train", metric="val_acc", mode="max", base={"train.epochs": 4},
                   space={"train.lr": LogUniform(1e-3, 1e-1)}, search=Optuna(num_samples=4),
                   scheduler=ASHA(grace_period=1, reduction_factor=2)))
    history = {"k1": {1: 0.5, 2: 0.55}, "k2": {1: 0.6}, "k3": {1: 0.45, 2: 0.5}}
    keys = {0.1: "new", 0.3: "k3"}

    def start(scheduler):
        scheduler.set_search_properties("val_acc", "max")
        return scheduler

    cold = start(make_scheduler(p))
    warm = start(warm_asha(make_scheduler(p), history, lambda cfg: keys[cfg["lr"]]))
    assert type(warm).__name__ == "WarmASHA"
    for s in (cold, warm):
        s.on_trial_add(None, fake_trial("t_new", 0.1))
    assert cold.on_trial_result(None, fake_trial("t_new", 0.1), {"epoch": 1, "val_acc": 0.4}) == "CONTINUE"
    assert warm.on_trial_result(None, fake_trial("t_new", 0.1), {"epoch": 1, "val_acc": 0.4}) == "STOP"
    warm.on_trial_add(None, fake_trial("t_k3", 0.3))
    rungs = dict(warm._brackets[0]._rungs)
    assert rungs[1] == {"earlier:k1": 0.5, "earlier:k2": 0.6, "t_new": 0.4, "t_k3": 0.45}
    assert rungs[2] == {"earlier:k1": 0.55, "t_k3": 0.5}
    # k3 resumed from its checkpoint after epoch 2: epoch 3 passes no new rung
    assert warm.on_trial_result(None, fake_trial("t_k3", 0.3), {"epoch": 3, "val_acc": 0.1}) == "CONTINUE"
    # not ASHA, or no history: unchanged
    assert warm_asha(cold, {}, None) is cold


# ---------------------------------------------------------------- the check before "done"
def write_trial(writer: ResultsWriter, key: str, steps, status="TERMINATED", rows=None, study="", lr=0.01):
    for step in steps:
        writer.add({"trial_key": key, "step": step, "study": study, "cfg.train.lr": lr, "val_acc": 0.1 * step})
    row = {"trial_key": key, "trial_id": key, "run_id": "r", "study": study, "status": status, "error": "",
           "time": datetime.now(timezone.utc), "step": max(steps)}
    writer.trial_ended({**row, **({"rows": rows} if rows is not None else {})})


def test_verify_finished_lists_trials_with_rows_missing(tmp_path):
    from lowbit_core.families import get_family

    p = plan(Sweep(name="t", family="train", metric="val_acc", mode="max", base={"train.epochs": 3},
                   space={"train.lr": grid(0.01, 0.02, 0.03)}))
    k1, k2, k3 = (t.key for t in p.trials)
    fam = get_family("train")
    w = ResultsWriter(tmp_path, results_schema(fam.config_cls, fam.metrics), "r")
    write_trial(w, k1, [1, 2, 3])
    write_trial(w, k2, [1, 2], rows=3)  # its status counted 3 rows; one never reached the disk
    write_trial(w, k3, [1], status="INTERRUPTED")
    w.close()
    done, incomplete = verify_finished(p, tmp_path, claimed=2)
    assert done == 1
    assert incomplete == [(k2, "TERMINATED at step 2 with 3 rows, 2 on disk")]
    # nothing missing, but the progress counted more finished trials than there are
    assert verify_finished(p, tmp_path, claimed=1) == (1, [(k2, "TERMINATED at step 2 with 3 rows, 2 on disk")])
    w2 = ResultsWriter(tmp_path / "b", results_schema(fam.config_cls, fam.metrics), "r")
    write_trial(w2, k1, [1, 2, 3])
    w2.close()
    assert verify_finished(p, tmp_path / "b", claimed=3) == (
        1, [("(sweep)", "3 trials counted as finished, 1 distinct trials finished on disk")])


def test_summary_names_the_incomplete_trials_and_exits_1(tmp_path, capsys):
    from lowbit_sweeps.launch.sweep import _summarize

    out = Outcome(total=2, done=1, failed=0, folder=tmp_path,
                  incomplete=[("abc", "TERMINATED at step 2 with 3 rows, 2 on disk")])
    assert not out.ok
    assert _summarize(out, ["sweeps/x.py"]) == 1
    err = capsys.readouterr().err
    assert "only 1 of 2 trials finished" in err and "abc: TERMINATED at step 2 with 3 rows, 2 on disk" in err


def test_optuna_trial_keys_come_from_the_study_config_and_the_params():
    p = plan(Sweep(name="t", family="train", metric="val_acc", mode="max", base={"train.epochs": 3},
                   space={"train.lr": LogUniform(1e-3, 1e-1)}, search=Optuna(num_samples=2)))
    from lowbit_core.families import get_family

    study = p.studies[0]
    a = _params_key(get_family("train"), study, {"train.lr": 0.0123})
    assert a == _params_key(get_family("train"), study, {"train.lr": 0.0123})
    assert a != _params_key(get_family("train"), study, {"train.lr": 0.0124})


# ---------------------------------------------------------------- through the CLI (real Ray)
SEARCH = ROOT / "sweeps" / "train_search.py"
SMOKE = ["--smoke", "--max-concurrent", "1"]
"""4 Optuna samples of 3 epochs (2 steps each), ASHA rungs at epochs 1 and 2, one trial at a time."""


def summary(folder: Path) -> tuple[set, str, float]:
    """((trial_key, step) pairs, the best trial's key, its val_acc): best by the last row's val_acc,
    as the report picks a trial."""
    df = pd.read_parquet(folder, columns=["trial_key", "step", "val_acc"])
    assert not df.duplicated(["trial_key", "step"]).any()
    last = df.sort_values("step").groupby("trial_key").tail(1).set_index("trial_key")["val_acc"]
    return set(zip(df.trial_key, df.step)), last.idxmax(), float(last.max())


def last_progress(err: str) -> str:
    return [ln for ln in err.splitlines() if ln.startswith("trials ")][-1]


@pytest.fixture(scope="module")
def straight(tmp_path_factory, shared_ray):
    """The uninterrupted run: (results folder, its summary)."""
    res = tmp_path_factory.mktemp("straight")
    r = run_sweep(SEARCH, *SMOKE, "--results", res, env={"LOWBIT_FLUSH_SECONDS": "0"}, timeout=600, ray=shared_ray)
    assert r.returncode == 0, r.stderr[-3000:]
    folder = res / "train_search"
    pairs, best, value = summary(folder)
    assert len({k for k, _ in pairs}) == 4 and f"best val_acc {value:.5g}" in last_progress(r.stderr)
    return folder, (pairs, best, value)


def first_trial_ended_and_second_started(folder: Path) -> bool:
    if not (folder / "_trials").is_dir() or not data_parts(folder):
        return False
    return len(set(pd.read_parquet(folder, columns=["trial_key"]).trial_key)) >= 2


def rows_on_disk(n: int):
    def cond(folder: Path) -> bool:
        return bool(data_parts(folder)) and len(pd.read_parquet(folder, columns=["step"])) >= n
    cond.__name__ = f"{n} rows on disk"
    return cond


@pytest.mark.slow
@pytest.mark.parametrize("kill_when, sig", [(first_trial_ended_and_second_started, signal.SIGKILL),
                                             (rows_on_disk(1), signal.SIGKILL), (rows_on_disk(6), signal.SIGKILL),
                                             (first_trial_ended_and_second_started, signal.SIGTERM)],
                         ids=["after-first-trial", "first-row", "sixth-row", "sigterm-after-first-trial"])
def test_sigkill_then_resume_equals_the_uninterrupted_run(straight, tmp_path, sessions, kill_when, sig):
    """SIGKILL (or SIGTERM) at a point (a report slowed to 0.5 s so the point is sharp), then
    --resume: the same (trial, step) rows as the uninterrupted run, none twice, the same best trial,
    every trial finished, and the summary's best is the sweep's best (earlier runs' trials included).
    A trial cut short continues from its checkpoint (its new rows start after epoch 0)."""
    _, (pairs, best, value) = straight
    folder = tmp_path / "res" / "train_search"
    env = inject_env(tmp_path / "marks", [{"action": "sleep", "seconds": 0.5}])
    args = [SEARCH, *SMOKE, "--results", tmp_path / "res"]
    d = Driver(args, env)
    sessions.append(d.sid)
    wait_for(lambda: kill_when(folder), kill_when.__name__, d, timeout=400)
    os.kill(d.proc.pid, sig)
    rc, _, err = d.wait(timeout=300)
    assert rc == (130 if sig == signal.SIGTERM else -signal.SIGKILL), err[-3000:]
    before = pd.read_parquet(folder, columns=["trial_key", "step", "run_id"])
    cut_short = set(before.trial_key) - finished_trials(folder)
    resumed_run = Driver([*args, "--resume"], {"LOWBIT_FLUSH_SECONDS": "0"})
    sessions.append(resumed_run.sid)
    rc, out, err = resumed_run.wait(timeout=600)
    assert rc == 0, err[-3000:]
    assert "all 4 trials finished" in out
    after = pd.read_parquet(folder, columns=["trial_key", "step", "run_id"])
    kept = before.merge(after, on=["trial_key", "step"], suffixes=("_before", "_after"))
    assert len(kept) == len(before) and (kept.run_id_before == kept.run_id_after).all()  # nothing rewritten
    got_pairs, got_best, got_value = summary(folder)
    assert got_pairs == pairs and got_best == best and got_value == value
    assert f"best val_acc {value:.5g}" in last_progress(err)
    assert len(latest_status(folder)) == 4
    new_rows = pd.read_parquet(folder, columns=["trial_key", "run_id", "resumed_from_epoch"])
    new_rows = new_rows[~new_rows.run_id.isin(set(before.run_id))]
    for key in cut_short & set(new_rows.trial_key):
        assert new_rows[new_rows.trial_key == key].resumed_from_epoch.min() >= 1, key


@pytest.mark.slow
def test_extend_adds_new_trials_and_a_damaged_part_is_rerun(straight, tmp_path, shared_ray):
    """--extend 4 -> 7 samples (an edited copy of the sweep file) on a copy of the uninterrupted run
    adds 3 trials with new keys and reruns none; a part of the best trial damaged before, moved to
    _damaged/, is run again under its key, and the rows equal the uninterrupted run's."""
    import shutil

    src, (pairs, best, value) = straight
    folder = tmp_path / "res" / "train_search"
    shutil.copytree(src, folder, ignore=shutil.ignore_patterns("_ray", "_lock"))
    best_part = next(p for p in data_parts(folder) if best in set(pd.read_parquet(p, columns=["trial_key"]).trial_key))
    best_part.write_bytes(best_part.read_bytes()[:40])  # truncated: unreadable
    text = SEARCH.read_text()
    assert text.count("num_samples=4,") == 1
    edited = tmp_path / "train_search.py"
    edited.write_text(text.replace("num_samples=4,", "num_samples=7,"))
    r = run_sweep(edited, *SMOKE, "--results", tmp_path / "res", "--extend", env={"LOWBIT_FLUSH_SECONDS": "0"},
                  timeout=600, ray=shared_ray)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "all 7 trials finished" in r.stdout
    assert (folder / "_damaged" / best_part.name).exists()
    got_pairs, _, got_value = summary(folder)
    old_keys = {k for k, _ in pairs}
    new_keys = {k for k, _ in got_pairs} - old_keys
    assert len(new_keys) == 3 and {p for p in got_pairs if p[0] in old_keys} == pairs
    assert got_value >= value
    statuses = latest_status(folder)
    assert len(statuses) == 7
    extend_run = json.loads((folder / "_sweep.json").read_text())["runs"][-1]["run_id"]
    rerun = {k for k, row in statuses.items() if row["run_id"] == extend_run}
    assert rerun == new_keys | {best}  # the damaged trial, and the new ones; no other old trial
