"""TEST-ONLY fault injection for the trainables, driven by ``$LOWBIT_FAULT_INJECT`` (tests/test_faults.py).

:mod:`lowbit_core.trainables` imports this module only when the variable is set (non-empty); sweeps
never do otherwise. Ray-free.
"""
from __future__ import annotations

import json
import os
import time
from pathlib import Path

from lowbit_core.sweep import ray_base


def fault_injection_hook(key: str, config: dict, spec: str):
    """The injector for trial ``key`` (Ray trial config ``config``) under ``spec``, the text of
    ``$LOWBIT_FAULT_INJECT``.

    ``spec`` is JSON ``{"dir": DIR, "rules": [RULE, ...]}``; a rule applies to trials whose
    flat config matches ``rule["match"]`` (dotted key -> value, e.g. ``{"seed": 1}``; empty: all) and
    acts on each report of a step >= ``rule.get("step", 0)``:
    ``{"action": "sleep", "seconds": S}`` sleeps before reporting (slows a sweep down);
    ``{"action": "mark"}`` writes ``DIR/mark-<trial key>-<step>`` holding the worker's pid (shows a test
    what was reported, and in which process);
    ``{"action": "raise", "times": N}`` raises RuntimeError, at most N times per trial over all
    its attempts (counted with marker files in DIR, so retries in new processes see the count);
    ``{"action": "nan", "metric": "loss", "value": "nan"}`` reports that metric as nan (or inf);
    ``{"action": "set", "metric": "val_loss", "value": 5.0}`` reports that metric as the value (makes a
    scheduler's decisions known in advance).
    Returns ``metrics -> metrics`` or None when no rule applies.
    """
    spec = json.loads(spec)
    flat = {**ray_base(config), **{k: v for k, v in config.items() if k not in ("base", "study")}}
    rules = [r for r in spec.get("rules", []) if all(flat.get(k) == v for k, v in r.get("match", {}).items())]
    if not rules:
        return None
    marks = Path(spec.get("dir", "."))

    def inject(metrics: dict) -> dict:
        metrics = dict(metrics)
        for i, rule in enumerate(rules):
            if metrics.get("step", 0) < rule.get("step", 0):
                continue
            if rule["action"] == "sleep":
                time.sleep(rule.get("seconds", 0.1))
            elif rule["action"] == "mark":
                (marks / f"mark-{key}-{metrics.get('step')}").write_text(str(os.getpid()))
            elif rule["action"] in ("nan", "set"):
                metrics[rule.get("metric", "loss")] = float(rule.get("value", "nan"))
            elif rule["action"] == "raise":
                done = len(list(marks.glob(f"raise-{key}-{i}-*")))
                if done < rule.get("times", 1):
                    (marks / f"raise-{key}-{i}-{done}").touch()
                    raise RuntimeError(f"injected fault {done + 1} at step {metrics.get('step')} (trial {key})")
        return metrics

    return inject
