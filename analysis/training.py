"""The report of a training sweep (the ``train`` family: CIFAR ResNets, one row per epoch).

What a row holds (``lowbit_core/train/loop.py``): ``epoch`` (1-based, equal to ``step``), ``phase``
(``pretrain`` = the FP model of the pretrain path, ``finetune`` = the quantized model after it,
``scratch``), ``train_loss`` / ``train_acc`` (under mixup: the mixed loss and the lambda-weighted
accuracy), ``test_loss`` / ``test_acc``, ``dsq_alpha``, ``perturbed`` (1 on epochs that started with
a weight kick), and the flattened config.

Rules used here, all computed from the rows:

- **Groups** are the ``cfg.*`` columns that vary (seed excluded). ``cfg.model.kind`` and the
  ``cfg.quant.*`` columns collapse into one ``quantizer`` label ('binary (w: window t=0.1)',
  'DSQ 1-bit (alpha: learned)') where they vary, since the family resets the fields that do not act.
- **Final** = the trial's last row; a trial counts in the statistics only when it finished every
  planned epoch (``cfg.train.epochs``) with finite ``test_acc`` and ``train_loss``, and its trial
  status is not ERROR. The others are counted per group and listed, never averaged in.
- **Best** = the highest ``test_acc`` over the epochs of the trial's last phase: on the pretrain path
  the FP model's epochs are excluded (its ``best_test_acc`` column includes them, so it is not used).
  It is selected on the test set, hence optimistic.
- **Paired differences**: for an axis A and value v against a reference r, pairs are trials equal in
  seed and every other group key; the difference is v - r of the metric, over pairs. The reference is
  0 where the axis is numeric and holds 0 (off: scratch, no mixup, no perturbation), else the smallest
  number, ``False`` for booleans, ``default`` where present, otherwise the value with the highest mean
  final test_acc. Axes under ``cfg.data.``, ``cfg.model.arch`` and ``cfg.model.width`` are the
  setting, not a treatment: they split the comparisons but are not compared.
- **Verdicts**: a mean difference is called positive (negative) only with at least two pairs and
  more than one std away from zero; one pair gets no verdict.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib import colormaps
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from analysis.figures import curve_over_seeds, group_colors, kind_of, panel_keys
from analysis.groups import (KIND, _hashable, fmt_value, group_keys, group_label, iter_groups,
                             seed_column, short_names)
from analysis.load import failed_trials
from analysis.tables import fmt, frame_to_markdown, mean_std_n

FAMILY = "train"
QUANTIZER = "quantizer"
ACC = "test_acc"
LOSS = "train_loss"
PRETRAIN = "cfg.train.pretrain_epochs"
EPOCHS = "cfg.train.epochs"
CONTEXT_PREFIXES = ("cfg.data.", "cfg.model.arch", "cfg.model.width")
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
MAX_CELL_LINES = 8
REPORT_NAME = "report.md"
FIGURES = {
    "train_curves": "Test accuracy and train loss vs epoch (mean ± std over seeds)",
    "final_test_acc": "Final test accuracy per group (mean ± std over seeds; dots: single seeds)",
}


# ---- which sweeps ------------------------------------------------------------------------------

def is_train_sweep(df: pd.DataFrame) -> bool:
    """Whether the rows come from the training family (``family`` column, else the epoch metrics)."""
    if "family" in df.columns and df["family"].notna().any():
        return FAMILY in set(df["family"].dropna().astype(str))
    return ACC in df.columns and "epoch" in df.columns


def epoch_column(df: pd.DataFrame) -> str:
    return "epoch" if "epoch" in df.columns else "step"


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


def fmt_acc(mean, std, n: int) -> str:
    """An accuracy (fraction) as '76.95 ± 1.20% (n=2)'; std left out for n=1, '–' for n=0."""
    if n == 0 or _nan(mean):
        return "–"
    text = f"{100 * mean:.2f}"
    if n > 1 and not _nan(std):
        text += f" ± {100 * std:.2f}"
    return f"{text}% (n={n})"


def fmt_pp(mean, std, n: int) -> str:
    """A difference of accuracies in percentage points: '+2.34 ± 1.20 pp (n=2)'."""
    if n == 0 or _nan(mean):
        return "–"
    text = f"{100 * mean:+.2f}"
    if n > 1 and not _nan(std):
        text += f" ± {100 * std:.2f}"
    return f"{text} pp (n={n})"


def fmt_num(mean, std, n: int) -> str:
    """'1.234 ± 0.05 (n=2)' (4 significant digits; a float round-off std of equal values shows as 0)."""
    if n == 0 or _nan(mean):
        return "–"
    text = fmt(mean)
    if n > 1 and not _nan(std):
        text += f" ± {fmt(0.0 if std <= 1e-9 * abs(mean) else std)}"
    return f"{text} (n={n})"


def _fmt_stat(kind: str, mean, std, n) -> str:
    return (fmt_acc if kind == "acc" else fmt_num)(mean, std, int(n))


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
            err = errors[key].strip().splitlines()
            rec["outcome"], rec["reason"] = "failed", (err[-1][:200] if err else "(no message)")
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
        out["final dsq_alpha"] = [fmt_num(m, s, int(n)) for m, s, n in zip(
            table["final_dsq_alpha.mean"], table["final_dsq_alpha.std"], table["final_dsq_alpha.n"])]
    if (table["n_excluded"] > 0).any():
        out["excluded"] = [f"{e}/{t}" for e, t in zip(table["n_excluded"], table["n_trials"])]
    return out


# ---- paired differences ------------------------------------------------------------------------

def comparison_axes(keys: list[str]) -> list[str]:
    """The group keys that are compared (the setting keys -- data, arch, width -- only split)."""
    return [k for k in keys if not k.startswith(CONTEXT_PREFIXES)]


def reference_value(trials: pd.DataFrame, axis: str):
    """The value of ``axis`` the others are compared against (rules in the module docstring)."""
    values = [v for v in trials[axis].dropna().unique()]
    if not values:
        return None
    if all(isinstance(v, (bool, np.bool_)) for v in values):
        return False if False in values else values[0]
    num = pd.to_numeric(pd.Series(values, dtype=object), errors="coerce")
    if num.notna().all():
        return values[int(np.argmin(np.abs(num.to_numpy()) if (num == 0).any() else num.to_numpy()))]
    if "default" in map(str, values):
        return next(v for v in values if str(v) == "default")
    good = ok_trials(trials)
    means = {v: mean_std_n(good.loc[good[axis] == v, "final_test_acc"])[0] for v in values}
    ranked = sorted(values, key=lambda v: (-(means[v] if not _nan(means[v]) else -math.inf), str(v)))
    return ranked[0]


def _text(series: pd.Series) -> pd.Series:
    return series.map(fmt_value)


def paired_differences(trials: pd.DataFrame, keys: list[str], axis: str, value, reference,
                       metric: str = "final_test_acc") -> pd.DataFrame:
    """Pairs of ok trials with ``axis == value`` and ``axis == reference``, equal in seed and the
    other keys: columns ``<other keys>``, ``seed``, ``value``, ``reference_value``, ``diff``."""
    others = [k for k in keys if k != axis]
    on = others + (["seed"] if "seed" in trials.columns else [])
    good = ok_trials(trials)
    cols = [f"_m:{k}" for k in on]

    def side(v, name):
        sub = good[_text(good[axis]) == fmt_value(v)]
        frame = pd.DataFrame({f"_m:{k}": _text(sub[k]) for k in on}, index=sub.index)
        frame[name] = pd.to_numeric(sub[metric], errors="coerce")
        for k in on:
            frame[k] = sub[k]
        return frame

    a, b = side(value, "value"), side(reference, "reference_value").drop(columns=on)
    pairs = a.merge(b, on=cols, how="inner") if cols else a.merge(b, how="cross")
    pairs = pairs.dropna(subset=["value", "reference_value"])
    pairs["diff"] = pairs["value"] - pairs["reference_value"]
    return pairs.drop(columns=cols).reset_index(drop=True)


def comparisons(trials: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """Every (axis, value vs reference) comparison, pooled over the other keys (``cell`` = 'pooled')
    and per cell of the other keys: paired difference of final and of best test_acc
    (``final.mean/.std/.n``, ``best.mean/...``) and ``n_positive`` (pairs with final diff > 0)."""
    rows = []
    if trials.empty or "outcome" not in trials.columns:
        return pd.DataFrame()
    for axis in comparison_axes(keys):
        if trials[axis].nunique() < 2:
            continue
        ref = reference_value(trials, axis)
        others = [k for k in keys if k != axis]
        for value in sorted(trials[axis].dropna().unique(), key=lambda v: (str(type(v)), v)):
            if fmt_value(value) == fmt_value(ref):
                continue
            final = paired_differences(trials, keys, axis, value, ref, "final_test_acc")
            best = paired_differences(trials, keys, axis, value, ref, "best_test_acc")
            cells = [("pooled", (), final, best)]
            if others and len(final):
                for cvals, sub in iter_groups(final, others):
                    sel = dict(zip(others, cvals))
                    bsub = best
                    for k, v in sel.items():
                        bsub = bsub[_text(bsub[k]) == fmt_value(v)]
                    cells.append((_label(others, cvals), cvals, sub, bsub))
            for cell, cvals, f, b in cells:
                rec = {"axis": axis, "value": value, "reference": ref, "cell": cell}
                rec.update(dict(zip(others, cvals)) if cvals else {})
                rec["final.mean"], rec["final.std"], rec["final.n"] = mean_std_n(f["diff"])
                rec["best.mean"], rec["best.std"], rec["best.n"] = mean_std_n(b["diff"])
                rec["n_positive"] = int((f["diff"] > 0).sum())
                rows.append(rec)
    return pd.DataFrame(rows)


def format_comparisons(table: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    names = _names(keys)
    return pd.DataFrame({
        "axis": table["axis"].map(lambda a: names.get(a, a)),
        "value − reference": [f"{fmt_value(v)} − {fmt_value(r)}" for v, r in zip(table["value"], table["reference"])],
        "paired on seed and": [f"pooled over {', '.join(_names(keys)[k] for k in keys if k != a)}"
                               if c == "pooled" and len(keys) > 1 else ("–" if c == "pooled" else c)
                               for a, c in zip(table["axis"], table["cell"])],
        "Δ final test_acc": [fmt_pp(m, s, int(n)) for m, s, n in zip(table["final.mean"], table["final.std"], table["final.n"])],
        "Δ best test_acc": [fmt_pp(m, s, int(n)) for m, s, n in zip(table["best.mean"], table["best.std"], table["best.n"])],
        "pairs with Δ final > 0": [f"{p}/{int(n)}" for p, n in zip(table["n_positive"], table["final.n"])],
    })


# ---- findings ----------------------------------------------------------------------------------

def verdict(mean: float, std: float, n: int, positive: str, negative: str) -> str:
    """The one-std rule, with at least two pairs: '<positive> by more than one std' when the mean
    difference is above one std, '<negative> ...' below minus one std; no verdict from one pair."""
    if n == 0:
        return "no pairs"
    if n == 1:
        return "a single pair: no spread estimate, no verdict"
    s = 0.0 if _nan(std) else std
    if mean - s > 0:
        return f"{positive} by more than one std"
    if mean + s < 0:
        return f"{negative} by more than one std"
    return "no clear difference (within one std)"


def _axis_text(axis: str, value, keys: list[str], trials: pd.DataFrame) -> str:
    name = _names(keys).get(axis, axis)
    if axis == PRETRAIN:
        if fmt_value(value) == "0":
            return "binary from scratch (pretrain_epochs=0)"
        total = trials["planned_epochs"].dropna().unique() if "planned_epochs" in trials.columns else []
        tot = f" + {fmt_value(int(total[0]) - int(value))} quantized" if len(total) == 1 else ""
        return f"FP pretrain (pretrain_epochs={fmt_value(value)}{tot})"
    return f"{name}={fmt_value(value)}"


def comparison_lines(table: pd.DataFrame, keys: list[str], trials: pd.DataFrame) -> list[str]:
    lines = []
    if table.empty:
        return lines
    for (axis, value), rows in table.groupby(["axis", table["value"].map(fmt_value)], sort=False):
        pooled = rows[rows["cell"] == "pooled"].iloc[0]
        v_text = _axis_text(axis, pooled["value"], keys, trials)
        r_text = _axis_text(axis, pooled["reference"], keys, trials)
        m, s, n = pooled["final.mean"], pooled["final.std"], int(pooled["final.n"])
        others = [_names(keys)[k] for k in keys if k != axis]
        on = ", ".join(["seed", *others]) + ("; pooled over all cells" if others else "")
        if n == 0:
            lines.append(f"{v_text} vs {r_text}: no pairs of finished trials with equal {on}.")
            continue
        lines.append(f"{v_text} − {r_text} (pairs equal in {on}): Δ final test_acc = {fmt_pp(m, s, n)}; "
                     f"Δ > 0 in {int(pooled['n_positive'])}/{n} pairs; "
                     f"{verdict(m, s, n, f'{v_text} higher', f'{r_text} higher')}.")
        cells = rows[rows["cell"] != "pooled"]
        if len(cells) > 1:
            for _, c in cells.head(MAX_CELL_LINES).iterrows():
                cm, cs, cn = c["final.mean"], c["final.std"], int(c["final.n"])
                lines.append(f"  {c['cell']}: {fmt_pp(cm, cs, cn)}; {verdict(cm, cs, cn, 'higher', 'lower')}.")
            if len(cells) > MAX_CELL_LINES:
                lines.append(f"  … {len(cells) - MAX_CELL_LINES} more cells in the paired-differences table.")
    return lines


def pretrain_lines(table: pd.DataFrame, keys: list[str]) -> list[str]:
    """For groups on the pretrain path: the FP model's accuracy before binarization, right after the
    first quantized epoch, and at the end."""
    if table.empty or not (table["fp_end_acc.n"] > 0).any():
        return []
    lines = []
    for _, r in table[table["fp_end_acc.n"] > 0].iterrows():
        label = _label(keys, [r[k] for k in keys])
        lines.append(f"Pretrain path ({label}): FP test_acc at the end of pretraining "
                     f"{fmt_acc(r['fp_end_acc.mean'], r['fp_end_acc.std'], int(r['fp_end_acc.n']))}, "
                     f"after the first quantized epoch "
                     f"{fmt_acc(r['first_quant_acc.mean'], r['first_quant_acc.std'], int(r['first_quant_acc.n']))}, "
                     f"final {fmt_acc(r['final_test_acc.mean'], r['final_test_acc.std'], int(r['final_test_acc.n']))}.")
    return lines


def dsq_alpha_lines(table: pd.DataFrame, keys: list[str]) -> list[str]:
    """For groups with a DSQ alpha: its final value next to the final train/test accuracy (DSQ trains
    with the soft quantizer and evaluates with the hard one; a large alpha leaves them apart)."""
    if table.empty or not (table["final_dsq_alpha.n"] > 0).any():
        return []
    lines = []
    for _, r in table[table["final_dsq_alpha.n"] > 0].iterrows():
        gap = r["final_train_acc.mean"] - r["final_test_acc.mean"]
        lines.append(f"DSQ ({_label(keys, [r[k] for k in keys])}): final alpha "
                     f"{fmt_num(r['final_dsq_alpha.mean'], r['final_dsq_alpha.std'], int(r['final_dsq_alpha.n']))}; "
                     "mean final train_acc (training forward) − test_acc (hard quantizer at evaluation) = "
                     + ("–" if _nan(gap) else f"{100 * gap:+.2f} pp") + ".")
    return lines


def _bits_of(label: str, trials: pd.DataFrame) -> int | None:
    sub = trials[trials[QUANTIZER] == label]
    kind = str(sub[KIND].iloc[0]) if KIND in sub.columns and len(sub) else ""
    if kind == "binary":
        return 1
    if kind == "kbit" and "cfg.quant.bits" in sub.columns:
        return int(sub["cfg.quant.bits"].iloc[0])
    return None


def dsq_lines(trials: pd.DataFrame, rows: pd.DataFrame, keys: list[str]) -> list[str]:
    """Per bit width holding DSQ and a non-DSQ quantizer: the best DSQ label against the best
    STE baseline (highest mean final test_acc each, chosen on these runs), paired."""
    if QUANTIZER not in keys or "cfg.quant.kbit" not in rows.columns:
        return []
    info = rows.drop_duplicates("trial_key").set_index("trial_key")
    t = trials.join(info[[c for c in (KIND, "cfg.quant.kbit", "cfg.quant.bits")
                          if c in info.columns and c not in trials.columns]], on="trial_key")
    good = ok_trials(t)
    lines = []
    labels = list(dict.fromkeys(t[QUANTIZER]))
    bits = {lab: _bits_of(lab, t) for lab in labels}
    is_dsq = {lab: bool(((t[QUANTIZER] == lab) & (t[KIND].astype(str) == "kbit")
                         & (t["cfg.quant.kbit"].astype(str) == "dsq")).any()) for lab in labels}
    for b in sorted({v for v in bits.values() if v is not None}):
        dsq = [lab for lab in labels if bits[lab] == b and is_dsq[lab]]
        base = [lab for lab in labels if bits[lab] == b and not is_dsq[lab]]
        if not dsq or not base:
            continue

        def best(cands):
            means = {c: mean_std_n(good.loc[good[QUANTIZER] == c, "final_test_acc"])[0] for c in cands}
            return max(cands, key=lambda c: -math.inf if _nan(means[c]) else means[c])

        d, s = best(dsq), best(base)
        pairs = paired_differences(trials, keys, QUANTIZER, d, s)
        m, sd, n = mean_std_n(pairs["diff"])
        lines.append(f"{b} bit: best DSQ ({d}) − best STE baseline ({s}), each chosen by mean final test_acc "
                     f"on these runs: Δ final test_acc = {fmt_pp(m, sd, n)}; {verdict(m, sd, n, 'DSQ higher', 'the baseline higher')}.")
    return lines


def train_findings(trials: pd.DataFrame, table: pd.DataFrame, comp: pd.DataFrame, keys: list[str],
                   rows: pd.DataFrame, failed_without_rows: pd.DataFrame) -> list[str]:
    lines = []
    n_all = len(trials) + len(failed_without_rows)
    excluded = trials[trials["outcome"] != "ok"] if len(trials) else trials
    if len(excluded) or len(failed_without_rows):
        counts = excluded["outcome"].value_counts() if len(excluded) else pd.Series(dtype=int)
        parts = [f"{k}: {int(counts.get(k, 0))}" for k in ("failed", "non-finite", "incomplete") if counts.get(k, 0)]
        if len(failed_without_rows):
            parts.append(f"failed before reporting an epoch: {len(failed_without_rows)}")
        lines.append(f"**Excluded from all statistics: {len(excluded) + len(failed_without_rows)} of {n_all} trials** "
                     f"({'; '.join(parts)}); the 'excluded' column of the table says where.")
        for _, r in excluded.head(5).iterrows():
            lines.append(f"  `{r['trial_key']}` ({_label(keys, [r[k] for k in keys])}, "
                         f"seed {fmt_value(r.get('seed'))}): {r['outcome']}, {r['reason']}")
    else:
        epochs = ", ".join(sorted({str(int(v)) for v in trials["last_epoch"]})) if len(trials) else "–"
        lines.append(f"All {n_all} trials finished every planned epoch ({epochs}) with finite metrics.")
    if table.empty:
        return lines
    max_n = int(table["final_test_acc.n"].max())
    if max_n <= 1:
        lines.append("One seed per group: no seed-to-seed spread. Per-cell differences below are single runs "
                     "(no verdict); pooled ones vary over the cells of the other keys, not over seeds.")
    ranked = table[table["final_test_acc.n"] > 0]
    if len(ranked) >= 2:
        top, low = ranked.iloc[0], ranked.iloc[-1]
        lines.append(f"Highest mean final test_acc: {_label(keys, [top[k] for k in keys])} → "
                     f"{fmt_acc(top['final_test_acc.mean'], top['final_test_acc.std'], int(top['final_test_acc.n']))}; "
                     f"lowest: {_label(keys, [low[k] for k in keys])} → "
                     f"{fmt_acc(low['final_test_acc.mean'], low['final_test_acc.std'], int(low['final_test_acc.n']))}.")
    elif len(ranked) == 1 and not keys:
        r = ranked.iloc[0]
        lines.append(f"One configuration group (no axis varies but the seed): final test_acc "
                     f"{fmt_acc(r['final_test_acc.mean'], r['final_test_acc.std'], int(r['final_test_acc.n']))}; "
                     f"nothing to compare.")
    lines += comparison_lines(comp, keys, trials)
    lines += dsq_lines(trials, rows, keys)
    lines += pretrain_lines(table, keys)
    lines += dsq_alpha_lines(table, keys)
    return lines


# ---- figures -----------------------------------------------------------------------------------

def _kind_for(values, keys, group_trials: pd.DataFrame) -> str:
    """The model kind of a group (FP red, binary blue, k-bit green tones)."""
    kind = kind_of(keys, values)
    if kind == "" and "model_kind" in group_trials.columns and group_trials["model_kind"].nunique() == 1:
        kind = str(group_trials["model_kind"].iloc[0])
    if kind == "" and QUANTIZER in keys:
        lab = str(values[keys.index(QUANTIZER)])
        kind = "fp" if lab == "FP" else ("binary" if lab.startswith("binary") else "kbit")
    return kind


def line_colors(kinds: list[str]) -> list:
    """Colours for groups of the given model kinds: the kind's colour family (FP red, binary blue,
    k-bit green) where kinds differ; a qualitative palette where all share one kind (shades of one
    colour would be hard to tell apart, and the kind carries no information then)."""
    if len(set(kinds)) > 1:
        return group_colors(kinds)
    cmap = colormaps["tab10" if len(kinds) <= 10 else "tab20"]
    return [cmap(i % cmap.N) for i in range(len(kinds))]


def plot_curves(rows: pd.DataFrame, trials: pd.DataFrame, keys: list[str], path: Path) -> Path | None:
    """Per panel (split by the keys with fewest values when there are many lines) and metric (test_acc,
    train_loss, dsq_alpha where present): mean over the group's finished trials per epoch, ± std band;
    dashed on the FP pretraining epochs; triangles on epochs that began with a weight perturbation;
    excluded trials as thin dotted lines."""
    ep = epoch_column(rows)
    metrics = [m for m in (ACC, LOSS, "dsq_alpha") if m in rows.columns and rows[m].notna().any()]
    if not metrics or trials.empty:
        return None
    split = panel_keys(trials, keys)
    line_keys = [k for k in keys if k not in split]
    panels = list(iter_groups(trials, split)) if split else [((), trials)]
    n_rows, n_cols = len(panels), len(metrics)
    fig = Figure(figsize=(5.2 * n_cols, 3.8 * n_rows))
    FigureCanvasAgg(fig)
    axes = []
    for r, (pvals, ptrials) in enumerate(panels):
        groups = list(iter_groups(ptrials, line_keys))
        colors = line_colors([_kind_for(v, line_keys, g) for v, g in groups])
        for c, metric in enumerate(metrics):
            ax = fig.add_subplot(n_rows, n_cols, r * n_cols + c + 1)
            axes.append(ax)
            for (values, g), color in zip(groups, colors):
                label = _label(line_keys, values)
                good = rows[rows["trial_key"].isin(g.loc[g["outcome"] == "ok", "trial_key"])]
                curve = curve_over_seeds(good, ep, metric)
                if len(curve):
                    x, y = curve[ep].to_numpy(float), curve["mean"].to_numpy(float)
                    band = curve["std"].fillna(0.0).to_numpy(float)
                    pre = good.groupby(ep)["phase"].agg(lambda s: (s.astype(str) == "pretrain").all()) \
                        if "phase" in good.columns else pd.Series(False, index=curve[ep])
                    pre = pre.reindex(curve[ep]).fillna(False).to_numpy(bool)
                    if pre.any() and (~pre).any():
                        cut = int(np.argmax(~pre))  # first quantized epoch
                        ax.plot(x[:cut + 1], y[:cut + 1], color=color, ls="--")
                        ax.plot(x[cut:], y[cut:], color=color, label=label)
                    else:
                        ax.plot(x, y, color=color, ls="--" if pre.all() else "-", label=label)
                    ax.fill_between(x, y - band, y + band, color=color, alpha=0.18, lw=0)
                    if metric == ACC and "perturbed" in good.columns:
                        kicked = good.loc[pd.to_numeric(good["perturbed"], errors="coerce") > 0, ep].unique()
                        at = np.isin(x, kicked)
                        if at.any():
                            ax.plot(x[at], y[at], ls="", marker="v", ms=5, color=color)
                for key in g.loc[g["outcome"] != "ok", "trial_key"]:
                    t = rows[rows["trial_key"] == key].sort_values(ep)
                    ax.plot(t[ep], pd.to_numeric(t[metric], errors="coerce"), color=color, ls=":", lw=1.0)
                    fin = t[np.isfinite(pd.to_numeric(t[metric], errors="coerce"))]
                    if len(fin):
                        ax.plot(fin[ep].iloc[-1:], pd.to_numeric(fin[metric]).iloc[-1:], marker="x", color=color)
            ax.set_xlabel("epoch")
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            mixed = "cfg.train.mixup_alpha" in rows.columns and (
                pd.to_numeric(rows["cfg.train.mixup_alpha"], errors="coerce") > 0).any()
            ax.set_ylabel({ACC: "test accuracy", LOSS: "train loss" + (" (mixup: on mixed batches)" if mixed else ""),
                           "dsq_alpha": "DSQ alpha (mean over layers)"}.get(metric, metric), fontsize="small")
            if metric == ACC:
                ax.set_ylim(0, 1.0)
            title = _label(split, pvals) if split else ""
            ax.set_title(" ".join(filter(None, [title, metric])), fontsize="medium")
    handles, labels = [], []
    for ax in axes:
        for h, lab in zip(*ax.get_legend_handles_labels()):
            if lab not in labels:
                handles.append(h)
                labels.append(lab)
    notes = ["lines: mean over finished seeds; band: ± 1 std"]
    if "phase" in rows.columns and (rows["phase"].astype(str) == "pretrain").any():
        notes.append("dashed: FP pretraining epochs")
    if "perturbed" in rows.columns and (pd.to_numeric(rows["perturbed"], errors="coerce") > 0).any():
        notes.append("▼: epoch began with a weight perturbation")
    if (trials["outcome"] != "ok").any():
        notes.append("dotted (x at the last finite point): excluded trials")
    fig.suptitle("; ".join(notes), fontsize="small", y=1.0)
    axes[n_cols - 1].legend(handles, labels, title=", ".join(_names(line_keys).values()) or None,
                            fontsize="small", title_fontsize="small", loc="upper left", bbox_to_anchor=(1.02, 1.0))
    fig.tight_layout()
    fig.savefig(path, dpi=110, bbox_inches="tight")
    return path


def plot_final(trials: pd.DataFrame, table: pd.DataFrame, keys: list[str], path: Path) -> Path | None:
    """Horizontal dot plot: one row per group (sorted as the table), mean ± std of the final
    test_acc over the finished seeds, and each seed's value as a small dot."""
    if table.empty or not (table["final_test_acc.n"] > 0).any():
        return None
    t = table[table["final_test_acc.n"] > 0].iloc[::-1].reset_index(drop=True)
    fig = Figure(figsize=(7.5, 1.2 + 0.42 * len(t)))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    good = ok_trials(trials)
    kinds = []
    for _, r in t.iterrows():
        values = tuple(r[k] for k in keys)
        sel = trials
        for k, v in zip(keys, values):
            sel = sel[_text(sel[k]) == fmt_value(v)]
        kinds.append(_kind_for(values, keys, sel))
    colors = line_colors(kinds)
    for i, (_, r) in enumerate(t.iterrows()):
        sel = good
        for k in keys:
            sel = sel[_text(sel[k]) == fmt_value(r[k])]
        ax.plot(100 * sel["final_test_acc"], np.full(len(sel), i), ls="", marker="o", ms=3.5,
                color=colors[i], alpha=0.6)
        ax.errorbar([100 * r["final_test_acc.mean"]], [i], xerr=[100 * (0.0 if _nan(r["final_test_acc.std"])
                                                                        else r["final_test_acc.std"])],
                    fmt="D", color=colors[i], ms=6, capsize=4)
    ax.set_yticks(range(len(t)), [_label(keys, [r[k] for k in keys]) for _, r in t.iterrows()],
                  fontsize="small")
    ax.set_xlabel("final test accuracy [%]")
    ax.set_ylim(-0.6, len(t) - 0.4)
    ax.grid(axis="x", alpha=0.3)
    ax.set_title("final test_acc (diamond: mean ± std over finished seeds; dots: seeds)", fontsize="medium")
    fig.tight_layout()
    fig.savefig(path, dpi=110, bbox_inches="tight")
    return path


# ---- the report --------------------------------------------------------------------------------

def _distinct(df: pd.DataFrame, col: str) -> list[str]:
    if col not in df.columns:
        return []
    return [fmt_value(v) for v in sorted(df[col].dropna().unique(), key=str)]


class TrainAnalysis:
    """Everything a training sweep's report shows, computed once from the rows and trial statuses."""

    def __init__(self, df: pd.DataFrame, status: pd.DataFrame | None = None):
        self.rows = add_quantizer_column(df)
        self.keys = train_group_keys(self.rows)
        self.trials = trial_table(self.rows, self.keys, status)
        failed = failed_trials(status)
        self.failed_without_rows = failed[~failed["trial_key"].isin(set(self.rows["trial_key"]))]
        self.table = group_table(self.trials, self.keys)
        self.comparisons = comparisons(self.trials, self.keys)
        self.findings = train_findings(self.trials, self.table, self.comparisons, self.keys, self.rows,
                                       self.failed_without_rows)

    def make_figures(self, out_dir: Path) -> list[Path]:
        drawn = [plot_curves(self.rows, self.trials, self.keys, out_dir / "train_curves.png"),
                 plot_final(self.trials, self.table, self.keys, out_dir / "final_test_acc.png")]
        return [p for p in drawn if p is not None]

    def header(self) -> list[str]:
        df = self.rows
        seed = seed_column(df)
        facts = [
            ("family", ", ".join(_distinct(df, "family")) or "–"),
            ("trials", str(df["trial_key"].nunique() + len(self.failed_without_rows))),
            ("rows", f"{len(df)} (one per epoch)"),
            ("seeds", f"{df[seed].nunique()} ({', '.join(_distinct(df, seed))})" if seed else "–"),
            ("epochs", ", ".join(_distinct(df, EPOCHS)) or "–"),
            ("data", ", ".join(f"{d} (n_train {'all' if n == '0' else n})" for d, n in
                               df[["cfg.data.name", "cfg.data.n_train"]].drop_duplicates().astype(str).itertuples(index=False))
             if {"cfg.data.name", "cfg.data.n_train"} <= set(df.columns) else "–"),
            ("runs", ", ".join(_distinct(df, "run_id")) or "–"),
            ("git sha", ", ".join(_distinct(df, "git_sha")) or "–"),
            ("lowbit_sweeps version", ", ".join(_distinct(df, "ver.lowbit_sweeps")) or "–"),
            ("devices", ", ".join(_distinct(df, "device")) or "–"),
            ("group keys", ", ".join(self.keys) or "none (one group)"),
        ]
        if QUANTIZER in self.keys:
            facts.append(("quantizer label stands for", ", ".join(quantizer_collapsed_columns(df)) or "–"))
        if "time" in df.columns and df["time"].notna().any():
            facts.append(("time", f"{df['time'].min()} … {df['time'].max()}"))
        lines = [f"# Sweep report: {', '.join(_distinct(df, 'sweep')) or '(unnamed sweep)'}", ""]
        lines += [f"- **{k}**: {v}" for k, v in facts]
        n_failed = int((self.trials["outcome"] == "failed").sum()) + len(self.failed_without_rows)
        if n_failed:
            lines.append(f"- **n failed: {n_failed}** trial(s) ended in ERROR")
            for _, r in self.failed_without_rows.head(5).iterrows():
                err = str(r.get("error", "") or "").strip().splitlines()
                lines.append(f"  - `{r['trial_key']}` (no rows): {err[-1][:200] if err else '(no message)'}")
        return lines + [""]

    def markdown(self, paths: list[Path]) -> str:
        out = self.header() + ["## Findings", ""]
        for line in self.findings:
            out.append(("  - " + line.strip()) if line.startswith("  ") else f"- {line}")
        out.append("")
        if not self.table.empty:
            out += ["## Final and best test accuracy per group (mean ± std over seeds, sorted)", "",
                    "Final: the last epoch (equal for every trial of a group). Best: the highest test_acc over "
                    "the epochs of the trial's last phase (the pretrain path's FP epochs excluded), selected on "
                    "the test set, hence optimistic. Only trials that finished every epoch with finite metrics "
                    "count; std is the sample std (ddof=1), left out for n=1; n counts seeds."
                    + (" Under mixup train_loss/train_acc are on mixed batches." if self._mixup() else ""), "",
                    frame_to_markdown(format_group_table(self.table, self.keys)), ""]
        if not self.comparisons.empty:
            out += ["## Paired differences", "",
                    "Value minus reference of final (and best) test_acc over pairs of finished trials equal in "
                    "seed and every other group key; Δ in percentage points. Reference: 0 (off) for numeric "
                    "axes that include it, else the smallest value; for categorical axes `default` or the "
                    "group with the highest mean final test_acc. Data/arch/width axes only split.", "",
                    frame_to_markdown(format_comparisons(self.comparisons, self.keys)), ""]
        if paths:
            out += ["## Figures", ""]
            for p in paths:
                out += [f"### {FIGURES.get(p.stem, p.stem)}", "", f"![{p.stem}]({p.name})", ""]
        return "\n".join(out).rstrip() + "\n"

    def _mixup(self) -> bool:
        col = "cfg.train.mixup_alpha"
        return col in self.rows.columns and (pd.to_numeric(self.rows[col], errors="coerce") > 0).any()


def write_train_report(df: pd.DataFrame, status: pd.DataFrame | None, out_dir: str | Path) -> list[Path]:
    """Compute the analysis, write the figures and report.md into ``out_dir``; return the paths."""
    out_dir = Path(out_dir)
    analysis = TrainAnalysis(df, status)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = analysis.make_figures(out_dir)
    report = out_dir / REPORT_NAME
    report.write_text(analysis.markdown(paths), encoding="utf-8")
    return [report, *paths]
