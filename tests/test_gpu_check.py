"""benchmarks/gpu_check.sh without a GPU, and the table it prints (benchmarks/gpu_table.py)."""
import importlib.util
import json
import os
import subprocess
import time

import pytest
import torch

from conftest import ROOT

SCRIPT = ROOT / "benchmarks" / "gpu_check.sh"
spec = importlib.util.spec_from_file_location("gpu_table", ROOT / "benchmarks" / "gpu_table.py")
gpu_table = importlib.util.module_from_spec(spec)
spec.loader.exec_module(gpu_table)


def run_check(cwd, timeout, **env):
    full = {k: v for k, v in os.environ.items() if k not in ("LOWBIT_GPU_CHECK_DEVICE", "RAY_ADDRESS")}
    full.update(env)
    return subprocess.run(["bash", str(SCRIPT)], cwd=cwd, capture_output=True, text=True, timeout=timeout,
                          env=full, stdin=subprocess.DEVNULL)


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA: the check would run")
def test_without_cuda_prints_one_line_and_runs_nothing(tmp_path):
    logs = tmp_path / "logs"
    t = time.perf_counter()
    out = run_check(tmp_path, 60, LOWBIT_GPU_CHECK_LOGS=str(logs))  # from another cwd
    elapsed = time.perf_counter() - t
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == [f"gpu_check: no CUDA device (torch.cuda.is_available() is False for "
                                       f".venv/bin/python); nothing was run"]
    assert out.stderr == ""
    assert not logs.exists()  # no benchmark started: the log folder is made just before the first one
    assert elapsed < 20


def test_unknown_mode_is_an_error(tmp_path):
    out = run_check(tmp_path, 30, LOWBIT_GPU_CHECK_DEVICE="tpu", LOWBIT_GPU_CHECK_LOGS=str(tmp_path / "logs"))
    assert out.returncode == 2
    assert "must be cuda or cpu" in out.stderr
    assert not (tmp_path / "logs").exists()


def line(benchmark, rows, device="cuda"):
    return gpu_table.result_line(benchmark, device, rows)


def test_table_from_json_lines_with_failures():
    ok = ("device: cuda\nsome human output\n"
          + line("probe_speed", [
              {"setting": "lr scan fp", "figure": "structured 0.40 s", "baseline": "direct 30.0 s", "ratio": "75.0x",
               "note": "target >= 3x"},
              {"setting": "DG objectives fp", "figure": "structured 2.00 s", "baseline": "direct 900.0 s",
               "ratio": "450.0x", "note": "a|b"}])
          + "\n(ray noise after the result)\n")
    cifar = line("cifar_epoch", [{"setting": "1 epoch fp", "figure": "fp 40,000 img/s", "baseline": "", "ratio": ""}])
    recs = [
        gpu_table.collect("probe_speed", 0, ok, 12.0, 100),
        gpu_table.collect("fold_speed", 124, "trials 3/32 done\n", 90.0, 90),
        gpu_table.collect("train_speed_b128", 1, "Traceback ...\nRuntimeError: CUDA out of memory\n", 3.0, 40),
        gpu_table.collect("augment_speed", 0, "printed no result line\n", 5.0, 60),
        gpu_table.collect("cifar_epoch", 0, cifar, 20.0, 70),
    ]
    assert [r.get("failed") is None for r in recs] == [True, False, False, False, True]
    assert recs[1]["failed"] == "timed out after 90 s; last line: trials 3/32 done"
    assert recs[2]["failed"] == "exit status 1; last line: RuntimeError: CUDA out of memory"
    assert recs[3]["failed"] == "no JSON result line; last line: printed no result line"

    lines = gpu_table.render(recs).splitlines()
    assert lines[0] == "| benchmark | setting | device | figure | baseline (same run) | ratio | note |"
    assert lines[1] == "|---|---|---|---|---|---|---|"
    body = lines[2:]
    assert len(body) == 6  # 2 probe rows + 3 failed + 1 cifar row
    assert body[0] == ("| probe_speed (12 s) | lr scan fp | cuda | structured 0.40 s | direct 30.0 s | 75.0x | "
                       "target >= 3x |")
    assert body[1].endswith("| 450.0x | a\\|b |")  # a pipe in a cell is escaped
    assert body[2] == "| fold_speed (90 s) | – | – | FAILED: timed out after 90 s; last line: trials 3/32 done | – | – | – |"
    assert body[3].startswith("| train_speed_b128 (3 s) | – | – | FAILED: exit status 1;")
    assert "FAILED: no JSON result line" in body[4]
    assert body[5] == "| cifar_epoch (20 s) | 1 epoch fp | cuda | fp 40,000 img/s | – | – | – |"
    assert all(row.count(" | ") == 6 for row in body)


def test_run_dir_is_read_and_failures_set_the_exit_status(tmp_path, capsys):
    (tmp_path / "a.log").write_text(line("a", [{"setting": "s", "figure": "f", "baseline": "b", "ratio": "2.0x"}]))
    (tmp_path / "b.log").write_text("boom\n")
    (tmp_path / "status.tsv").write_text("a\t0\t3\t40\nb\t137\t50\t50\n")
    assert gpu_table.main([str(tmp_path)]) == 1
    out = capsys.readouterr().out
    assert "| a (3 s) | s | cuda | f | b | 2.0x | – |" in out
    assert "FAILED: timed out after 50 s; last line: boom" in out
    assert "1 of 2 benchmark runs produced results; 1 FAILED" in out
    (tmp_path / "status.tsv").write_text("a\t0\t3\t40\n")
    assert gpu_table.main([str(tmp_path)]) == 0


def test_last_result_takes_the_last_json_line():
    text = "\n".join([line("x", [{"setting": "first"}]), '{"not": "a result"}', "{broken json",
                      line("x", [{"setting": "second"}]), "trailing"])
    assert gpu_table.last_result(text)["rows"] == [{"setting": "second"}]
    assert gpu_table.last_result("no json here") is None
    assert json.loads(line("x", []))["device"] == "cuda"


@pytest.mark.slow
def test_cpu_dry_run_produces_the_table(tmp_path):
    """LOWBIT_GPU_CHECK_DEVICE=cpu: every benchmark with tiny sizes on the CPU (~2-4 min on 2 cores)."""
    out = run_check(tmp_path, 900, LOWBIT_GPU_CHECK_DEVICE="cpu", LOWBIT_GPU_CHECK_LOGS=str(tmp_path / "logs"))
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    table = out.stdout[out.stdout.index("=== gpu_check table (cpu"):]
    rows = [r for r in table.splitlines() if r.startswith("| ") and not r.startswith("| benchmark ")]
    assert [r.split(" (")[0][2:] for r in rows] == (
        ["probe_speed_scan"] * 2 + ["probe_speed_dg"] * 2 + ["fold_speed", "train_speed_b8", "train_speed_b16",
                                                             "augment_speed"] + ["cifar_epoch"] * 2 + ["trial_overhead"])
    assert "FAILED" not in table
    assert "8 of 8 benchmark runs produced results" in table
