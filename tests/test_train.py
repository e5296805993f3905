"""Training loop (Ray-free): resume from a saved state equals an uninterrupted run, phases of the
pretrain path, schedules (cosine lr, DSQ alpha, EDE), metrics, config rules, data, checkpoints."""
import math

import numpy as np
import pytest
import torch

from lowbit_core.config import ConfigError, with_overrides
from lowbit_core.families import get_family
from lowbit_core.quant.estimators import ede_schedule
from lowbit_core.train.checkpoint import load_state, save_state
from lowbit_core.train.config import TrainConfig, canonicalize, preflight
from lowbit_core.train.data import load_train_data, make_synthetic
from lowbit_core.train.loop import cosine_lr, plan_phases, train

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
    assert [m["epoch"] for m in full] == [1, 2, 3, 4] and sorted(full_states) == [1, 2, 3]

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
    assert states[2]["phase"] == "pretrain" and 3 not in states  # the last epoch is not checkpointed
    declared = set(get_family("train").metrics) | {"step"}
    for m in metrics:
        assert set(m) == declared
        assert 0 <= m["test_acc"] <= m["best_test_acc"] <= 1 and math.isnan(m["dsq_alpha"])
    assert not any(".weight_quantizer." in k for k in states[2]["model"])  # the pretrain state is FP


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
    cfg = tiny(**{"data.name": "npz", "data.root": str(npz), "data.n_train": 8, "data.n_test": 0})
    assert preflight(cfg) is None
    d = load_train_data(cfg.data)
    assert d.x_train.shape == (8, 3, 32, 32) and d.x_test.shape == (6, 3, 32, 32) and d.n_classes == 3
    s1, s2 = make_synthetic(20, 10, 5), make_synthetic(20, 10, 5)
    assert s1.x_train.dtype == torch.uint8 and s1.x_train.shape == (20, 3, 32, 32)
    assert torch.equal(s1.x_train, s2.x_train) and set(s1.y_train.tolist()) <= set(range(5))


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
