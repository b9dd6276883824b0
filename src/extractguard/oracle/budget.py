"""A ladder of query budgets: the nominal query counts at which a stolen copy is scored.

``--budgets 50,100,500`` on the command line and ``budgets: [50, 100, 500]`` in ``assess.yaml``
are read into a :class:`BudgetLadder` once, where the text enters; everything inward (the
assessment, the campaign, the matrix, the gate) takes the ladder as it is and never re-checks it.
The per-attack query budget itself is a plain ``int`` held by the :class:`~extractguard.oracle.Oracle`,
the one place queries are counted.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import Any, overload

from extractguard.errors import ConfigurationError


class BudgetLadder(Sequence[int]):
    """Positive, sorted, distinct query budgets (at least one).

    Built from any iterable of whole numbers; duplicates are dropped and the order is made
    ascending, so ``BudgetLadder([500, 50, 50])`` is the ladder 50, 500.  Behaves as a read-only
    sequence of ``int``; ``ladder.top`` is the largest budget, the one an attack's oracle gets.
    """

    __slots__ = ("_steps",)

    def __init__(self, budgets: Iterable[Any]) -> None:
        out: set[int] = set()
        for item in budgets:
            if isinstance(item, int) and not isinstance(item, bool):
                value = int(item)
            elif isinstance(item, float) and item.is_integer():
                value = int(item)
            else:
                try:
                    value = int(str(item).strip())
                except ValueError:
                    raise ConfigurationError(f"budgets must be whole numbers, got {str(item).strip()!r}") from None
            if value <= 0:
                raise ConfigurationError(f"budgets must be positive, got {value}")
            out.add(value)
        if not out:
            raise ConfigurationError("give at least one budget")
        self._steps: tuple[int, ...] = tuple(sorted(out))

    @classmethod
    def parse(cls, text: str) -> BudgetLadder:
        """``"50,100,500"`` (spaces allowed, any order) -> the ladder, or one clear error line."""
        return cls(text.split(","))

    @property
    def top(self) -> int:
        """The largest budget: what an attack may spend in all."""
        return self._steps[-1]

    def capped(self, limit: int | None) -> BudgetLadder:
        """This ladder with no step above ``limit``, which becomes the last step if it cut any."""
        if limit is None or self.top <= limit:
            return self
        return BudgetLadder([b for b in self._steps if b < limit] + [limit])

    @overload
    def __getitem__(self, index: int) -> int: ...

    @overload
    def __getitem__(self, index: slice) -> tuple[int, ...]: ...

    def __getitem__(self, index: int | slice) -> int | tuple[int, ...]:
        return self._steps[index]

    def __len__(self) -> int:
        return len(self._steps)

    def __iter__(self) -> Iterator[int]:
        return iter(self._steps)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, BudgetLadder):
            return self._steps == other._steps
        return NotImplemented

    def __hash__(self) -> int:
        return hash(self._steps)

    def __str__(self) -> str:
        return ",".join(map(str, self._steps))

    def __repr__(self) -> str:
        return f"BudgetLadder({list(self._steps)})"

    @classmethod
    def __get_pydantic_core_schema__(cls, source: Any, handler: Any) -> Any:
        """A pydantic field typed ``BudgetLadder`` reads a list of whole numbers and dumps it as one."""
        from pydantic_core import core_schema

        def validate(value: Any) -> BudgetLadder:
            if isinstance(value, BudgetLadder):
                return value
            if isinstance(value, str) or not isinstance(value, Iterable):
                raise ValueError(f"budgets must be a list of whole numbers, got {value!r}")
            try:
                return cls(value)
            except ConfigurationError as exc:
                raise ValueError(str(exc)) from None

        return core_schema.no_info_plain_validator_function(
            validate,
            json_schema_input_schema=core_schema.list_schema(core_schema.int_schema(gt=0), min_length=1),
            serialization=core_schema.plain_serializer_function_ser_schema(list, when_used="always"),
        )
