"""The victim zoo: reproducible models we own, to attack and defend.

Names load on first access (PEP 562): checking a victim name (:mod:`.names`) needs no torch.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from extractguard.victims.names import ARCHITECTURES, DEFAULT_VICTIM, parse_victim_name
    from extractguard.victims.zoo import Victim, build_victim, list_victims

_WHERE = {"ARCHITECTURES": "names", "DEFAULT_VICTIM": "names", "parse_victim_name": "names",
          "Victim": "zoo", "build_victim": "zoo", "list_victims": "zoo"}


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        return getattr(import_module(f"extractguard.victims.{_WHERE[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = sorted(_WHERE)
