"""Shared loop for attacks whose query count is fixed by the algorithm, not by a budget ladder.

Path-finding, line-search and critical-point attacks decide *which* and *how many* queries they
need as they go.  :class:`AlgorithmicAttack` runs such an algorithm once against a counted view
of the oracle that stops it at the largest budget asked for, then reports one checkpoint per
budget that the real query count fits in (a copy found with 300 queries is the copy at budgets
500 and 2000 too; budgets below the real count get no checkpoint rather than a made-up one).
"""

from __future__ import annotations

import time
from abc import abstractmethod
from typing import Any, ClassVar, Sequence

import numpy as np

from extractguard.attacks.base import Attack, Checkpoint, CheckpointCallback
from extractguard.errors import ConfigurationError
from extractguard.oracle import Answer, Oracle
from extractguard.surrogates import Surrogate


class OutOfQueries(ConfigurationError):
    """The algorithm needed more queries than the budget it was given."""


class CountedOracle:
    """The oracle as an algorithm sees it: a hard stop at ``limit`` rows, and timing.

    The batch that would cross the limit is refused before it reaches the oracle, so a stopped
    attack has spent exactly what it reports.  The rows are counted by the oracle alone (its
    :attr:`~extractguard.oracle.Oracle.queries_used`); this view only reads that count.
    """

    def __init__(self, oracle: Oracle, limit: int, attack: str) -> None:
        self.oracle = oracle
        self.schema = oracle.schema
        self.output = oracle.output
        self.limit = int(limit)
        self.attack = attack
        self._start = oracle.queries_used
        self.seconds = 0.0

    @property
    def used(self) -> int:
        """Rows the oracle answered since this view was made."""
        return self.oracle.queries_used - self._start

    @property
    def remaining(self) -> int:
        return self.limit - self.used

    def query(self, X: np.ndarray) -> Answer:
        rows = np.asarray(X, dtype=np.float64).reshape(-1, self.schema.n_features)
        if self.used + rows.shape[0] > self.limit:
            raise OutOfQueries(
                f"{self.attack} needs more than its budget of {self.limit} queries on this target "
                f"(stopped after {self.used}); raise the budget"
            )
        t0 = time.perf_counter()
        answer = self.oracle.query(rows)
        self.seconds += time.perf_counter() - t0
        return answer


def check_output(attack: str, oracle: Oracle, allowed: Sequence[str]) -> None:
    """Refuse output modes an algorithm cannot work from, with the reason in one line."""
    if oracle.output.kind not in allowed:
        raise ConfigurationError(
            f"{attack} cannot work from {oracle.output} answers; it needs one of: {', '.join(allowed)}"
        )


def check_surrogate(attack: str, surrogate: str) -> None:
    """Analytic attacks rebuild the victim's own model family; a student choice makes no sense."""
    if surrogate not in ("auto", "recovered"):
        raise ConfigurationError(
            f"{attack} rebuilds the model it recovers; it takes no surrogate (got {surrogate!r})"
        )


class AlgorithmicAttack(Attack):
    """Base for attacks that run one algorithm (no ladder of nested query prefixes)."""

    #: Output modes the algorithm can work from.
    outputs: ClassVar[tuple[str, ...]] = ("probabilities", "logits")

    def __init__(self, surrogate: str = "recovered", seed: int = 0) -> None:
        check_surrogate(self.name, surrogate)
        super().__init__(surrogate="recovered", batch_size=1, seed=seed)

    def _select(self, n: int) -> np.ndarray | None:  # pragma: no cover - not used by this loop
        return None

    @abstractmethod
    def _extract(self, oracle: CountedOracle, rng: np.random.Generator) -> Surrogate:
        """Run the algorithm through ``oracle`` and return the recovered model."""

    def params(self) -> dict[str, Any]:
        out = super().params()
        out.pop("batch_size", None)
        out.pop("surrogate", None)
        return out

    def fit(
        self,
        oracle: Oracle,
        budget: int | None = None,
        checkpoints: Sequence[int] | None = None,
        callback: CheckpointCallback | None = None,
    ) -> AlgorithmicAttack:
        """Run the algorithm with at most ``budget`` queries (default: the oracle's remaining).

        Raises :class:`OutOfQueries` (a ConfigurationError) when the budget is too small.  One
        checkpoint is reported per budget in ``checkpoints`` that is >= the real query count.
        """
        self._check_input_kind(oracle.schema)
        check_output(self.name, oracle, self.outputs)
        _, marks = self._resolve_budget(oracle, budget, checkpoints)
        counted = CountedOracle(oracle, marks[-1], self.name)
        rng = np.random.default_rng(self.seed)
        t0 = time.perf_counter()
        model = self._extract(counted, rng)
        train_seconds = time.perf_counter() - t0 - counted.seconds
        self.checkpoints_ = []
        for mark in marks:
            if mark < counted.used:
                continue
            cp = Checkpoint(mark, counted.used, model, counted.seconds, train_seconds)
            self.checkpoints_.append(cp)
            if callback is not None:
                callback(cp)
        self.surrogate_ = model
        self.queries_ = counted.used
        return self
