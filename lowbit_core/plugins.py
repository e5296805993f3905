"""A researcher's own code: which plug-in modules a sweep uses, where they came from, and getting the
same code onto every worker.

A plug-in module registers estimators (:func:`lowbit_core.quant.estimator_registry.register_estimator`),
models (:func:`lowbit_core.models.registry.register_model`) or whole families
(:func:`lowbit_core.families.register_family`) when it is imported. A sweep uses plug-ins from three
places, all through this module:

1. modules next to the sweep file that the sweep file imports (``import my_estimators``): the sweep
   file's folder is on ``sys.path`` while it loads, and every module it brought in from that folder
   is recorded (:func:`loaded_from`);
2. modules the sweep names in ``Sweep(plugins=("my_pkg.estimators",))`` (an installed package, or a
   module next to the sweep file), imported before the sweep is planned;
3. installed packages that declare an entry point in the group ``lowbit_sweeps.plugins`` (the value
   is the module to import), loaded by every driver (:func:`entry_point_modules`).

Identity: each module's :class:`Source` names its origin (a file, or an installed distribution and
its version) and the sha256 of its source files. The plan records them and the trial keys cover
their :func:`fingerprint`, so an edited plug-in is a different plan (``--resume`` refuses it, as it
refuses an edited sweep file).

Shipping: modules that are not installed (``ship``: the module's file, or its package folder) go to
the workers through Ray's ``runtime_env`` ``py_modules`` (:func:`runtime_env`), so a multi-node cluster
without a shared disk runs them; a worker imports the same module names (:func:`activate`) and checks
that it got the same sources (same fingerprint) before it runs a trial. Installed plug-in packages
must be installed on every node, like the library itself.
"""
from __future__ import annotations

import hashlib
import importlib
import os
import sys
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from types import ModuleType

from lowbit_core.config import ConfigError

ENTRY_POINT_GROUP = "lowbit_sweeps.plugins"

LIBRARY = frozenset({"lowbit_core", "lowbit_sweeps"})
"""Top-level names of the library itself: never a plug-in, wherever the sweep file lies."""

_ACTIVE: str = ""
"""The fingerprint of the plug-ins this process has activated ('' for none): part of every trial key."""


@dataclass(frozen=True)
class Source:
    """Where one plug-in module came from: ``module`` (import name), ``origin`` (its file or package
    folder, or ``dist <name> <version>`` for an installed one), ``sha256`` of its source files, and
    ``ship`` (the path to send to the workers; None for an installed module)."""

    module: str
    origin: str
    sha256: str
    ship: str | None

    def record(self) -> dict[str, str]:
        """The plan's record of this module (no local path to ship: that is not its identity)."""
        return {"module": self.module, "origin": self.origin, "sha256": self.sha256}


def _files(module: ModuleType) -> tuple[Path | None, list[Path]]:
    """(the path to ship, the source files to hash) of a module: a plain module is its .py file; a
    package is its folder and every .py file under it."""
    file = getattr(module, "__file__", None)
    if not file:
        return None, []
    path = Path(file).resolve()
    if path.name == "__init__.py":
        return path.parent, sorted(path.parent.rglob("*.py"))
    return path, [path]


def _distribution(module_name: str) -> str | None:
    """'dist <name> <version>' of the installed distribution providing top-level ``module_name``."""
    top = module_name.split(".")[0]
    for dist in metadata.packages_distributions().get(top, []):
        try:
            return f"dist {dist} {metadata.version(dist)}"
        except metadata.PackageNotFoundError:
            continue
    return None


def source_hash(files: list[Path], root: Path | None) -> str:
    """sha256 over the files' paths relative to ``root`` and their bytes (the identity of a plug-in's
    code: the same files with the same content, wherever the folder lies)."""
    digest = hashlib.sha256()
    for f in files:
        digest.update(str(f.relative_to(root)).encode() if root else f.name.encode())
        digest.update(b"\0")
        digest.update(f.read_bytes())
    return digest.hexdigest()


def source(module: ModuleType) -> Source:
    """The :class:`Source` of an imported module."""
    ship, files = _files(module)
    digest = source_hash(files, ship.parent if ship is not None else None)
    dist = _distribution(module.__name__)
    installed = dist is not None and ship is not None and "site-packages" in ship.parts
    origin = dist if installed else (str(ship) if ship else "built-in")
    return Source(module.__name__, origin, digest, None if installed else (str(ship) if ship else None))


def import_plugin(name: str, why: str) -> ModuleType:
    """Import plug-in module ``name``; any failure is one ConfigError line naming it and ``why``
    it was loaded."""
    try:
        return importlib.import_module(name)
    except Exception as exc:  # noqa: BLE001 -- any error in a user's module becomes one line
        raise ConfigError(f"plug-in module {name!r} ({why}) failed to import: {type(exc).__name__}: {exc}") from None


def entry_point_modules() -> list[str]:
    """The modules named by installed packages' ``lowbit_sweeps.plugins`` entry points, imported."""
    names = []
    for ep in metadata.entry_points(group=ENTRY_POINT_GROUP):
        module = ep.value.split(":")[0].strip()
        import_plugin(module, f"entry point {ep.name!r} of group {ENTRY_POINT_GROUP}")
        names.append(module)
    return names


def loaded_from(folder: Path, skip: str = "") -> list[str]:
    """Imported modules (except ``skip``) whose file lies in ``folder`` or below: the sweep file's own
    helper modules. Every such module counts, also one imported before the sweep file (by an earlier
    sweep of the same folder in this process): a module is imported once per process."""
    folder = folder.resolve()
    out = []
    for name in sorted(set(sys.modules) - {skip}):
        file = getattr(sys.modules.get(name), "__file__", None)
        # some extension modules carry a bare file name (torch.ops): never a file of this folder
        if not file or not os.path.isabs(file) or name.split(".")[0] in LIBRARY:
            continue
        path = Path(file).resolve()
        # a virtual environment inside the folder holds installed packages, not the user's modules
        if path.is_relative_to(folder) and not {"site-packages", "dist-packages"} & set(path.parts):
            out.append(name)
    # a package's submodules travel with the package folder: keep the top-most names only
    return [n for n in out if not any(n.startswith(p + ".") for p in out)]


def sources(modules: tuple[str, ...] | list[str]) -> list[Source]:
    """The sources of already-imported (or importable) plug-in modules, in the given order."""
    return [source(sys.modules.get(m) or import_plugin(m, "named by the sweep")) for m in modules]


def fingerprint(srcs: list[Source]) -> str:
    """sha256 over the modules' names and source hashes ('' with no plug-ins, so the trial keys of a
    sweep without plug-ins are the library's own)."""
    if not srcs:
        return ""
    return hashlib.sha256("\n".join(f"{s.module} {s.sha256}" for s in sorted(srcs, key=lambda s: s.module))
                          .encode()).hexdigest()[:16]


def set_active(fp: str) -> None:
    """Make ``fp`` the fingerprint trial keys cover in this process."""
    global _ACTIVE
    _ACTIVE = fp


def active() -> str:
    return _ACTIVE


def runtime_env(srcs: list[Source]) -> dict | None:
    """Ray ``runtime_env`` that ships the not-installed plug-in modules to every worker
    (``py_modules``: each module's .py file or package folder), or None when there is none."""
    ship = sorted({s.ship for s in srcs if s.ship})
    return {"py_modules": ship} if ship else None


def shipped_first() -> list[str]:
    """On a Ray worker: move the folders of this job's ``runtime_env`` ``py_modules`` (the copies Ray
    shipped; a URI ``gcs://_ray_pkg_<hash>.zip`` is unpacked into a folder ``_ray_pkg_<hash>``) to the
    front of ``sys.path``, and return them. Ray puts the driver's working directory and script folder
    ahead of them (``JobConfig`` ``py_driver_sys_path``), so a node that sees the driver's folder (the
    same machine, a shared disk) would import a plug-in from the live file there, perhaps edited since
    the sweep started, instead of the copy the driver shipped."""
    ray = sys.modules.get("ray")
    if ray is None or not ray.is_initialized():
        return []
    names = {Path(uri.rsplit("/", 1)[-1]).stem for uri in ray.get_runtime_context().runtime_env.get("py_modules") or []}
    shipped = list(dict.fromkeys(p for p in sys.path if Path(p).name in names))
    if shipped:
        sys.path[:] = [*shipped, *(p for p in sys.path if p not in shipped)]
    return shipped


def activate(modules: tuple[str, ...] | list[str], expected: str) -> None:
    """On a worker: import the plug-in modules the driver used from where Ray shipped them
    (:func:`shipped_first`) and check they are the same code (fingerprint ``expected``); RuntimeError
    otherwise."""
    if not modules:
        set_active("")
        return
    shipped_first()
    srcs = [source(sys.modules.get(m) or importlib.import_module(m)) for m in modules]
    got = fingerprint(srcs)
    if got != expected:
        where = ", ".join(f"{s.module} from {s.origin}" for s in srcs)
        raise RuntimeError(f"plug-in modules on this worker differ from the driver's ({where}; fingerprint {got} != "
                           f"{expected}): install the same version on every node")
    set_active(got)


__all__ = ["ENTRY_POINT_GROUP", "Source", "source", "sources", "import_plugin", "entry_point_modules", "loaded_from",
           "fingerprint", "set_active", "active", "runtime_env", "shipped_first", "activate"]
