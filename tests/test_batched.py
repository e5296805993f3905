"""Batched multi-start search equals one multistep.search per start."""
import pytest
import torch

from lowbit_core.models.mlp import MLP
from lowbit_core.probes import multistep
from lowbit_core.probes.batched import search_batch
from lowbit_core.probes.budget import random_start
from lowbit_core.probes.gradient import batch_loss_fn
from lowbit_core.probes.structure import FirstLayerView


@pytest.mark.parametrize("kind", ["fp", "binary"])
@pytest.mark.parametrize("optimizer", ["sgd", "sgdm", "adam"])
def test_batched_equals_separate_runs(kind, optimizer):
    torch.manual_seed(0)
    model = MLP(6, (8, 5), 3, kind=kind, estimator="window", estimator_param=0.3).requires_grad_(False)
    gen = torch.Generator().manual_seed(0)
    x, y = torch.randn(64, 6, generator=gen), torch.randint(0, 3, (64,), generator=gen)
    w0 = model.layers[0].weight.clone()
    starts = torch.stack([random_start(w0.shape, a, 0.1, torch.Generator().manual_seed(i), None)
                          for i, a in enumerate([0.0, 0.03, 0.1, 0.05])])
    lrs = torch.tensor([0.01, 0.003, 0.02, 0.05])
    view = FirstLayerView(model, x, y)
    batched = list(search_batch(model, view, w0, starts, 0.1, optimizer, lrs, steps=7))
    loss_fn = batch_loss_fn(model, 0, w0, x, y)
    for s in range(4):
        single = list(multistep.search(loss_fn, starts[s], 0.1, optimizer, float(lrs[s]), 7))
        for p, q in zip(single, batched):
            assert q.loss[s].item() == pytest.approx(p.loss, rel=1e-5)
            assert q.best_loss[s].item() == pytest.approx(p.best_loss, rel=1e-5)
            assert q.max_abs_delta[s].item() == pytest.approx(p.max_abs_delta, rel=1e-6)
            assert q.max_abs_delta[s].item() <= 0.1


def test_folded_probe_rows_equal_separate_trials():
    import dataclasses

    from lowbit_core.config import with_overrides
    from lowbit_core.probes.config import ProbeConfig
    from lowbit_core.probes.run import run_probe, run_probe_batch

    base = with_overrides(ProbeConfig(), {"model.hidden": (8,), "model.pretrain_steps": 5, "data.batch_size": 64,
                                          "data.n_features": 6, "data.n_classes": 3, "scan.lr_step": 0.01,
                                          "multi.steps": 6, "multi.report_every": 3, "multi.optimizer": "adam"})
    cfgs = [dataclasses.replace(base, multi=dataclasses.replace(base.multi, noise=a, lr=lr))
            for a, lr in [(0.0, 0.01), (0.05, 0.01), (0.1, 0.003)]]
    got = {i: [] for i in range(3)}
    run_probe_batch(cfgs, lambda row, point: got[point].append(row), torch.device("cpu"))
    for i, cfg in enumerate(cfgs):
        ref = []
        run_probe(cfg, ref.append, torch.device("cpu"))
        assert [r["step"] for r in got[i]] == [r["step"] for r in ref] == [0, 3, 6]
        for a, b in zip(got[i], ref):
            assert set(a) == set(b)
            for k in ("loss", "best_loss", "rel_improvement_best", "single_best_loss", "max_abs_delta", "heldout_loss",
                      "rel_improvement_heldout", "reach_frac"):
                assert a[k] == pytest.approx(b[k], rel=1e-5), k
            for k in ("coords_moved", "loss_evals", "grad_evals", "single_loss_evals", "layer_weights"):
                assert a[k] == b[k], k


def test_fold_rejects_points_that_differ_elsewhere():
    import dataclasses

    from lowbit_core.probes.config import ProbeConfig
    from lowbit_core.probes.run import run_probe_batch

    a = ProbeConfig()
    with pytest.raises(ValueError, match="may differ only"):
        run_probe_batch([a, dataclasses.replace(a, seed=1)], lambda r, point: None)
