"""The discrete baselines at equal cost: sweeps/discrete_baselines.py (plan, smoke through the CLI,
the evaluation cap on every row, its report) and analysis/probe/cost.py on hand-made values."""
import math

import numpy as np
import pandas as pd
import pytest

from lowbit_sweeps.analysis.probe import cost
from lowbit_sweeps.analysis.probe.groups import METHOD
from lowbit_sweeps.analysis.probe.records import decided
from conftest import ROOT, run_script, run_sweep
from lowbit_core.sweep import load_sweep, plan
from test_budget_curve import check_sweep_file

KIND = "cfg.model.kind"


def test_discrete_baselines_sweep_file():
    # 2 kinds x 5 widths x 5 methods x 3 seeds; smoke 1 x 2 x 5 x 1; full 2 x 5 x 5 x 5
    s = check_sweep_file("discrete_baselines", {"default": 150, "smoke": 10, "full": 250})
    p = plan(s)
    assert {t.config.method for t in p.trials} == {"ste", "dg", "admm", "ga", "es"}
    assert {t.config.budget.fwd_equiv_per_weight for t in p.trials} == {2.5}
    assert sorted({t.config.model.hidden[0] * t.config.data.n_features for t in p.trials}) == [256, 512, 1024, 2048, 4096]
    assert "default 150 trials" in s.doc


@pytest.fixture(scope="module")
def smoke(tmp_path_factory, shared_ray):
    out = tmp_path_factory.mktemp("results")
    res = run_sweep(ROOT / "sweeps" / "discrete_baselines.py", "--smoke", "--results", out, timeout=600,
                    ray=shared_ray)
    assert res.returncode == 0, res.stderr[-3000:]
    return out / "discrete_baselines"


@pytest.mark.slow
def test_smoke_every_method_within_the_same_evaluation_cap(smoke):
    df = pd.read_parquet(smoke)
    s = load_sweep(ROOT / "sweeps" / "discrete_baselines.py")
    per_weight = s.profiles["smoke"].base["budget.fwd_equiv_per_weight"]
    cap = np.ceil(per_weight * df["layer_weights"])
    assert (df["fwd_equiv"] <= cap).all() and (df["fwd_equiv"] == df["loss_evals"] + 2 * df["grad_evals"]).all()
    final = df.sort_values("step").groupby("trial_key").tail(1)
    assert set(final["cfg.method"]) == {"ste", "dg", "admm", "ga", "es"}
    assert (final["best_loss"] <= final["start_loss"]).all()
    admm = final[final["cfg.method"] == "admm"]
    assert (admm["best_loss"] <= admm["single_best_loss"] + 1e-7).all()  # never worse than its STE checkpoint
    assert (df["max_abs_delta"] <= df["cfg.budget.epsilon"]).all() and df["heldout_loss"].notna().all()


@pytest.mark.slow
def test_smoke_report_compares_at_equal_evaluations(smoke):
    res = run_script("analysis/report.py", smoke, timeout=300)
    assert res.returncode == 0, res.stderr
    for name in ("report.md", "loss_vs_evals.png", "methods.png"):
        assert (smoke / "_report" / name).stat().st_size > 1000, name
    md = (smoke / "_report" / "report.md").read_text()
    assert "## Equal compute (forward-pass equivalents)" in md and "| layer weights |" in md
    for label in ("ADMM (from STE)", "GA", "ES (sep-CMA)", "DG S=1 (single-step)", "multi-step STE (sgd)"):
        assert label in md
    assert "Equal compute in forward-pass equivalents (binary): (L_GA - L_STE)/L_STE" in md


# ---- the analysis on hand-made values --------------------------------------------------------

def test_best_at_is_the_last_best_loss_within_the_budget():
    trial = pd.DataFrame({"fwd_equiv": [1, 10, 30, 100], "best_loss": [2.0, 1.5, 1.5, 1.2]})
    got = cost.best_at(trial, np.array([0, 1, 9, 10, 50, 1000]))
    np.testing.assert_array_equal(got[1:], [2.0, 2.0, 1.5, 1.5, 1.2])
    assert math.isnan(got[0])


STE, GA = "multi-step STE (sgd)", "GA"
# final best_loss by (layer weights, method, seed): GA is 1% above STE at 256 weights, 10% at 4096
LOSSES = {(256, STE): 1.0, (256, GA): 1.01, (4096, STE): 0.5, (4096, GA): 0.55}


def fake_final():
    rows = []
    for (size, method), loss in LOSSES.items():
        for seed, off in enumerate((0.0, 0.002, 0.004)):
            rows.append({KIND: "binary", METHOD: method, "seed": seed, "layer_weights": size,
                         "trial_key": f"{size}{method}{seed}", "best_loss": loss * (1 + off if method == GA else 1),
                         "fwd_equiv": 2 * size, "rel_improvement_heldout": 0.0})
    return pd.DataFrame(rows)


def test_scaling_table_pairs_each_method_with_ste_per_layer():
    t = cost.scaling_table(fake_final())
    ga = t[t[METHOD] == GA].set_index("layer_weights")
    assert ga.loc[256, "vs_ste.mean"] == pytest.approx(np.mean([0.01 * (1 + o) + o for o in (0, 0.002, 0.004)]))
    assert ga.loc[4096, "vs_ste.mean"] == pytest.approx(np.mean([(0.55 * (1 + o) - 0.5) / 0.5 for o in (0, 0.002, 0.004)]))
    assert ga.loc[256, "vs_ste.n"] == 3 and ga.loc[256, "vs_ste.verdict"].sign == 1
    assert ga.loc[256, "best_loss.mean"] == pytest.approx(np.mean([1.01 * (1 + o) for o in (0, 0.002, 0.004)]))
    assert (t.loc[t[METHOD] == STE, "vs_ste.n"] == 0).all()


def test_scaling_findings_say_the_ga_falls_behind_as_the_layer_grows():
    final = fake_final()
    lines, _ = decided(lambda rec: cost.scaling_findings(cost.scaling_table(final, rec), final, rec))
    assert len(lines) == 1
    assert "(L_GA - L_STE)/L_STE against multi-step STE (sgd)" in lines[0]
    # 256: ratios 1%, 1.202%, 1.404% -> m = 1.202%, s = 0.202%, m ± 4.3027·s/√3 = [0.7002%, 1.704%];
    # Holm over the table's K = 2 comparisons (GA at 256 and at 4096 weights)
    assert "256: +1.202 [+0.7002, +1.704]%, n = 3, d = 6, p_Holm = 0.019 (K = 2): higher" in lines[0]
    assert "4096: +10.22 [+9.673, +10.77]%, n = 3, d = 46" in lines[0]
    assert "changes by +9.018 [+8.973, +9.063] pp, n = 3, d = 501: GA falls behind as the layer grows" in lines[0]
    table = "\n".join(cost.format_scaling(decided(lambda rec: cost.scaling_table(final, rec))[0]))
    assert "vs STE +1.202 [+0.7002, +1.704]%, n = 3" in table and "Holm-adjusted over K = 2 comparisons" in table


def test_plot_loss_vs_evals(tmp_path):
    rows = []
    for method in (STE, GA):
        for seed in range(2):
            for e in (1, 10, 100):
                rows.append({METHOD: method, "trial_key": f"{method}{seed}", "fwd_equiv": e, "best_loss": 2.0 - e / 100,
                             "seed": seed, "single_fwd_equiv": 11, "single_best_loss": 1.9})
    df = pd.DataFrame(rows)
    path = cost.plot_loss_vs_evals(df, df, [METHOD], tmp_path / "loss_vs_evals.png")
    assert path.stat().st_size > 1000
    assert cost.plot_loss_vs_evals(df.drop(columns="fwd_equiv"), df, [METHOD], tmp_path / "x.png") is None
