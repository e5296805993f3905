"""One row per gradstats trial: its estimator, window width, state and thresholds, the layer summaries
of its statistics at the start and after fine-tuning, its accuracy, and whether it counts.

Rows of the family (``lowbit_core/families/gradstats/run.py``): ``step`` 1 is the start state (``stage``
start), the later steps follow the fine-tuning epochs; ``w_<stat>`` / ``a_<stat>`` hold one value
per quantized layer (forward order). Rules:

- **Estimator label**: the registry's label of the weight estimator with its parameter and unit
  ('window t=0.5·std'); the activation estimator joins the label only where it varies.
- **Width**: the weight estimator's parameter (0: the registry's default) where it has one; NaN for
  estimators without one (nSTE, ApproxSign), which the figures draw as horizontal lines.
- **Layer summaries**: ``snr`` as the mean over layers of log10(SNR) (a geometric mean: SNRs span
  decades); every other statistic as the arithmetic mean over layers; per-layer values are kept for
  the depth figure.
- **Noise floor**: a mean of M batches of pure noise has SNR about 1/M (``stats.batches`` = M), so
  log10 SNR near -log10(M) means the probe resolved no mean gradient in that layer; the figures
  draw that level and the findings name it.
- **Bias-corrected SNR**: the estimate is biased upward by the noise of the mean: E||mean||² =
  ||μ||² + D·var/M, so E[snr] ≈ SNR + 1/M. ``snr_c`` = max(snr − 1/M, 0) per layer, summarized as the
  arithmetic mean over layers (``<stage>.<side>_snr_c``), beside the raw value on the same scale
  (``<stage>.<side>_snr_lin``, the arithmetic mean of the raw snr). Values of different M are not
  comparable (the bias differs), so M is a group key where it varies and a pairing key always.
- **Counts**: a trial counts when its last step is ``1 + cfg.train.epochs`` (every fine-tuning
  epoch reported), its final ``test_acc`` is finite and its status is not ERROR; the others are
  counted in the header, never averaged in.
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd

from lowbit_sweeps.analysis.common.groups import final_rows, seed_column
from lowbit_sweeps.analysis.common.load import failed_trials
from lowbit_core.quant import estimator_registry

EST, PARAM, UNIT = "cfg.quant.weight_estimator", "cfg.quant.weight_param", "cfg.quant.weight_unit"
ACT_EST, ACT_PARAM, ACT_UNIT = "cfg.quant.act_estimator", "cfg.quant.act_param", "cfg.quant.act_unit"
STATE, TAU_W, TAU_A, EPOCHS = "cfg.state.kind", "cfg.quant.threshold", "cfg.quant.act_threshold", "cfg.train.epochs"
LABEL, ACT_LABEL, WIDTH, SEED = "estimator", "act_estimator", "width", "seed"
BATCHES = "stats.batches"
SUMMARIES = ("snr", "cos_ste", "cos_sur", "sign_ste", "sign_sur", "inside", "norm", "var", "param")
STAGES = ("start", "final")


def is_gradstats_sweep(df: pd.DataFrame) -> bool:
    """Whether rows without a plan come from the gradstats family (its per-layer SNR column)."""
    return "w_snr" in df.columns


def summary(values, stat: str, part: slice = slice(None)) -> float:
    """A statistic's summary over the layers ``part`` (all by default): mean log10 for SNR, the mean
    otherwise (NaN layers skipped)."""
    v = np.asarray(values if values is not None else [], dtype=float)[part]
    v = v[np.isfinite(v)]
    if stat == "snr":
        v = np.log10(v[v > 0])
    return float(v.mean()) if v.size else math.nan


def corrected_snr(values, batches: float) -> tuple[float, float]:
    """(mean over layers of the raw snr, mean over layers of max(snr − 1/M, 0)) with M = ``batches``
    (module docstring); NaN without finite layers, and the corrected one NaN without M."""
    v = np.asarray(values if values is not None else [], dtype=float)
    v = v[np.isfinite(v)]
    if not v.size:
        return math.nan, math.nan
    raw = float(v.mean())
    if not (isinstance(batches, (int, float)) and math.isfinite(batches) and batches > 0):
        return raw, math.nan
    return raw, float(np.maximum(v - 1.0 / batches, 0.0).mean())


def _cell(row: pd.Series, col: str, default=None):
    v = row.get(col, default)
    return default if v is None or (isinstance(v, float) and math.isnan(v)) else v


def width_of(name, param) -> float:
    """The estimator's parameter where it has one (0 or null: the default), NaN otherwise."""
    entry = estimator_registry.REGISTRY.get(str(name), None)
    if entry is None or entry.param is None:
        return math.nan
    return float(param) if param not in (None, 0, 0.0) and not pd.isna(param) else float(entry.default)


def _labels(row: pd.Series) -> dict:
    name, param, unit = _cell(row, EST, estimator_registry.REFERENCE), _cell(row, PARAM), _cell(row, UNIT)
    a_name = _cell(row, ACT_EST)
    return {LABEL: estimator_registry.label(name, param, unit), "estimator_name": str(name),
            WIDTH: width_of(name, param), "unit": str(unit or estimator_registry.ABSOLUTE),
            ACT_LABEL: estimator_registry.label(a_name, _cell(row, ACT_PARAM), _cell(row, ACT_UNIT)) if a_name else "–"}


def trial_table(rows: pd.DataFrame, status: pd.DataFrame | None = None) -> pd.DataFrame:
    """One row per trial (module docstring): keys, seed, ``start.<side>_<stat>`` / ``final.<...>``
    layer summaries, ``<stage>.layers.<side>_<stat>`` per-layer arrays, accuracies, ``ok``."""
    seed = seed_column(rows)
    errors = set(failed_trials(status)["trial_key"])
    starts = rows[rows["step"] == 1].drop_duplicates("trial_key").set_index("trial_key")
    out = []
    for _, last in final_rows(rows).iterrows():
        key = last["trial_key"]
        start = starts.loc[key] if key in starts.index else None
        planned = _cell(last, EPOCHS)
        rec = {"trial_key": key, SEED: last.get(seed) if seed else 0, STATE: _cell(last, STATE, "–"),
               TAU_W: float(_cell(last, TAU_W, 0.0)), TAU_A: float(_cell(last, TAU_A, 0.0)), **_labels(last),
               "final_test_acc": float(last.get("test_acc", math.nan)), "last_step": int(last["step"]),
               "start_test_acc": float(start["test_acc"]) if start is not None else math.nan,
               "pretrain_test_acc": float(last.get("pretrain_test_acc", math.nan)),
               BATCHES: float(_cell(last, f"cfg.{BATCHES}", math.nan))}
        for stage, r in (("start", start), ("final", last)):
            for side in ("w", "a"):
                for stat in SUMMARIES:
                    col = f"{side}_{stat}"
                    values = r.get(col) if r is not None and col in r.index else None
                    rec[f"{stage}.{col}"] = summary(values, stat)
                    rec[f"{stage}.layers.{col}"] = np.asarray(values if values is not None else [], dtype=float)
                rec[f"{stage}.{side}_snr_lin"], rec[f"{stage}.{side}_snr_c"] = corrected_snr(
                    rec[f"{stage}.layers.{side}_snr"], rec[BATCHES])
        finished = planned is None or rec["last_step"] == 1 + int(planned)
        rec["ok"] = bool(finished and math.isfinite(rec["final_test_acc"]) and key not in errors)
        rec["outcome"] = "ok" if rec["ok"] else ("failed" if key in errors else "unfinished")
        out.append(rec)
    return pd.DataFrame(out)


def group_keys(trials: pd.DataFrame) -> list[str]:
    """What splits the trials into groups: the estimator label, the state, the thresholds, the
    activation estimator and the number of batches M of the statistics, where each varies (in that order)."""
    keys = [LABEL, STATE, TAU_W, TAU_A, ACT_LABEL, BATCHES]
    return [k for k in keys if k in trials.columns and trials[k].astype(str).nunique() > 1]


__all__ = ["EST", "PARAM", "UNIT", "STATE", "TAU_W", "TAU_A", "LABEL", "ACT_LABEL", "WIDTH", "SEED", "BATCHES", "SUMMARIES",
           "STAGES", "is_gradstats_sweep", "summary", "width_of", "trial_table", "group_keys"]
