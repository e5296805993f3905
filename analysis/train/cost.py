"""The training report's cost part: each trial's cost columns (lowbit_core.cost: MACs, BOPs, OPs,
parameter bits, energy ESTIMATE; conventions in :mod:`lowbit_core.cost.columns`), the points of
the accuracy-vs-cost fronts, and the per-model summary and per-layer tables.

A model is what one distinct ``cost_layers`` cell describes (architecture, width, bits, classes);
several groups can share one (e.g. two estimators of the same binary network).
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from lowbit_sweeps.analysis.common.format import fmt_value, is_null, markdown_table
from lowbit_sweeps.analysis.common.fronts import pareto_front
from lowbit_sweeps.analysis.common.groups import KIND, rows_matching
from lowbit_sweeps.analysis.train.groups import QUANTIZER, label_of, ok_trials
from lowbit_core.cost.columns import COST_METRICS, LAYER_COLUMNS, read_layers, si

LAYERS = "cost_layers"
TOTALS = [c for c in COST_METRICS if c != LAYERS]
FP_BITS = 32
BITS = "weight_bits"
FRONT_AXES = {"ops": "OPs per inference (BOPs/64 + FP MACs)", "param_bits": "parameter bits"}
ENERGY_NOTE = ("energy: an ESTIMATE from the Horowitz ISSCC 2014 45 nm per-operation table "
               "(lowbit_core/cost/energy.py), not a measurement")


def has_cost(rows: pd.DataFrame) -> bool:
    """Whether the rows carry the cost columns (folders from before them do not)."""
    return {"ops", "param_bits"} <= set(rows.columns) and rows["ops"].notna().any()


def weight_bits(kind, bits) -> int | None:
    """The bit-width of a trial's quantized weights (and activations): 32 for ``fp``, 1 for ``binary``,
    ``cfg.quant.bits`` for ``kbit``; None when the kind is unknown."""
    kind = "binary" if is_null(kind) else str(kind)
    if kind == "fp":
        return FP_BITS
    if kind == "binary":
        return 1
    return int(bits) if kind == "kbit" and not is_null(bits) else None


def with_costs(trials: pd.DataFrame, rows: pd.DataFrame) -> pd.DataFrame:
    """``trials`` with each trial's cost columns (its last row's) and ``weight_bits``."""
    cols = [c for c in COST_METRICS if c in rows.columns]
    last = rows.sort_values(["trial_key", "step"], kind="stable").groupby("trial_key", sort=False).tail(1)
    extra = last.set_index("trial_key")[cols]
    info = last.set_index("trial_key")
    bits = [weight_bits(info.at[k, KIND] if KIND in info.columns else None,
                        info.at[k, "cfg.quant.bits"] if "cfg.quant.bits" in info.columns else None)
            for k in info.index]
    extra = extra.assign(**{BITS: pd.Series(bits, index=info.index, dtype=object)})
    return trials.drop(columns=[c for c in extra.columns if c in trials.columns]).join(extra, on="trial_key")


def series_key(keys: list[str]) -> str | None:
    """The key whose values make the fronts' lines: the quantizer label (one line per bit-width or
    quantizer), else the model kind; None when neither varies."""
    return next((k for k in (QUANTIZER, KIND) if k in keys), None)


def front_points(trials: pd.DataFrame, table: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """One point per group with a finished trial: ``series``, ``label`` (the other keys' values),
    the cost columns (the group's model; the median if its trials differ), ``weight_bits``, and
    ``mean``/``std``/``n`` of the final test_acc (as fractions)."""
    series = series_key(keys)
    rest = [k for k in keys if k != series]
    good = ok_trials(trials)
    out = []
    for _, g in table[table["final_test_acc.n"] > 0].iterrows():
        sel = rows_matching(good, {k: g[k] for k in keys})
        rec = {"series": fmt_value(g[series]) if series else "all trials",
               "label": label_of(rest, [g[k] for k in rest]) if rest else "",
               "mean": g["final_test_acc.mean"], "std": g["final_test_acc.std"], "n": int(g["final_test_acc.n"])}
        for c in (*TOTALS, BITS):
            rec[c] = float(pd.to_numeric(sel[c], errors="coerce").median()) if c in sel and len(sel) else np.nan
        rec.update({k: g[k] for k in keys})
        out.append(rec)
    return pd.DataFrame(out)


def models(trials: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """One row per distinct model (``cost_layers`` cell): its totals and the groups that use it,
    sorted by OPs."""
    t = trials[trials[LAYERS].notna()] if LAYERS in trials.columns else trials.iloc[0:0]
    rows = []
    for cell, sub in t.groupby(LAYERS, sort=False):
        first = sub.iloc[0]
        groups = list(dict.fromkeys(label_of(keys, [r[k] for k in keys]) for _, r in sub.iterrows()))
        rows.append({**{c: first[c] for c in TOTALS if c in sub.columns}, "groups": groups, LAYERS: cell})
    return pd.DataFrame(rows).sort_values("ops", kind="stable").reset_index(drop=True) if rows else pd.DataFrame()


def _mb(bits) -> str:
    return f"{si(bits, 'bit')} ({float(bits) / 8e6:.3g} MB)"


def model_summary_table(m: pd.DataFrame) -> str:
    """The per-model totals as a markdown table (energy marked as an estimate)."""
    header = ["model (groups)", "MACs", "FP MACs", "BOPs", "OPs", "params", "param bits (size)",
              "largest activation", "energy, estimate [µJ]"]
    body = [["; ".join(r["groups"]), si(r["macs"]), si(r["fp_macs"]), si(r["bops"]), si(r["ops"]), si(r["params"]),
             _mb(r["param_bits"]), f"{si(r['peak_act_elems'])} values", f"{r['energy_uj']:.4g}"]
            for _, r in m.iterrows()]
    return markdown_table(header, body)


def layer_table(cell: str) -> str:
    """One model's per-layer table (``cost_layers``) as markdown; bits 32 = unquantized."""
    names = {"layer": "layer", "op": "op", "out": "output", "w_bits": "w bits", "a_bits": "a bits", "macs": "MACs",
             "bops": "BOPs", "ops": "OPs", "param_bits": "param bits", "energy_uj": "energy, estimate [µJ]"}
    body = []
    for r in read_layers(cell):
        body.append([str(r["layer"]), r["op"], r["out"], fmt_value(r["w_bits"]), fmt_value(r["a_bits"]),
                     si(r["macs"]), si(r["bops"]), si(r["ops"]), si(r["param_bits"]), f"{r['energy_uj']:.3g}"])
    return markdown_table([names[c] for c in LAYER_COLUMNS], body)


def front_members(points: pd.DataFrame, axis: str) -> list[str]:
    """'series label' of the points on the Pareto front of final test_acc against ``axis``, cheapest first."""
    if points.empty:
        return []
    mask = pareto_front(points[axis], points["mean"])
    on = points[mask].sort_values(axis, kind="stable")
    return [" ".join(filter(None, [r["series"], r["label"]])) for _, r in on.iterrows()]


def cost_section(m: pd.DataFrame, points: pd.DataFrame) -> list[str]:
    """'## Cost' of the report: the conventions, the per-model totals, the fronts' members, and each
    model's per-layer table (folded)."""
    if m.empty:
        return []
    lines = ["## Cost per inference (lowbit_core.cost)", "",
             "Counted by running each trial's final model once on a 1x3x32x32 input (forward hooks): MACs of the "
             "conv and linear layers (BN, activations, pooling and additions not counted); a MAC is FP when neither "
             "operand is quantized, else low-bit; BOPs = low-bit MACs x weight bits x activation bits; "
             "OPs = BOPs/64 + FP MACs (Bi-Real Net, ReActNet); parameter bits: quantized weights at their bits, "
             f"scales, biases, BN and quantizer parameters at 32; {ENERGY_NOTE}.", "",
             model_summary_table(m), ""]
    for axis, name in (("ops", "OPs"), ("param_bits", "parameter bits")):
        members = front_members(points, axis)
        if members:
            lines.append(f"Pareto front of mean final test_acc against {name} (cheapest first): {'; '.join(members)}.")
    lines.append("")
    for _, r in m.iterrows():
        lines += [f"<details><summary>Per layer: {'; '.join(r['groups'])} ({si(r['ops'])} OPs, "
                  f"{si(r['param_bits'], 'bit')})</summary>", "", layer_table(r[LAYERS]), "", "</details>", ""]
    return lines


__all__ = ["LAYERS", "TOTALS", "BITS", "FRONT_AXES", "ENERGY_NOTE", "has_cost", "weight_bits", "with_costs",
           "series_key", "front_points", "models", "model_summary_table", "layer_table", "front_members",
           "cost_section"]
