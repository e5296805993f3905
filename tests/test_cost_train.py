"""The train family's cost columns: the model a trial config builds (precision, bits, width, classes,
pretrain path), the declared metrics, every reported row of a real (tiny) training run, and the
dry-run description."""
from __future__ import annotations

import pytest
import torch

from lowbit_core.config import with_overrides
from lowbit_core.cost import COST_METRICS, model_cost, read_layers
from lowbit_core.families.train.cost import INPUT_SHAPE, n_classes, train_cost
from lowbit_core.families import get_family
from lowbit_core.models.resnet import build_resnet
from lowbit_core.families.train.config import TrainConfig

RESNET20_MACS = 40_551_040


def cfg_of(**overrides) -> TrainConfig:
    return get_family("train").canonicalize(with_overrides(TrainConfig(), overrides))


@pytest.mark.parametrize("overrides, bits", [
    ({"model.kind": "fp"}, set()),
    ({"model.kind": "binary"}, {(1, 1)}),
    ({"model.kind": "binary", "quant.act": "none"}, {(1, 32)}),
    ({"model.kind": "kbit", "quant.kbit": "dorefa", "quant.bits": 3}, {(3, 3)}),
    ({"model.kind": "kbit", "quant.kbit": "lsq", "quant.bits": 4}, {(4, 4)}),
    ({"model.kind": "kbit", "quant.kbit": "dsq", "quant.bits": 1}, {(1, 1)}),
])
def test_bits_follow_the_config(overrides, bits):
    c = train_cost(cfg_of(**overrides))
    assert set(c.macs_by_bits) == bits and c.macs == RESNET20_MACS
    assert c.fp_macs == (RESNET20_MACS if not bits else 16 * 32 * 32 * 27 + 640)


def test_width_classes_and_pretrain_path():
    wide = train_cost(cfg_of(**{"model.width": 32, "model.kind": "fp"}))
    assert wide.macs == model_cost(build_resnet("resnet20", 10, None, width=32), INPUT_SHAPE).macs
    assert 3.9 < wide.macs / RESNET20_MACS < 4.0  # MACs grow with width^2 (the stem and classifier linearly)
    c100 = train_cost(cfg_of(**{"data.name": "cifar100", "model.kind": "fp"}))
    assert c100.macs - RESNET20_MACS == 64 * 90 and n_classes(cfg_of(**{"data.name": "cifar100"}).data) == 100
    assert n_classes(cfg_of(**{"data.n_classes": 7}).data) == 7
    # the pretrain path delivers the binary model: its cost is the binary model's, not the FP phase's
    pre = cfg_of(**{"model.kind": "binary", "train.pretrain_epochs": 2, "train.epochs": 4})
    assert train_cost(pre).bops == train_cost(cfg_of(**{"model.kind": "binary"})).bops > 0


def test_npz_classes_from_the_file(tmp_path):
    import numpy as np

    path = tmp_path / "d.npz"
    x = np.zeros((6, 32, 32, 3), np.uint8)
    np.savez(path, x_train=x, y_train=np.array([0, 1, 2, 3, 4, 0]), x_test=x, y_test=np.zeros(6, int))
    cfg = cfg_of(**{"data.name": "npz", "data.root": str(path), "model.kind": "fp"})
    assert n_classes(cfg.data) == 5 and train_cost(cfg).macs == RESNET20_MACS - 64 * 5


def test_family_declares_and_reports_the_cost_on_every_row():
    fam = get_family("train")
    assert set(COST_METRICS) <= set(fam.metrics)
    cfg = cfg_of(**{"model.width": 4, "model.kind": "binary", "data.n_train": 160, "data.n_test": 64,
                    "train.batch_size": 64, "train.epochs": 2, "train.steps_per_epoch": 1,
                    "train.checkpoint_every": 1})
    rows, states = [], []

    def report(metrics, state=None):
        rows.append(metrics)
        states.append(state is not None)

    torch.set_num_threads(1)
    fam.run(cfg, report, torch.device("cpu"))
    expected = train_cost(cfg).metrics()
    assert len(rows) == 2 and states[0]  # a checkpoint epoch's state passes through the wrapper
    for r in rows:
        assert set(r) <= set(fam.metrics) | {"step"}
        assert {k: r[k] for k in COST_METRICS} == expected
    layers = read_layers(rows[0]["cost_layers"])
    assert layers[0]["layer"] == "conv1" and layers[0]["w_bits"] == 32 and layers[1]["w_bits"] == 1


def test_dry_run_description():
    d = get_family("train").describe(cfg_of(**{"model.kind": "fp"}))
    assert d["OPs"] == "40.55M" and d["size"].startswith("8.675 Mbit")
