"""README "Extending": the plug-in examples run exactly as printed, from a folder outside the checkout.

The README's code blocks that start with ``# file: NAME`` are written to a temporary folder (blocks
of one name concatenated), and the sweeps there are planned, dry-run and run with them: a user's
estimator and model in a probe and a training sweep, a user's family stopped early by ASHA with the
generic report. These tests work in process; the same folder runs end to end through an installed wheel's
commands in tests/test_wheel.py (slow).
"""
from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest
import torch

from lowbit_core.config import ConfigError
from lowbit_core.families import family_names, get_family
from lowbit_core.sweep import describe_plan, load_sweep, plan

REPO = Path(__file__).resolve().parents[1]
BLOCK = re.compile(r"```python\n# file: (\S+)[^\n]*\n(.*?)```", re.S)


def readme_files() -> dict[str, str]:
    """NAME -> text of the README's ``# file: NAME`` blocks (a name's blocks joined in order)."""
    files: dict[str, str] = {}
    for name, body in BLOCK.findall((REPO / "README.md").read_text(encoding="utf-8")):
        files[name] = files.get(name, "") + body + "\n"
    return files


@pytest.fixture(scope="module")
def user_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("user_project")
    for name, text in readme_files().items():
        (folder / name).write_text(text, encoding="utf-8")
    return folder


def test_the_readme_prints_the_plugin_module_and_three_sweeps():
    assert set(readme_files()) == {"my_plugins.py", "quadratic_sweep.py", "tanh_probe.py", "vgg_train.py"}


def test_sweeps_import_their_plugins_and_record_them(user_folder, monkeypatch):
    monkeypatch.chdir(user_folder)
    s = load_sweep(user_folder / "quadratic_sweep.py")
    assert s.plugins == ("my_plugins",)
    p = plan(s, "default")
    rec = describe_plan(p)["plugins"]["my_plugins"]
    assert rec["origin"] == str(user_folder / "my_plugins.py") and len(rec["sha256"]) == 64
    assert "noisy_quadratic" in family_names() and get_family("noisy_quadratic").epoch_key == "epochs"
    assert p.n_trials == 8 and p.scheduler is not None
    assert describe_plan(p)["baseline"] == {"lr": 0.1}


def test_a_plugin_is_part_of_the_trial_keys_and_an_edit_changes_them(user_folder, tmp_path, monkeypatch):
    from lowbit_core import plugins
    from lowbit_core.sweep import config_key

    monkeypatch.chdir(user_folder)
    p = plan(load_sweep(user_folder / "tanh_probe.py"))
    trial = p.trials[0]
    assert p.fingerprint and config_key(trial.config) == trial.key
    plugins.set_active("")
    assert config_key(trial.config) != trial.key  # the same config without the plug-in is another trial
    plugins.set_active(p.fingerprint)
    edited = tmp_path / "my_plugins.py"
    edited.write_text((user_folder / "my_plugins.py").read_text() + "\n# an edit\n")
    src = plugins.source(sys.modules["my_plugins"])
    other = plugins.Source("my_plugins", str(edited), plugins.source_hash([edited], tmp_path), None)
    assert src.sha256 == plugins.source_hash([user_folder / "my_plugins.py"], user_folder)
    assert plugins.fingerprint([src]) != plugins.fingerprint([other])


def test_the_user_estimator_and_model_are_valid_choices_and_unknown_names_list_them(user_folder, monkeypatch):
    from lowbit_core.config import with_overrides
    from lowbit_core.families.train.config import TrainConfig

    monkeypatch.chdir(user_folder)
    load_sweep(user_folder / "vgg_train.py")
    cfg = with_overrides(TrainConfig(), {"model.arch": "vgg_small", "quant.weight_estimator": "tanh_ste"})
    assert cfg.model.arch == "vgg_small"
    with pytest.raises(ConfigError, match=r"valid: .*'resnet18', 'vgg_small'"):
        with_overrides(TrainConfig(), {"model.arch": "vgg"})
    with pytest.raises(ConfigError, match=r"'ede', 'tanh_ste'"):
        with_overrides(TrainConfig(), {"quant.weight_estimator": "tanh"})


def test_tanh_estimator_gradient_against_a_finite_difference(user_folder, monkeypatch):
    """The registered estimator's gradient equals the derivative of a·tanh(a w)/a... i.e. of
    tanh(a w), by central differences (float64, step 1e-6, tolerance 1e-6)."""
    from lowbit_core.quant.estimators import sign_ste

    monkeypatch.chdir(user_folder)
    load_sweep(user_folder / "tanh_probe.py")
    w = torch.linspace(-1.5, 1.5, 31, dtype=torch.float64, requires_grad=True)
    sign_ste(w, "tanh_ste", 3.0).sum().backward()
    h = 1e-6
    fd = (torch.tanh(3 * (w.detach() + h)) - torch.tanh(3 * (w.detach() - h))) / (2 * h)
    assert torch.allclose(w.grad, fd, atol=1e-6)


def test_the_user_model_trains_and_has_a_cost(user_folder, monkeypatch):
    from lowbit_core.config import with_overrides
    from lowbit_core.families.train.cost import train_cost
    from lowbit_core.families.train.config import TrainConfig
    from lowbit_core.families.train.model import build_model

    monkeypatch.chdir(user_folder)
    load_sweep(user_folder / "vgg_train.py")
    cfg = with_overrides(TrainConfig(), {"model.arch": "vgg_small", "model.width": 8})
    model = build_model(cfg, "binary", 10)
    out = model(torch.randn(2, 3, 32, 32))
    out.sum().backward()
    assert out.shape == (2, 10) and all(p.grad is not None for p in model.parameters() if p.requires_grad)
    cost = train_cost(cfg).metrics()
    # 3x3 convs at 32x32 (3->8 FP, 8->8 binary), at 16x16 (8->16 binary), then 16->10 linear
    assert cost["macs"] == 32 * 32 * 9 * (3 * 8 + 8 * 8) + 16 * 16 * 9 * 8 * 16 + 16 * 10
    assert cost["fp_macs"] == 32 * 32 * 9 * 3 * 8 + 16 * 10


def test_the_user_quantizer_is_a_kbit_choice_and_the_model_computes_with_it(user_folder, monkeypatch):
    """The README's TWN quantizer in a k-bit training config: the model's quantized convs use it on
    weights and input activations, with the closed forms of hand-made tensors (Δ = 0.7·mean|x|,
    α = mean of |x| over |x| > Δ)."""
    from torch.nn import functional as F

    from lowbit_core.config import with_overrides
    from lowbit_core.families.train.config import TrainConfig
    from lowbit_core.families.train.model import build_model
    from lowbit_core.quant.layers import QuantConv2d

    monkeypatch.chdir(user_folder)
    load_sweep(user_folder / "vgg_train.py")
    with pytest.raises(ConfigError, match=r"quant.kbit='ternary' is not valid; valid: 'dorefa', .*'twn'"):
        with_overrides(TrainConfig(), {"quant.kbit": "ternary"})
    cfg = with_overrides(TrainConfig(), {"model.arch": "vgg_small", "model.width": 8, "model.kind": "kbit",
                                         "quant.kbit": "twn"})
    conv = next(m for m in build_model(cfg, "kbit", 10).modules()
                if isinstance(m, QuantConv2d) and m.spec.weight == m.spec.act == "twn")
    # |w| = 0.9 0.1 0.3 0.6 0.05 1.2: mean 0.525, Δ = 0.3675, kept 0.9 0.6 1.2, α = 0.9
    w = torch.tensor([0.9, -0.1, 0.3, -0.6, 0.05, -1.2]).repeat(conv.weight.numel() // 6).view_as(conv.weight)
    w_q = torch.tensor([0.9, 0.0, 0.0, -0.9, 0.0, -0.9]).repeat(conv.weight.numel() // 6).view_as(w)
    # x = 0.2 1 0.5 0 2 0.3: mean 2/3, Δ = 0.4667, kept 1 0.5 2, α = 3.5/3
    x = torch.tensor([0.2, 1.0, 0.5, 0.0, 2.0, 0.3]).repeat(8 * 36 // 6).view(1, 8, 6, 6)
    x_q = torch.tensor([0.0, 1.0, 1.0, 0.0, 1.0, 0.0]).repeat(8 * 36 // 6).view_as(x) * (3.5 / 3)
    with torch.no_grad():
        conv.weight.copy_(w)
    assert torch.allclose(conv.quantized_weight(), w_q, atol=1e-6)
    assert torch.allclose(conv.act_quantizer(x), x_q, atol=1e-6)
    assert torch.allclose(conv(x), F.conv2d(x_q, w_q, None, 1, 1), atol=1e-5)


def test_registering_in_the_sweep_file_itself_is_refused(tmp_path):
    (tmp_path / "inline.py").write_text(
        "from lowbit_core.quant.estimator_registry import register_estimator\n"
        "from lowbit_core.sweep import Sweep\n"
        "@register_estimator('inline_ste', label='x', paper='y')\n"
        "def inline_ste(g, w, param=None):\n    return g\n"
        "SWEEP = Sweep(name='inline', family='probe', metric='best_loss')\n")
    with pytest.raises(ConfigError, match="registers estimator inline_ste itself; move it into a module"):
        load_sweep(tmp_path / "inline.py")


def test_a_plugin_that_fails_to_import_is_one_line_before_ray(tmp_path, capsys, monkeypatch):
    from lowbit_sweeps.launch.sweep import main

    (tmp_path / "broken.py").write_text("raise RuntimeError('boom')\n")
    (tmp_path / "s.py").write_text("from lowbit_core.sweep import Sweep\n"
                                   "SWEEP = Sweep(name='s', family='probe', metric='best_loss', plugins=('broken',))\n")
    monkeypatch.chdir(tmp_path)
    assert main([str(tmp_path / "s.py"), "--results", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["error: plug-in module 'broken' (named in s.py's plugins) failed to import: RuntimeError: boom"]
    assert not (tmp_path / "r").exists()


def test_the_user_family_runs_in_process_and_reports_only_declared_metrics(user_folder, monkeypatch):
    monkeypatch.chdir(user_folder)
    load_sweep(user_folder / "quadratic_sweep.py")
    fam = get_family("noisy_quadratic")
    rows = []
    fam.run(fam.config_cls(), rows.append, torch.device("cpu"))
    assert [r["epoch"] for r in rows] == [1, 2, 3, 4, 5, 6]
    assert all(set(r) <= set(fam.metrics) | {"step"} for r in rows)
    assert fam.selectable == ("val_loss",)


def test_a_scheduler_on_the_user_familys_test_metric_is_refused(user_folder, monkeypatch):
    from dataclasses import replace

    monkeypatch.chdir(user_folder)
    s = load_sweep(user_folder / "quadratic_sweep.py")
    with pytest.raises(ConfigError, match="select on 'test_loss', a test-set metric .* use a validation metric: val_loss"):
        plan(replace(s, metric="test_loss"))
