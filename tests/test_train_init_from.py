"""Starting a training trial from another trial's final state (``model.init_from``): the final epoch's
state is kept, it loads with ``weights_only=True`` into the next trial's first model, and a state of
another architecture (width, nonlinearity, classes) or an unreadable file is a one-line error --
before Ray starts (preflight) and in the trial. Also the sign sides' units and activation threshold
in the config (canonicalization, the spec they build)."""
import pytest
import torch

from lowbit_core.config import with_overrides
from lowbit_core.quant.estimator_registry import Relative
from lowbit_core.training.checkpoint import read_model_state, save_state
from lowbit_core.families.train.config import TrainConfig, canonicalize
from lowbit_core.families.train.preflight import preflight
from lowbit_core.families.train.data import load_train_data
from lowbit_core.families.train.model import quant_spec
from lowbit_core.families.train.run import start_run, train

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


def test_classes_and_tensor_shapes_are_checked_before_and_in_the_trial(fp_folder, tmp_path):
    """Preflight knows the data's classes (synthetic: data.n_classes) and builds the model on the CPU."""
    cfg = tiny(**{"model.init_from": str(fp_folder), "data.n_classes": 5})
    assert "n_classes differ" in one_line(preflight(cfg))
    with pytest.raises(ValueError, match="n_classes differ"):
        train(cfg, lambda m, state=None: None, torch.device("cpu"))
    weights = read_model_state(fp_folder)["model"]
    torch.save({k: v for k, v in weights.items() if k != "fc.bias"}, tmp_path / "bare.pt")
    bare = tiny(**{"model.init_from": str(tmp_path / "bare.pt")})
    assert "tensors 1 missing (fc.bias)" in one_line(preflight(bare))
    with pytest.raises(ValueError, match=r"tensors 1 missing \(fc.bias\)") as exc:
        train(bare, lambda m, state=None: None, torch.device("cpu"))
    one_line(str(exc.value))
    wide = tiny(**{"model.width": 8})
    torch.save(read_model_state_of(wide), tmp_path / "wide.pt")
    narrow = tiny(**{"model.init_from": str(tmp_path / "wide.pt")})
    # conv1.weight of width 8 is (8, 3, 3, 3), the trial's width 4 is (4, 3, 3, 3)
    assert "of another shape (conv1.weight (8, 3, 3, 3) vs (4, 3, 3, 3)" in one_line(preflight(narrow))
    with pytest.raises(ValueError, match="of another shape") as exc:
        train(narrow, lambda m, state=None: None, torch.device("cpu"))
    one_line(str(exc.value))


def test_a_state_of_another_architecture_without_an_arch_record_is_refused_in_preflight(tmp_path):
    """An SR trial's training state (EDSR weights under "model", no "arch" record) and a bare
    ResNet-18 state_dict: preflight compares their tensors with the ResNet-20 the trial builds."""
    from lowbit_core.models.edsr import EDSR

    edsr = EDSR(2, blocks=1, channels=8).state_dict()
    torch.save({"format": 1, "epoch": 1, "model": edsr}, tmp_path / "edsr.pt")
    cfg = tiny(**{"model.init_from": str(tmp_path / "edsr.pt")})
    own = read_model_state_of(tiny())
    msg = one_line(preflight(cfg))
    assert msg.startswith(f"{tmp_path / 'edsr.pt'}: not the architecture of this trial (resnet20 width 4 basic "
                          f"hardtanh, 10 classes): tensors {len(own)} missing (conv1.weight, ")
    assert f"; {len(edsr)} unexpected (rgb_mean, head.weight, head.bias)" in msg
    r18 = tiny(**{"model.arch": "resnet18", "model.width": 4})
    torch.save(read_model_state_of(r18), tmp_path / "r18.pt")
    msg = one_line(preflight(tiny(**{"model.init_from": str(tmp_path / "r18.pt")})))
    # ResNet-18 has 8 blocks (layers.0-7), ResNet-20 9: the 9th block's 2 convs and 2 BNs (5 tensors
    # each: weight, bias, running mean and var, batch count) are missing
    assert "not the architecture of this trial (resnet20" in msg and "tensors 12 missing (layers.8.conv1.weight" in msg
    state = torch.get_rng_state()
    preflight(tiny(**{"model.init_from": str(tmp_path / "r18.pt"), "model.width": 8}))  # builds a model: no RNG drawn
    assert torch.equal(torch.get_rng_state(), state)


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


@pytest.mark.parametrize("kind, kbit", [("binary", "dorefa"), ("kbit", "dorefa"), ("kbit", "lsq"), ("kbit", "dsq")])
@pytest.mark.parametrize("block", ["basic", "bireal"])
def test_the_fp_model_preflight_builds_has_every_checked_tensor_of_each_precision(kind, kbit, block):
    """Preflight checks a state against the FP model of the architecture: the check ignores quantizer
    tensors (LSQ steps, DSQ bounds), and the other tensors are the same, with the same shapes."""
    from lowbit_core.training.checkpoint import _is_quantizer_key
    from lowbit_core.families.train.model import build_model

    def checked(cfg, k):
        return {n: tuple(t.shape) for n, t in build_model(cfg, k, 10).state_dict().items() if not _is_quantizer_key(n)}

    cfg = tiny(**{"model.kind": kind, "quant.kbit": kbit, "model.block": block})
    assert checked(cfg, kind) == checked(cfg, "fp")
