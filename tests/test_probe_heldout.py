"""The held-out batch: same size and data as the probe batch, independent of it, used by no method;
``heldout_loss`` on every row of every method is the held-out loss of that method's best point."""
import pytest
import torch
import torch.nn.functional as F

from lowbit_core.config import with_overrides
from lowbit_core.data.probe_batches import ProbeData
from lowbit_core.families import get_family
from lowbit_core.probes import dg
from lowbit_core.probes.config import METHODS, ProbeConfig
from lowbit_core.probes.run import run_probe
from lowbit_core.probes.setup import setup
from lowbit_core.probes.start import pretrained_mlp, probe_data
from test_data import _fake_mnist
from test_probe_tiny import one_thread  # noqa: F401 (fixture)

TINY = {"model.hidden": (6, 5), "model.pretrain_steps": 5, "data.batch_size": 64, "data.n_features": 5,
        "data.n_classes": 3, "scan.lr_step": 0.02, "multi.steps": 4, "multi.report_every": 2, "dg.steps": 2,
        "dg.cdg_max_moves": 3, "admm.iterations": 4, "admm.report_every": 2, "ga.generations": 3, "ga.population": 6,
        "ga.report_every": 2, "es.generations": 3, "es.population": 4, "es.report_every": 2}
CPU = torch.device("cpu")


def test_teacher_heldout_batch_is_fresh_and_the_probe_batch_unchanged():
    data = ProbeData("teacher", n_features=5, n_classes=3, teacher_hidden=4)
    (x, y), (xh, yh) = data.fixed_batches(64, torch.Generator().manual_seed(7))
    x_old, y_old = data.sample(64, torch.Generator().manual_seed(7))  # what the probe batch always was
    assert torch.equal(x, x_old) and torch.equal(y, y_old)
    assert xh.shape == x.shape and yh.shape == y.shape
    assert not (x[:, None, :] == xh[None, :, :]).all(-1).any()  # no example shared
    assert torch.equal(yh, data._task.labels(xh))  # same task


def test_mnist_heldout_batch_is_disjoint(tmp_path):
    _fake_mnist(tmp_path)  # 12 images
    data = ProbeData("mnist", str(tmp_path))
    (x, y), (xh, yh) = data.fixed_batches(6, torch.Generator().manual_seed(0))
    x_old, _ = data.sample(6, torch.Generator().manual_seed(0))
    assert torch.equal(x, x_old)
    rows = {tuple(r.tolist()) for r in x}
    assert not any(tuple(r.tolist()) in rows for r in xh) and len(rows) == 6
    with pytest.raises(ValueError, match="2 \\* batch_size"):
        data.fixed_batches(7, torch.Generator())


def test_mnist_batch_too_large_for_a_disjoint_heldout_is_bad_config(tmp_path):
    _fake_mnist(tmp_path)
    fam = get_family("probe")
    msg = fam.preflight(with_overrides(ProbeConfig(), {"data.name": "mnist", "data.root": str(tmp_path),
                                                       "data.batch_size": 30001}))
    assert msg is not None and "\n" not in msg and "data.batch_size=30001" in msg and "1..30000" in msg


def test_no_method_sees_the_heldout_batch():
    """Only the probe batch is counted: the held-out loss of every reported point costs no evaluation."""
    cfg = with_overrides(ProbeConfig(), {**TINY, "method": "ste"})
    rows = []
    run_probe(cfg, rows.append, CPU)
    assert [r["loss_evals"] for r in rows] == [1, 3, 5]  # one forward per STE iteration, nothing else


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("kind", ["fp", "binary"])
def test_heldout_loss_is_on_every_row_and_is_that_of_the_best_point(method, kind):
    cfg = with_overrides(ProbeConfig(), {**TINY, "method": method, "model.kind": kind})
    rows = []
    run_probe(cfg, rows.append, CPU)
    s = setup(cfg, CPU)
    (_, _), (xh, yh) = probe_data(cfg).fixed_batches(cfg.data.batch_size, torch.Generator().manual_seed(2_000 + cfg.seed))
    model = pretrained_mlp(cfg, probe_data(cfg), CPU)
    with torch.no_grad():
        start = F.cross_entropy(model(xh), yh).item()
        single = F.cross_entropy(model(xh, override={0: s.w0 + s.single.best_delta}), yh).item()
    for r in rows:
        assert r["heldout_start_loss"] == pytest.approx(start, rel=1e-6)
        assert r["single_heldout_loss"] == pytest.approx(single, rel=1e-6)
        assert r["rel_improvement_heldout"] == pytest.approx((single - r["heldout_loss"]) / single)
    if method not in ("admm", "ga"):  # step 0: ADMM's STE checkpoint, the GA's initial population's best
        assert rows[0]["heldout_loss"] == pytest.approx(start, rel=1e-6)


def test_heldout_loss_follows_the_best_point_not_the_last():
    """Multi-step DG by hand: the held-out loss reported at each step is that of the lowest-loss
    point so far, recomputed here with whole forward passes on the held-out batch."""
    cfg = with_overrides(ProbeConfig(), {**TINY, "method": "dg", "dg.steps": 3})
    rows = []
    run_probe(cfg, rows.append, CPU)
    s = setup(cfg, CPU)
    pts = list(dg.multistep_dg(s.view, s.w0, cfg.budget.epsilon, 3, fp_moves=cfg.dg.fp_moves))
    (_, _), (xh, yh) = probe_data(cfg).fixed_batches(64, torch.Generator().manual_seed(2_000))
    for r, k in zip(rows, range(len(pts))):
        best = min(pts[:k + 1], key=lambda p: p.loss)
        with torch.no_grad():
            want = F.cross_entropy(s.model(xh, override={0: s.w0 + best.delta}), yh).item()
        assert r["heldout_loss"] == pytest.approx(want, rel=1e-6)
