"""The SR report's trials: one row per trial with its setting, outcome and final per-set scores.

Rows of the ``sr`` family (``lowbit_core/families/sr/run.py``) carry per test set ``psnr_y.<set>``,
``ssim_y.<set>``, their bicubic baselines ``bicubic_psnr_y.<set>`` / ``bicubic_ssim_y.<set>`` and
``n_images.<set>``; the config columns ``cfg.scale``, ``cfg.quant.bits`` (32 FP, 1 binary, else k-bit)
and ``cfg.quant.parts`` (JSON list of the quantized parts).

- **Setting** of a trial: its bit-width and quantized parts ('FP', '4-bit pams: body+skip', '1-bit
  sign: head'), plus every other varying ``cfg.*`` key except the seed and the scale (the scale
  splits the tables; it is not a treatment).
- **Final** = the trial's last row. A trial is **ok** when it is not ERROR in ``_trials``, reached its
  planned ``cfg.train.epochs`` and has a finite ``psnr_y``; only ok trials enter statistics, the
  others are counted and listed.
"""
from __future__ import annotations

import json
import math

import pandas as pd

from lowbit_sweeps.analysis.common.estimators import label as estimator_label
from lowbit_sweeps.analysis.common.format import fmt_value, group_label, is_null
from lowbit_sweeps.analysis.common.groups import final_rows, seed_column, varying_keys
from lowbit_sweeps.analysis.common.load import error_line, failed_trials, stopped_trials

BITS, PARTS, SCALE, KBIT = "cfg.quant.bits", "cfg.quant.parts", "cfg.scale", "cfg.quant.kbit"
EPOCHS = "cfg.train.epochs"
FP_BITS = 32
SET_METRICS = ("psnr_y", "ssim_y", "bicubic_psnr_y", "bicubic_ssim_y")
SETTING = "setting"
# cfg keys the setting label stands for (with bits and parts); the estimators only where they vary
QUANT_KEYS = (BITS, PARTS, KBIT)
BINARY_KEYS = ("cfg.quant.weight_estimator", "cfg.quant.act_estimator")


def test_sets(df: pd.DataFrame) -> list[str]:
    """The test sets with a measured ``psnr_y.<set>`` in the rows, in column order."""
    prefix = "psnr_y."
    return [c[len(prefix):] for c in df.columns if c.startswith(prefix) and df[c].notna().any()]


def parts_label(parts) -> str:
    """'body+skip' from the JSON list (or a list)."""
    if is_null(parts):
        return "–"
    values = json.loads(parts) if isinstance(parts, str) else list(parts)
    return "+".join(values) or "none"


def bits_label(bits, kbit=None) -> str:
    """'FP', '1-bit sign', '4-bit pams'."""
    if is_null(bits) or int(bits) == FP_BITS:
        return "FP"
    if int(bits) == 1:
        return "1-bit sign"
    return f"{int(bits)}-bit {kbit}" if not is_null(kbit) else f"{int(bits)}-bit"


def setting_of(row, extra_keys: list[str]) -> str:
    """The setting label of one trial (module docstring)."""
    bits = row.get(BITS)
    label = bits_label(bits, row.get(KBIT))
    if label != "FP":
        label += f": {parts_label(row.get(PARTS))}"
        if int(bits) == 1 and any(k in extra_keys for k in BINARY_KEYS):
            label += " (w {}, a {})".format(*(estimator_label(row.get(k)) for k in BINARY_KEYS))
    rest = [k for k in extra_keys if k not in BINARY_KEYS]
    if rest:
        label += " " + group_label(rest, [row.get(k) for k in rest])
    return label


def extra_keys(df: pd.DataFrame) -> list[str]:
    """Varying cfg keys besides seed, scale, bits, parts and k-bit method (they become part of the label)."""
    return [k for k in varying_keys(df) if k not in (SCALE, *QUANT_KEYS)]


def setting_order(trials: pd.DataFrame) -> list[str]:
    """Settings sorted FP first, then by bits (high to low), then by label."""
    first = trials.drop_duplicates(SETTING)
    key = [(-(FP_BITS + 1) if int(b) == FP_BITS else -int(b), s) for b, s in zip(first[BITS], first[SETTING])]
    return [s for _, s in sorted(key)]


def trial_table(rows: pd.DataFrame, status: pd.DataFrame | None) -> pd.DataFrame:
    """One row per trial: the final row's columns, ``setting``, ``bits``, ``outcome`` (ok / failed /
    stopped early / unfinished) and ``reason``. A trial the sweep's scheduler stopped (ASHA on
    ``val_psnr_y``) is "stopped early", not unfinished: it ended as planned; like an unfinished one
    it is left out of the statistics, which compare trials trained for the same epochs."""
    final = final_rows(rows)
    keys = extra_keys(rows)
    failed = failed_trials(status)
    errors = dict(zip(failed["trial_key"], failed.get("error", pd.Series(dtype=str))))
    stopped = stopped_trials(status)
    final[SETTING] = [setting_of(r, keys) for r in final.to_dict("records")]
    final["bits"] = pd.to_numeric(final[BITS], errors="coerce").fillna(FP_BITS).astype(int)
    outcome, reason = [], []
    for r in final.to_dict("records"):
        planned = r.get(EPOCHS)
        psnr = r.get("psnr_y")
        if r["trial_key"] in errors:
            outcome.append("failed")
            reason.append(error_line(errors[r["trial_key"]]))
        elif r["trial_key"] in stopped:
            outcome.append("stopped early")
            reason.append(stopped[r["trial_key"]])
        elif not is_null(planned) and int(r.get("epoch") or 0) < int(planned):
            outcome.append("unfinished")
            reason.append(f"last reported epoch {fmt_value(r.get('epoch'))} of {int(planned)}")
        elif is_null(psnr) or not math.isfinite(float(psnr)):
            outcome.append("failed")
            reason.append("non-finite psnr_y")
        else:
            outcome.append("ok")
            reason.append("")
    final["outcome"], final["reason"] = outcome, reason
    seed = seed_column(rows)
    final["seed_value"] = final[seed] if seed else 0
    return final


def ok_trials(trials: pd.DataFrame) -> pd.DataFrame:
    return trials[trials["outcome"] == "ok"]


def scales(trials: pd.DataFrame) -> list[int]:
    """The scales of the trials, ascending (one, 0, when the column is absent)."""
    if SCALE not in trials.columns:
        return [0]
    return sorted(int(s) for s in trials[SCALE].dropna().unique())


def at_scale(trials: pd.DataFrame, scale: int) -> pd.DataFrame:
    return trials if SCALE not in trials.columns else trials[trials[SCALE].astype(int) == scale]


__all__ = ["BITS", "PARTS", "SCALE", "FP_BITS", "SET_METRICS", "SETTING", "test_sets", "parts_label", "bits_label",
           "setting_of", "extra_keys", "setting_order", "trial_table", "ok_trials", "scales", "at_scale"]
