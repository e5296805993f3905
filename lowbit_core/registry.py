"""Named registries: the one door through which built-ins and a researcher's plug-ins come in.

A :class:`Registry` maps a name to an entry (an estimator, a model factory, a family). Built-ins
register in their own module; a plug-in registers the same way from a module next to its sweep file
or from an installed package (:mod:`lowbit_core.plugins`). An unknown name is a ``KeyError`` whose
message lists every valid name, built-in and registered (as timm's ``create_model`` and larq's
quantizer lookup do); registering a name twice is an error unless it is the very same object (a
module imported twice), so a plug-in cannot silently replace a built-in.

A config field whose choices come from a registry is annotated ``Annotated[str, OneOf(registry)]``
(:class:`OneOf`); :func:`lowbit_core.config.check_value` checks it against the registry as it is when
the config is built, so a plug-in registered after the config class was defined is a valid choice.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Generic, Iterator, TypeVar

T = TypeVar("T")


ALL: list["Registry"] = []
"""Every registry (to find what a module registered: :func:`registered_by`)."""


class Registry(Generic[T]):
    """Entries by name, in registration order. ``kind`` names what it holds in error messages."""

    def __init__(self, kind: str):
        ALL.append(self)
        self.kind = kind
        self._entries: dict[str, T] = {}
        self._origin: dict[str, str] = {}

    def add(self, name: str, entry: T, origin: str = "") -> T:
        """Register ``entry`` under ``name``; returns it. ``origin``: the module that registered it.
        Re-registering the same object is a no-op; another object under a taken name is a ValueError."""
        if not isinstance(name, str) or not name:
            raise ValueError(f"a {self.kind} name must be a non-empty string, got {name!r}")
        old = self._entries.get(name)
        if old is not None and old is not entry and not _same(old, entry):
            raise ValueError(f"{self.kind} {name!r} is already registered (by {self._origin.get(name) or 'the library'}); "
                             "choose another name")
        self._entries[name] = entry
        self._origin.setdefault(name, origin)
        return entry

    def register(self, name: str | None = None) -> Callable[[T], T]:
        """Decorator: ``@REG.register("name")`` (default: the decorated object's ``__name__``)."""
        def deco(obj: T) -> T:
            self.add(name or obj.__name__, obj, getattr(obj, "__module__", ""))
            return obj
        return deco

    def get(self, name: str, *default: Any) -> T:
        """The entry ``name``; an unknown name is a KeyError listing the valid names, or ``default``
        when one is given (``get(name, None)``, as a dict's)."""
        try:
            return self._entries[name]
        except (KeyError, TypeError):
            if default:
                return default[0]
            raise KeyError(f"unknown {self.kind} {name!r}; valid: {', '.join(self.names())}") from None

    def __getitem__(self, name: str) -> T:
        return self.get(name)

    def origin(self, name: str) -> str:
        """The module that registered ``name`` ('' when unknown)."""
        return self._origin.get(name, "")

    def names(self) -> tuple[str, ...]:
        return tuple(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def items(self):
        return self._entries.items()

    def values(self):
        return self._entries.values()

    def __len__(self) -> int:
        return len(self._entries)


def _same(a: Any, b: Any) -> bool:
    """Two entries are the same registration when they are equal dataclasses or the same function
    defined in the same module (a module executed twice, e.g. imported under two names)."""
    if a == b:
        return True
    qa, qb = getattr(a, "__qualname__", None), getattr(b, "__qualname__", None)
    return qa is not None and qa == qb and getattr(a, "__module__", None) == getattr(b, "__module__", None)


def registered_by(module: str) -> list[str]:
    """'<kind> <name>' of every entry that module ``module`` registered, in any registry."""
    return [f"{r.kind} {n}" for r in ALL for n, o in r._origin.items() if o == module]


@dataclass(frozen=True)
class OneOf:
    """``Annotated[str, OneOf(registry)]``: a string that must name an entry of ``registry`` when the
    config is built (checked by :func:`lowbit_core.config.check_value`)."""

    registry: Registry

    def choices(self) -> tuple[str, ...]:
        return self.registry.names()

    def __hash__(self) -> int:
        return id(self.registry)
