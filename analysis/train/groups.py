"""The training report's tables: quantizer labels, group keys, one row per trial (with its model
selection) and the per-group table, with the training report's names and number formatting
(accuracies as %, 4-digit numbers).

The lowest of the ``analysis/train`` modules: :mod:`.findings` and :mod:`.figures` import from
it, never the reverse. The rules (groups, final, selection) are in :mod:`analysis.train.report`.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from lowbit_sweeps.analysis.common.estimators import label as estimator_label
from lowbit_sweeps.analysis.common.format import fmt_acc, fmt_mean_std, fmt_value, group_label, is_null, short_names, stat_cells
from lowbit_sweeps.analysis.common.groups import KIND, collapsed_columns, iter_groups, seed_column, varying_keys
from lowbit_sweeps.analysis.common.load import error_line, failed_trials, stopped_trials
from lowbit_sweeps.analysis.common.stats import mean_std_n
from lowbit_core.quant.registry import label as quantizer_label

QUANTIZER = "quantizer"
ACC = "test_acc"
LOSS = "train_loss"
EPOCHS = "cfg.train.epochs"
QUANT_PREFIX = "cfg.quant."
VAL_FRACTION = "cfg.data.val_fraction"
VAL_ACC = "val_acc"
SELECTED, SELECTED_EPOCH = "selected_test_acc", "selected_epoch"
PRETRAIN_PHASE = "pretrain"
OPTIMISTIC = "selected on test: optimistic"
# Per-trial statistics: name -> (column of the trial table, kind of number)
TRIAL_STATS = {
    "final test_acc": ("final_test_acc", "acc"),
    "selected test_acc": (SELECTED, "acc"),
    "selected epoch": (SELECTED_EPOCH, "num"),
    "final train_acc": ("final_train_acc", "acc"),
    "final train_loss": ("final_train_loss", "num"),
    "final test_loss": ("final_test_loss", "num"),
}


# ---- names and formatting ----------------------------------------------------------------------

NAME_OVERRIDES = {"cfg.data.name": "data"}


def names_of(keys: list[str]) -> dict[str, str]:
    """Short names of group keys ('data' for cfg.data.name, else the last dotted part)."""
    return {k: NAME_OVERRIDES.get(k, v) for k, v in short_names(keys).items()}


def label_of(keys: list[str], values) -> str:
    """'data=cifar10 mixup_alpha=1' for one group; 'all trials' without keys."""
    return group_label(keys, values, names_of(keys))


def numeric(value) -> float:
    """``value`` as a float (NaN where it is null or not a number)."""
    return float(pd.to_numeric(pd.Series([value]), errors="coerce").iloc[0])


# ---- the quantizer label -----------------------------------------------------------------------

def quant_parts(row: dict) -> tuple[str, list[tuple[str, str]]]:
    """(head, [(component, text)]) describing how one trial quantizes (only the fields that act);
    estimator and quantizer labels come from their registries."""
    def get(key, default=None):
        v = row.get(f"{QUANT_PREFIX}{key}", default)
        return default if is_null(v) else v

    kind = row.get(KIND)
    kind = "binary" if is_null(kind) else str(kind)
    act = "FP" if get("act", "quant") == "none" else None
    if kind == "fp":
        return "FP", []
    if kind == "binary":
        parts = [("w", estimator_label(get("weight_estimator"), get("weight_param"))),
                 ("scale", str(get("weight_scale", "mean_abs"))),
                 ("tau", fmt_value(get("threshold", 0.0))),
                 ("a", act or estimator_label(get("act_estimator"), get("act_param")))]
        return "binary", parts
    kbit = str(get("kbit", "dorefa"))
    head = f"{quantizer_label(kbit)} {fmt_value(get('bits', 2))}-bit"
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
    parsed = [quant_parts(r) for r in df[cols].astype(object).to_dict("records")]
    by_head: dict[str, list] = {}
    for head, parts in parsed:
        by_head.setdefault(head, []).append(dict(parts))
    shown = {head: {name for name in dicts[0] if len({d.get(name) for d in dicts}) > 1}
             for head, dicts in by_head.items()}
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
    return collapsed_columns(df, QUANTIZER, [c for c in df.columns if c == KIND or c.startswith(QUANT_PREFIX)])


def train_group_keys(df: pd.DataFrame) -> list[str]:
    """The group keys of a training sweep: the quantizer label first (where it varies), then the
    varying cfg.* columns it does not stand for (seed excluded)."""
    keys = varying_keys(df, skip=quantizer_collapsed_columns(df))
    return ([QUANTIZER] if QUANTIZER in df.columns else []) + keys


# ---- one row per trial -------------------------------------------------------------------------

def epoch_column(df: pd.DataFrame) -> str:
    return "epoch" if "epoch" in df.columns else "step"


def selection(t: pd.DataFrame, acc: pd.Series, phase: pd.Series, ep: str) -> dict:
    """The model selection of one trial (rows ``t`` in epoch order; rules in analysis.train.report):
    ``selected_test_acc``, ``selected_epoch``, ``selected_on_test`` and ``selected_outside`` (the
    selected epoch lies outside the trial's last phase, e.g. in FP pretraining: not this model)."""
    last = t.iloc[-1]
    chosen = numeric(last.get(SELECTED))
    if np.isfinite(chosen):
        val = pd.to_numeric(t[VAL_ACC], errors="coerce") if VAL_ACC in t.columns else pd.Series(dtype=float)
        epoch = numeric(last.get(SELECTED_EPOCH))
        at = (pd.to_numeric(t[ep], errors="coerce") == epoch).to_numpy()
        outside = bool(at.any() and (phase[at] != phase.iloc[-1]).any())
        return {SELECTED: np.nan if outside else chosen, SELECTED_EPOCH: np.nan if outside else epoch,
                "selected_on_test": fmt_value(last.get(VAL_FRACTION)) == "0" or not val.notna().any(),
                "selected_outside": outside}
    own = acc[(phase == phase.iloc[-1]).to_numpy()]
    own = own[np.isfinite(own)]
    best = (float(own.max()), int(t.loc[own.idxmax(), ep])) if len(own) else (np.nan, np.nan)
    return {SELECTED: best[0], SELECTED_EPOCH: best[1], "selected_on_test": True, "selected_outside": False}


def outcome(key, last_epoch: int, planned, final_acc: float, final_loss: float, errors: dict,
            stopped: dict | None = None) -> tuple[str, str]:
    """('ok' | 'failed' | 'stopped early' | 'non-finite' | 'incomplete', reason) of one trial;
    ``stopped``: trial key -> reason of the trials the sweep's scheduler stopped early."""
    if key in errors:
        return "failed", error_line(errors[key])
    if stopped and key in stopped:
        return "stopped early", stopped[key].removeprefix("stopped early ")  # "by ASHA at epoch 2 of 10"
    if not (np.isfinite(final_acc) and np.isfinite(final_loss)):
        return "non-finite", f"non-finite {ACC}/{LOSS} at epoch {last_epoch}"
    if not is_null(planned) and last_epoch < int(planned):
        return "incomplete", f"stopped at epoch {last_epoch} of {int(planned)}"
    return "ok", ""


def trial_table(rows: pd.DataFrame, keys: list[str], status: pd.DataFrame | None = None) -> pd.DataFrame:
    """Per trial (sorted by group, seed): its keys, seed, ``last_epoch``, ``outcome`` ('ok', 'failed',
    'non-finite', 'incomplete') with ``reason``, the final metrics, the model selection
    (:func:`selection`), and on the pretrain path ``fp_end_acc`` (the FP model's last test_acc) and
    ``first_quant_acc`` (after the first quantized epoch)."""
    ep = epoch_column(rows)
    failed = failed_trials(status)
    errors = dict(zip(failed["trial_key"], failed["error"].fillna("").astype(str))) if len(failed) else {}
    stopped = stopped_trials(status)
    seed = seed_column(rows)
    out = []
    for key, t in rows.sort_values(["trial_key", ep], kind="stable").groupby("trial_key", sort=False):
        last = t.iloc[-1]
        rec = {"trial_key": key, **{k: last.get(k) for k in keys}}
        if seed:
            rec["seed"] = last.get(seed)
        rec["model_kind"] = last.get(KIND)
        rec["last_epoch"] = int(last[ep])
        rec["planned_epochs"] = last.get(EPOCHS)
        acc = pd.to_numeric(t.get(ACC, pd.Series(np.nan, index=t.index)), errors="coerce")
        rec["final_test_acc"] = acc.iloc[-1]
        rec["outcome"], rec["reason"] = outcome(key, rec["last_epoch"], rec["planned_epochs"], acc.iloc[-1],
                                                numeric(last.get(LOSS, np.nan)), errors, stopped)
        for name in ("train_acc", "train_loss", "test_loss", "dsq_alpha"):
            rec[f"final_{name}"] = numeric(last.get(name, np.nan))
        phase = t["phase"].astype(str) if "phase" in t.columns else pd.Series("", index=t.index)
        rec.update(selection(t, acc, phase, ep))
        pre = (phase == PRETRAIN_PHASE).to_numpy()
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


def selection_note(trials: pd.DataFrame) -> str:
    """How the selected epochs of the finished trials were chosen: on the validation split, or
    on the test set (then 'selected on test: optimistic', with the count where only some were)."""
    good = ok_trials(trials)
    on_test = int(good["selected_on_test"].sum()) if len(good) else 0
    if on_test == 0:
        return "test acc at the best-validation epoch"
    if on_test == len(good):
        return f"test acc at the best-test epoch; {OPTIMISTIC}"
    return f"test acc at the best-validation epoch; {OPTIMISTIC} for {on_test} of {len(good)} trials"


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


def format_group_table(table: pd.DataFrame, keys: list[str], note: str) -> pd.DataFrame:
    """``group_table`` as text cells, the selected column headed with how it was selected (``note``);
    the excluded column only where some trial was excluded, the pretrain-path columns only where
    some group took that path."""
    names = names_of(keys)
    out = pd.DataFrame({names[k]: table[k].map(fmt_value) for k in keys})
    if not keys:
        out["group"] = ["all trials"] * len(table)
    for label, (col, kind) in TRIAL_STATS.items():
        header = f"{label} ({note})" if col == SELECTED else label
        out[header] = stat_cells(table, col, fmt_acc if kind == "acc" else fmt_mean_std)
    if (table["fp_end_acc.n"] > 0).any():
        out["FP test_acc at end of pretraining"] = stat_cells(table, "fp_end_acc", fmt_acc)
        out["after first quantized epoch"] = stat_cells(table, "first_quant_acc", fmt_acc)
    if (table["final_dsq_alpha.n"] > 0).any():
        out["final dsq_alpha"] = stat_cells(table, "final_dsq_alpha", fmt_mean_std)
    if (table["n_excluded"] > 0).any():
        out["excluded"] = [f"{e}/{t}" for e, t in zip(table["n_excluded"], table["n_trials"])]
    return out
