"""The gradient statistics probe (lowbit_core/probes/gradient_stats.py) against direct computations:
a one-layer model differentiated by hand in numpy; a two-layer model against models built with each
estimator and differentiated by autograd; coinciding estimators give cosine exactly 1; relative
windows per layer by hand; the model is left as it was. float64 models: tolerances 1e-12."""
import copy
import math

import numpy as np
import pytest
import torch
from torch import nn

from lowbit_core.models.resnet import inner_convs, resnet20
from lowbit_core.probes.gradient_stats import Choice, gradient_stats, quantized_layers
from lowbit_core.quant import estimator_registry as reg
from lowbit_core.quant.estimator_registry import Relative
from lowbit_core.quant.layers import QuantLinear, QuantSpec

REFS = {"ste": Choice("identity"), "sur": Choice("approx_sign")}


def batches(n, b, d, classes, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [(torch.randn(b, d, generator=g, dtype=torch.float64), torch.randint(0, classes, (b,), generator=g))
            for _ in range(n)]


def np_sign(x):
    return np.where(x >= 0, 1.0, -1.0)


def np_estimator(name, g, x, t):
    """The registry's estimators written again in numpy (closed forms of its docstring)."""
    if name == "identity":
        return g
    if name == "window":
        return g * (np.abs(x) <= t)
    if name == "value_clip":
        return np.clip(g, -t, t)
    if name == "approx_sign":
        return g * np.clip(2 - 2 * np.abs(x), 0, None)
    raise KeyError(name)


def np_stats(vectors, ref_means):
    """Mean, sample variance, norm, var, snr, cosine and sign agreement of stacked per-batch vectors."""
    v = np.stack([np.ravel(a) for a in vectors])
    mean, var = v.mean(0), v.var(0, ddof=1)
    out = {"norm": np.linalg.norm(mean), "var": var.mean(), "snr": (mean @ mean) / (mean.size * var.mean())}
    for r, ref in ref_means.items():
        ref = np.ravel(ref)
        out[f"cos_{r}"] = mean @ ref / (np.linalg.norm(mean) * np.linalg.norm(ref))
        nz = mean != 0
        out[f"sign_{r}"] = np.mean(np.sign(mean[nz]) == np.sign(ref[nz]))
    return out


def close(a, b, tol=1e-12):
    assert abs(a - b) <= tol * max(1.0, abs(b)), (a, b)


# ---- one layer, differentiated by hand -------------------------------------------------------------

def test_statistics_equal_a_direct_numpy_computation_on_a_one_layer_model():
    tau_w, tau_a = 0.05, Relative(0.2, "std")
    spec = QuantSpec(weight="sign", weight_estimator="identity", weight_threshold=tau_w, act="sign",
                     act_estimator="approx_sign", act_threshold=tau_a)
    torch.manual_seed(0)
    layer = QuantLinear(6, 4, spec=spec).double()
    data = batches(7, 16, 6, 4)
    w_choices = [Choice("identity"), Choice("window", 0.2), Choice("window", Relative(1.0, "std")),
                 Choice("value_clip", Relative(0.5, "std"))]
    a_choices = [Choice("identity"), Choice("window", 0.8), Choice("approx_sign")]
    got = gradient_stats(layer, data, w_choices, a_choices, REFS, n_stats=5)

    W, bias = layer.weight.detach().numpy(), layer.bias.detach().numpy()
    w_grads = {c: [] for c in w_choices + [REFS["sur"]]}
    a_vecs, a_full = {c: [] for c in a_choices}, {c: [] for c in a_choices}
    inside = {c: [] for c in a_choices}
    for x, y in data:
        x, y = x.numpy(), y.numpy()
        sa = x - 0.2 * np.std(x)
        a, Wq = np_sign(sa), np_sign(W - tau_w)
        z = a @ Wq.T + bias
        p = np.exp(z - z.max(1, keepdims=True))
        p /= p.sum(1, keepdims=True)
        dz = (p - np.eye(4)[y]) / len(y)
        u, da = dz.T @ a, dz @ Wq  # dL/d sign(W - tau) and dL/d sign(x - tau)
        for c in w_grads:
            t = 0.5 * np.std(u) if c.name == "value_clip" else (np.std(W) if isinstance(c.param, Relative) else c.param)
            w_grads[c].append(np_estimator(c.name, u, W - tau_w, t))
        for c in a_choices:
            G = np_estimator(c.name, da, sa, c.param)
            a_vecs[c].append(G.sum(0))
            a_full[c].append(G)
            inside[c].append(np.mean(np_estimator(c.name, np.ones_like(sa), sa, c.param) != 0))
    ref_w = {"ste": np.mean(w_grads[Choice("identity")], 0), "sur": np.mean(w_grads[REFS["sur"]], 0)}
    ref_a = {"ste": np.mean(a_vecs[Choice("identity")], 0), "sur": np.mean(a_vecs[Choice("approx_sign")], 0)}
    for c in w_choices:
        want = np_stats(w_grads[c][:5], ref_w)
        for k, v in want.items():
            close(got.weight[c][k][0], v)
        window = {"identity": 1.0, "value_clip": 1.0}.get(c.name)
        t = np.std(W) if isinstance(c.param, Relative) else c.param
        close(got.weight[c]["inside"][0], window or np.mean(np.abs(W - tau_w) <= t))
    for c in a_choices:
        want = np_stats(a_vecs[c][:5], ref_a)
        for k, v in want.items():
            close(got.act[c][k][0], v)
        close(got.act[c]["inside"][0], np.mean(inside[c][:5]))
        for r, rc in (("ste", Choice("identity")), ("sur", Choice("approx_sign"))):
            per_batch = [np.ravel(g) @ np.ravel(h) / (np.linalg.norm(g) * np.linalg.norm(h))
                         for g, h in zip(a_full[c][:5], a_full[rc][:5])]
            close(got.act[c][f"cos_input_{r}"][0], np.mean(per_batch))
    close(got.weight[Choice("window", 0.2)]["param"][0], 0.2)
    close(got.weight[Choice("window", Relative(1.0, "std"))]["param"][0], np.std(W))
    assert math.isnan(got.weight[Choice("identity")]["param"][0])
    close(got.tau["weight"][0], tau_w)
    close(got.tau["act"][0], np.mean([0.2 * np.std(x.numpy()) for x, _ in data[:5]]))
    assert got.n_batches == 5 and got.n_reference_batches == 7 and got.layers == [""]
    assert 0 < got.weight[Choice("window", 0.2)]["inside"][0] < 1  # the window cuts weights here


# ---- two layers, against models built with each estimator --------------------------------------------

def two_layer(spec: QuantSpec) -> nn.Module:
    torch.manual_seed(1)
    return nn.Sequential(QuantLinear(8, 6, spec=spec), nn.Hardtanh(), QuantLinear(6, 3, spec=spec)).double()


BASE = dict(weight="sign", weight_scale="mean_abs", weight_threshold=Relative(0.1, "std"), act="sign",
            act_threshold=0.05)


def autograd_vectors(model, data, side):
    """Per batch and layer: dL/dW (weights) or the per-channel sum of dL/dx through the layer's
    activation quantizer (activations), by plain autograd on ``model``."""
    layers = [m for _, m in quantized_layers(model)]
    out = []
    for x, y in data:
        aliases = []

        def alias(mod, args):
            a = args[0]
            aliases.append(a.view_as(a) if a.requires_grad else a.detach().requires_grad_(True))
            return (aliases[-1],)

        handles = [m.act_quantizer.register_forward_pre_hook(alias) for m in layers]
        loss = nn.functional.cross_entropy(model(x), y)
        for h in handles:
            h.remove()
        wanted = [m.weight for m in layers] if side == "weight" else aliases
        grads = torch.autograd.grad(loss, wanted)
        out.append([g.numpy() if side == "weight" else g.sum(0).numpy() for g in grads])
    return out


def test_probe_gradients_equal_autograd_of_models_built_with_each_estimator():
    model = two_layer(QuantSpec(**BASE, weight_estimator="identity", act_estimator="approx_sign"))
    data = batches(6, 10, 8, 3, seed=2)
    w_choices = [Choice("window", Relative(0.8, "std")), Choice("value_clip", Relative(0.5, "std"))]
    a_choices = [Choice("window", Relative(1.0, "mean_abs")), Choice("identity")]
    got = gradient_stats(model, data, w_choices, a_choices, REFS, n_stats=4)

    def built(**kw):
        m = two_layer(QuantSpec(**{**BASE, "weight_estimator": "identity", "act_estimator": "approx_sign", **kw}))
        m.load_state_dict(model.state_dict())
        return m

    def layer_means(vecs):
        return [np.mean([v[layer] for v in vecs], 0) for layer in range(2)]

    ref_w = {r: layer_means(autograd_vectors(built(weight_estimator=c.name, weight_param=c.param), data, "weight"))
             for r, c in REFS.items()}
    ref_a = {r: layer_means(autograd_vectors(built(act_estimator=c.name, act_param=c.param), data, "act"))
             for r, c in REFS.items()}
    for c in w_choices:
        vecs = autograd_vectors(built(weight_estimator=c.name, weight_param=c.param), data, "weight")[:4]
        for layer in range(2):
            want = np_stats([v[layer] for v in vecs], {r: m[layer] for r, m in ref_w.items()})
            for k, v in want.items():
                close(got.weight[c][k][layer], v)
    for c in a_choices:
        vecs = autograd_vectors(built(act_estimator=c.name, act_param=c.param), data, "act")[:4]
        for layer in range(2):
            want = np_stats([v[layer] for v in vecs], {r: m[layer] for r, m in ref_a.items()})
            for k, v in want.items():
                close(got.act[c][k][layer], v)


# ---- coinciding estimators, relative windows, the model left as it was ---------------------------------

@pytest.fixture(scope="module")
def resnet():
    torch.manual_seed(0)
    spec = QuantSpec(weight="sign", weight_scale="mean_abs", act="sign", act_estimator="approx_sign")
    model = resnet20(10, spec, width=4)
    g = torch.Generator().manual_seed(3)
    data = [(torch.randn(8, 3, 16, 16, generator=g), torch.randint(0, 10, (8,), generator=g)) for _ in range(3)]
    return model, data


def test_a_window_wider_than_every_latent_weight_gives_cosine_exactly_one(resnet):
    model, data = resnet
    assert max(float(c.weight.detach().abs().max()) for c in inner_convs(model)) < 10
    wide, ident = Choice("window", 10.0), Choice("identity")
    got = gradient_stats(model, data, [wide, ident], [wide, ident], {"ste": ident})
    for side in (got.weight, got.act):
        assert (side[wide]["cos_ste"] == 1.0).all() and (side[wide]["sign_ste"] == 1.0).all()
        assert (side[wide]["inside"] == 1.0).all() and (side[ident]["cos_ste"] == 1.0).all()
        for k in ("norm", "var", "snr"):
            assert np.array_equal(side[wide][k], side[ident][k])
    assert (got.act[wide]["cos_input_ste"] == 1.0).all() and len(got.layers) == 18
    narrow = gradient_stats(model, data, [Choice("window", 0.01)], [], {"ste": ident}).weight[Choice("window", 0.01)]
    assert (narrow["cos_ste"] < 1).all() and (narrow["inside"] < 1).all()


def test_relative_windows_are_t_times_each_layers_std_by_hand(resnet):
    model, data = resnet
    c = Choice("window", Relative(0.5, "std"))
    got = gradient_stats(model, data, [c], [], {"ste": Choice("identity")})
    for i, conv in enumerate(inner_convs(model)):
        w = conv.weight.detach().double().numpy()
        t = 0.5 * np.std(w)
        assert abs(got.weight[c]["param"][i] - t) <= 1e-6 * t
        assert got.weight[c]["inside"][i] == pytest.approx(np.mean(np.abs(w) <= t), abs=1e-12)
    assert len(set(np.round(got.weight[c]["param"], 7))) == 18  # one window per layer


def test_the_probe_leaves_the_model_as_it_was(resnet):
    model, data = resnet
    model.eval()
    before = copy.deepcopy(model.state_dict())
    gradient_stats(model, data, [Choice("window", 0.05)], [Choice("identity")], REFS, n_stats=2)
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # BN running statistics included
    assert not any(m.training for m in model.modules()) and all(p.grad is None for p in model.parameters())
    out = model(data[0][0])  # the hooks are gone: the forward is the model's own
    assert out.shape == (8, 10)


def test_bad_batch_counts_and_names_are_errors(resnet):
    model, data = resnet
    with pytest.raises(ValueError, match="2 <= n_stats <= 3"):
        gradient_stats(model, data, [Choice("identity")], n_stats=1)
    with pytest.raises(KeyError, match="valid: " + ", ".join(reg.NAMES)):
        Choice("tanh")
