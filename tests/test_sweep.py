"""Tests of lowbit_core/sweep.py and lowbit_core/families.py: planning the shipped sweeps (trial counts
computed by hand from their grids, canonical de-duplication, stable keys), overrides and seeds,
planning errors, Optuna studies with `when`, --set parsing, loading sweep files, and resolving a
Ray trial config back to the same typed config and key. Nothing here starts Ray or trains."""
from __future__ import annotations

import itertools
import json
import os
import re
import subprocess
import sys
import textwrap
from dataclasses import replace
from pathlib import Path

import pytest

from lowbit_core.config import ConfigError, flatten, with_overrides
from lowbit_core.families import family_names, get_family
from lowbit_core.probes.config import EstimatorConfig, MultiConfig, ProbeConfig
from lowbit_core.sweep import (Grid, IntUniform, LogUniform, Optuna, Profile, Resources, Sweep, Uniform,
                               config_key, grid, load_sweep, parse_set, plan, profile_names, resolve_trial,
                               trial_config)

REPO = Path(__file__).resolve().parents[1]
SWEEP_FILES = ("vste_window", "multistep_ste", "tune_multistep")
PROFILES = ("default", "smoke", "full")


@pytest.fixture(scope="module")
def family():
    return get_family("probe")


@pytest.fixture(scope="module")
def sweeps():
    return {name: load_sweep(REPO / "sweeps" / f"{name}.py") for name in SWEEP_FILES}


def one_line(excinfo) -> str:
    msg = str(excinfo.value)
    assert "\n" not in msg, f"not one line: {msg!r}"
    return msg


# ---------------------------------------------------------------- hand-computed expectations
def effective(sweep: Sweep, profile: str) -> tuple[dict, dict, tuple]:
    """(base, space, seeds) of a sweep under a profile, from the sweep's own fields."""
    base, space, seeds = dict(sweep.base), dict(sweep.space), sweep.seeds
    if profile != "default":
        p = sweep.profiles[profile]
        base.update(p.base)
        for k, v in p.space.items():
            if v is None:
                space.pop(k, None)
            else:
                space[k] = v
        seeds = p.seeds if p.seeds is not None else seeds
    return base, space, tuple(seeds)


def axis(space: dict, base: dict, key: str, default) -> tuple:
    if key in space:
        return tuple(space[key].values)
    return (base.get(key, default),)


def expected_vste_settings(space: dict, base: dict) -> set[tuple]:
    """Distinct (kind, estimator name, clip, window) after canonicalization, counted by hand:
    the FP model keeps only the default estimator; identity keeps neither parameter, value_clip only
    its clip, window only its window."""
    d = EstimatorConfig()
    kinds = axis(space, base, "model.kind", "binary")
    names = axis(space, base, "estimator.name", "identity")
    clips = axis(space, base, "estimator.clip", d.clip)
    windows = axis(space, base, "estimator.window", d.window)
    out = set()
    if "fp" in kinds:
        out.add(("fp", d.name, d.clip, d.window))
    if "binary" in kinds:
        if "identity" in names:
            out.add(("binary", "identity", d.clip, d.window))
        if "value_clip" in names:
            out |= {("binary", "value_clip", float(c), d.window) for c in clips}
        if "window" in names:
            out |= {("binary", "window", d.clip, float(w)) for w in windows}
    return out


def expected_grid_count(name: str, sweep: Sweep, profile: str) -> int:
    base, space, seeds = effective(sweep, profile)
    if name == "vste_window":
        n_est = len(expected_vste_settings(space, base))
        return n_est * len(axis(space, base, "data.batch_size", 1024)) * len(seeds)
    if name == "multistep_ste":
        # the estimator is fixed; momentum/betas stay at their defaults, so nothing collapses
        assert set(space) == {"model.kind", "multi.optimizer", "multi.noise"}
        return (len(space["model.kind"].values) * len(space["multi.optimizer"].values)
                * len(space["multi.noise"].values) * len(seeds))
    raise AssertionError(name)


@pytest.mark.parametrize("profile, n_expected", [("default", 48), ("smoke", 12), ("full", 130)])
def test_vste_window_trial_counts(sweeps, family, profile, n_expected):
    s = sweeps["vste_window"]
    base, space, seeds = effective(s, profile)
    settings = expected_vste_settings(space, base)
    # default: fp 1 + binary (identity 1 + 3 clips + 3 windows) = 8 settings x 2 batches x 3 seeds
    assert expected_grid_count("vste_window", s, profile) == n_expected
    p = plan(s, profile)
    assert not p.is_optuna and p.n_trials == len(p.trials) == n_expected
    got = {(t.config.model.kind, t.config.estimator.name, t.config.estimator.clip, t.config.estimator.window)
           for t in p.trials}
    assert got == settings
    batches = axis(space, base, "data.batch_size", 1024)
    assert {t.config.data.batch_size for t in p.trials} == set(batches)
    assert {t.config.seed for t in p.trials} == set(seeds)
    # every (setting, batch, seed) exactly once
    combos = [(t.config.model.kind, t.config.estimator.name, t.config.estimator.clip,
               t.config.estimator.window, t.config.data.batch_size, t.config.seed) for t in p.trials]
    assert len(set(combos)) == len(combos) == len(settings) * len(batches) * len(seeds)
    # the base and profile base are applied to every trial
    for key, value in base.items():
        v = flatten(p.trials[0].config)[key]
        assert v == (json.dumps(list(value)) if isinstance(value, tuple) else value), key


@pytest.mark.parametrize("profile, n_expected", [("default", 72), ("smoke", 24), ("full", 180)])
def test_multistep_ste_trial_counts(sweeps, profile, n_expected):
    s = sweeps["multistep_ste"]
    assert expected_grid_count("multistep_ste", s, profile) == n_expected
    p = plan(s, profile)
    assert p.n_trials == len(p.trials) == n_expected
    _, space, seeds = effective(s, profile)
    got = {(t.config.model.kind, t.config.multi.optimizer, t.config.multi.noise, t.config.seed) for t in p.trials}
    want = set(itertools.product(space["model.kind"].values, space["multi.optimizer"].values,
                                 space["multi.noise"].values, seeds))
    assert got == want


@pytest.mark.parametrize("profile, n_studies, n_samples", [("default", 12, 10), ("smoke", 3, 4), ("full", 30, 40)])
def test_tune_multistep_study_counts(sweeps, profile, n_studies, n_samples):
    s = sweeps["tune_multistep"]
    _, space, seeds = effective(s, profile)
    assert len(space["model.kind"].values) * len(space["multi.optimizer"].values) * len(seeds) == n_studies
    p = plan(s, profile)
    assert p.is_optuna and p.trials == ()
    assert len(p.studies) == n_studies
    assert all(st.num_samples == n_samples for st in p.studies)
    assert p.n_trials == n_studies * n_samples
    got = {(st.config.model.kind, st.config.multi.optimizer, st.config.seed) for st in p.studies}
    assert got == set(itertools.product(space["model.kind"].values, space["multi.optimizer"].values, seeds))


@pytest.mark.parametrize("name, pattern", [
    ("vste_window", r"default (\d+) trials"),
    ("multistep_ste", r"default (\d+) trials"),
    ("tune_multistep", r"default (\d+) studies"),
])
def test_docstring_cost_matches_plan(sweeps, name, pattern):
    p = plan(sweeps[name])
    stated = int(re.search(pattern, sweeps[name].doc).group(1))
    assert stated == (len(p.studies) if p.is_optuna else len(p.trials))


@pytest.mark.parametrize("name", SWEEP_FILES)
@pytest.mark.parametrize("profile", PROFILES)
def test_trial_keys_unique_and_canonical(sweeps, family, name, profile):
    p = plan(sweeps[name], profile)
    items = p.studies if p.is_optuna else p.trials
    keys = [x.key for x in items]
    assert len(set(keys)) == len(keys)
    for x in items:
        assert re.fullmatch(r"[0-9a-f]{12}", x.key)
        assert x.key == config_key(x.config)
        assert family.canonicalize(x.config) == x.config
        assert isinstance(x.config, ProbeConfig)


def test_plan_is_deterministic(sweeps):
    a = plan(sweeps["vste_window"])
    b = plan(load_sweep(REPO / "sweeps" / "vste_window.py"))
    assert [t.key for t in a.trials] == [t.key for t in b.trials]
    assert [t.config for t in a.trials] == [t.config for t in b.trials]


# ---------------------------------------------------------------- keys
def test_config_key_stable_and_distinguishing():
    a = with_overrides(ProbeConfig(), {"multi.lr": 0.01})
    b = with_overrides(ProbeConfig(), {"multi.lr": 0.01})
    assert a is not b and config_key(a) == config_key(b)
    assert config_key(with_overrides(a, {"multi.lr": 1e-2})) == config_key(a)
    assert config_key(with_overrides(a, {"seed": 1})) != config_key(a)
    assert config_key(with_overrides(a, {"multi.lr": 0.02})) != config_key(a)
    assert config_key(with_overrides(a, {"model.hidden": [128]})) != config_key(a)
    # int given for a float field: converted before hashing, so the same key
    assert config_key(with_overrides(ProbeConfig(), {"budget.epsilon": 1})) == \
        config_key(with_overrides(ProbeConfig(), {"budget.epsilon": 1.0}))


def test_config_key_same_in_another_process():
    cfg = with_overrides(ProbeConfig(), {"multi.lr": 0.003, "model.hidden": [16, 8], "seed": 4})
    code = ("from lowbit_core.config import with_overrides; from lowbit_core.probes.config import ProbeConfig;"
            "from lowbit_core.sweep import config_key;"
            "print(config_key(with_overrides(ProbeConfig(), {'multi.lr': 0.003, 'model.hidden': [16, 8], 'seed': 4})))")
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=REPO, check=True)
    assert out.stdout.strip() == config_key(cfg)


# ---------------------------------------------------------------- canonicalization (families.py)
def test_canonicalize_estimator_rules(family):
    c = family.canonicalize
    d = EstimatorConfig()
    fp = with_overrides(ProbeConfig(), {"model.kind": "fp", "estimator.name": "window", "estimator.window": 0.05,
                                        "estimator.clip": 1e-3})
    assert c(fp).estimator == d
    vc = with_overrides(ProbeConfig(), {"estimator.name": "value_clip", "estimator.clip": 1e-3, "estimator.window": 0.05})
    assert c(vc).estimator == EstimatorConfig("value_clip", clip=1e-3, window=d.window)
    win = with_overrides(ProbeConfig(), {"estimator.name": "window", "estimator.clip": 1e-3, "estimator.window": 0.05})
    assert c(win).estimator == EstimatorConfig("window", clip=d.clip, window=0.05)
    ident = with_overrides(ProbeConfig(), {"estimator.clip": 1e-3, "estimator.window": 0.05})
    assert c(ident).estimator == d
    # the rest of the config is untouched
    assert c(vc).multi == vc.multi and c(vc).model == vc.model and c(vc).seed == vc.seed


def test_canonicalize_optimizer_rules(family):
    c = family.canonicalize
    d = MultiConfig()
    odd = {"multi.momentum": 0.5, "multi.beta1": 0.6, "multi.beta2": 0.7}
    sgd = c(with_overrides(ProbeConfig(), {**odd, "multi.optimizer": "sgd"})).multi
    assert (sgd.momentum, sgd.beta1, sgd.beta2) == (d.momentum, d.beta1, d.beta2)
    sgdm = c(with_overrides(ProbeConfig(), {**odd, "multi.optimizer": "sgdm"})).multi
    assert (sgdm.momentum, sgdm.beta1, sgdm.beta2) == (0.5, d.beta1, d.beta2)
    adam = c(with_overrides(ProbeConfig(), {**odd, "multi.optimizer": "adam"})).multi
    assert (adam.momentum, adam.beta1, adam.beta2) == (d.momentum, 0.6, 0.7)
    assert c(c(with_overrides(ProbeConfig(), odd))) == c(with_overrides(ProbeConfig(), odd))  # idempotent


def test_get_family_unknown_lists_valid():
    assert {"probe", "train"} <= set(family_names()) and family_names() == sorted(family_names())
    with pytest.raises(ConfigError) as ei:
        get_family("resnet")
    assert one_line(ei).startswith(f"unknown family 'resnet'; valid: {', '.join(family_names())} ")


def test_every_family_has_a_trainable_derived_from_its_declaration():
    """No family needs a hand-written trainable: one is derived for each, named after it (and after
    the attribute of an import-path family)."""
    from lowbit_core.trainables import trainable_for

    assert {"probe", "train", "sr", "gradstats"} <= set(family_names())
    for name in family_names():
        assert trainable_for(name).__name__ == f"{name}_trainable"
    assert trainable_for("my_pkg.fams:TOY").__name__ == "toy_trainable"


# ---------------------------------------------------------------- overrides and seeds
def test_override_of_grid_axis_pins_it(sweeps):
    s = sweeps["vste_window"]
    p = plan(s, overrides={"estimator.clip": 1e-3})
    # fp 1 + binary (identity 1 + value_clip 1 + window 3) = 6 settings x 2 batches x 3 seeds
    assert len(p.trials) == 36
    assert {t.config.estimator.clip for t in p.trials if t.config.estimator.name == "value_clip"} == {1e-3}
    p = plan(s, overrides={"model.kind": "binary", "data.batch_size": 8192})
    assert len(p.trials) == 7 * 1 * 3
    assert {t.config.model.kind for t in p.trials} == {"binary"}
    assert {t.config.data.batch_size for t in p.trials} == {8192}
    # an override of a non-axis key applies to every trial
    p = plan(s, "smoke", overrides={"multi.steps": 3})
    assert len(p.trials) == 12 and {t.config.multi.steps for t in p.trials} == {3}


def test_override_is_checked(sweeps):
    with pytest.raises(ConfigError):
        plan(sweeps["vste_window"], overrides={"estimator.clip": -1.0})
    with pytest.raises(ConfigError):
        plan(sweeps["vste_window"], overrides={"model.kind": "ternary"})
    with pytest.raises(ConfigError) as ei:
        plan(sweeps["vste_window"], overrides={"estimator.clipp": 0.1})
    assert "estimator.clip" in one_line(ei)


def test_set_seeds_replaces_seeds(sweeps, family):
    overrides, seeds = parse_set(family, ["seeds=[7, 8, 9, 10]"])
    assert overrides == {} and seeds == (7, 8, 9, 10)
    p = plan(sweeps["multistep_ste"], overrides=overrides, seeds=seeds)
    assert p.seeds == (7, 8, 9, 10)
    assert len(p.trials) == 2 * 3 * 4 * 4
    assert {t.config.seed for t in p.trials} == {7, 8, 9, 10}
    # seeds given to plan win over the profile's too
    p = plan(sweeps["multistep_ste"], "smoke", seeds=(5,))
    assert {t.config.seed for t in p.trials} == {5} and len(p.trials) == 2 * 3 * 2


def test_set_overrides_and_seeds_through_plan(sweeps, family):
    overrides, seeds = parse_set(family, ["estimator.clip=1e-3", "seeds=[7,8]"])
    assert overrides == {"estimator.clip": 0.001} and seeds == (7, 8)
    p = plan(sweeps["vste_window"], overrides=overrides, seeds=seeds)
    assert len(p.trials) == 6 * 2 * 2
    assert {t.config.seed for t in p.trials} == {7, 8}


@pytest.mark.parametrize("seeds", [(1, 1), (0, 1, 0), (), (1.0,), (True,), ("0",)])
def test_bad_seeds_rejected(sweeps, seeds):
    with pytest.raises(ConfigError) as ei:
        plan(sweeps["multistep_ste"], seeds=seeds)
    one_line(ei)


def test_duplicate_seeds_rejected_in_set(family, sweeps):
    with pytest.raises(ConfigError) as ei:
        parse_set(family, ["seeds=[1, 2, 1]"])
    assert "duplicates" in one_line(ei)
    with pytest.raises(ConfigError) as ei:
        plan(replace(sweeps["multistep_ste"], seeds=(3, 3)))
    assert "duplicates" in one_line(ei)


def test_set_seed_is_not_silently_ignored(family):
    with pytest.raises(ConfigError) as ei:
        parse_set(family, ["seed=5"])
    assert "seeds=[" in one_line(ei)


# ---------------------------------------------------------------- planning errors
def test_unknown_profile_lists_valid(sweeps):
    with pytest.raises(ConfigError) as ei:
        plan(sweeps["vste_window"], "huge")
    msg = one_line(ei)
    assert "'huge'" in msg and msg.endswith("valid: default, smoke, full")
    assert profile_names(sweeps["vste_window"]) == ["default", "smoke", "full"]


@pytest.mark.parametrize("metric", ["accuracy", "", "Loss"])
def test_metric_not_declared_rejected(sweeps, family, metric):
    with pytest.raises(ConfigError) as ei:
        plan(replace(sweeps["vste_window"], metric=metric))
    msg = one_line(ei)
    assert repr(metric) in msg
    for m in family.metrics:
        assert m in msg


def test_distribution_in_grid_sweep_rejected(sweeps):
    s = sweeps["vste_window"]
    bad = replace(s, space={**s.space, "multi.lr": LogUniform(1e-4, 1e-2)})
    with pytest.raises(ConfigError) as ei:
        plan(bad)
    msg = one_line(ei)
    assert "multi.lr" in msg and "grid" in msg


@pytest.mark.parametrize("space, needle", [
    ({"multi.lrr": grid(0.1)}, "multi.lr"),                      # unknown key
    ({"model.kind": grid("fp", "ternary")}, "'fp', 'binary'"),   # value outside Literal
    ({"multi.steps": grid(10, 2.5)}, "multi.steps"),              # wrong type in a grid
    ({"seed": grid(0, 1)}, "seeds"),                              # seeds are not a space axis
    ({"multi.noise": grid(0.0, 0.2)}, "exceeds budget.epsilon"),  # a grid point out of range
    ({"multi.lr": [0.1, 0.2]}, "must be Grid"),                   # a bare list
])
def test_bad_space_rejected(space, needle):
    s = Sweep(name="t", family="probe", space=space, metric="loss")
    with pytest.raises(ConfigError) as ei:
        plan(s)
    assert needle in one_line(ei)


@pytest.mark.parametrize("kwargs, needle", [
    ({"name": "my sweep"}, "sweep name"),
    ({"family": "nope"}, "unknown family"),
    ({"mode": "best"}, "mode"),
    ({"base": {"multi.lrr": 0.1}}, "multi.lr"),
    ({"base": {"multi.noise": 0.5}}, "exceeds budget.epsilon"),
    ({"base": {"multi.steps": "100"}}, "multi.steps"),
    ({"profiles": {"small": {"seeds": (0,)}}}, "Profile"),
])
def test_bad_sweep_fields_rejected(kwargs, needle):
    s = Sweep(**{"name": "t", "family": "probe", "metric": "loss", **kwargs})
    with pytest.raises(ConfigError) as ei:
        plan(s)
    assert needle in one_line(ei)


def test_spec_object_checks():
    with pytest.raises(ConfigError):
        Grid(())
    with pytest.raises(ConfigError):
        grid()
    assert grid(1, 2).values == (1, 2) and Grid([1, 2]).values == (1, 2)
    with pytest.raises(ConfigError):
        Resources(cpu=0)
    with pytest.raises(ConfigError):
        Resources(gpu=-0.5)
    with pytest.raises(ConfigError):
        Optuna(num_samples=0)


def test_profile_space_none_removes_axis():
    s = Sweep(name="t", family="probe", metric="loss", seeds=(0, 1),
              space={"model.kind": grid("fp", "binary"), "multi.optimizer": grid("sgd", "adam")},
              profiles={"one": Profile(space={"multi.optimizer": None}, base={"multi.optimizer": "sgdm"})})
    assert len(plan(s).trials) == 2 * 2 * 2
    p = plan(s, "one")
    assert len(p.trials) == 2 * 2 and {t.config.multi.optimizer for t in p.trials} == {"sgdm"}


# ---------------------------------------------------------------- Optuna
def test_optuna_studies_per_grid_point_and_seed_with_when(sweeps):
    s = sweeps["tune_multistep"]
    p = plan(s)
    want = {"sgd": {"multi.lr"}, "sgdm": {"multi.lr", "multi.momentum"},
            "adam": {"multi.lr", "multi.beta1", "multi.beta2"}}
    assert len(p.studies) == 2 * 3 * 2
    for st in p.studies:
        assert set(st.distributions) == want[st.config.multi.optimizer]
        for k, d in st.distributions.items():
            assert d is s.space[k]
        assert st.num_samples == 10
        # the study's fixed point carries the sweep's base
        assert st.config.multi.steps == 100 and st.config.scan.lr_step == 2e-3
    assert p.studies[0].distributions["multi.lr"] == LogUniform(1e-4, 5e-2)


def test_optuna_profile_num_samples_and_space(sweeps):
    p = plan(sweeps["tune_multistep"], "smoke")
    assert {st.config.model.kind for st in p.studies} == {"binary"}
    assert {st.config.seed for st in p.studies} == {0}
    assert {st.config.multi.optimizer for st in p.studies} == {"sgd", "sgdm", "adam"}
    assert p.n_trials == 12
    assert p.sweep.search == Optuna(num_samples=4, sampler_seed=0)


def test_optuna_no_applicable_distribution_rejected():
    s = Sweep(name="t", family="probe", metric="loss", search=Optuna(num_samples=2),
              space={"multi.optimizer": grid("sgd", "sgdm"),
                     "multi.momentum": Uniform(0.5, 0.9, when={"multi.optimizer": "sgdm"})})
    with pytest.raises(ConfigError) as ei:
        plan(s)
    assert "no distribution applies" in one_line(ei)


@pytest.mark.parametrize("dist, needle", [
    (LogUniform(1e-3, 1e-1), "float"),                                # LogUniform on an int field
    (IntUniform(10, 100, when={"multi.optimizer": "rmsprop"}), "'sgd', 'sgdm', 'adam'"),
    (IntUniform(100, 10), "low < high"),
])
def test_optuna_distribution_checks_steps(dist, needle):
    s = Sweep(name="t", family="probe", metric="loss", search=Optuna(), space={"multi.steps": dist})
    with pytest.raises(ConfigError) as ei:
        plan(s)
    assert needle in one_line(ei)


def test_optuna_distribution_checks_float():
    for dist in (LogUniform(0.0, 1e-1), LogUniform(1e-1, 1e-2), IntUniform(1, 3)):
        s = Sweep(name="t", family="probe", metric="loss", search=Optuna(), space={"multi.lr": dist})
        with pytest.raises(ConfigError):
            plan(s)
    s = Sweep(name="t", family="probe", metric="loss", search=Optuna(num_samples=3),
              space={"multi.lr": LogUniform(1e-4, 1e-2), "multi.steps": IntUniform(1, 50)})
    p = plan(s)
    assert len(p.studies) == 1 and p.n_trials == 3


# ---------------------------------------------------------------- parse_set
def test_parse_set_typed_values(family):
    overrides, seeds = parse_set(family, ["multi.steps=50", " multi.lr = 0.01 ", "model.hidden=[64,64]",
                                          "data.root=/a=b", "model.kind=fp"])
    assert overrides == {"multi.steps": 50, "multi.lr": 0.01, "model.hidden": (64, 64),
                         "data.root": "/a=b", "model.kind": "fp"}
    assert type(overrides["multi.steps"]) is int and seeds is None
    assert parse_set(family, []) == ({}, None)


@pytest.mark.parametrize("item, needle", [
    ("multi.lr", "key=value"),              # no '='
    ("=0.1", "key=value"),                  # no key
    ("multi.lrr=0.1", "unknown key 'multi.lrr'"),
    ("lr=0.1", "did you mean multi.lr"),
    ("multi.steps=ten", "multi.steps"),
    ("multi.steps=1.5", "multi.steps"),
    ("model.kind=ternary", "'fp', 'binary'"),
    ("model.hidden=64,64", "model.hidden"),
    ("seeds=0,1", "seeds"),
    ("seeds=[]", "non-empty"),
    ("seeds=[0, 1.5]", "seeds[1]"),
])
def test_parse_set_errors(family, item, needle):
    with pytest.raises(ConfigError) as ei:
        parse_set(family, [item])
    assert needle in one_line(ei)


# ---------------------------------------------------------------- load_sweep
def write(path: Path, text: str) -> Path:
    path.write_text(textwrap.dedent(text))
    return path


def test_load_sweep_missing_file_lists_available(monkeypatch):
    monkeypatch.chdir(REPO)
    with pytest.raises(ConfigError) as ei:
        load_sweep("sweeps/nope.py")
    msg = one_line(ei)
    assert "'sweeps/nope.py' not found" in msg
    for name in SWEEP_FILES:
        assert name in msg.split("run by name): ")[1].split(", ")


def test_load_sweep_missing_file_elsewhere(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError) as ei:
        load_sweep("nope.py")
    assert one_line(ei).startswith("sweep file 'nope.py' not found; shipped sweeps (run by name): ")
    with pytest.raises(ConfigError) as ei:
        load_sweep(tmp_path)  # a directory
    assert "not found" in one_line(ei)


def test_load_sweep_not_python(tmp_path):
    p = write(tmp_path / "sweep.yaml", "name: x\n")
    with pytest.raises(ConfigError) as ei:
        load_sweep(p)
    assert "is not a Python module (.py)" in one_line(ei)


SWEEP_SRC = 'Sweep(name="{name}", family="probe", metric="loss")'


@pytest.mark.parametrize("body, needle", [
    ("X = 1\n", "no Sweep object"),
    ("from lowbit_core.sweep import Sweep\nA = " + SWEEP_SRC.format(name="a") + "\nB = "
     + SWEEP_SRC.format(name="b") + "\n", "2 Sweep objects"),
    ("raise RuntimeError('boom')\n", "failed: RuntimeError: boom"),
    ("import no_such_module_xyz\n", "ModuleNotFoundError"),
    ("def f(:\n    pass\n", "SyntaxError"),
    ("from lowbit_core.sweep import Resources\nR = Resources(cpu=0)\n", "ConfigError"),
])
def test_load_sweep_bad_modules(tmp_path, body, needle):
    p = write(tmp_path / "bad_sweep.py", body)
    with pytest.raises(ConfigError) as ei:
        load_sweep(p)
    msg = one_line(ei)
    assert needle in msg, msg
    assert str(p) in msg


def test_load_sweep_doc_from_module_docstring(tmp_path):
    p = write(tmp_path / "mine.py", '''\
        """  My sweep.

        Question: q.
        """
        from lowbit_core.sweep import Sweep, grid
        SWEEP = Sweep(name="mine", family="probe", metric="loss", space={"multi.lr": grid(0.1, 0.2)})
        ''')
    s = load_sweep(p)
    assert s.name == "mine" and s.doc == "My sweep.\n\nQuestion: q."
    assert len(plan(s).trials) == 2
    # an explicit doc wins
    p2 = write(tmp_path / "mine2.py", '''\
        """Module doc."""
        from lowbit_core.sweep import Sweep
        SWEEP = Sweep(name="mine2", family="probe", metric="loss", doc="explicit")
        ''')
    assert load_sweep(p2).doc == "explicit"
    assert not [m for m in sys.modules if m.startswith("_lowbit_sweep_")]


def test_load_sweep_with_dataclass_in_module(tmp_path):
    p = write(tmp_path / "dc_sweep.py", '''\
        """doc"""
        from __future__ import annotations
        from dataclasses import dataclass
        from lowbit_core.sweep import Sweep

        @dataclass
        class Extra:
            a: int = 1

        SWEEP = Sweep(name="dc", family="probe", metric="loss")
        ''')
    assert load_sweep(p).name == "dc"


@pytest.mark.parametrize("name", SWEEP_FILES)
def test_shipped_sweep_docstrings(sweeps, name):
    s = sweeps[name]
    assert s.name == name and s.family == "probe"
    for word in ("Question", "Expected", "Cost", "Command"):
        assert re.search(rf"^{word}\b", s.doc, re.M), f"{name}: docstring lacks {word!r}"
    assert f"python launch/sweep.py sweeps/{name}.py" in s.doc
    assert f"python analysis/report.py results/{name}" in s.doc
    assert set(s.profiles) == {"smoke", "full"}
    assert s.metric in get_family("probe").metrics


@pytest.mark.parametrize("name", SWEEP_FILES)
def test_shipped_sweep_resources_run_on_laptop(sweeps, name):
    s = sweeps[name]
    assert s.resources.cpu <= 2 and 0 <= s.resources.gpu <= 1


# ---------------------------------------------------------------- resolve_trial / trial_config
def test_resolve_trial_with_sampled_lr(family, sweeps):
    p = plan(sweeps["tune_multistep"], "smoke")
    st = next(x for x in p.studies if x.config.multi.optimizer == "adam")
    flat = flatten(st.config)
    cfg, key = resolve_trial(family, {"base": flat, "study": st.key, "multi.lr": 0.01})
    assert cfg.multi.lr == 0.01
    assert cfg == with_overrides(st.config, {"multi.lr": 0.01})
    assert key == config_key(with_overrides(st.config, {"multi.lr": 0.01}))
    assert cfg.model.hidden == (32, 32)  # the JSON text in the flat base is decoded
    # the brief's example: grid base, empty study
    g = plan(sweeps["vste_window"], "smoke").trials[0]
    cfg, key = resolve_trial(family, {"base": g.flat, "study": "", "multi.lr": 0.01})
    equiv = family.canonicalize(with_overrides(g.config, {"multi.lr": 0.01}))
    assert cfg == equiv and cfg.multi.lr == 0.01 and key == config_key(equiv)
    assert key != g.key


@pytest.mark.parametrize("name", ["vste_window", "multistep_ste"])
def test_resolve_trial_round_trips_every_grid_trial(family, sweeps, name):
    for t in plan(sweeps[name], "smoke").trials:
        cfg, key = resolve_trial(family, {"base": t.flat, "study": ""})
        assert cfg == t.config and key == t.key


def test_trial_config_canonicalizes_sampled_values(family):
    base = flatten(with_overrides(ProbeConfig(), {"multi.optimizer": "sgd"}))
    cfg = trial_config(family, base, {"multi.momentum": 0.6, "multi.lr": 0.02})
    assert cfg.multi.momentum == MultiConfig().momentum and cfg.multi.lr == 0.02
    with pytest.raises(ConfigError):
        trial_config(family, base, {"multi.lr": -1.0})
    with pytest.raises(ConfigError):
        trial_config(family, base, {"multi.nope": 1.0})


@pytest.mark.parametrize("name", ["vste_window", "multistep_ste", "dg_vs_ste", "mixup_pretrain", "dsq", "init_perturb",
                                  "cifar_sanity"])
def test_ray_base_json_round_trips_every_planned_trial(name):
    """The runner grid-searches over JSON text (Tune deep-copies its grid per trial); every planned trial,
    folded or not, must come back with the same typed config, key and folded points."""
    from lowbit_core.sweep import resolve_points

    sweep = load_sweep(REPO / "sweeps" / f"{name}.py")
    for profile in ("smoke", "default"):
        p = plan(replace(sweep, fold=("multi.noise",)) if name == "multistep_ste" else sweep, profile,
                 {"data.name": "synthetic"} if sweep.family == "train" else None)
        for t in p.trials:
            text = {"base": t.ray_base, "study": ""}
            assert isinstance(text["base"], str)
            as_dict = {"base": t.flat, "study": ""}
            assert resolve_trial(p.family, text) == resolve_trial(p.family, as_dict)
            assert resolve_points(p.family, text) == resolve_points(p.family, as_dict)
            if not t.points:
                assert resolve_trial(p.family, text) == (t.config, t.key)
            else:
                assert [k for _, k in resolve_points(p.family, text)] == t.keys


# ---------------------------------------------------------------- the shipped search sweep (Optuna + ASHA)
def test_train_search_profiles():
    """sweeps/train_search.py: Optuna + ASHA by default and in smoke; ``grid`` and ``grid_full`` plan
    the same trials, one with ASHA and one without (what the saving is measured on)."""
    from lowbit_core.sweep import ASHA

    s = load_sweep(REPO / "sweeps" / "train_search.py")
    assert s.family == "train" and s.metric == "val_acc" and s.mode == "max"
    for word in ("Question", "Expected", "Cost", "Measured", "Command"):
        assert re.search(rf"^{word}\b", s.doc, re.M), word
    assert "python launch/sweep.py sweeps/train_search.py" in s.doc
    smoke = plan(s, "smoke")
    assert smoke.is_optuna and smoke.n_trials == 4 and smoke.scheduler == ASHA(1, 2, 3, 1)
    default = plan(replace(s, base={**s.base, "data.name": "synthetic"}))  # (planning checks CIFAR is on disk)
    assert default.is_optuna and default.n_trials == 16 and default.scheduler.max_epochs == 10
    assert set(default.studies[0].distributions) == {"train.lr", "train.weight_decay"}
    sweep = replace(s, base={**s.base, "data.name": "synthetic"},
                    profiles={k: replace(p, base={**p.base, "data.name": "synthetic"}) for k, p in s.profiles.items()})
    with_asha, without = plan(sweep, "grid"), plan(sweep, "grid_full")
    assert [t.key for t in with_asha.trials] == [t.key for t in without.trials] and len(without.trials) == 8
    assert with_asha.scheduler == ASHA(2, 2, 8, 1) and without.scheduler is None
