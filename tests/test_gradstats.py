"""The gradstats family, Ray-free: rows and declared metrics, the same start state and batches for every
estimator of a seed, fine-tuning equal to the train family's loop (the probe disturbs nothing), the
pretrained start (in the trial, cached, or from a file of the same architecture), config rules."""
import math

import pytest
import torch

from lowbit_core.config import ConfigError, with_overrides
from lowbit_core.families import get_family
from lowbit_core.families.gradstats.config import GradStatsConfig, finetune_config
from lowbit_core.families.gradstats.run import STAT_COLUMNS, pretrain_config, pretrained_state, run_gradstats
from lowbit_core.training.checkpoint import save_state
from lowbit_core.families.train.data import load_train_data
from lowbit_core.families.train.run import train

TINY = {"data.n_train": 256, "data.n_test": 64, "model.width": 4, "train.batch_size": 32, "train.epochs": 2,
        "train.steps_per_epoch": 2, "stats.batches": 3, "stats.reference_batches": 4, "stats.batch_size": 32,
        "state.pretrain_epochs": 1}
CPU = torch.device("cpu")


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the shared 2-core machine: more threads than cores only slow it down
    yield
    torch.set_num_threads(threads)


def tiny(**overrides) -> GradStatsConfig:
    family = get_family("gradstats")
    return family.canonicalize(with_overrides(family.config_cls(), {**TINY, **overrides}))


def rows_of(cfg: GradStatsConfig) -> list[dict]:
    rows = []
    get_family("gradstats").run(cfg, lambda m, **kw: rows.append(m), CPU)
    return rows


def test_rows_carry_every_declared_metric_with_one_value_per_layer():
    rows = rows_of(tiny(**{"quant.weight_estimator": "window", "quant.weight_param": 1.0, "quant.weight_unit": "std"}))
    declared = set(get_family("gradstats").metrics) | {"step"}
    assert [r["step"] for r in rows] == [1, 2, 3] and [r["stage"] for r in rows] == ["start", "finetune", "finetune"]
    assert [r["epoch"] for r in rows] == [0, 1, 2] and [r["train_steps"] for r in rows] == [0, 2, 4]
    for r in rows:
        assert set(r) == declared
        assert all(len(r[c]) == r["n_layers"] == 18 for c in STAT_COLUMNS)
        assert 0 <= r["test_acc"] <= 1 and math.isnan(r["pretrain_test_acc"])
        assert all(0 < v <= 1 for v in r["w_inside"]) and all(v > 0 for v in r["w_param"])
        assert all(-1 <= v <= 1 for v in r["w_cos_ste"] + r["a_cos_sur"])
    assert math.isnan(rows[0]["train_loss"]) and rows[-1]["train_loss"] > 0


def test_every_estimator_of_a_seed_sees_the_same_start_state_and_batches():
    """The activation statistics at the start do not depend on the weight estimator; the nSTE trial's
    weight gradient is its own reference (cosine exactly 1 with M = M_ref)."""
    same = {"stats.reference_batches": 3, "train.epochs": 1}
    ident = rows_of(tiny(**same))
    window = rows_of(tiny(**same, **{"quant.weight_estimator": "window", "quant.weight_param": 0.5,
                                     "quant.weight_unit": "std"}))
    for c in STAT_COLUMNS:
        if c.startswith("a_"):
            assert ident[0][c] == window[0][c] or all(math.isnan(v) for v in ident[0][c]), c
    assert ident[0]["test_acc"] == window[0]["test_acc"]
    assert ident[0]["w_cos_ste"] == [1.0] * 18 and ident[0]["w_sign_ste"] == [1.0] * 18
    assert all(v < 1 for v in window[0]["w_cos_ste"]) and all(v < 1 for v in window[0]["w_inside"])


def test_finetuning_equals_the_train_familys_loop():
    cfg = tiny(**{"quant.weight_estimator": "value_clip", "quant.weight_param": 0.5, "quant.weight_unit": "std"})
    rows = run_gradstats(cfg, lambda m: None, CPU)
    epochs = []
    train(finetune_config(cfg), lambda m, state=None: epochs.append(m), CPU)
    assert rows["test_acc"] == epochs[-1]["test_acc"] and rows["train_loss"] == epochs[-1]["train_loss"]


def test_pretrained_start_in_the_trial_is_cached_and_uses_the_binary_nonlinearity():
    cfg = tiny(**{"state.kind": "pretrained"})
    fp = pretrain_config(cfg)
    assert fp.model.kind == "fp" and fp.model.nonlin == "hardtanh" and fp.train.epochs == 1
    assert fp.train.lr == cfg.state.pretrain_lr
    data = load_train_data(cfg.data)
    state, acc = pretrained_state(cfg, data, CPU)
    again, _ = pretrained_state(tiny(**{"state.kind": "pretrained", "quant.weight_estimator": "window"}), data, CPU)
    assert again is state and 0 <= acc <= 1  # trials that differ in their estimators pretrain once
    rows = rows_of(cfg)
    assert rows[0]["pretrain_test_acc"] == acc


def test_pretrained_start_from_a_file_and_another_architecture_is_one_line(tmp_path):
    cfg = tiny(**{"state.kind": "pretrained"})
    state, _ = pretrained_state(cfg, load_train_data(cfg.data), CPU)
    save_state({k: v for k, v in state.items() if k != "source"}, tmp_path)
    from_file = tiny(**{"state.kind": "pretrained", "model.init_from": str(tmp_path)})
    assert from_file.state.pretrain_epochs == GradStatsConfig().state.pretrain_epochs  # reset: does not act
    assert get_family("gradstats").preflight(from_file) is None
    a, b = rows_of(from_file), rows_of(cfg)
    assert a[0]["w_norm"] == b[0]["w_norm"] and math.isnan(a[0]["pretrain_test_acc"])
    wide = tiny(**{"state.kind": "pretrained", "model.init_from": str(tmp_path), "model.width": 8})
    msg = get_family("gradstats").preflight(wide)
    assert "width differ" in msg and "\n" not in msg
    init = tiny(**{"model.init_from": str(tmp_path), "state.pretrain_epochs": 5})
    assert init.model.init_from == "" and init.state.pretrain_epochs == 3  # an initialized state ignores both


def test_config_rules():
    with pytest.raises(ConfigError, match="model.kind must be 'binary'"):
        tiny(**{"model.kind": "fp"})
    with pytest.raises(ConfigError, match="train.pretrain_epochs and train.finetune_lr do not act"):
        tiny(**{"train.finetune_lr": 0.1})
    with pytest.raises(ConfigError, match="stats.batches <= stats.reference_batches"):
        tiny(**{"stats.batches": 8})
    c = tiny(**{"stats.surrogate": "approx_sign", "stats.surrogate_param": 0.3, "train.checkpoint_every": 2})
    assert c.stats.surrogate_param == 0.0 and c.train.checkpoint_every == 0
    assert get_family("gradstats").path_keys == ("data.root", "model.init_from")
