"""The plan file ``_sweep.json`` the driver keeps next to the data (:func:`lowbit_core.results.write_plan`).

Every run writes it (a dry run and bad input write nothing). Its keys: the plan's identity
(:func:`lowbit_core.sweep.describe_plan`: ``name``, ``family``, ``profile``, ``metric``, ``mode``,
``axes``, ``fold``, ``seeds``, ``canonical_defaults``), where it came from (``git_sha``, ``command``:
``sys.argv`` as a list, ``created``: UTC ISO time) and ``runs``: one entry per invocation into the
folder, ``{"run_id", "time", "command", "resumed"}``. A ``--resume`` must plan what the folder's plan
records (every key but :data:`RUN_KEYS`) and appends its run; the first run's origin keys are kept.
"""
from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

from lowbit_core.config import ConfigError
from lowbit_core.results import PLAN_FILE, ResultsError, read_plan, write_plan
from lowbit_core.sweep import Plan, describe_plan

RUN_KEYS = ("runs", "command", "created", "git_sha")
"""Keys that describe runs, not the plan: a resume may differ in them."""


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
    """The plan keys (all but :data:`RUN_KEYS`) whose values differ between ``old`` and ``new``; for a
    dict-valued key (``axes``, ``canonical_defaults``) the entries that differ, as ``key[entry]``."""
    out = []
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key), new.get(key)
        if key in RUN_KEYS or a == b:
            continue
        if isinstance(a, dict) and isinstance(b, dict):
            out += [f"{key}[{k}]" for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]
        else:
            out.append(key)
    return out


def matching_plan(folder: Path, record: dict) -> dict | None:
    """The plan recorded in ``folder`` (None when there is none: a folder from before plans were
    recorded, or a new one). ConfigError (one line) when it is unreadable or plans something else
    than ``record``, naming the keys that differ."""
    try:
        earlier = read_plan(folder)
    except ResultsError as exc:
        raise ConfigError(str(exc)) from None
    if earlier is None:
        return None
    differ = differing_keys(earlier, record)
    if differ:
        raise ConfigError(f"--resume of a different plan: {folder / PLAN_FILE} differs in {', '.join(differ)}; "
                          "resume with the same sweep, profile and --set options, or use --results DIR")
    return earlier


def record_run(folder: Path, record: dict, run_id: str, resume: bool) -> None:
    """Write ``folder/_sweep.json`` for this run (call it holding the folder's lock): a fresh run, or a
    resume of a folder without a plan, writes ``record``; a resume keeps the folder's plan, which must
    match (:func:`matching_plan`). Either way this run is appended to ``runs``."""
    plan = (matching_plan(folder, record) if resume else None) or record
    run = {"run_id": run_id, "time": utc_now(), "command": record["command"], "resumed": resume}
    write_plan(folder, {**plan, "runs": [*plan.get("runs", []), run]})
