"""The layout rule of issue 17 point 3, checked on the source: a built-in family is one package.

1. Every built-in family (a package under ``lowbit_core/families/``) has its config class, run
   function, canonicalize and preflight defined inside its own package -- or, for a family whose
   declaration says its code lives elsewhere (:data:`CODE_ELSEWHERE`: ``probe`` -> ``lowbit_core.probes``),
   inside that package, which its declaration imports.
2. No module of ``lowbit_core`` imports a private name (``_x``) of a family it does not belong to,
   neither ``from <family module> import _x`` nor ``<family module alias>._x`` (shared pieces are
   public modules, :mod:`lowbit_core.training`).
3. No import circle: importing the ``train`` family's config does not import its loop (nor any other
   module of the family), and the import graph of the families and the shared training modules,
   lazy imports inside functions included, has no cycle.
"""
from __future__ import annotations

import ast
import inspect
import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest

import lowbit_core.families as families_pkg
from lowbit_core.families import get_family

ROOT = Path(families_pkg.__file__).resolve().parents[1]  # lowbit_core/
REPO = ROOT.parent
BUILTINS = sorted(info.name for info in pkgutil.iter_modules(families_pkg.__path__) if info.ispkg)
CODE_ELSEWHERE = {"probe": "lowbit_core.probes"}
"""Built-in families whose code stays in another package of the library (named by the declaration)."""


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in sorted(ROOT.rglob("*.py"))}


def family_of(module: str) -> str | None:
    """The family a library module belongs to: its package under ``lowbit_core.families`` or the
    package its declaration keeps its code in; None for shared modules."""
    parts = module.split(".")
    if parts[:2] == ["lowbit_core", "families"] and len(parts) >= 3:
        return parts[2]
    for name, pkg in CODE_ELSEWHERE.items():
        if module == pkg or module.startswith(pkg + "."):
            return name
    return None


def imports(module: str) -> list[tuple[str, list[str], int]]:
    """``(target module, imported names, line)`` of every import statement in ``module`` (at any
    depth: lazy imports inside functions count); ``from pkg import sub`` targets ``pkg.sub`` when
    that is a module of the library."""
    path = MODULES[module]
    is_pkg = path.name == "__init__.py"
    out = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out += [(a.name, [], node.lineno) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                pkg = module.split(".") if is_pkg else module.split(".")[:-1]
                pkg = pkg[:len(pkg) - (node.level - 1)]
                base = ".".join(pkg + ([base] if base else []))
            names = [a.name for a in node.names]
            subs = [n for n in names if f"{base}.{n}" in MODULES]
            out += [(f"{base}.{n}", [], node.lineno) for n in subs]
            out.append((base, [n for n in names if n not in subs], node.lineno))
    return out


def test_the_builtins_are_the_four_families():
    assert BUILTINS == ["gradstats", "probe", "sr", "train"]


@pytest.mark.parametrize("name", BUILTINS)
def test_a_builtin_family_code_lies_in_its_own_package(name):
    fam = get_family(name)
    home = CODE_ELSEWHERE.get(name, f"lowbit_core.families.{name}")
    run = inspect.unwrap(fam.run)  # a family with a cost wraps run (functools.wraps)
    pieces = {"config": fam.config_cls, "run": run, "canonicalize": fam.canonicalize, "preflight": fam.preflight}
    for what, obj in pieces.items():
        mod = obj.__module__
        inside = mod == home or mod.startswith(home + ".") or mod == f"lowbit_core.families.{name}"
        assert inside, f"{name}: {what} is defined in {mod}, outside {home}"
        assert Path(inspect.getsourcefile(obj)).resolve().is_relative_to(ROOT / Path(*home.split(".")[1:])) or \
            mod == f"lowbit_core.families.{name}", f"{name}: {what} lives in {inspect.getsourcefile(obj)}"
    if name in CODE_ELSEWHERE:  # the declaration names where the code is
        targets = {t for t, _, _ in imports(f"lowbit_core.families.{name}")}
        assert any(t.startswith(home + ".") for t in targets)


def test_no_module_imports_a_private_name_of_another_family():
    bad = []
    for module in MODULES:
        own = family_of(module)
        aliases = {}
        for target, names, line in imports(module):
            fam = family_of(target)
            if fam is None or fam == own:
                continue
            bad += [f"{module}:{line} imports {target}.{n}" for n in names if n.startswith("_")]
            aliases[target.rsplit(".", 1)[-1]] = target
        tree = ast.parse(MODULES[module].read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                for a in node.names:
                    if family_of(a.name) not in (None, own):
                        aliases[a.asname or a.name] = a.name
        for node in ast.walk(tree):
            if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in aliases
                    and node.attr.startswith("_") and not node.attr.startswith("__")):
                bad.append(f"{module}:{node.lineno} reads {aliases[node.value.id]}.{node.attr}")
    assert not bad, "\n".join(bad)


def test_the_private_name_check_catches_the_old_shape(tmp_path, monkeypatch):
    """The check above has teeth: the pre-split ``sr`` loop's ``from <train loop> import _rng`` is found."""
    fake = "lowbit_core.families.sr.fake_loop"
    path = tmp_path / "fake_loop.py"
    path.write_text("from lowbit_core.families.train.run import Phase, _rng\n")
    monkeypatch.setitem(MODULES, fake, path)
    with pytest.raises(AssertionError, match=r"fake_loop:1 imports lowbit_core.families.train.run._rng"):
        test_no_module_imports_a_private_name_of_another_family()


def test_the_train_config_imports_nothing_else_of_its_family():
    code = ("import sys, lowbit_core.families.train.config as c; "
            "print(sorted(m for m in sys.modules if m.startswith('lowbit_core.families.train.')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True)
    assert out.stdout.split() == ["['lowbit_core.families.train.config']"]


def test_no_import_cycle_among_the_families_and_the_shared_training_modules():
    scope = [m for m in MODULES if m.startswith(("lowbit_core.families.", "lowbit_core.training"))
             or family_of(m) is not None]
    graph = {m: sorted({t for t, _, _ in imports(m) if t in scope and t != m}) for m in scope}
    state: dict[str, int] = {}
    path: list[str] = []

    def visit(m):
        state[m] = 1
        path.append(m)
        for t in graph[m]:
            if state.get(t) == 1:
                raise AssertionError("import cycle: " + " -> ".join(path[path.index(t):] + [t]))
            if t not in state:
                visit(t)
        path.pop()
        state[m] = 2

    for m in scope:
        if m not in state:
            visit(m)


def test_the_cycle_check_catches_the_old_circle(tmp_path, monkeypatch):
    """The check above has teeth: the old config's lazy ``from <loop> import init_from_problem``
    inside ``preflight`` (the loop imports the config) is a cycle."""
    config = "lowbit_core.families.train.config"
    path = tmp_path / "config.py"
    path.write_text(MODULES[config].read_text()
                    + "\n\ndef preflight(cfg):\n    from lowbit_core.families.train.run import train\n")
    monkeypatch.setitem(MODULES, config, path)
    with pytest.raises(AssertionError, match=r"import cycle: .*lowbit_core.families.train.config"):
        test_no_import_cycle_among_the_families_and_the_shared_training_modules()
