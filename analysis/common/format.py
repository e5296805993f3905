"""Number, value and markdown formatting shared by the reports.

Statistics print as 'mean ± std (n=N)': std is the sample std (ddof=1), left out for n=1; '–' for
n=0. A ``note`` goes inside the parenthesis after n ('(n=3; ± std over seeds of ...)'), for
statistics whose spread needs saying (see :mod:`analysis.common.stats`).
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd


def is_null(x) -> bool:
    """None or a float NaN (a missing cell)."""
    return x is None or (isinstance(x, (float, np.floating)) and math.isnan(x))


def fmt(x, signed: bool = False) -> str:
    """``x`` to 4 significant digits ('–' for null); with ``signed`` a '+' on positives."""
    if is_null(x):
        return "–"
    return f"{x:+.4g}" if signed else f"{x:.4g}"


def fmt_value(value) -> str:
    """A config value as short text: integral floats without '.0', other floats to 6 digits."""
    if is_null(value):
        return "–"
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() and abs(value) < 1e15 else f"{value:.6g}"
    return str(value)


def _count(n: int, note: str) -> str:
    return f"(n={n}; {note})" if note else f"(n={n})"


def fmt_mean_std(mean, std, n: int, signed: bool = False, percent: bool = False, note: str = "") -> str:
    """'mean ± std (n=N)'; std left out for n=1, '–' for n=0; ``percent`` scales by 100 and adds '%'."""
    if n == 0 or is_null(mean):
        return "–"
    scale, unit = (100.0, "%") if percent else (1.0, "")
    text = fmt(mean * scale, signed) + unit
    if n > 1 and not is_null(std):
        # Equal values give a std of float round-off (1e-17); show it as the 0 it is.
        std = 0.0 if std <= 1e-9 * abs(mean) else std
        text += f" ± {fmt(std * scale)}{unit}"
    return f"{text} {_count(n, note)}"


def fmt_percent(mean, std, n: int, unit: str = "%", signed: bool = False, note: str = "") -> str:
    """A fraction in percent, '76.95 ± 1.20% (n=2)' (``signed``: '+2.34 ± 1.20 pp (n=2)' with
    ``unit=" pp"``); std left out for n=1, '–' for n=0."""
    if n == 0 or is_null(mean):
        return "–"
    text = f"{100 * mean:+.2f}" if signed else f"{100 * mean:.2f}"
    if n > 1 and not is_null(std):
        text += f" ± {100 * std:.2f}"
    return f"{text}{unit} {_count(n, note)}"


def fmt_acc(mean, std, n: int, note: str = "") -> str:
    """An accuracy (fraction) as '76.95 ± 1.20% (n=2)'."""
    return fmt_percent(mean, std, n, note=note)


def fmt_pp(mean, std, n: int, note: str = "") -> str:
    """A difference of accuracies in percentage points: '+2.34 ± 1.20 pp (n=2)'."""
    return fmt_percent(mean, std, n, unit=" pp", signed=True, note=note)


def short_names(keys: list[str]) -> dict[str, str]:
    """Legend names for ``keys``: the last dotted part, or the path without 'cfg.' where that clashes."""
    last = [k.split(".")[-1] for k in keys]
    return {k: (s if last.count(s) == 1 else k.removeprefix("cfg.")) for k, s in zip(keys, last)}


def group_label(keys: list[str], values, names: dict[str, str] | None = None) -> str:
    """'kind=fp optimizer=sgd noise=0.05' for one group (``values`` aligned with ``keys``; ``names``
    the short names, :func:`short_names` by default); 'all trials' without keys."""
    if not keys:
        return "all trials"
    names = names or short_names(keys)
    return " ".join(f"{names[k]}={fmt_value(v)}" for k, v in zip(keys, values))


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    """A plain GitHub-markdown table ('|' in cells escaped)."""
    def cell(s) -> str:
        return str(s).replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(cell(h) for h in header) + " |",
             "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(cell(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def frame_to_markdown(df: pd.DataFrame) -> str:
    """A DataFrame of already formatted cells as a markdown table."""
    return markdown_table(list(df.columns), df.astype(str).values.tolist())


def stat_cells(table: pd.DataFrame, name: str, formatter, **kw) -> list[str]:
    """``formatter(mean, std, n, **kw)`` for each row of ``table``'s ``<name>.mean/.std/.n`` columns."""
    return [formatter(m, s, int(n), **kw) for m, s, n in
            zip(table[f"{name}.mean"], table[f"{name}.std"], table[f"{name}.n"])]
