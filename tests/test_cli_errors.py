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
# in this process -- the same code path after the interpreter starts, without a process each.
IN_A_PROCESS = ("missing file", "unknown set key", "unreachable address", "malformed address", "unknown option")


def cli_in_process(argv, capsys) -> tuple[int, str, str]:
    from lowbit_sweeps.launch.sweep import main

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
    lines = res.stdout.strip().splitlines()
    assert len(lines) == 2 + 48 + 1 and lines[-1].startswith("common config (differs from the family defaults): ")
    assert not (tmp_path / "res").exists()


def test_dry_run_with_set_pins_an_axis():
    res = run_sweep(SWEEP, "--dry-run", "--set", "model.kind=fp", "--set", "seeds=[0]", timeout=60)
    assert res.returncode == 0, res.stderr
    assert "2 trials" in res.stdout  # fp collapses the estimators: 2 batch sizes x 1 seed


def test_a_folder_another_run_writes_to_is_refused_before_ray_starts(tmp_path):
    """The lock probe (launch.runner.FolderLock.probe) refuses at once and writes nothing."""
    from lowbit_sweeps.launch.runner import FolderLock
    from lowbit_core.config import ConfigError

    FolderLock(tmp_path / "new").probe()
    assert not (tmp_path / "new").exists()
    with FolderLock(tmp_path):
        with pytest.raises(ConfigError, match=f"another run is writing to {tmp_path}"):
            FolderLock(tmp_path).probe()
    FolderLock(tmp_path).probe()


TRAIN_SEARCH = str(ROOT / "sweeps" / "train_search.py")  # family train, Optuna search
GRADSTATS = str(ROOT / "sweeps" / "resnet_vste_window.py")  # family gradstats: the train family's data and preflight


def _npz(path, **arrays):
    """20 training and 4 test HWC uint8 images with labels 0..3, ``arrays`` replacing some."""
    import numpy as np

    rng = np.random.default_rng(0)
    base = {"x_train": rng.integers(0, 256, (20, 32, 32, 3), dtype=np.uint8), "y_train": np.arange(20) % 4,
            "x_test": rng.integers(0, 256, (4, 32, 32, 3), dtype=np.uint8), "y_test": np.arange(4)}
    base.update(arrays)
    np.savez(path, **{k: v for k, v in base.items() if v is not None})
    return str(path)


def _nan_images():
    import numpy as np

    x = np.full((20, 32, 32, 3), 0.5, np.float32)
    x[0, 0, 0, 0] = np.nan
    return x


NPZ_CASES = {  # .npz data found bad in every trial before; now in preflight (name -> arrays, message)
    "float pixels with NaN": (lambda: {"x_train": _nan_images()}, "x_train is float32 (1 of its values NaN); valid: "
                              "uint8 images (N, 32, 32, 3) HWC or (N, 3, 32, 32) CHW, pixels 0..255"),
    "label out of range": (lambda: {"classes": __import__("numpy").array(list("abcd")),
                                    "y_test": __import__("numpy").array([0, 1, 4, 3])},
                           "y_test holds label 4 but classes holds 4 names; valid: class indices 0..3"),
    "empty test split": (lambda: {"x_test": __import__("numpy").zeros((0, 32, 32, 3), "uint8"),
                                  "y_test": __import__("numpy").zeros(0, int)}, "x_test holds no images"),
    "mismatched lengths": (lambda: {"y_train": __import__("numpy").arange(19) % 4},
                           "x_train has 20 images but y_train has 19 labels"),
    "missing arrays": (lambda: {"y_test": None}, "lacks arrays y_test"),
    "64 px images": (lambda: {"x_train": __import__("numpy").zeros((20, 64, 64, 3), "uint8")},
                     "x_train has shape (20, 64, 64, 3); valid: uint8 images"),
}


def assert_refused(code, out, err, expected, results):
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and expected in lines[0], err
    assert "Traceback" not in err + out
    assert not results.exists()


@pytest.mark.parametrize("sweep", [TRAIN_SEARCH, GRADSTATS], ids=["train", "gradstats"])
@pytest.mark.parametrize("case", list(NPZ_CASES))
def test_bad_npz_data_is_refused_before_ray(case, sweep, tmp_path, capsys):
    arrays, expected = NPZ_CASES[case]
    path = _npz(tmp_path / "bad.npz", **arrays())
    code, out, err = cli_in_process([sweep, "--smoke", "--set", "data.name=npz", "--set", f"data.root={path}",
                                     "--results", tmp_path / "res"], capsys)
    assert_refused(code, out, err, expected, tmp_path / "res")
    assert path in err  # the file is named


def test_val_fraction_leaving_no_training_images_is_refused_before_ray(tmp_path, capsys):
    path = _npz(tmp_path / "d.npz")  # round(0.6 * 1) = 1 of the 1 training image kept would be validation
    code, out, err = cli_in_process([TRAIN_SEARCH, "--smoke", "--set", "data.name=npz", "--set", f"data.root={path}",
                                     "--set", "data.n_train=1", "--set", "data.val_fraction=0.6",
                                     "--results", tmp_path / "res"], capsys)
    assert_refused(code, out, err, "data.val_fraction=0.6 leaves no training images of 1", tmp_path / "res")


def test_chw_npz_data_plans(tmp_path, capsys):
    """CHW images are accepted (the layout is unambiguous); the dry run plans the sweep."""
    import numpy as np

    x = np.random.default_rng(0).integers(0, 256, (20, 3, 32, 32), dtype=np.uint8)
    path = _npz(tmp_path / "chw.npz", x_train=x, x_test=x[:4])
    code, out, err = cli_in_process([TRAIN_SEARCH, "--smoke", "--dry-run", "--set", "data.name=npz",
                                     "--set", f"data.root={path}", "--results", tmp_path / "res"], capsys)
    assert code == 0, err
    assert not (tmp_path / "res").exists()


def test_init_from_a_state_of_another_architecture_is_refused_before_ray(tmp_path, capsys):
    """An SR trial's state (EDSR weights, no "arch" record) as model.init_from of a ResNet-20 trial."""
    import torch

    from lowbit_core.models.edsr import EDSR

    state = tmp_path / "edsr.pt"
    torch.save({"format": 1, "epoch": 1, "model": EDSR(2, blocks=1, channels=8).state_dict()}, state)
    code, out, err = cli_in_process([TRAIN_SEARCH, "--smoke", "--set", f"model.init_from={state}",
                                     "--results", tmp_path / "res"], capsys)
    assert_refused(code, out, err, f"{state}: not the architecture of this trial (resnet20 width 4", tmp_path / "res")
    assert "missing (conv1.weight" in err and "unexpected (rgb_mean" in err


def test_pinning_every_searched_key_of_an_optuna_sweep_says_so(tmp_path, capsys):
    code, out, err = cli_in_process([TRAIN_SEARCH, "--smoke", "--set", "train.lr=0.01",
                                     "--set", "train.weight_decay=0.0001", "--results", tmp_path / "res"], capsys)
    assert_refused(code, out, err, "every searched key of this Optuna sweep is pinned by --set (train.lr, "
                   "train.weight_decay); nothing is left to search", tmp_path / "res")


HYPERBAND_SWEEP = '''"""Tiny training sweep with HyperBand (4 epochs, reduction factor 2: 3 brackets)."""
from lowbit_core.sweep import HyperBand, Sweep, grid

SWEEP = Sweep(name="tiny_hb", family="train", metric="val_loss", mode="min",
              base={"model.width": 4, "data.n_train": 128, "data.n_test": 64, "train.batch_size": 32,
                    "train.epochs": 4, "train.steps_per_epoch": 1},
              space={"train.lr": grid(1e-3, 2e-3, 3e-3, 4e-3, 5e-3, 6e-3)}, seeds=(0,),
              scheduler=HyperBand(reduction_factor=2))
'''


@pytest.mark.parametrize("concurrent", [1, 3])
def test_hyperband_that_would_stop_nothing_is_one_line_before_ray(tmp_path, capsys, concurrent):
    f = tmp_path / "tiny_hb.py"
    f.write_text(HYPERBAND_SWEEP)
    code, out, err = cli_in_process([f, "--results", tmp_path / "res", "--max-concurrent", concurrent], capsys)
    assert code == 2, err
    assert err.strip() == (
        f"error: HyperBand(reduction_factor=2, max_epochs=4) with --max-concurrent {concurrent} would stop no trial: "
        "its first bracket runs 3 trials to the end and takes every new trial while fewer than 3 of them are "
        f"alive, which {concurrent} at a time never exceeds; valid: no --max-concurrent (every trial gets its "
        "bracket up front), --max-concurrent > 3, or scheduler ASHA(...), which stops trials at any concurrency")
    assert not (tmp_path / "res").exists()


def test_an_optuna_hyperband_refused_for_the_clusters_cpus_writes_nothing(tmp_path, capsys, monkeypatch):
    """Without --max-concurrent an Optuna search runs as many trials at once as the cluster has CPUs,
    known only once Ray is up: the refusal then still leaves no results folder behind."""
    import lowbit_sweeps.launch.runner as runner

    f = tmp_path / "tiny_hb.py"
    f.write_text(HYPERBAND_SWEEP.replace("from lowbit_core.sweep import HyperBand, Sweep, grid",
                                         "from lowbit_core.sweep import HyperBand, LogUniform, Optuna, Sweep")
                 .replace("grid(1e-3, 2e-3, 3e-3, 4e-3, 5e-3, 6e-3)}", "LogUniform(1e-4, 1e-2)}, "
                          "search=Optuna(num_samples=6, sampler_seed=0)"))
    monkeypatch.setattr(runner, "_start_cluster", lambda sweep, address, env=None: ({"cpu": 1}, 2))
    code, out, err = cli_in_process([f, "--results", tmp_path / "res"], capsys)
    assert code == 2, err
    assert "with 2 trials at once (the Ray cluster's CPUs) would stop no trial" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "res").exists()


def test_a_results_folder_under_a_file_is_one_line_before_ray(tmp_path, capsys):
    (tmp_path / "res").write_text("a file, not a folder")
    code, out, err = cli_in_process([SWEEP, "--smoke", "--results", tmp_path / "res" / "deeper"], capsys)
    assert code == 2, err
    folder = tmp_path / "res" / "deeper" / "vste_window"
    assert err.strip() == (f"error: cannot write to the results folder {folder} (it would be created in "
                           f"{tmp_path / 'res'}): Not a directory; valid: a writable folder (--results DIR)")
    assert (tmp_path / "res").read_text() == "a file, not a folder"


def test_a_read_only_results_folder_is_one_line_before_ray(tmp_path, capsys, monkeypatch):
    """EROFS as a read-only mount gives it (injected: as root, permission bits stop no write)."""
    import errno
    import os
    import tempfile

    def mkstemp(*a, **kw):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS))

    monkeypatch.setattr(tempfile, "mkstemp", mkstemp)
    (tmp_path / "res").mkdir()
    code, out, err = cli_in_process([SWEEP, "--smoke", "--results", tmp_path / "res"], capsys)
    assert code == 2, err
    assert err.strip() == (f"error: cannot write to the results folder {tmp_path / 'res' / 'vste_window'} (it would "
                           f"be created in {tmp_path / 'res'}): Read-only file system; valid: a writable folder "
                           "(--results DIR)")
    assert list((tmp_path / "res").iterdir()) == []


TEST_METRIC_SWEEP = '''"""ASHA reading the test set (refused) and an Optuna search on it (refused)."""
from lowbit_core.sweep import ASHA, LogUniform, Optuna, Sweep, grid

SWEEP = Sweep(name="peek", family="train", metric="{metric}", mode="max",
              base={{"model.width": 4, "train.epochs": 4}}, space={space}, seeds=(0,), {select})
'''


@pytest.mark.parametrize("metric, space, select, reader", [
    ("test_acc", '{"train.lr": grid(1e-3, 2e-3)}', "scheduler=ASHA(grace_period=1)", "scheduler"),
    ("selected_test_acc", '{"train.lr": LogUniform(1e-4, 1e-2)}', "search=Optuna(num_samples=2)", "Optuna search"),
])
def test_selection_on_a_test_metric_is_refused_before_ray(tmp_path, capsys, metric, space, select, reader):
    f = tmp_path / "peek.py"
    f.write_text(TEST_METRIC_SWEEP.format(metric=metric, space=space, select=select))
    code, out, err = cli_in_process([f, "--results", tmp_path / "res"], capsys)
    assert_refused(code, out, err, f"the {reader} would select on {metric!r}, a test-set metric of family train; "
                   "use a validation metric: epoch, train_loss, train_acc, val_loss, val_acc", tmp_path / "res")
