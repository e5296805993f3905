"""Toy MLPs: binary forward against a hand computation; every weight gets a gradient."""
import math

import pytest
import torch

from lowbit_core.models.mlp import MLP


def test_binary_forward_matches_manual():
    torch.manual_seed(0)
    m = MLP(5, (4,), 3, kind="binary")
    x = torch.randn(7, 5)
    l0, l1 = m.layers
    h = torch.relu(x @ (torch.where(l0.weight >= 0, 1.0, -1.0) / math.sqrt(5)).T + l0.bias)
    out = h @ (torch.where(l1.weight >= 0, 1.0, -1.0) / math.sqrt(4)).T + l1.bias
    torch.testing.assert_close(m(x), out)


def test_override_replaces_one_layer():
    torch.manual_seed(0)
    m = MLP(5, (4,), 3, kind="fp")
    x = torch.randn(2, 5)
    w = torch.zeros_like(m.layers[0].weight)
    expected = torch.relu(m.layers[0].bias).expand(2, 4) @ m.layers[1].weight.T + m.layers[1].bias
    torch.testing.assert_close(m(x, override={0: w}), expected)


@pytest.mark.parametrize("kind", ["fp", "binary"])
def test_every_parameter_gets_a_gradient(kind):
    torch.manual_seed(0)
    m = MLP(6, (8, 8), 4, kind=kind)
    m(torch.randn(16, 6)).square().mean().backward()
    for name, p in m.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_unknown_kind():
    with pytest.raises(KeyError, match="valid: fp, binary"):
        MLP(2, (2,), 2, kind="ternary")
