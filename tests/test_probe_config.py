"""The probe family's new configuration: one-line errors naming the key and what is valid, and the
canonical keys of the new methods (a method's trial key ignores the other methods' sections)."""
import pytest

from lowbit_core.config import ConfigError, with_overrides
from lowbit_core.families import get_family
from lowbit_core.probes.config import AdmmConfig, ESConfig, GAConfig, METHODS, ProbeConfig
from lowbit_core.sweep import config_key


@pytest.mark.parametrize("key, value, names", [
    ("method", "sa", "'ste', 'dg', 'cdg', 'admm', 'ga', 'es'"),
    ("admm.start", "dg", "'ste', 'w0'"),
    ("scan.unit", "relative", "'absolute', 'epsilon'"),
    ("multi.lr_unit", "box", "'absolute', 'epsilon'"),
    ("admm.rho", 0.0, "admm.rho > 0"),
    ("admm.rho_growth", 0.5, "admm.rho_growth >= 1"),
    ("admm.lr", -1.0, "admm.lr > 0"),
    ("admm.inner_steps", 0, "admm.inner_steps >= 1"),
    ("ga.elite", 0, "1 <= ga.elite < ga.population"),
    ("ga.population", 1, "ga.population >= 2"),
    ("ga.crossover", 1.5, "ga.crossover"),
    ("ga.tournament", 0, "ga.tournament >= 1"),
    ("es.population", 1, "es.population = 0 (default) or >= 2"),
    ("es.sigma0", 0.0, "es.sigma0 must be > 0"),
    ("budget.fwd_equiv_per_weight", -0.5, "budget.fwd_equiv_per_weight must be >= 0"),
])
def test_bad_values_are_one_line_naming_the_key(key, value, names):
    with pytest.raises(ConfigError) as exc:
        with_overrides(ProbeConfig(), {key: value})
    msg = str(exc.value)
    assert "\n" not in msg and names in msg


def test_unknown_key_of_a_new_section_lists_the_valid_ones():
    with pytest.raises(ConfigError) as exc:
        with_overrides(ProbeConfig(), {"ga.popsize": 4})
    assert "ga.popsize" in str(exc.value) and "ga.population" in str(exc.value)


@pytest.mark.parametrize("method", [m for m in METHODS if m != "ste"])
def test_non_ste_methods_probe_the_first_layer_only(method):
    with pytest.raises(ConfigError, match=f"method={method} probes the first layer only"):
        with_overrides(ProbeConfig(), {"method": method, "budget.layer": 1})


@pytest.mark.parametrize("method, own, other", [
    ("admm", {"admm.rho": 0.5}, {"ga.population": 8, "es.sigma0": 1.0, "multi.lr": 0.5, "dg.steps": 4}),
    ("ga", {"ga.population": 8}, {"admm.rho": 0.5, "es.sigma0": 1.0, "multi.lr_unit": "epsilon"}),
    ("es", {"es.sigma0": 1.0}, {"admm.start": "w0", "ga.elite": 3, "dg.cdg_max_moves": 7}),
    ("ste", {"multi.lr_unit": "epsilon"}, {"admm.rho": 0.5, "ga.population": 8, "es.sigma0": 1.0}),
])
def test_a_method_key_ignores_the_other_methods_sections(method, own, other):
    fam = get_family("probe")
    base = with_overrides(ProbeConfig(), {"method": method, **own})
    a = fam.canonicalize(base)
    b = fam.canonicalize(with_overrides(base, other))
    assert config_key(a) == config_key(b)
    assert config_key(a) != config_key(fam.canonicalize(with_overrides(ProbeConfig(), {"method": method})))
    sections = {"admm": (a.admm, AdmmConfig()), "ga": (a.ga, GAConfig()), "es": (a.es, ESConfig())}
    for name, (value, default) in sections.items():
        assert (value == default) or name == method
