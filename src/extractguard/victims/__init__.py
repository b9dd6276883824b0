"""The victim zoo: reproducible models we own, to attack and defend.

Names load on first access (PEP 562): checking a victim name (:mod:`.names`) needs no torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from extractguard.registry import lazy_exports

if TYPE_CHECKING:
    from extractguard.victims.names import ARCHITECTURES, DEFAULT_VICTIM, parse_victim_name
    from extractguard.victims.zoo import Victim, build_victim, list_victims

_WHERE = {"ARCHITECTURES": "names", "DEFAULT_VICTIM": "names", "parse_victim_name": "names",
          "Victim": "zoo", "build_victim": "zoo", "list_victims": "zoo"}


__getattr__ = lazy_exports(__name__, _WHERE)


__all__ = sorted(_WHERE)
