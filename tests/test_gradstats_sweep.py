"""sweeps/resnet_vste_window.py: the plan of every profile counted by hand from its grids (nSTE takes no
width, so its width values collapse into one setting), canonical unique keys, the docstring's
sections and stated trial count, synthetic images in smoke, and the init trials ignoring a state file."""
import re

import pytest

from conftest import ROOT
from lowbit_core.config import flatten
from lowbit_core.quant.estimator_registry import REFERENCE
from lowbit_core.sweep import config_key, load_sweep, plan
from test_cifar_data import _fake_cifar10

SWEEP = load_sweep(ROOT / "sweeps" / "resnet_vste_window.py")


@pytest.fixture(scope="module")
def cifar_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("cifar")
    _fake_cifar10(root)
    return root


def settings(p) -> set:
    return {(t.config.quant.weight_estimator, t.config.quant.weight_param) for t in p.trials}


@pytest.mark.parametrize("profile, n_settings, taus_w, taus_a, seeds, n", [
    ("smoke", 1 + 1, 2, 1, 1, (1 + 1) * 2 * 2 * 1 * 1),  # nSTE + window at one width
    ("default", 1 + 3 + 3, 2, 2, 2, (1 + 3 + 3) * 2 * 2 * 2 * 2),  # nSTE + window and clip at 3 widths
    ("full", 1 + 5 + 5, 3, 3, 3, (1 + 5 + 5) * 2 * 3 * 3 * 3),
])
def test_plans_counted_by_hand(profile, n_settings, taus_w, taus_a, seeds, n, cifar_root):
    p = plan(SWEEP, profile, {} if profile == "smoke" else {"data.root": str(cifar_root)})
    assert p.n_trials == n and p.family.name == "gradstats"
    s = settings(p)
    assert len(s) == n_settings and {w for e, w in s if e == REFERENCE} == {0.0}  # nSTE: one setting, no width
    assert {t.config.state.kind for t in p.trials} == {"init", "pretrained"}
    assert len({t.config.quant.threshold for t in p.trials}) == taus_w
    assert len({t.config.quant.act_threshold for t in p.trials}) == taus_a
    assert len({t.config.seed for t in p.trials}) == seeds
    keys = [t.key for t in p.trials]
    assert len(set(keys)) == len(keys)
    for t in p.trials:
        assert t.key == config_key(t.config) and p.family.canonicalize(t.config) == t.config
        assert t.config.quant.weight_unit == ("std" if t.config.quant.weight_estimator != REFERENCE
                                              or t.config.quant.threshold else "abs")
    if profile == "smoke":
        assert {t.config.data.name for t in p.trials} == {"synthetic"} and all(t.config.model.width == 4 for t in p.trials)


def test_docstring_sections_and_stated_cost():
    for word in ("Question", "Expected", "Cost", "Command"):
        assert any(line.startswith(word) for line in SWEEP.doc.splitlines()), word
    assert int(re.search(r"Default: (\d+) trials", SWEEP.doc).group(1)) == 112
    assert int(re.search(r"Smoke: (\d+) trials", SWEEP.doc).group(1)) == 8
    assert int(re.search(r"(\d+)\s+trials, a GPU sweep", SWEEP.doc).group(1)) == 594
    assert "model.init_from" in SWEEP.doc and "model.nonlin=hardtanh" in SWEEP.doc


def test_a_state_file_acts_on_pretrained_trials_only(cifar_root, tmp_path):
    import torch

    from lowbit_core.families.gradstats.config import finetune_config
    from lowbit_core.training.checkpoint import save_state
    from lowbit_core.families.train.model import architecture, build_model

    cfg = plan(SWEEP, "smoke").trials[0].config
    fp = finetune_config(cfg)
    save_state({"model": build_model(fp, "fp", 10).state_dict(), "arch": architecture(fp, 10)}, tmp_path)
    p = plan(SWEEP, "smoke", {"model.init_from": str(tmp_path)})
    by_state = {k: {t.config.model.init_from for t in p.trials if t.config.state.kind == k} for k in ("init", "pretrained")}
    assert by_state == {"init": {""}, "pretrained": {str(tmp_path)}} and p.n_trials == 8
    assert all(flatten(t.config)["state.pretrain_epochs"] == 3 for t in p.trials)  # does not act: reset
    with pytest.raises(Exception, match="width differ"):
        plan(SWEEP, "smoke", {"model.init_from": str(tmp_path), "model.width": 8})
    assert torch.load(tmp_path / "state.pt", weights_only=True)["arch"]["width"] == 4
