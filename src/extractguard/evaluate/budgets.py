"""The budget ladder of an assessment, parsed from the command line or a config.

Its own module, importing nothing heavy, so the CLI rejects ``--budgets 10,x`` before loading
torch (see cli/).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from extractguard.errors import ConfigurationError


def parse_budgets(text: str | Sequence[int]) -> list[int]:
    """``"50,100,500"`` or a sequence -> sorted unique positive ints, with a clear error."""
    items: Sequence[Any] = text.split(",") if isinstance(text, str) else text
    out: set[int] = set()
    for item in items:
        try:
            value = int(str(item).strip())
        except ValueError:
            raise ConfigurationError(f"budgets must be whole numbers, got {str(item).strip()!r}") from None
        if value <= 0:
            raise ConfigurationError(f"budgets must be positive, got {value}")
        out.add(value)
    if not out:
        raise ConfigurationError("give at least one budget")
    return sorted(out)
