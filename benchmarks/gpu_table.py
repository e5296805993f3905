"""The benchmarks' machine-readable last line, and the one table ``benchmarks/gpu_check.sh`` prints.

Each benchmark ends its output with :func:`result_line`: one JSON object

    {"benchmark": "train_speed", "device": "cuda", "rows": [
        {"setting": "...", "figure": "...", "baseline": "...", "ratio": "...", "note": "..."}]}

(``figure``: the new / structured / measured path; ``baseline``: what the benchmark compares it with
in the same run; ``ratio`` as the benchmark defines it; all pre-formatted strings).

``python benchmarks/gpu_table.py RUN_DIR`` reads ``RUN_DIR/status.tsv`` (one line per benchmark run:
``label<TAB>exit status<TAB>seconds<TAB>time limit``, written by gpu_check.sh) and ``RUN_DIR/<label>.log``,
takes each log's last JSON line, and prints one markdown table (exit status 1 if any run failed). A run that exited non-zero, timed
out or printed no JSON line becomes a row marked FAILED with the reason and the log's last line.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

COLUMNS = ("benchmark", "setting", "device", "figure", "baseline (same run)", "ratio", "note")
KEYS = ("benchmark", "setting", "device", "figure", "baseline", "ratio", "note")


def result_line(benchmark: str, device: str, rows: list[dict]) -> str:
    """The JSON line a benchmark prints last (print it yourself: ``print(result_line(...))``)."""
    return json.dumps({"benchmark": benchmark, "device": str(device), "rows": rows})


def last_result(text: str) -> dict | None:
    """The last line of ``text`` that is a JSON object with a ``benchmark`` key (None if there is none)."""
    for line in reversed(text.splitlines()):
        line = line.strip()
        if line.startswith("{") and '"benchmark"' in line:
            try:
                rec = json.loads(line)
            except ValueError:
                continue
            if isinstance(rec, dict) and "benchmark" in rec:
                return rec
    return None


def collect(label: str, rc: int, log: str, seconds: float | None = None, limit: int | None = None) -> dict:
    """One record for a benchmark run: its JSON line, or ``{"benchmark": label, "failed": reason}``."""
    rec = last_result(log) if rc == 0 else None
    if rec is not None:
        rec = dict(rec, benchmark=label)
    else:
        if rc in (124, 137):
            why = f"timed out after {limit} s" if limit else f"timed out (exit {rc})"
        elif rc != 0:
            why = f"exit status {rc}"
        else:
            why = "no JSON result line"
        tail = [ln.strip() for ln in log.splitlines() if ln.strip()]
        if tail:
            why += f"; last line: {tail[-1][:160]}"
        rec = {"benchmark": label, "failed": why}
    if seconds is not None:
        rec["seconds"] = seconds
    return rec


def _cell(value) -> str:
    return str(value if value not in (None, "") else "–").replace("|", "\\|").replace("\n", " ")


def render(records: list[dict]) -> str:
    """A markdown table with one row per result row; a failed benchmark gets one FAILED row."""
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for rec in records:
        name = rec["benchmark"] + (f" ({rec['seconds']:.0f} s)" if rec.get("seconds") is not None else "")
        if "failed" in rec:
            cells = [name, "", rec.get("device", ""), f"FAILED: {rec['failed']}", "", "", ""]
            lines.append("| " + " | ".join(_cell(c) for c in cells) + " |")
            continue
        for row in rec.get("rows") or [{"setting": "(no rows)"}]:
            vals = {"benchmark": name, "device": rec.get("device", ""), **row}
            lines.append("| " + " | ".join(_cell(vals.get(k)) for k in KEYS) + " |")
    return "\n".join(lines)


def read_run(run_dir: str | Path) -> list[dict]:
    run = Path(run_dir)
    records = []
    for line in (run / "status.tsv").read_text().splitlines():
        if not line.strip():
            continue
        label, rc, seconds, limit = line.split("\t")
        log = run / f"{label}.log"
        text = log.read_text(errors="replace") if log.is_file() else ""
        records.append(collect(label, int(rc), text, float(seconds), int(limit)))
    return records


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python benchmarks/gpu_table.py RUN_DIR", file=sys.stderr)
        return 2
    records = read_run(argv[0])
    print(render(records))
    failed = sum("failed" in r for r in records)
    print(f"\n{len(records) - failed} of {len(records)} benchmark runs produced results"
          + (f"; {failed} FAILED (logs in {argv[0]})" if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
