"""Bad input to the CLI: one clear line on stderr, exit status 2, no traceback, nothing written."""
import pytest

from conftest import ROOT, run_sweep

SWEEP = str(ROOT / "sweeps" / "vste_window.py")

CASES = {
    "missing file": ([str(ROOT / "sweeps" / "nope.py")], "not found"),
    "unknown set key": ([SWEEP, "--set", "multi.lrr=0.1"], "unknown key 'multi.lrr'"),
    "wrong type": ([SWEEP, "--set", "multi.steps=ten"], "multi.steps must be an int, got 'ten'"),
    "float for int": ([SWEEP, "--set", "multi.steps=1.5"], "multi.steps must be an int"),
    "epsilon zero": ([SWEEP, "--set", "budget.epsilon=0"], "budget.epsilon must be > 0"),
    "epsilon negative": ([SWEEP, "--set", "budget.epsilon=-0.1"], "budget.epsilon must be > 0"),
    "noise above epsilon": ([SWEEP, "--set", "multi.noise=0.2"], "exceeds budget.epsilon"),
    "bad literal": ([SWEEP, "--set", "model.kind=ternary"], "valid: 'fp', 'binary'"),
    "unknown profile": ([SWEEP, "--profile", "huge"], "valid: default, smoke, full"),
    "set without =": ([SWEEP, "--set", "multi.lr"], "key=value"),
    "unreachable address": ([SWEEP, "--smoke", "--address", "127.0.0.1:1"], "cannot reach a Ray cluster at 127.0.0.1:1"),
    "malformed address": ([SWEEP, "--smoke", "--address", "nohostport"], "not host:port"),
    "bad max concurrent": ([SWEEP, "--max-concurrent", "0"], "--max-concurrent must be >= 1"),
    "unknown option": ([SWEEP, "--frobnicate"], "unrecognized arguments"),
    "unknown tracker": ([SWEEP, "--log", "neptune"], "--log 'neptune' is not a tracker; valid: mlflow, tensorboard, wandb"),
    "extend without a recorded sweep": ([SWEEP, "--smoke", "--extend"], "--extend widens a recorded sweep, but"),
}


# Through a real process (exit status, stderr, no traceback); the other cases call the CLI's main()
# in this process -- the same code path after the interpreter starts, without its ~5 s start-up each.
IN_A_PROCESS = ("missing file", "unknown set key", "unreachable address", "malformed address", "unknown option")


def cli_in_process(argv, capsys) -> tuple[int, str, str]:
    from launch.sweep import main

    try:
        code = main([str(a) for a in argv])
    except SystemExit as exc:  # argparse's exit after _Parser.error
        code = exc.code
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.mark.parametrize("name", list(CASES))
def test_bad_input_exits_2_with_one_line(name, tmp_path, capsys):
    args, expected = CASES[name]
    argv = [*args, "--results", tmp_path / "res"]
    if name in IN_A_PROCESS:
        res = run_sweep(*argv, timeout=60)
        code, out, err = res.returncode, res.stdout, res.stderr
    else:
        code, out, err = cli_in_process(argv, capsys)
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("error: ") and expected in lines[0], lines[0]
    assert "Traceback" not in err + out
    assert not (tmp_path / "res").exists()


def test_scheduler_on_a_family_without_epochs(tmp_path):
    f = tmp_path / "asha_probe.py"
    f.write_text('"""ASHA on a probe sweep."""\nfrom lowbit_core.sweep import ASHA, Sweep\n'
                 'SWEEP = Sweep(name="ap", family="probe", metric="loss", scheduler=ASHA())\n')
    res = run_sweep(f, "--results", tmp_path / "res", timeout=60)
    assert res.returncode == 2 and res.stderr.strip() == (
        "error: scheduler ASHA needs a family that reports once per epoch (sr, train); family probe does not")
    assert not (tmp_path / "res").exists()


def test_module_without_sweep_object(tmp_path):
    f = tmp_path / "empty_sweep.py"
    f.write_text('"""No sweep here."""\nX = 1\n')
    res = run_sweep(f, "--results", tmp_path / "res", timeout=60)
    assert res.returncode == 2 and "defines no Sweep object" in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1 and not (tmp_path / "res").exists()


def test_module_raising_on_import(tmp_path):
    f = tmp_path / "broken.py"
    f.write_text("raise RuntimeError('boom')\n")
    res = run_sweep(f, timeout=60)
    assert res.returncode == 2 and res.stderr.strip() == f"error: importing {f} failed: RuntimeError: boom"


def test_existing_results_need_resume(tmp_path):
    folder = tmp_path / "res" / "vste_window"
    folder.mkdir(parents=True)
    (folder / "part-old-00000.parquet").write_bytes(b"PAR1 keep me")
    res = run_sweep(SWEEP, "--smoke", "--results", tmp_path / "res", timeout=60)
    assert res.returncode == 2 and "--resume" in res.stderr
    assert (folder / "part-old-00000.parquet").read_bytes() == b"PAR1 keep me"
    assert sorted(p.name for p in folder.iterdir()) == ["part-old-00000.parquet"]


def test_dry_run_prints_grid_and_writes_nothing(tmp_path):
    res = run_sweep(SWEEP, "--dry-run", "--results", tmp_path / "res", timeout=60)
    assert res.returncode == 0, res.stderr
    assert "48 trials" in res.stdout and "1 CPU" in res.stdout
    assert len(res.stdout.strip().splitlines()) == 2 + 48
    assert not (tmp_path / "res").exists()


def test_dry_run_with_set_pins_an_axis():
    res = run_sweep(SWEEP, "--dry-run", "--set", "model.kind=fp", "--set", "seeds=[0]", timeout=60)
    assert res.returncode == 0, res.stderr
    assert "2 trials" in res.stdout  # fp collapses the estimators: 2 batch sizes x 1 seed


def test_a_folder_another_run_writes_to_is_refused_before_ray_starts(tmp_path):
    """The lock probe (launch.runner.FolderLock.probe) refuses at once and writes nothing."""
    from launch.runner import FolderLock
    from lowbit_core.config import ConfigError

    FolderLock(tmp_path / "new").probe()
    assert not (tmp_path / "new").exists()
    with FolderLock(tmp_path):
        with pytest.raises(ConfigError, match=f"another run is writing to {tmp_path}"):
            FolderLock(tmp_path).probe()
    FolderLock(tmp_path).probe()
