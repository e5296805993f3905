"""Sign forward and STE estimators against closed-form values (larq-style gradient tests)."""
import pytest
import torch

from lowbit_core.quant.estimators import ESTIMATORS, get_estimator, sign, sign_ste

W = torch.tensor([-2.0, -0.5, -0.25, -1e-8, 0.0, 1e-8, 0.25, 0.5, 2.0])
G = torch.tensor([3.0, -0.7, 0.5, -0.5, 0.2, -0.1, 0.6, -1.0, 0.05])


def grad_through(name, param, w=W, g=G):
    w = w.clone().requires_grad_(True)
    (sign_ste(w, name, param) * g).sum().backward()
    return w.grad


def test_sign_never_zero_and_exact():
    assert sign(W).tolist() == [-1, -1, -1, -1, 1, 1, 1, 1, 1]
    assert sign(torch.tensor([-0.0])).item() == 1.0  # -0.0 >= 0


def test_identity_passes_gradient_unchanged():
    assert torch.equal(grad_through("identity", None), G)


def test_value_clip_closed_form():
    expected = torch.tensor([0.5, -0.5, 0.5, -0.5, 0.2, -0.1, 0.5, -0.5, 0.05])
    assert torch.equal(grad_through("value_clip", 0.5), expected)


def test_value_clip_is_identity_when_unclipped():
    assert torch.equal(grad_through("value_clip", float(G.abs().max())), G)


def test_window_closed_form_with_edges_inside():
    # |w| <= 0.5 keeps the gradient (edges |w| = 0.5 included), |w| > 0.5 gives exact zeros
    expected = torch.tensor([0.0, -0.7, 0.5, -0.5, 0.2, -0.1, 0.6, -1.0, 0.0])
    got = grad_through("window", 0.5)
    assert torch.equal(got, expected)
    assert got[0].item() == 0.0 and got[-1].item() == 0.0


def test_window_just_outside_edge_is_zero():
    t = 0.25
    w = torch.tensor([t, torch.nextafter(torch.tensor(t), torch.tensor(1.0)).item(), -t])
    got = grad_through("window", t, w=w, g=torch.ones(3))
    assert got.tolist() == [1.0, 0.0, 1.0]


def test_window_is_identity_when_wide():
    assert torch.equal(grad_through("window", 10.0), G)


def test_forward_is_sign_for_every_estimator():
    for name in ESTIMATORS:
        assert torch.equal(sign_ste(W, name, 0.5), sign(W))


def test_unknown_estimator_lists_valid_names():
    with pytest.raises(KeyError, match="valid: identity, value_clip, window"):
        get_estimator("bogus")


def test_the_registry_is_the_one_source_of_estimator_facts():
    """Config choices, defaults, parameter fields and labels of probes and training derive from it."""
    import dataclasses
    import typing

    from lowbit_core.probes.config import EstimatorConfig
    from lowbit_core.quant import estimator_registry as reg
    from lowbit_core.quant.estimators import DEFAULT_PARAMS
    from lowbit_core.families.train.config import QuantConfig

    hints = typing.get_type_hints(EstimatorConfig, include_extras=True)
    assert hints["name"] == reg.EstimatorName
    assert typing.get_type_hints(QuantConfig, include_extras=True)["weight_estimator"] == reg.EstimatorName
    assert typing.get_args(reg.EstimatorName)[1].choices() == reg.NAMES
    probe_fields = {f.name: f.default for f in dataclasses.fields(EstimatorConfig)}
    for name, entry in reg.REGISTRY.items():
        assert ESTIMATORS[name] is entry.grad and DEFAULT_PARAMS[name] == entry.default
        if entry.param:
            assert probe_fields[entry.param] == entry.default
            assert EstimatorConfig(name=name).param_value() == entry.default
            assert reg.label(name, 0.25) == f"{name} {entry.symbol}=0.25" and reg.label(name, 0) == reg.label(name)
        else:
            assert EstimatorConfig(name=name).param_value() is None and reg.label(name, 0.25) == name
    assert reg.label(None) == reg.label(float("nan")) == "identity"
    with pytest.raises(KeyError, match="valid: identity, value_clip"):
        reg.get("nope")


def test_registry_imports_without_torch():
    import subprocess
    import sys

    code = "import sys, lowbit_core.quant.estimator_registry; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)
