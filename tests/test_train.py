"""Training loop (Ray-free): resume from a saved state equals an uninterrupted run, phases of the
pretrain path, schedules (cosine lr, DSQ alpha, EDE), metrics, config rules, data, checkpoints."""
import math

import numpy as np
import pytest
import torch
from torch import nn

from lowbit_core.config import ConfigError, with_overrides
from lowbit_core.families import get_family
from lowbit_core.quant.estimators import ede_schedule
from lowbit_core.training.checkpoint import load_state, save_state
from lowbit_core.families.train.config import TrainConfig, canonicalize
from lowbit_core.families.train.preflight import preflight
from lowbit_core.families.train.data import load_train_data, fixed_subset, make_synthetic, split_validation
from lowbit_core.families.train.model import build_model
from lowbit_core.families.train.run import TRAIN_METRICS, cosine_lr, plan_phases, train

TINY = {"data.n_train": 256, "data.n_test": 64, "model.width": 4, "train.batch_size": 32, "train.epochs": 4,
        "train.optimizer": "adam", "train.lr": 0.01, "train.weight_decay": 1e-4}
TIMING = ("images_per_s", "epoch_time_s")


def tiny(**overrides) -> TrainConfig:
    return with_overrides(TrainConfig(), {**TINY, **overrides})


@pytest.fixture
def deterministic():
    threads = torch.get_num_threads()
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(1)
    yield
    torch.use_deterministic_algorithms(False)
    torch.set_num_threads(threads)


class Crash(Exception):
    pass


def run(cfg, start_state=None, stop_after=None, folder=None):
    """Train; return (metrics per epoch, states per epoch). ``stop_after``: raise after saving that
    epoch's state to ``folder`` (a trial dying after its checkpoint)."""
    metrics, states = [], {}

    def report(m, state=None):
        metrics.append(m)
        if state is not None:
            states[m["epoch"]] = state
        if m["epoch"] == stop_after:
            save_state(state, folder)
            raise Crash

    try:
        train(cfg, report, torch.device("cpu"), start_state)
    except Crash:
        pass
    return metrics, states


def _same_state(a, b, path="state"):
    if isinstance(a, torch.Tensor):
        assert torch.equal(a, b), path
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), path
        for k in a:
            _same_state(a[k], b[k], f"{path}.{k}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b)):
            _same_state(x, y, f"{path}[{i}]")
    else:
        assert a == b, path


@pytest.mark.parametrize("overrides", [
    # binary from scratch with EDE, mixup, augmentation and perturbations every epoch
    {"model.kind": "binary", "quant.weight_estimator": "ede", "train.mixup_alpha": 0.4,
     "perturb.amplitude": 0.1, "perturb.period": 1, "model.init": "xavier"},
    # pretrain path with a scheduled 2-bit DSQ: the crash falls on the pretrain -> finetune boundary
    {"model.kind": "kbit", "quant.kbit": "dsq", "quant.bits": 2, "quant.dsq_schedule": "geometric",
     "train.pretrain_epochs": 2, "train.optimizer": "sgd", "train.lr": 0.05},
], ids=["binary-ede-mixup-perturb", "pretrain-dsq"])
def test_resume_after_two_epochs_equals_four_uninterrupted(overrides, tmp_path, deterministic):
    cfg = tiny(**overrides)
    full, full_states = run(cfg)
    assert [m["epoch"] for m in full] == [1, 2, 3, 4] and sorted(full_states) == [1, 2, 3, 4]  # final state kept

    first, _ = run(cfg, stop_after=2, folder=tmp_path)
    state = load_state(tmp_path)  # torch.load(..., weights_only=True)
    assert state["epoch"] == 2
    rest, rest_states = run(cfg, start_state=state)

    assert [m["epoch"] for m in first + rest] == [1, 2, 3, 4]
    assert [m["resumed_from_epoch"] for m in full] == [0] * 4
    assert [m["resumed_from_epoch"] for m in first + rest] == [0, 0, 2, 2]  # where each call started
    skip = TIMING + ("resumed_from_epoch",)
    for a, b in zip(full, first + rest):
        assert {k: v for k, v in a.items() if k not in skip} == {k: v for k, v in b.items() if k not in skip}
    _same_state(full_states[3], rest_states[3])  # weights, optimizer, RNG after epoch 3: bit-identical
    _same_state(full_states[4], rest_states[4])  # and the final state


def test_pretrain_path_phases_lr_and_metrics():
    cfg = tiny(**{"model.kind": "binary", "train.pretrain_epochs": 2, "train.finetune_lr": 0.002,
                  "train.epochs": 3, "train.steps_per_epoch": 3})
    assert [(p.name, p.start, p.end, p.kind) for p in plan_phases(cfg)] == [
        ("pretrain", 0, 2, "fp"), ("finetune", 2, 3, "binary")]
    metrics, states = run(cfg)
    assert [m["phase"] for m in metrics] == ["pretrain", "pretrain", "finetune"]
    assert [m["train_steps"] for m in metrics] == [3, 6, 9]  # steps_per_epoch caps the 8 batches
    assert [m["step"] for m in metrics] == [1, 2, 3]
    # lr of the last step of each epoch: cosine over the phase's steps, restarted at finetune_lr
    assert metrics[0]["lr"] == pytest.approx(cosine_lr(0.01, 2, 6))
    assert metrics[2]["lr"] == pytest.approx(cosine_lr(0.002, 2, 3))
    assert states[2]["phase"] == "pretrain" and states[3]["phase"] == "finetune"  # the final state is kept
    assert states[3]["arch"] == {"arch": "resnet20", "width": 4, "block": "basic", "nonlin": "hardtanh", "n_classes": 10}
    declared = set(TRAIN_METRICS) | {"step"}  # the loop's own metrics (the family adds its cost columns)
    assert set(TRAIN_METRICS) <= set(get_family("train").metrics)
    for m in metrics:
        assert set(m) == declared
        assert 0 <= m["test_acc"] <= m["best_test_acc"] <= 1 and math.isnan(m["dsq_alpha"])
    assert not any(".weight_quantizer." in k for k in states[2]["model"])  # the pretrain state is FP


@pytest.mark.parametrize("act, kind, expected", [
    ("quant", "binary", nn.Hardtanh), ("none", "binary", nn.ReLU), ("quant", "kbit", nn.ReLU)])
def test_pretraining_uses_the_nonlinearity_of_the_network_it_initializes(act, kind, expected):
    """nonlin='auto' is resolved from the trial's target kind in every phase: the FP pretraining net of
    a binary-activation ResNet uses hardtanh (Bi-Real Net's clip(-1, x, 1)), like the net it initializes."""
    cfg = tiny(**{"model.kind": kind, "quant.act": act, "train.pretrain_epochs": 2})
    for phase in plan_phases(cfg):
        acts = {type(m) for m in build_model(cfg, phase.kind, 10).modules() if isinstance(m, (nn.ReLU, nn.Hardtanh))}
        assert acts == {expected}, phase.name
    explicit = tiny(**{"model.kind": kind, "quant.act": act, "model.nonlin": "relu"})
    assert {type(m) for m in build_model(explicit, "fp", 10).modules() if isinstance(m, nn.Hardtanh)} == set()


@pytest.mark.parametrize("fraction", [0.25, 0.0])
def test_model_selection_uses_validation_never_test(fraction):
    """selected_epoch = the first epoch with the best val_acc so far, selected_test_acc its test_acc;
    with no validation split the selection falls back to the test set (best test accuracy)."""
    cfg = tiny(**{"data.val_fraction": fraction, "train.epochs": 4, "train.steps_per_epoch": 2})
    metrics, _ = run(cfg)
    score = "val_acc" if fraction else "test_acc"
    for i, m in enumerate(metrics):
        seen = [r[score] for r in metrics[:i + 1]]
        best = int(np.argmax(seen))  # first maximum
        assert m["selected_epoch"] == best + 1 and m["best_val_acc"] == seen[best]
        assert m["selected_test_acc"] == metrics[best]["test_acc"]
        assert math.isnan(m["val_acc"]) != bool(fraction)
    assert metrics[-1]["best_test_acc"] == max(r["test_acc"] for r in metrics)


def test_pretrain_path_selects_among_finetune_epochs_only():
    cfg = tiny(**{"model.kind": "binary", "train.pretrain_epochs": 2, "train.epochs": 4, "train.steps_per_epoch": 2,
                  "data.val_fraction": 0.25})
    metrics, _ = run(cfg)
    assert [m["phase"] for m in metrics] == ["pretrain", "pretrain", "finetune", "finetune"]
    fine = metrics[2:]
    best = 2 + int(np.argmax([m["val_acc"] for m in fine]))
    assert metrics[-1]["selected_epoch"] == best + 1 and metrics[-1]["selected_test_acc"] == metrics[best]["test_acc"]
    assert metrics[2]["selected_epoch"] == 3  # the first finetune epoch starts a new selection


def test_scratch_is_one_phase_and_fp_ignores_pretraining():
    assert [p.name for p in plan_phases(tiny(**{"model.kind": "binary"}))] == ["scratch"]
    fp = canonicalize(tiny(**{"model.kind": "fp", "train.pretrain_epochs": 2}))
    assert fp.train.pretrain_epochs == 0 and [p.kind for p in plan_phases(fp)] == ["fp"]


def test_dsq_schedule_reaches_alpha_min_and_ede_reports_t():
    cfg = tiny(**{"model.kind": "kbit", "quant.kbit": "dsq", "quant.bits": 1, "quant.dsq_schedule": "linear",
                  "train.epochs": 3, "train.steps_per_epoch": 1, "train.checkpoint_every": 0})
    metrics, states = run(cfg)
    assert [m["dsq_alpha"] for m in metrics] == pytest.approx([0.2, (0.2 + 1e-3) / 2, 1e-3])
    assert states == {}
    ede = tiny(**{"quant.weight_estimator": "ede", "train.epochs": 2, "train.steps_per_epoch": 1})
    t = [m["ede_t"] for m in run(ede)[0]]
    assert t == pytest.approx([ede_schedule(0, 2)[0], ede_schedule(1, 2)[0]]) and t[0] < t[1]


def test_synthetic_task_is_learnable():
    torch.manual_seed(0)
    cfg = tiny(**{"model.kind": "fp", "data.n_train": 512, "train.epochs": 3})
    metrics, _ = run(cfg)
    assert metrics[-1]["test_acc"] > 0.3  # chance: 0.1


def test_cosine_lr():
    assert cosine_lr(0.1, 0, 10) == 0.1 and cosine_lr(0.1, 10, 10) == pytest.approx(0.0)
    assert cosine_lr(0.1, 5, 10) == pytest.approx(0.05)


def test_canonicalize_resets_what_does_not_act():
    c = canonicalize(tiny(**{"model.kind": "fp", "quant.bits": 4, "quant.weight_estimator": "window"}))
    assert c.quant == TrainConfig().quant
    b = canonicalize(tiny(**{"model.kind": "binary", "quant.bits": 4, "quant.kbit": "dsq",
                             "quant.weight_estimator": "identity", "quant.weight_param": 0.3}))
    assert (b.quant.bits, b.quant.kbit, b.quant.weight_param) == (2, "dorefa", 0.0)
    w = canonicalize(tiny(**{"model.kind": "binary", "quant.weight_estimator": "window", "quant.weight_param": 0.3}))
    assert w.quant.weight_param == 0.3
    k = canonicalize(tiny(**{"model.kind": "kbit", "quant.kbit": "lsq", "quant.weight_estimator": "window",
                             "quant.dsq_schedule": "linear"}))
    assert (k.quant.weight_estimator, k.quant.dsq_schedule) == ("identity", "learned")
    s = canonicalize(tiny(**{"train.optimizer": "sgd", "train.beta1": 0.5, "perturb.period": 3}))
    assert s.train.beta1 == 0.9 and s.perturb.period == 1
    a = canonicalize(tiny(**{"train.optimizer": "adam", "train.momentum": 0.5}))
    assert a.train.momentum == 0.9


def test_config_errors_name_the_key():
    with pytest.raises(ConfigError, match="pretrain_epochs < train.epochs"):
        tiny(**{"train.pretrain_epochs": 4})
    with pytest.raises(ConfigError, match="model.kind='ternary' is not valid; valid: 'fp', 'binary', 'kbit'"):
        tiny(**{"model.kind": "ternary"})
    with pytest.raises(ConfigError, match="unknown key 'train.lrate'"):
        tiny(**{"train.lrate": 0.1})
    with pytest.raises(ConfigError, match="bits >= 2"):
        tiny(**{"quant.kbit": "lsq", "quant.bits": 1})


def test_preflight_and_data(tmp_path):
    assert preflight(tiny()) is None
    msg = preflight(tiny(**{"data.name": "cifar100", "data.root": str(tmp_path)}))
    assert "cifar-100-python" in msg and "download" in msg
    assert "not a file" in preflight(tiny(**{"data.name": "npz", "data.root": str(tmp_path / "x.npz")}))
    rng = np.random.default_rng(0)
    npz = tmp_path / "c.npz"
    np.savez(npz, x_train=rng.integers(0, 256, (10, 32, 32, 3), dtype=np.uint8), y_train=np.arange(10) % 3,
             x_test=rng.integers(0, 256, (6, 32, 32, 3), dtype=np.uint8), y_test=np.arange(6) % 3)
    cfg = tiny(**{"data.name": "npz", "data.root": str(npz), "data.n_train": 8, "data.n_test": 0,
                  "data.val_fraction": 0.25})
    assert preflight(cfg) is None
    d = load_train_data(cfg.data)
    assert d.x_train.shape == (6, 3, 32, 32) and d.x_val.shape == (2, 3, 32, 32) and d.x_test.shape == (6, 3, 32, 32)
    assert d.n_classes == 3
    s1, s2 = make_synthetic(20, 10, 5), make_synthetic(20, 10, 5)
    assert s1[0].dtype == torch.uint8 and s1[0].shape == (20, 3, 32, 32)
    assert torch.equal(s1[0], s2[0]) and set(s1[1].tolist()) <= set(range(5))


def test_fixed_subset_keeps_every_class_of_a_class_sorted_file():
    """n_train on a file sorted by class (the shared CIFAR-10 subset is) must not drop classes."""
    y = torch.arange(10).repeat_interleave(100)  # 0...0 1...1 ... 9...9
    x = torch.arange(1000).view(1000, 1, 1, 1).to(torch.int64)
    xs, ys = fixed_subset(x, y, 200)
    assert len(ys) == 200 and set(ys.tolist()) == set(range(10)) and torch.bincount(ys).min() >= 8
    ids = xs.flatten().tolist()
    assert ids == sorted(ids) and torch.equal(ys, y[xs.flatten()])  # original order, labels follow
    assert fixed_subset(x, y, 200)[0].tolist() == xs.tolist()  # fixed
    assert fixed_subset(x, y, 0)[0] is x and fixed_subset(x, y, 5000)[1] is y


@pytest.mark.parametrize("fraction", [0.0, 0.1, 0.5])
def test_validation_split_partitions_the_training_images(fraction):
    """Train and validation are disjoint and together the N training images; the split is fixed
    (the same for every call and seed), round(f N) images, and the test set is untouched."""
    x = torch.arange(40).view(40, 1, 1, 1).expand(40, 3, 2, 2).to(torch.uint8)
    y = torch.arange(40) % 4
    xt, yt, xv, yv = split_validation(x, y, fraction)
    assert len(yv) == round(fraction * 40) and len(yt) + len(yv) == 40
    ids_t, ids_v = xt[:, 0, 0, 0].tolist(), xv[:, 0, 0, 0].tolist()
    assert sorted(ids_t + ids_v) == list(range(40)) and ids_t == sorted(ids_t)  # train keeps its order
    assert torch.equal(yt, torch.tensor(ids_t) % 4) and torch.equal(yv, torch.tensor(ids_v) % 4)
    assert split_validation(x, y, fraction)[2].tolist() == xv.tolist()
    d = load_train_data(tiny(**{"data.val_fraction": fraction}).data)
    assert len(d.y_val) == round(fraction * 256) and len(d.y_train) == 256 - len(d.y_val) and len(d.y_test) == 64


def test_checkpoint_round_trip_is_weights_only(tmp_path):
    state = {"format": 1, "epoch": 2, "phase": "scratch", "rng": {"data": torch.Generator().get_state()},
             "model": {"w": torch.ones(2)}, "scheduler": {"kind": "cosine", "phase_step": 3}}
    save_state(state, tmp_path)
    _same_state(state, load_state(tmp_path))
    torch.save({"format": 0}, tmp_path / "state.pt")
    with pytest.raises(ValueError, match="format 1"):
        load_state(tmp_path)
    torch.save({"format": 1, "module": torch.nn.ReLU()}, tmp_path / "state.pt")
    with pytest.raises(Exception, match="[Ww]eights only"):
        load_state(tmp_path)  # arbitrary objects are refused
    with pytest.raises(FileNotFoundError):
        load_state(tmp_path / "nothing")
