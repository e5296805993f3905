"""Tests of lowbit_core/config.py (typed frozen-dataclass configs) and the probe family's config
classes (lowbit_core/probes/config.py): building from dicts, type checks, overrides with
re-validation, command-line parsing, flatten/nest, key resolution. Errors are one-line ConfigErrors
that name the key and what is valid."""
from __future__ import annotations

import dataclasses
import json
import math
from typing import Literal

import pytest

from lowbit_core.config import (ConfigError, check_value, dotted_keys, flatten, from_dict, nest,
                                parse_text, resolve_key, to_dict, with_overrides)
from lowbit_core.quant import estimator_registry
from lowbit_core.probes.config import (BudgetConfig, DataConfig, EstimatorConfig, ModelConfig,
                                       MultiConfig, ProbeConfig, ScanConfig)


def one_line_error(excinfo) -> str:
    msg = str(excinfo.value)
    assert "\n" not in msg, f"error message is not one line: {msg!r}"
    assert msg.strip() == msg and msg
    return msg


# ---------------------------------------------------------------- from_dict
def test_from_dict_empty_gives_defaults():
    assert from_dict(ProbeConfig, {}) == ProbeConfig()
    assert from_dict(ProbeConfig, None) == ProbeConfig()


def test_from_dict_builds_nested_configs():
    cfg = from_dict(ProbeConfig, {
        "data": {"batch_size": 8192, "name": "teacher"},
        "model": {"kind": "fp", "hidden": [64, 32]},
        "estimator": {"name": "window", "window": 0.25},
        "multi": {"optimizer": "adam", "lr": 0.01, "noise": 0.05},
        "seed": 3,
    })
    assert isinstance(cfg.data, DataConfig) and isinstance(cfg.model, ModelConfig)
    assert isinstance(cfg.multi, MultiConfig) and isinstance(cfg.budget, BudgetConfig)
    assert cfg.data.batch_size == 8192
    assert cfg.data.n_features == DataConfig().n_features  # untouched default
    assert cfg.model.kind == "fp"
    assert cfg.model.hidden == (64, 32) and isinstance(cfg.model.hidden, tuple)
    assert cfg.estimator == EstimatorConfig(name="window", clip=0.5, window=0.25)
    assert cfg.multi.optimizer == "adam" and cfg.multi.lr == 0.01 and cfg.multi.noise == 0.05
    assert cfg.budget == BudgetConfig()
    assert cfg.seed == 3
    # frozen
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.seed = 4  # type: ignore[misc]


def test_from_dict_accepts_dataclass_values_for_nested_fields():
    cfg = from_dict(ProbeConfig, {"model": ModelConfig(kind="fp", hidden=(8,))})
    assert cfg.model == ModelConfig(kind="fp", hidden=(8,))


@pytest.mark.parametrize("data, key, valid", [
    ({"foo": 1}, "foo", ["data", "model", "estimator", "budget", "scan", "multi", "seed"]),
    ({"multi": {"lrr": 0.1}}, "multi.lrr", ["multi.lr", "multi.optimizer", "multi.momentum", "multi.steps"]),
    ({"data": {"batch": 10}}, "data.batch", ["data.batch_size", "data.name", "data.root"]),
])
def test_from_dict_unknown_key_names_key_and_lists_valid(data, key, valid):
    with pytest.raises(ConfigError) as ei:
        from_dict(ProbeConfig, data)
    msg = one_line_error(ei)
    assert f"unknown key {key};" in msg
    for v in valid:
        assert v in msg


@pytest.mark.parametrize("data, key, what", [
    ({"data": {"batch_size": "1024"}}, "data.batch_size", "int"),          # str for int
    ({"seed": True}, "seed", "int"),                                        # bool for int
    ({"data": {"batch_size": 1024.0}}, "data.batch_size", "int"),           # float for int
    ({"multi": {"steps": 1.5}}, "multi.steps", "int"),
    ({"data": {"root": ["a", "b"]}}, "data.root", "string"),               # list for str
    ({"budget": {"epsilon": "0.1"}}, "budget.epsilon", "float"),            # str for float
    ({"budget": {"epsilon": True}}, "budget.epsilon", "float"),             # bool for float
    ({"model": {"hidden": "64"}}, "model.hidden", "tuple of int"),          # str for tuple
    ({"model": {"hidden": [64, "a"]}}, "model.hidden[1]", "int"),           # bad tuple element
    ({"model": {"hidden": [64, 32.0]}}, "model.hidden[1]", "int"),
    ({"model": 3}, "model", "mapping"),                                     # scalar for a section
])
def test_from_dict_rejects_wrong_types(data, key, what):
    with pytest.raises(ConfigError) as ei:
        from_dict(ProbeConfig, data)
    msg = one_line_error(ei)
    assert msg.startswith(key + " must be"), msg
    assert what in msg


def test_int_accepted_for_float_and_converted():
    cfg = from_dict(ProbeConfig, {"budget": {"epsilon": 1}, "multi": {"lr": 1}})
    assert cfg.budget.epsilon == 1.0 and type(cfg.budget.epsilon) is float
    assert cfg.multi.lr == 1.0 and type(cfg.multi.lr) is float
    assert check_value("x", float, 3) == 3.0 and type(check_value("x", float, 3)) is float


def test_literal_choices_enforced_with_valid_values_in_message():
    with pytest.raises(ConfigError) as ei:
        from_dict(ProbeConfig, {"model": {"kind": "ternary"}})
    msg = one_line_error(ei)
    assert msg == "model.kind='ternary' is not valid; valid: 'fp', 'binary'"
    with pytest.raises(ConfigError) as ei:
        from_dict(ProbeConfig, {"multi": {"optimizer": "rmsprop"}})
    assert "'sgd', 'sgdm', 'adam'" in one_line_error(ei)
    assert from_dict(ProbeConfig, {"estimator": {"name": "value_clip"}}).estimator.name == "value_clip"


def test_tuple_fields_from_lists_and_tuples():
    assert from_dict(ProbeConfig, {"model": {"hidden": [16]}}).model.hidden == (16,)
    assert from_dict(ProbeConfig, {"model": {"hidden": (16, 8, 4)}}).model.hidden == (16, 8, 4)
    assert check_value("h", tuple[int, ...], [1, 2]) == (1, 2)
    assert check_value("h", tuple[float, ...], [1, 2.5]) == (1.0, 2.5)


def test_check_value_basic_types():
    assert check_value("b", bool, False) is False
    with pytest.raises(ConfigError):
        check_value("b", bool, 0)
    assert check_value("s", str, "x") == "x"
    assert check_value("l", Literal["a", "b"], "b") == "b"
    with pytest.raises(TypeError):
        check_value("d", dict, {})


# ---------------------------------------------------------------- __post_init__ range checks
@pytest.mark.parametrize("overrides, needle", [
    ({"budget.epsilon": 0.0}, "budget.epsilon"),
    ({"budget.epsilon": -0.1}, "budget.epsilon"),
    ({"multi.noise": 0.2}, "exceeds budget.epsilon"),                           # default eps 0.1
    ({"budget.epsilon": 0.01, "multi.noise": 0.05}, "exceeds budget.epsilon"),
    ({"multi.noise": -0.01}, "multi.noise"),
    ({"budget.layer": 3}, "budget.layer"),                                      # hidden (128, 128) -> layers 0..2
    ({"budget.layer": -1}, "budget.layer"),
    ({"model.hidden": []}, "model.hidden"),
    ({"model.hidden": [64, 0]}, "model.hidden"),
    ({"model.pretrain_lr": 0.0}, "model.pretrain_lr"),
    ({"estimator.clip": 0.0}, "estimator.clip"),
    ({"estimator.window": -1.0}, "estimator.window"),
    ({"scan.lr_min": 0.5}, "lr_min <= lr_max"),                                 # lr_min > lr_max
    ({"scan.lr_min": 0.0}, "lr_min"),
    ({"scan.lr_step": 0.0}, "lr_step"),
    ({"scan.lr_step": 1e-9}, "10^6"),
    ({"multi.lr": 0.0}, "multi.lr"),
    ({"multi.steps": -1}, "multi.steps"),
    ({"multi.report_every": 0}, "multi.report_every"),
    ({"multi.momentum": 1.0}, "multi.momentum"),
    ({"multi.beta2": 1.0}, "multi.beta2"),
    ({"multi.beta1": -0.1}, "multi.beta1"),
    ({"data.batch_size": 0}, "data.batch_size"),
    ({"data.n_classes": 1}, "data.n_classes"),
])
def test_with_overrides_reruns_post_init(overrides, needle):
    with pytest.raises(ConfigError) as ei:
        with_overrides(ProbeConfig(), overrides)
    assert needle in one_line_error(ei)


@pytest.mark.parametrize("overrides", [
    {"multi.noise": 0.1},                                       # noise == epsilon is allowed
    {"budget.epsilon": 0.3, "multi.noise": 0.2},
    {"multi.noise": 0.2, "budget.epsilon": 0.3},                # order of keys does not matter
    {"budget.layer": 2},                                        # the output layer
    {"multi.momentum": 0.0, "multi.beta1": 0.0, "multi.beta2": 0.0},
])
def test_with_overrides_accepts_edge_values(overrides):
    cfg = with_overrides(ProbeConfig(), overrides)
    flat = flatten(cfg)
    for k, v in overrides.items():
        assert flat[k] == v


def test_with_overrides_applies_dotted_keys_and_returns_new_config():
    base = ProbeConfig()
    cfg = with_overrides(base, {"multi.lr": 0.01, "model.hidden": [64], "model.kind": "fp", "seed": 7,
                                "budget.epsilon": 1})
    assert cfg.multi.lr == 0.01 and cfg.model.hidden == (64,) and cfg.model.kind == "fp" and cfg.seed == 7
    assert cfg.budget.epsilon == 1.0 and type(cfg.budget.epsilon) is float
    assert cfg.multi.optimizer == base.multi.optimizer and cfg.data == base.data
    assert base == ProbeConfig()  # the original is unchanged
    assert with_overrides(base, {}) == base


def test_with_overrides_unknown_key_and_wrong_type():
    with pytest.raises(ConfigError) as ei:
        with_overrides(ProbeConfig(), {"multi.lrr": 0.1})
    msg = one_line_error(ei)
    assert "'multi.lrr'" in msg and "multi.lr" in msg
    with pytest.raises(ConfigError) as ei:
        with_overrides(ProbeConfig(), {"multi.steps": "10"})
    assert one_line_error(ei) == "multi.steps must be an int, got '10'"
    with pytest.raises(ConfigError):
        with_overrides(ProbeConfig(), {"multi": {"lr": 0.1}})  # a section is not a leaf key


@pytest.mark.parametrize("key", ["multi.lr", "estimator.clip", "multi.noise", "scan.lr_step"])
def test_nan_rejected_by_range_checks(key):
    with pytest.raises(ConfigError):
        with_overrides(ProbeConfig(), {key: parse_text(key, float, "NaN")})


def test_nan_epsilon_rejected():
    # budget.epsilon's check is written `not epsilon > 0`, so NaN is caught there
    with pytest.raises(ConfigError):
        with_overrides(ProbeConfig(), {"budget.epsilon": math.nan})


# ---------------------------------------------------------------- parse_text
@pytest.mark.parametrize("key, tp, text, expected", [
    ("data.batch_size", int, "2048", 2048),
    ("seed", int, "-3", -3),
    ("multi.lr", float, "1e-3", 1e-3),
    ("multi.lr", float, "0.25", 0.25),
    ("multi.lr", float, "2", 2.0),
    ("flag", bool, "true", True),
    ("flag", bool, "True", True),
    ("flag", bool, "yes", True),
    ("flag", bool, "1", True),
    ("flag", bool, "false", False),
    ("flag", bool, "NO", False),
    ("flag", bool, "0", False),
    ("model.hidden", tuple[int, ...], "[64, 32]", (64, 32)),
    ("model.hidden", tuple[int, ...], "[8]", (8,)),
    ("data.root", str, "/data/mnist", "/data/mnist"),
    ("data.root", str, "123", "123"),          # a str field keeps digits as text
    ("data.root", str, "a=b c", "a=b c"),
    ("model.kind", Literal["fp", "binary"], "binary", "binary"),
])
def test_parse_text_values(key, tp, text, expected):
    value = parse_text(key, tp, text)
    assert value == expected
    assert type(value) is type(expected)


@pytest.mark.parametrize("key, tp, text, needle", [
    ("data.batch_size", int, "abc", "data.batch_size must be a"),
    ("data.batch_size", int, "1.5", "data.batch_size must be an int"),
    ("data.batch_size", int, "true", "data.batch_size must be an int"),
    ("data.batch_size", int, "", "data.batch_size"),
    ("multi.lr", float, "fast", "multi.lr must be a float"),
    ("multi.lr", float, "[0.1]", "multi.lr must be a float"),
    ("multi.lr", float, '"0.1"', "multi.lr must be a float"),
    ("flag", bool, "maybe", "flag must be true or false"),
    ("model.hidden", tuple[int, ...], "64,32", "model.hidden must be a tuple of int"),
    ("model.hidden", tuple[int, ...], "(64, 32)", "model.hidden must be a tuple of int"),
    ("model.hidden", tuple[int, ...], "64", "model.hidden must be a tuple of int"),
    ("model.hidden", tuple[int, ...], "[64, 2.5]", "model.hidden[1] must be an int"),
    ("model.kind", Literal["fp", "binary"], "ternary", "valid: 'fp', 'binary'"),
])
def test_parse_text_rejects_garbage_with_one_line(key, tp, text, needle):
    with pytest.raises(ConfigError) as ei:
        parse_text(key, tp, text)
    msg = one_line_error(ei)
    assert needle in msg, msg


# ---------------------------------------------------------------- flatten / nest
def _decode_tuples(flat: dict) -> dict:
    types = dotted_keys(ProbeConfig)
    return {k: (json.loads(v) if getattr(types[k], "__origin__", None) is tuple else v) for k, v in flat.items()}


def test_flatten_exact_and_tuples_as_json_text():
    cfg = with_overrides(ProbeConfig(), {"model.hidden": [64, 32], "multi.lr": 0.01, "seed": 2})
    flat = flatten(cfg)
    assert set(flat) == set(dotted_keys(ProbeConfig))
    default = ProbeConfig()
    sections = [getattr(default, f.name) for f in dataclasses.fields(ProbeConfig)]
    leaves = sum(len(dataclasses.fields(v)) if dataclasses.is_dataclass(v) else 1 for v in sections)
    assert len(flat) == leaves  # every field of every section, plus method and seed
    assert flat["model.hidden"] == "[64, 32]" and isinstance(flat["model.hidden"], str)
    assert flat["multi.lr"] == 0.01 and flat["seed"] == 2 and flat["model.kind"] == "binary"
    assert flat["budget.epsilon"] == 0.1 and flat["data.name"] == "teacher"
    assert all(not isinstance(v, (tuple, list, dict)) for v in flat.values())


def test_nest_inverts_dotted_keys():
    assert nest({"a.b": 1, "a.c.d": 2, "e": 3}) == {"a": {"b": 1, "c": {"d": 2}}, "e": 3}
    assert nest({}) == {}


@pytest.mark.parametrize("overrides", [
    {},
    {"model.hidden": [7, 5, 3], "model.kind": "fp", "multi.optimizer": "adam", "seed": 11},
    {"estimator.name": "window", "estimator.window": 0.05, "data.batch_size": 8192, "scan.normalize": "sign"},
])
def test_flatten_nest_round_trip(overrides):
    cfg = with_overrides(ProbeConfig(), overrides)
    nested = nest(_decode_tuples(flatten(cfg)))
    assert nested == to_dict(cfg)
    assert from_dict(ProbeConfig, nested) == cfg
    assert flatten(from_dict(ProbeConfig, nested)) == flatten(cfg)
    # and back through with_overrides from the flat dict
    assert with_overrides(ProbeConfig(), _decode_tuples(flatten(cfg))) == cfg


def test_to_dict_is_json_plain():
    d = to_dict(ProbeConfig())
    assert d["model"]["hidden"] == [128, 128]
    assert json.loads(json.dumps(d)) == d


# ---------------------------------------------------------------- dotted_keys / resolve_key
def test_dotted_keys_types():
    keys = dotted_keys(ProbeConfig)
    assert keys["multi.lr"] is float and keys["data.batch_size"] is int and keys["seed"] is int
    assert keys["model.hidden"] == tuple[int, ...]
    assert keys["model.kind"] == Literal["fp", "binary"]
    assert keys["data.root"] is str
    assert "multi" not in keys and "model" not in keys  # only leaves
    assert len(keys) == len(flatten(ProbeConfig()))  # one type per leaf


@pytest.mark.parametrize("key, suggestion", [
    ("lr", "multi.lr"),
    ("mult.lr", "multi.lr"),
    ("epsilon", "budget.epsilon"),
    ("batch_size", "data.batch_size"),
    ("estimators.window", "estimator.window"),
])
def test_resolve_key_suggests_close_key(key, suggestion):
    with pytest.raises(ConfigError) as ei:
        resolve_key(ProbeConfig, key)
    msg = one_line_error(ei)
    assert f"unknown key {key!r} (did you mean {suggestion}?)" in msg
    assert "valid keys: " + ", ".join(sorted(dotted_keys(ProbeConfig))[:3]) in msg


def test_resolve_key_no_suggestion_when_nothing_close():
    with pytest.raises(ConfigError) as ei:
        resolve_key(ProbeConfig, "zzz")
    msg = one_line_error(ei)
    assert "did you mean" not in msg and "multi.lr" in msg


def test_resolve_key_returns_type():
    assert resolve_key(ProbeConfig, "multi.steps") is int
    assert resolve_key(ProbeConfig, "estimator.name") == estimator_registry.EstimatorName


# ---------------------------------------------------------------- probe config classes directly
def test_probe_config_direct_construction_checks():
    assert ProbeConfig(budget=BudgetConfig(epsilon=0.2), multi=MultiConfig(noise=0.2)).multi.noise == 0.2
    with pytest.raises(ConfigError):
        ProbeConfig(multi=MultiConfig(noise=0.11))
    with pytest.raises(ConfigError):
        ScanConfig(lr_min=0.2, lr_max=0.1)
    assert ScanConfig(lr_min=0.1, lr_max=0.1).lr_max == 0.1
    with pytest.raises(ConfigError):
        ProbeConfig(model=ModelConfig(hidden=(4,)), budget=BudgetConfig(layer=2))
    assert ProbeConfig(model=ModelConfig(hidden=(4,)), budget=BudgetConfig(layer=1)).budget.layer == 1
