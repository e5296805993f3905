"""The shape of analysis/: packages importable both as ``python analysis/report.py`` and as
``import lowbit_sweeps.analysis.report``, ``main(argv) -> int`` for a console script, no torch, no private names
across modules, no estimator name written down outside the registry, no Parquet reading outside
lowbit_core.results."""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

from lowbit_sweeps.analysis.report import main
from lowbit_core.quant.estimator_registry import NAMES, PARAM_NAMES
from test_report import fake_probe_rows, write_parts

REPO = Path(__file__).resolve().parents[1]
ANALYSIS = REPO / "analysis"
SOURCES = sorted(ANALYSIS.rglob("*.py"))


def trees():
    return [(p, ast.parse(p.read_text(), filename=str(p))) for p in SOURCES]


def test_every_folder_is_a_package():
    folders = {p.parent for p in SOURCES}
    assert {f.relative_to(ANALYSIS).as_posix() for f in folders} >= {".", "common", "probe", "train"}
    assert all((f / "__init__.py").exists() for f in folders)


def test_no_private_names_imported_across_modules():
    bad = [(p.name, a.name) for p, tree in trees() for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)
           for a in node.names if a.name.startswith("_")]
    assert bad == []


def test_estimator_names_are_only_in_the_registry():
    names = set(NAMES) | set(PARAM_NAMES)
    found = [(p.relative_to(REPO).as_posix(), node.value) for p, tree in trees() for node in ast.walk(tree)
             if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value in names]
    assert found == []


def test_parquet_is_read_only_through_lowbit_core_results():
    imported, called = [], []
    for p, tree in trees():
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                imported += [a.name for a in node.names if a.name.startswith("pyarrow")]
            elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("pyarrow"):
                imported.append(node.module)
            elif isinstance(node, ast.Attribute) and node.attr in ("read_parquet", "read_table", "ParquetFile"):
                called.append((p.name, node.attr))
    assert imported == [] and called == []


def run(code_or_args: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *code_or_args], cwd=REPO, capture_output=True, text=True, timeout=120)


def test_import_as_package_loads_no_torch():
    proc = run(["-c", "import sys, lowbit_sweeps.analysis.report; assert 'torch' not in sys.modules and 'ray' not in sys.modules; "
                      "print(lowbit_sweeps.analysis.report.main.__name__)"])
    assert proc.returncode == 0 and proc.stdout.strip() == "main", proc.stderr


def test_script_run_loads_no_torch(tmp_path):
    folder = write_parts(fake_probe_rows(), tmp_path / "res")
    code = ("import runpy, sys; sys.argv = ['analysis/report.py', sys.argv[1]]\n"
            "try:\n    runpy.run_path('analysis/report.py', run_name='__main__')\n"
            "except SystemExit as e:\n    assert e.code == 0, e.code\n"
            "assert 'torch' not in sys.modules, 'torch imported'")
    proc = run(["-c", code, str(folder)])
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert (folder / "_report" / "report.md").exists()


def test_main_returns_the_exit_status(tmp_path, capsys):
    folder = write_parts(fake_probe_rows(), tmp_path / "res")
    assert main([str(folder)]) == 0
    assert str(folder / "_report" / "report.md") in capsys.readouterr().out
    assert main([str(tmp_path / "missing")]) == 2
    assert capsys.readouterr().err.startswith("error: ")


def test_estimator_labels_come_from_the_registry():
    import pandas as pd

    from lowbit_sweeps.analysis.probe.groups import add_estimator_column
    from lowbit_sweeps.analysis.train.groups import quant_parts
    from lowbit_core.quant import estimator_registry as reg

    window, clip, ident = (reg.get(n) for n in ("window", "value_clip", "identity"))
    probe = pd.DataFrame({"cfg.estimator.name": [window.name, clip.name, ident.name, None],
                          f"cfg.estimator.{window.param}": [0.05, 0.05, 0.05, 0.05],
                          f"cfg.estimator.{clip.param}": [1e-3, 1e-3, 1e-3, 1e-3]})
    assert list(add_estimator_column(probe)["estimator"]) == [
        reg.label(window.name, 0.05), reg.label(clip.name, 1e-3), reg.label(ident.name), reg.label(None)]
    assert reg.label(window.name, 0.05) == "window t=0.05" and reg.label(None) == ident.name
    row = {"cfg.model.kind": "binary", "cfg.quant.weight_estimator": window.name, "cfg.quant.weight_param": 0.0,
           "cfg.quant.act_estimator": clip.name, "cfg.quant.act_param": 0.25}
    parts = dict(quant_parts(row)[1])
    # weight_param 0 means the registry's default (window t=1)
    assert parts["w"] == reg.label(window.name, window.default) == "window t=1"
    assert parts["a"] == "value_clip c=0.25"
