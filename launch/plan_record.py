"""The plan file ``_sweep.json`` the driver keeps next to the data (:func:`lowbit_core.results.write_plan`).

Every run writes it (a dry run and bad input write nothing). Its keys: the plan's identity
(:func:`lowbit_core.sweep.describe_plan`: ``name``, ``family``, ``profile``, ``metric``, ``mode``,
``axes``, ``fold``, ``seeds``, ``canonical_defaults``, ``base``, ``overrides``, ``search``,
``scheduler``, ``sweep_sha256``, ``questions``), where it came from (``git_sha``, ``command``: ``sys.argv`` as a list,
``created``: UTC ISO time) and ``runs``: one entry per invocation into the folder, ``{"run_id",
"time", "command", "resumed"}`` (and ``"extended"``: what an ``--extend`` run added).

A ``--resume`` must plan what the folder's plan records (every key but :data:`RUN_KEYS`; an edited
sweep file counts, through ``sweep_sha256``) and appends its run; the first run's origin keys are
kept. ``--extend`` (a resume that widens the sweep on purpose) may add seeds, grid values of existing
axes (also by dropping a ``--set`` that pinned one), Optuna samples and ``--settle`` rounds (``settle``:
seeds for some cells), from an edited sweep file;
the plan then records the wider sweep, and the run entry what was added.
"""
from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

from lowbit_core.config import ConfigError
from lowbit_core.results import PLAN_FILE, ResultsError, read_plan, write_plan
from lowbit_core.sweep import Plan, describe_plan

RUN_KEYS = ("runs", "command", "created", "git_sha", "questions")
"""Keys that describe runs, not the plan, or annotate it (the questions the sweep bears on, for the
book): a resume may differ in them."""

LATER_KEYS = ("base", "overrides", "search", "scheduler", "sweep_sha256", "questions", "baseline", "report")
"""Plan keys recorded since plans gained them: a folder whose plan lacks one is not compared on it
(the resuming run fills it in)."""

_VALUE_WIDTH = 48


def utc_now() -> str:
    """The current UTC time as ISO 8601 text, e.g. ``2026-12-01T22:30:06+00:00``."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def new_record(plan: Plan, command: list[str], git_sha: str) -> dict:
    """The ``_sweep.json`` content of a fresh run of ``plan`` (``runs`` still empty), in the form JSON
    reads back (lists, not tuples), so it compares equal to a plan read from disk."""
    record = {**describe_plan(plan), "git_sha": git_sha, "command": [str(a) for a in command],
              "created": utc_now(), "runs": []}
    return json.loads(json.dumps(record))


def differing_keys(old: dict, new: dict) -> list[str]:
    """The plan keys (all but :data:`RUN_KEYS`, and :data:`LATER_KEYS` that ``old`` lacks) whose values
    differ between ``old`` and ``new``; for a dict-valued key (``axes``, ``base``, ``overrides``,
    ``canonical_defaults``) the entries that differ, as ``key[entry]``."""
    out = []
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key), new.get(key)
        if key in RUN_KEYS or a == b or (key in LATER_KEYS and key not in old):
            continue
        if isinstance(a, dict) and isinstance(b, dict) and key not in ("search", "scheduler"):
            out += [f"{key}[{k}]" for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]
        else:
            out.append(key)
    return out


def _value(plan: dict, entry: str):
    """The value of ``entry`` (``key`` or ``key[sub]``) in ``plan``; ``...`` when it is absent."""
    key, _, sub = entry.partition("[")
    value = plan.get(key, ...)
    if sub and isinstance(value, dict):
        return value.get(sub[:-1], ...)
    return value


def _short(value) -> str:
    text = "unset" if value is ... else json.dumps(value, sort_keys=True)
    return text if len(text) <= _VALUE_WIDTH else text[:_VALUE_WIDTH - 3] + "..."


def describe_difference(old: dict, new: dict, entry: str) -> str:
    """One difference for the refusal line: ``profile ("default" -> "smoke")``; for two objects (a
    plug-in's origin and hash) only the fields that differ, in full, so the two sides never look alike."""
    if entry == "sweep_sha256":
        return "sweep_sha256 (the sweep file was edited since the recorded run)"
    a, b = _value(old, entry), _value(new, entry)
    if isinstance(a, dict) and isinstance(b, dict):
        fields = [k for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]
        what = "; ".join(f"{k} {json.dumps(a.get(k))} -> {json.dumps(b.get(k))}" for k in fields)
        if entry.startswith("plugins[") and "sha256" in fields:
            what += (" (the plug-in's sha256 covers its source files' paths relative to its folder and their "
                     "bytes: the module was edited)")
        return f"{entry} ({what})"
    return f"{entry} ({_short(a)} -> {_short(b)})"


def _widened_list(old, new) -> list | None:
    """The values ``new`` adds to ``old`` when both are lists and ``new`` keeps every value of ``old``
    (None otherwise: not a widening)."""
    if not isinstance(old, list) or not isinstance(new, list) or any(v not in new for v in old):
        return None
    return [v for v in new if v not in old]


def _widening(old: dict, new: dict, entry: str):
    """What ``entry``'s difference adds (a JSON-able value), or None when it is not a widening."""
    key, _, sub = entry.partition("[")
    sub = sub[:-1]
    if key in ("seeds", "axes"):
        return _widened_list(_value(old, entry), _value(new, entry))
    if key == "overrides":  # dropping (or widening) a --set that pinned an axis widens that axis
        return [] if sub in new.get("axes", {}) and _widened_list(old["axes"].get(sub), new["axes"][sub]) is not None else None
    if key == "search":
        a, b = old.get("search"), new.get("search")
        if isinstance(a, dict) and isinstance(b, dict) and {**a, "num_samples": 0} == {**b, "num_samples": 0} \
                and b["num_samples"] >= a["num_samples"]:
            return {"num_samples": b["num_samples"] - a["num_samples"]}
        return None
    if key == "sweep_sha256":
        return new.get("sweep_sha256")
    if key == "settle":  # --settle appends rounds of seeds for some cells
        a, b = old.get("settle") or [], new.get("settle") or []
        return b[len(a):] if b[:len(a)] == a and len(b) > len(a) else None
    return None


def widening(old: dict, new: dict) -> tuple[dict, list[str]]:
    """(what ``new`` adds to ``old``: difference entry -> added values, the difference entries that
    are not a widening)."""
    added, other = {}, []
    for entry in differing_keys(old, new):
        more = _widening(old, new, entry)
        if more is None:
            other.append(entry)
        elif more != []:
            added[entry] = more
    return added, other


def matching_plan(folder: Path, record: dict, extend: bool = False) -> tuple[dict | None, dict]:
    """(the plan recorded in ``folder`` or None when there is none -- a folder from before plans were
    recorded, or a new one --, what ``record`` adds to it under ``extend``). ConfigError (one line)
    when the plan is unreadable, plans something else than ``record`` (naming each difference), or,
    under ``extend``, differs in more than a widening, or is missing."""
    try:
        earlier = read_plan(folder)
    except ResultsError as exc:
        raise ConfigError(str(exc)) from None
    if earlier is None:
        if extend:
            raise ConfigError(f"--extend widens a recorded sweep, but {folder} has no {PLAN_FILE}; "
                              "run without --extend (use --resume to continue it)")
        return None, {}
    added, other = widening(earlier, record) if extend else ({}, differing_keys(earlier, record))
    if other:
        what = ", ".join(describe_difference(earlier, record, e) for e in other)
        if extend:
            raise ConfigError(f"--extend only widens the recorded sweep (more seeds, grid values or Optuna samples): "
                              f"{folder / PLAN_FILE} differs in {what}; resume with the recorded plan, or use --results DIR")
        raise ConfigError(f"--resume of a different plan: {folder / PLAN_FILE} differs in {what}; resume with the "
                          "same sweep file, profile and --set options, widen the sweep on purpose with --extend, "
                          "or use --results DIR")
    return earlier, added


def record_run(folder: Path, record: dict, run_id: str, resume: bool, extend: bool = False) -> dict:
    """Write ``folder/_sweep.json`` for this run (call it holding the folder's lock) and return what an
    ``--extend`` added (empty otherwise). A fresh run, or a resume of a folder without a plan, writes
    ``record``; a resume keeps the folder's plan, which must match (:func:`matching_plan`), filling in
    :data:`LATER_KEYS` it lacks; an extension writes the wider ``record`` with the first run's origin.
    Either way this run is appended to ``runs``."""
    earlier, added = matching_plan(folder, record, extend) if resume else (None, {})
    if earlier is None:
        plan = record
    elif extend:
        plan = {**record, **{k: earlier[k] for k in ("command", "created", "git_sha") if k in earlier}}
    else:
        plan = {**{k: record[k] for k in LATER_KEYS if k not in earlier}, **earlier}
    run = {"run_id": run_id, "time": utc_now(), "command": record["command"], "resumed": resume}
    if added:
        run["extended"] = added
    write_plan(folder, {**plan, "runs": [*(earlier or {}).get("runs", []), run]})
    return added
