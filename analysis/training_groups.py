"""The training report's tables: quantizer labels, group keys, one row per trial and the per-group
table, with the shared names and number formatting (accuracies as %, 4-digit numbers).

The lowest of the ``analysis/training*`` modules: ``training_findings`` and ``training_figures``
import from it, never the reverse. The rules (groups, final, best) are in ``analysis/training.py``.
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd

from analysis.groups import (KIND, _hashable, fmt_value, group_keys, group_label, iter_groups,
                             seed_column, short_names)
from analysis.load import error_line, failed_trials
from analysis.tables import fmt_mean_std, mean_std_n

QUANTIZER = "quantizer"
ACC = "test_acc"
LOSS = "train_loss"
EPOCHS = "cfg.train.epochs"
QUANT_PREFIX = "cfg.quant."
# Per-trial statistics: name -> (column of the trial table, kind of number)
TRIAL_STATS = {
    "final test_acc": ("final_test_acc", "acc"),
    "best test_acc": ("best_test_acc", "acc"),
    "best epoch": ("best_epoch", "num"),
    "final train_acc": ("final_train_acc", "acc"),
    "final train_loss": ("final_train_loss", "num"),
    "final test_loss": ("final_test_loss", "num"),
}


# ---- names and formatting ----------------------------------------------------------------------

NAME_OVERRIDES = {"cfg.data.name": "data"}


def _names(keys: list[str]) -> dict[str, str]:
    """Short names of group keys ('data' for cfg.data.name, else the last dotted part)."""
    names = short_names(keys)
    return {k: NAME_OVERRIDES.get(k, v) for k, v in names.items()}


def _label(keys: list[str], values) -> str:
    """'data=cifar10 mixup_alpha=1' for one group; 'all trials' without keys."""
    if not keys:
        return group_label(keys, values)
    names = _names(keys)
    return " ".join(f"{names[k]}={fmt_value(v)}" for k, v in zip(keys, values))


def _nan(x) -> bool:
    return x is None or (isinstance(x, (float, np.floating)) and math.isnan(x))


def fmt_percent(mean, std, n: int, unit: str = "%", signed: bool = False) -> str:
    """A fraction in percent, '76.95 ± 1.20% (n=2)' (``signed``: '+2.34 ± 1.20 pp (n=2)' with
    ``unit=" pp"``); std left out for n=1, '–' for n=0."""
    if n == 0 or _nan(mean):
        return "–"
    text = f"{100 * mean:+.2f}" if signed else f"{100 * mean:.2f}"
    if n > 1 and not _nan(std):
        text += f" ± {100 * std:.2f}"
    return f"{text}{unit} (n={n})"


def fmt_acc(mean, std, n: int) -> str:
    """An accuracy (fraction) as '76.95 ± 1.20% (n=2)'."""
    return fmt_percent(mean, std, n)


def _fmt_stat(kind: str, mean, std, n) -> str:
    return (fmt_acc if kind == "acc" else fmt_mean_std)(mean, std, int(n))


def _text(series: pd.Series) -> pd.Series:
    return series.map(fmt_value)


# ---- the quantizer label -----------------------------------------------------------------------

KBIT_NAMES = {"dsq": "DSQ", "dorefa": "DoReFa", "lsq": "LSQ"}


def _estimator_text(name, param) -> str:
    name = "identity" if _nan(name) else str(name)
    if _nan(param) or float(param) == 0.0:
        return name
    letter = {"window": "t", "value_clip": "c"}.get(name, "p")
    return f"{name} {letter}={fmt_value(float(param))}"


def _quant_parts(row: dict) -> tuple[str, list[tuple[str, str]]]:
    """(head, [(component, text)]) describing how one trial quantizes (only the fields that act)."""
    def get(key, default=None):
        v = row.get(f"{QUANT_PREFIX}{key}", default)
        return default if _nan(v) else v

    kind = row.get(KIND)
    kind = "binary" if _nan(kind) else str(kind)
    act = "FP" if get("act", "quant") == "none" else None
    if kind == "fp":
        return "FP", []
    if kind == "binary":
        parts = [("w", _estimator_text(get("weight_estimator"), get("weight_param"))),
                 ("scale", str(get("weight_scale", "mean_abs"))),
                 ("tau", fmt_value(get("threshold", 0.0))),
                 ("a", act or _estimator_text(get("act_estimator"), get("act_param")))]
        return "binary", parts
    kbit = str(get("kbit", "dorefa"))
    head = f"{KBIT_NAMES.get(kbit, kbit)} {fmt_value(get('bits', 2))}-bit"
    parts = [("a", act or "quantized")]
    if kbit == "dsq":
        sched = str(get("dsq_schedule", "learned"))
        a0, a1 = fmt_value(get("dsq_alpha", 0.2)), fmt_value(get("dsq_alpha_min", 1e-3))
        parts += [("alpha", f"learned from {a0}" if sched == "learned" else f"{sched} {a0}→{a1}"),
                  ("fwd", str(get("dsq_train_forward", "soft")))]
    return head, parts


def quantizer_labels(df: pd.DataFrame) -> pd.Series:
    """One label per row; a component is shown only where it differs between trials of that head."""
    cols = [c for c in df.columns if c == KIND or c.startswith(QUANT_PREFIX)]
    records = df[cols].astype(object).to_dict("records")
    parsed = [_quant_parts(r) for r in records]
    shown: dict[str, set] = {}
    by_head: dict[str, list] = {}
    for head, parts in parsed:
        by_head.setdefault(head, []).append(dict(parts))
    for head, dicts in by_head.items():
        shown[head] = {name for name in dicts[0] if len({d.get(name) for d in dicts}) > 1}
    labels = []
    for head, parts in parsed:
        comps = [f"{n}: {t}" for n, t in parts if n in shown[head]]
        labels.append(f"{head} ({', '.join(comps)})" if comps else head)
    return pd.Series(labels, index=df.index, dtype=object)


def add_quantizer_column(df: pd.DataFrame) -> pd.DataFrame:
    """``df`` with a ``quantizer`` label, only when the kind / quant columns vary into several labels."""
    if KIND not in df.columns and not any(c.startswith(QUANT_PREFIX) for c in df.columns):
        return df
    labels = quantizer_labels(df)
    return df.assign(**{QUANTIZER: labels}) if labels.nunique() > 1 else df


def quantizer_collapsed_columns(df: pd.DataFrame) -> list[str]:
    """The kind / quant columns that vary but take one value per quantizer label."""
    if QUANTIZER not in df.columns:
        return []
    cands = [c for c in df.columns if c == KIND or c.startswith(QUANT_PREFIX)]
    by = df.groupby(df[QUANTIZER], sort=False)
    return [c for c in cands if _hashable(df[c]).nunique(dropna=False) > 1
            and all(_hashable(g[c]).nunique(dropna=False) == 1 for _, g in by)]


def train_group_keys(df: pd.DataFrame) -> list[str]:
    """The group keys of a training sweep: the quantizer label first (where it varies), then the
    varying cfg.* columns it does not stand for (seed excluded)."""
    collapsed = quantizer_collapsed_columns(df)
    keys = group_keys(df.drop(columns=collapsed))
    if QUANTIZER in df.columns:
        keys.insert(0, QUANTIZER)
    return keys


# ---- one row per trial -------------------------------------------------------------------------

def epoch_column(df: pd.DataFrame) -> str:
    return "epoch" if "epoch" in df.columns else "step"


def trial_table(rows: pd.DataFrame, keys: list[str], status: pd.DataFrame | None = None) -> pd.DataFrame:
    """Per trial (sorted by group, seed): its keys, seed, ``last_epoch``, ``outcome`` ('ok', 'failed',
    'non-finite', 'incomplete') with ``reason``, the final metrics, ``best_test_acc`` / ``best_epoch``
    over its last phase, and on the pretrain path ``fp_end_acc`` (the FP model's last test_acc) and
    ``first_quant_acc`` (after the first quantized epoch)."""
    ep = epoch_column(rows)
    failed = failed_trials(status)
    errors = dict(zip(failed["trial_key"], failed["error"].fillna("").astype(str))) if len(failed) else {}
    seed = seed_column(rows)
    out = []
    for key, t in rows.sort_values(["trial_key", ep], kind="stable").groupby("trial_key", sort=False):
        last = t.iloc[-1]
        rec = {"trial_key": key, **{k: last.get(k) for k in keys}}
        if seed:
            rec["seed"] = last.get(seed)
        rec["model_kind"] = last.get(KIND)
        rec["last_epoch"] = int(last[ep])
        planned = last.get(EPOCHS)
        rec["planned_epochs"] = planned
        acc = pd.to_numeric(t.get(ACC, pd.Series(np.nan, index=t.index)), errors="coerce")
        final_acc = acc.iloc[-1]
        final_loss = pd.to_numeric(pd.Series([last.get(LOSS, np.nan)]), errors="coerce").iloc[0]
        if key in errors:
            rec["outcome"], rec["reason"] = "failed", error_line(errors[key])
        elif not (np.isfinite(final_acc) and np.isfinite(final_loss)):
            rec["outcome"], rec["reason"] = "non-finite", f"non-finite {ACC}/{LOSS} at epoch {rec['last_epoch']}"
        elif not _nan(planned) and rec["last_epoch"] < int(planned):
            rec["outcome"], rec["reason"] = "incomplete", f"stopped at epoch {rec['last_epoch']} of {int(planned)}"
        else:
            rec["outcome"], rec["reason"] = "ok", ""
        rec["final_test_acc"] = final_acc
        for name in ("train_acc", "train_loss", "test_loss", "dsq_alpha"):
            rec[f"final_{name}"] = pd.to_numeric(pd.Series([last.get(name, np.nan)]), errors="coerce").iloc[0]
        phase = t["phase"].astype(str) if "phase" in t.columns else pd.Series("", index=t.index)
        own = acc[(phase == phase.iloc[-1]).to_numpy()]
        own_ok = own[np.isfinite(own)]
        if len(own_ok):
            rec["best_test_acc"] = float(own_ok.max())
            rec["best_epoch"] = int(t.loc[own_ok.idxmax(), ep])
        else:
            rec["best_test_acc"], rec["best_epoch"] = np.nan, np.nan
        pre = (phase == "pretrain").to_numpy()
        if pre.any() and (~pre).any():
            rec["fp_end_acc"] = float(acc[pre].iloc[-1])
            rec["first_quant_acc"] = float(acc[~pre].iloc[0])
        else:
            rec["fp_end_acc"] = rec["first_quant_acc"] = np.nan
        out.append(rec)
    table = pd.DataFrame(out)
    if table.empty:
        return table
    order = keys + (["seed"] if "seed" in table.columns else [])
    return table.sort_values([*order, "trial_key"] if order else ["trial_key"], kind="stable",
                             key=lambda s: s if pd.api.types.is_numeric_dtype(s) else s.map(fmt_value)).reset_index(drop=True)


def ok_trials(trials: pd.DataFrame) -> pd.DataFrame:
    return trials[trials["outcome"] == "ok"] if len(trials) else trials


# ---- the per-group table -----------------------------------------------------------------------

def group_table(trials: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """Per group: ``<stat>.mean/.std/.n`` over its ok trials for each column of TRIAL_STATS (plus the
    pretrain-path columns where present), ``n_trials`` and ``n_excluded``; sorted by mean final
    test_acc, highest first (groups without a value last)."""
    cols = [c for c, _ in TRIAL_STATS.values()] + ["fp_end_acc", "first_quant_acc", "final_dsq_alpha"]
    rows = []
    for values, sub in iter_groups(trials, keys):
        rec = dict(zip(keys, values))
        good = ok_trials(sub)
        for c in cols:
            rec[f"{c}.mean"], rec[f"{c}.std"], rec[f"{c}.n"] = mean_std_n(good[c] if c in good else [])
        rec["n_trials"], rec["n_excluded"] = len(sub), int((sub["outcome"] != "ok").sum())
        rows.append(rec)
    table = pd.DataFrame(rows)
    if table.empty:
        return table
    return table.sort_values("final_test_acc.mean", ascending=False, na_position="last",
                             kind="stable").reset_index(drop=True)


def format_group_table(table: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """``group_table`` as text cells; the excluded column only where some trial was excluded, the
    pretrain-path columns only where some group took that path."""
    names = _names(keys)
    out = pd.DataFrame({names[k]: table[k].map(fmt_value) for k in keys})
    if not keys:
        out["group"] = ["all trials"] * len(table)
    for label, (col, kind) in TRIAL_STATS.items():
        out[label] = [_fmt_stat(kind, m, s, n) for m, s, n in
                      zip(table[f"{col}.mean"], table[f"{col}.std"], table[f"{col}.n"])]
    if (table["fp_end_acc.n"] > 0).any():
        out["FP test_acc at end of pretraining"] = [fmt_acc(m, s, int(n)) for m, s, n in zip(
            table["fp_end_acc.mean"], table["fp_end_acc.std"], table["fp_end_acc.n"])]
        out["after first quantized epoch"] = [fmt_acc(m, s, int(n)) for m, s, n in zip(
            table["first_quant_acc.mean"], table["first_quant_acc.std"], table["first_quant_acc.n"])]
    if (table["final_dsq_alpha.n"] > 0).any():
        out["final dsq_alpha"] = [fmt_mean_std(m, s, int(n)) for m, s, n in zip(
            table["final_dsq_alpha.mean"], table["final_dsq_alpha.std"], table["final_dsq_alpha.n"])]
    if (table["n_excluded"] > 0).any():
        out["excluded"] = [f"{e}/{t}" for e, t in zip(table["n_excluded"], table["n_trials"])]
    return out
