"""pyproject.toml declares ranges (what the code needs); constraints.txt holds the exact set CI tests.

Every runtime and extra requirement is a range with a ">=" lower bound (.ci/lowest-versions installs those),
never an exact "==" pin; every package pinned in constraints.txt satisfies the range pyproject gives it; and
each runtime dependency and each extra's package is pinned there, so `pip install -c constraints.txt -e '.[test]'`
installs exactly what CI tested."""
from __future__ import annotations

import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
RUNTIME = [Requirement(r) for r in PROJECT["dependencies"]]
EXTRAS = {extra: [Requirement(r) for r in reqs] for extra, reqs in PROJECT["optional-dependencies"].items()}
ALL = RUNTIME + [r for reqs in EXTRAS.values() for r in reqs]


def constraints() -> dict[str, Version]:
    """constraints.txt as {canonical name: pinned version}; every line is a "name==version" pin."""
    pins = {}
    for n, line in enumerate((ROOT / "constraints.txt").read_text().splitlines(), 1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        req = Requirement(line)
        specs = list(req.specifier)
        assert len(specs) == 1 and specs[0].operator == "==", f"constraints.txt:{n}: {line!r} is not a name==version pin"
        assert not req.extras and req.marker is None, f"constraints.txt:{n}: {line!r}: a constraint takes no extras or markers"
        name = canonicalize_name(req.name)
        assert name not in pins, f"constraints.txt:{n}: {req.name} is pinned twice"
        pins[name] = Version(specs[0].version)
    return pins


@pytest.mark.parametrize("req", ALL, ids=str)
def test_every_requirement_is_a_range_with_a_lower_bound(req):
    operators = [s.operator for s in req.specifier]
    assert not {"==", "==="} & set(operators), f"{req}: an exact pin, not a range"
    assert operators.count(">=") == 1, f"{req}: no single '>=' lower bound (.ci/lowest-versions installs them)"


def test_constraints_satisfy_the_ranges_and_pin_every_declared_package():
    pins = constraints()
    assert canonicalize_name(PROJECT["name"]) not in pins, "constraints.txt pins the project itself"
    for req in ALL:
        name = canonicalize_name(req.name)
        assert name in pins, f"{req.name} (pyproject.toml) is not pinned in constraints.txt"
        assert req.specifier.contains(pins[name], prereleases=True), \
            f"constraints.txt pins {req.name}=={pins[name]}, outside pyproject's range {req.specifier}"


def test_constraints_pin_the_packaging_tools_a_fresh_venv_would_otherwise_float():
    # torch requires setuptools>=77; a new venv of Python 3.11 has an older one, so pip upgrades it to the newest
    # release unless constraints.txt says which.
    assert "setuptools" in constraints()
