"""One registry pattern for everything a user names: attacks, defenses, detectors.

A :class:`Registry` maps a public name to ``"module:attribute"`` and imports the module only
when the object itself is asked for.  Listing names, printing papers and validating a
configuration therefore never import torch or scikit-learn: ``extractguard attacks`` and a
config typo answer in well under a second.

Every name a user types (in a YAML file or on the command line) is kebab-case:
``knockoff-adaptive``, ``reverse-sigmoid``.  The spellings of older releases (snake_case such
as ``reverse_sigmoid``, or an explicit alias) still work; they resolve to the canonical name
and emit one :class:`DeprecatedNameWarning` that names the new spelling.  The CLI prints it as
one ``warning:`` line on stderr.

This module imports nothing from the rest of the package but :mod:`extractguard.errors`, so any
layer may hold a registry.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from importlib import import_module
from typing import Any, Generic, TypeVar

from extractguard.errors import ConfigurationError

T = TypeVar("T")


class DeprecatedNameWarning(DeprecationWarning):
    """An old spelling of a registered name was used; the message names the new one."""


@dataclass(frozen=True)
class Entry:
    """One registered object, described without importing it.

    ``target`` is ``"package.module:Attribute"``.  ``paper`` and ``summary`` are what listings
    print; ``needs_data`` says whether the object needs data the user must supply (an
    attacker's pool for attacks, the owner's reference rows for detectors).  ``aliases`` are
    old spellings that still resolve, with a deprecation warning.
    """

    name: str
    target: str
    summary: str = ""
    paper: str = ""
    needs_data: bool = False
    aliases: tuple[str, ...] = ()

    def load(self) -> Any:
        """Import the module and return the attribute (the only place a registry imports)."""
        module, _, attribute = self.target.partition(":")
        return getattr(import_module(module), attribute)


def _normalise(name: str) -> str:
    return str(name).strip().lower()


class Registry(Mapping[str, T], Generic[T]):
    """Public names of one ``kind`` of object (``"attack"``, ``"defense"``, ...), in listing order.

    It is a read-only mapping from canonical name to the (lazily imported) object, so
    ``ATTACKS["knockoff"]``, ``"knockoff" in ATTACKS`` and ``list(ATTACKS)`` work as with a dict;
    only indexing (and ``items()``/``values()``) imports.
    """

    def __init__(self, kind: str, entries: Iterable[Entry]) -> None:
        self.kind = kind
        self._entries: dict[str, Entry] = {}
        self._old: dict[str, str] = {}
        for e in entries:
            if e.name != _normalise(e.name) or "_" in e.name or " " in e.name:
                raise ValueError(f"{kind} name {e.name!r} is not kebab-case")
            if e.name in self._entries or e.name in self._old:
                raise ValueError(f"{kind} {e.name!r} registered twice")
            self._entries[e.name] = e
            for old in {*e.aliases, e.name.replace("-", "_")} - {e.name}:
                self._old[_normalise(old)] = e.name

    # -- names ---------------------------------------------------------------------------------
    def names(self) -> tuple[str, ...]:
        """Canonical names in registration (listing) order."""
        return tuple(self._entries)

    def entries(self) -> tuple[Entry, ...]:
        return tuple(self._entries.values())

    def resolve(self, name: str) -> str | None:
        """The canonical name for ``name`` (any spelling), or ``None``; never warns or imports."""
        key = _normalise(name)
        if key in self._entries:
            return key
        return self._old.get(key)

    def canonical(self, name: str) -> str:
        """The canonical name for ``name``; an old spelling warns, an unknown one is a
        :class:`~extractguard.errors.ConfigurationError` listing the valid names."""
        found = self.resolve(name)
        if found is None:
            raise ConfigurationError(f"unknown {self.kind} {name!r}; available: {', '.join(self._entries)}")
        if _normalise(name) != found:
            warnings.warn(
                f"{self.kind} name {name!r} is deprecated; write {found!r}", DeprecatedNameWarning, stacklevel=2
            )
        return found

    def entry(self, name: str) -> Entry:
        """The entry of ``name`` (any spelling; warns on an old one)."""
        return self._entries[self.canonical(name)]

    def load(self, name: str) -> T:
        """The registered object itself: imports its module on first use."""
        loaded: T = self.entry(name).load()
        return loaded

    # -- Mapping ---------------------------------------------------------------------------------
    def __getitem__(self, name: str) -> T:
        found = self.resolve(name) if isinstance(name, str) else None
        if found is None:
            raise KeyError(name)
        return self.load(name)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self.resolve(name) is not None

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, {list(self._entries)})"


__all__ = ["DeprecatedNameWarning", "Entry", "Registry"]


def lazy_exports(package: str, where: Mapping[str, str]) -> Any:
    """A package's module ``__getattr__`` (PEP 562): ``name`` is imported from
    ``package.<where[name]>`` on first access, so importing the package (to read a registry, or a
    light module in it) does not load torch, scikit-learn or matplotlib.

    Use as ``__getattr__ = lazy_exports(__name__, {"Name": "module", ...})``.
    """

    def __getattr__(name: str) -> Any:
        if name in where:
            return getattr(import_module(f"{package}.{where[name]}"), name)
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    return __getattr__
