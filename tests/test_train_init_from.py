"""Starting a training trial from another trial's final state (``model.init_from``): the final epoch's
state is kept, it loads with ``weights_only=True`` into the next trial's first model, and a state of
another architecture (width, nonlinearity, classes) or an unreadable file is a one-line error --
before Ray starts (preflight) and in the trial. Also the sign sides' units and activation threshold
in the config (canonicalization, the spec they build)."""
import pytest
import torch

from lowbit_core.config import with_overrides
from lowbit_core.quant.estimator_registry import Relative
from lowbit_core.train.checkpoint import read_model_state, save_state
from lowbit_core.train.config import TrainConfig, canonicalize, preflight
from lowbit_core.train.data import load_train_data
from lowbit_core.train.loop import quant_spec, start_run, train

TINY = {"data.n_train": 128, "data.n_test": 32, "data.val_fraction": 0.0, "model.width": 4,
        "train.batch_size": 32, "train.epochs": 1, "train.steps_per_epoch": 2, "train.optimizer": "adam",
        "train.lr": 0.01}


def tiny(**overrides) -> TrainConfig:
    return with_overrides(TrainConfig(), {**TINY, **overrides})


def final_state(cfg: TrainConfig) -> dict:
    states = []
    train(cfg, lambda m, state=None: states.append(state), torch.device("cpu"))
    assert states[-1] is not None and states[-1]["epoch"] == cfg.train.epochs  # the last epoch is checkpointed
    return states[-1]


@pytest.fixture(scope="module")
def fp_folder(tmp_path_factory):
    """The final state of an FP trial trained with the binary network's nonlinearity (hardtanh)."""
    folder = tmp_path_factory.mktemp("fp")
    save_state(final_state(tiny(**{"model.kind": "fp", "model.nonlin": "hardtanh"})), folder)
    return folder


def one_line(msg: str) -> str:
    assert msg and "\n" not in msg, msg
    return msg


def test_a_binary_trial_starts_from_the_fp_trials_final_weights(fp_folder):
    cfg = tiny(**{"model.init_from": str(fp_folder)})
    assert preflight(cfg) is None
    fp = read_model_state(fp_folder)
    assert fp["arch"] == {"arch": "resnet20", "width": 4, "block": "basic", "nonlin": "hardtanh", "n_classes": 10}
    run = start_run(cfg, load_train_data(cfg.data), torch.device("cpu"),
                    init_model={**fp, "source": str(fp_folder)})
    own = run.model.state_dict()
    assert all(torch.equal(own[k], v) for k, v in fp["model"].items())
    fresh = start_run(tiny(), load_train_data(cfg.data), torch.device("cpu")).model.state_dict()
    assert not torch.equal(fresh["conv1.weight"], own["conv1.weight"])  # not the seeded init
    # the state file itself and a bare state_dict are accepted too
    assert read_model_state(fp_folder / "state.pt")["arch"] == fp["arch"]
    torch.save(fp["model"], fp_folder.parent / "bare.pt")
    assert preflight(tiny(**{"model.init_from": str(fp_folder.parent / "bare.pt")})) is None
    train(cfg, lambda m, state=None: None, torch.device("cpu"))  # and trains from it


@pytest.mark.parametrize("overrides, needle", [
    ({"model.width": 8}, "width differ"),
    ({"model.nonlin": "relu"}, "nonlin differ"),  # an FP model pretrained with another nonlinearity
    ({"model.block": "bireal"}, "block differ"),
])
def test_another_architecture_is_a_one_line_error_before_and_in_the_trial(fp_folder, overrides, needle):
    cfg = tiny(**{"model.init_from": str(fp_folder), **overrides})
    msg = one_line(preflight(cfg))
    assert needle in msg and str(fp_folder) in msg and "resnet20 width 4 basic hardtanh" in msg
    with pytest.raises(ValueError, match=needle) as exc:
        train(cfg, lambda m, state=None: None, torch.device("cpu"))
    one_line(str(exc.value))


def test_classes_and_tensor_shapes_are_checked_where_no_record_says_them(fp_folder, tmp_path):
    cfg = tiny(**{"model.init_from": str(fp_folder), "data.n_classes": 5})
    assert preflight(cfg) is None  # the classes of the data are known only in the trial
    with pytest.raises(ValueError, match="n_classes differ"):
        train(cfg, lambda m, state=None: None, torch.device("cpu"))
    weights = read_model_state(fp_folder)["model"]
    torch.save({k: v for k, v in weights.items() if k != "fc.bias"}, tmp_path / "bare.pt")
    with pytest.raises(ValueError, match=r"tensors 1 missing \(fc.bias\)") as exc:
        train(tiny(**{"model.init_from": str(tmp_path / "bare.pt")}), lambda m, state=None: None, torch.device("cpu"))
    one_line(str(exc.value))
    wide = tiny(**{"model.width": 8})
    torch.save(read_model_state_of(wide), tmp_path / "wide.pt")
    with pytest.raises(ValueError, match="of another shape") as exc:
        train(tiny(**{"model.init_from": str(tmp_path / "wide.pt")}), lambda m, state=None: None, torch.device("cpu"))
    one_line(str(exc.value))


def read_model_state_of(cfg: TrainConfig) -> dict:
    return start_run(cfg, load_train_data(cfg.data), torch.device("cpu")).model.state_dict()


def test_missing_or_foreign_files_are_one_line_errors(tmp_path):
    assert "no such state file" in one_line(preflight(tiny(**{"model.init_from": str(tmp_path / "none.pt")})))
    (tmp_path / "junk.pt").write_bytes(b"not a torch file")
    assert "weights_only=True" in one_line(preflight(tiny(**{"model.init_from": str(tmp_path / "junk.pt")})))
    torch.save({"module": torch.nn.ReLU()}, tmp_path / "pickle.pt")  # arbitrary objects are refused
    assert "weights_only=True" in one_line(preflight(tiny(**{"model.init_from": str(tmp_path / "pickle.pt")})))
    torch.save({"epoch": 3}, tmp_path / "nothing.pt")
    assert "holds no model weights" in one_line(preflight(tiny(**{"model.init_from": str(tmp_path / "nothing.pt")})))


def test_units_and_activation_threshold_in_the_config():
    base = {"model.kind": "binary", "quant.weight_unit": "std", "quant.act_unit": "mean_abs"}
    # identity without threshold: the unit does not act; the activation side keeps its threshold's unit
    c = canonicalize(tiny(**base, **{"quant.weight_estimator": "identity", "quant.act_threshold": 0.1}))
    assert (c.quant.weight_unit, c.quant.act_unit, c.quant.act_threshold) == ("abs", "mean_abs", 0.1)
    c = canonicalize(tiny(**base, **{"quant.weight_estimator": "identity", "quant.threshold": 0.2,
                                     "quant.act_estimator": "approx_sign"}))
    assert (c.quant.weight_unit, c.quant.act_unit) == ("std", "abs")
    c = canonicalize(tiny(**base, **{"quant.weight_estimator": "window", "quant.act": "none", "quant.act_threshold": 0.3}))
    assert (c.quant.weight_unit, c.quant.act_unit, c.quant.act_threshold) == ("std", "abs", 0.0)
    k = canonicalize(tiny(**{**base, "model.kind": "kbit", "quant.act_threshold": 0.3}))
    assert k.quant == canonicalize(tiny(**{"model.kind": "kbit"})).quant
    spec = quant_spec(tiny(**base, **{"quant.weight_estimator": "window", "quant.weight_param": 0.5,
                                      "quant.threshold": 0.25, "quant.act_estimator": "value_clip",
                                      "quant.act_threshold": 0.1}), "binary")
    assert spec.weight_param == Relative(0.5, "std") and spec.weight_threshold == Relative(0.25, "std")
    assert spec.act_param == Relative(0.5, "mean_abs")  # 0: the registry's default clip, in the side's unit
    assert spec.act_threshold == Relative(0.1, "mean_abs")
    plain = quant_spec(tiny(**{"quant.weight_estimator": "window"}), "binary")
    assert plain.weight_param == 1.0 and plain.weight_threshold == 0.0 and plain.act_param is None
