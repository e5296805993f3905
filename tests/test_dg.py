"""DG, multi-step DG and CDG: rules checked against brute force on small problems."""
import pytest
import torch
import torch.nn.functional as F

from lowbit_core.config import with_overrides
from lowbit_core.models.mlp import MLP
from lowbit_core.probes import dg
from lowbit_core.probes.config import ProbeConfig
from lowbit_core.probes.run import run_probe
from lowbit_core.probes.structure import FirstLayerView


def problem(kind, seed=0):
    torch.manual_seed(seed)
    m = MLP(5, (4, 3), 3, kind=kind).requires_grad_(False)
    gen = torch.Generator().manual_seed(seed)
    x, y = torch.randn(48, 5, generator=gen), torch.randint(0, 3, (48,), generator=gen)
    return FirstLayerView(m, x, y), m.layers[0].weight.clone(), m, x, y


def brute_loss(m, x, y, w):
    return F.cross_entropy(m(x, override={0: w}), y).item()


def test_binary_candidates_are_reachable_flips_only():
    view, w0, *_ = problem("binary")
    eps = 0.2
    cand = dg.candidates(view, w0, torch.zeros_like(w0), eps, eps)[0]
    moved = (w0 + torch.nan_to_num(cand)).flatten().tolist()
    for c, w, u in zip(cand.flatten().tolist(), w0.flatten().tolist(), moved):
        if abs(w) < eps:
            assert (u >= 0) != (w >= 0)  # a flip
            assert abs(c) <= eps
        else:
            assert c != c  # NaN: unreachable


def test_fp_candidates_stay_in_the_box():
    view, w0, *_ = problem("fp")
    cand = dg.candidates(view, w0, torch.full_like(w0, 0.09), 0.05, 0.1, fp_moves=(1.0, 0.5))
    finite = cand[~torch.isnan(cand)]
    assert finite.numel() > 0 and (finite.abs() <= 0.1).all()


@pytest.mark.parametrize("kind", ["fp", "binary"])
def test_best_moves_match_brute_force(kind):
    view, w0, m, x, y = problem(kind)
    zero = torch.zeros_like(w0)
    cand = dg.candidates(view, w0, zero, 0.5, 0.5)
    change, target = dg.best_moves(view, w0, zero, cand)
    base = brute_loss(m, x, y, w0)
    for i in range(w0.shape[0]):
        for j in range(w0.shape[1]):
            options = [c for c in cand[:, i, j].tolist() if c == c]
            if not options:
                assert change[i, j] == float("inf")
                continue
            losses = []
            for c in options:
                w = w0.clone()
                w[i, j] = w0[i, j] + c
                losses.append(brute_loss(m, x, y, w) - base)
            assert change[i, j].item() == pytest.approx(min(losses), abs=2e-6)


@pytest.mark.parametrize("kind", ["fp", "binary"])
def test_dg_step_never_worse_and_inside_the_box(kind):
    view, w0, m, x, y = problem(kind)
    for select in ("best_prefix", "count"):
        d = dg.dg_step(view, w0, torch.zeros_like(w0), 0.3, 0.3, select=select, max_coords=3)
        assert d.abs().max() <= 0.3
        if select == "best_prefix":
            assert brute_loss(m, x, y, w0 + d) <= brute_loss(m, x, y, w0) + 1e-7


def test_multistep_dg_with_one_step_is_single_step_dg():
    view, w0, *_ = problem("binary")
    single = dg.dg_step(view, w0, torch.zeros_like(w0), 0.3, 0.3)
    pts = list(dg.multistep_dg(view, w0, 0.3, steps=1))
    assert [p.step for p in pts] == [0, 1]
    assert pts[1].loss == pytest.approx(view.loss(w0 + single), rel=0, abs=0)


def flippable(view, w0, delta, radius):
    """Coordinates with a finite (reachable) flip candidate inside the box of ``radius``."""
    return ~torch.isnan(dg.candidates(view, w0, delta, radius, radius)[0])


def test_binary_multistep_dg_reaches_the_whole_box_by_its_last_step():
    """Cumulative radius: after step s of S the flippable set is {|w0| <= s eps / S}, and at s = S it is
    the single-step set {|w0| <= eps} (a per-step reach of eps / S would freeze it at |w0| <= eps / S)."""
    view, w0, *_ = problem("binary")
    eps, steps = 0.6, 8
    zero = torch.zeros_like(w0)
    single = flippable(view, w0, zero, eps)
    assert torch.equal(single, w0.abs() <= eps) and single.sum() > (w0.abs() <= eps / steps).sum()
    for s in range(1, steps + 1):
        radius = dg.cumulative_radius(s, steps, eps)
        assert torch.equal(flippable(view, w0, zero, radius), w0.abs() <= radius)
    assert dg.cumulative_radius(steps, steps, eps) == eps
    assert torch.equal(flippable(view, w0, zero, dg.cumulative_radius(steps, steps, eps)), single)


def test_binary_multistep_dg_flips_weights_beyond_eps_over_s():
    """Brute force over problems: S = 8 flips some weight with eps/8 < |w0| <= eps (impossible with a
    per-step reach of eps / 8), never one beyond eps, and ends no worse than its first step."""
    eps, steps, far = 0.6, 8, 0
    for seed in range(4):
        view, w0, m, x, y = problem("binary", seed)
        pts, w = [], torch.zeros_like(w0)
        for s in range(1, steps + 1):
            w = dg.dg_step(view, w0, w, eps / steps, dg.cumulative_radius(s, steps, eps))
            assert w.abs().max() <= dg.cumulative_radius(s, steps, eps)
            pts.append(brute_loss(m, x, y, w0 + w))
        flipped = torch.sign(w0 + w + 0.0) != torch.sign(w0 + 0.0)
        assert (w0.abs()[flipped] <= eps).all()
        far += int((flipped & (w0.abs() > eps / steps)).sum())
        assert pts[-1] <= pts[0] + 1e-7
        last = list(dg.multistep_dg(view, w0, eps, steps))[-1]
        assert last.loss == pytest.approx(view.loss(w0 + w), abs=0)
    assert far > 0


@pytest.mark.parametrize("steps", [2, 3, 5])
def test_multistep_dg_respects_the_box_and_never_gets_worse(steps):
    view, w0, *_ = problem("fp")
    pts = list(dg.multistep_dg(view, w0, 0.2, steps=steps))
    assert len(pts) == steps + 1
    assert all(p.max_abs_delta <= 0.2 for p in pts)
    assert all(b.loss <= a.loss + 1e-7 for a, b in zip(pts, pts[1:]))


def test_exact_cdg_is_greedy_coordinate_descent_by_brute_force():
    view, w0, m, x, y = problem("binary")
    eps = 0.5
    pts = list(dg.cdg(view, w0, eps, max_moves=4))
    # brute force: at every move, try every reachable flip, take the best improving one
    w = w0.clone()
    expected = [brute_loss(m, x, y, w)]
    for _ in range(4):
        best = (0.0, None)
        cur = brute_loss(m, x, y, w)
        for i in range(w.shape[0]):
            for j in range(w.shape[1]):
                if abs(w0[i, j]) > eps:  # the flip point (zero) lies outside the box
                    continue
                v = w.clone()
                v[i, j] = -1e-30 if w[i, j] >= 0 else 0.0
                gain = brute_loss(m, x, y, v) - cur
                if gain < best[0] - 1e-9:
                    best = (gain, v)
        if best[1] is None:
            break
        w = best[1]
        expected.append(brute_loss(m, x, y, w))
    assert [p.loss for p in pts] == pytest.approx(expected, rel=1e-5)
    assert [p.coords_moved for p in pts][: len(expected)] == list(range(len(expected)))


def test_cdg_with_shortlist_never_gets_worse():
    view, w0, *_ = problem("fp")
    pts = list(dg.cdg(view, w0, 0.3, max_moves=6, refresh=3, shortlist=4))
    assert all(b.loss < a.loss for a, b in zip(pts, pts[1:]))


@pytest.mark.parametrize("method", ["dg", "cdg"])
def test_run_probe_with_dg_methods(method):
    cfg = with_overrides(ProbeConfig(), {"model.hidden": (8,), "model.pretrain_steps": 5, "data.batch_size": 64,
                                         "data.n_features": 6, "data.n_classes": 3, "scan.lr_step": 0.01,
                                         "method": method, "dg.steps": 3, "dg.cdg_max_moves": 4})
    rows = []
    last = run_probe(cfg, rows.append, torch.device("cpu"))
    assert rows[0]["step"] == 0 and rows[0]["coords_moved"] == 0
    assert all(r["max_abs_delta"] <= cfg.budget.epsilon for r in rows)
    assert "scan_loss" in last and last["best_loss"] <= rows[0]["loss"]
    if method == "dg":
        assert [r["step"] for r in rows] == [0, 1, 2, 3]
