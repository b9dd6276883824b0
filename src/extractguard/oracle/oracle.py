"""The oracle: the only door through which an attack reaches a model.

It enforces the budget contract (one input row sent = one query, whatever the batching),
records a transcript and accounts the cost; the answer itself is shaped by an
:class:`~extractguard.oracle.pipeline.AnswerPipeline` (a plain target behind the output mode, or
the gateway's whole pipeline for an assessment).  Attacks hold an ``Oracle`` and nothing else, so
they cannot read the victim's parameters.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from extractguard.errors import BudgetExceededError, ConfigurationError
from extractguard.oracle.answer import Answer, OutputSpec
from extractguard.oracle.pipeline import AnswerPipeline, AnswerWithheldError, Clock, OutputStage, WallClock
from extractguard.oracle.schema import InputSchema
from extractguard.oracle.targets import Target


class Transcript(Protocol):
    """Where queries and answers are recorded, in order, before the attack sees the answer."""

    def record(self, X: np.ndarray, answer: Answer) -> None: ...


@dataclass
class MemoryTranscript:
    """Keeps every batch in memory; enough for local assessments."""

    batches: list[tuple[np.ndarray, Answer]] = field(default_factory=list)

    def record(self, X: np.ndarray, answer: Answer) -> None:
        self.batches.append((X.copy(), answer))

    @property
    def n_rows(self) -> int:
        return sum(len(a) for _, a in self.batches)

    def inputs(self) -> np.ndarray:
        """All queried rows in order, shape (n, n_features)."""
        return np.concatenate([x for x, _ in self.batches]) if self.batches else np.empty((0, 0), np.float32)


@dataclass(frozen=True)
class OracleStats:
    """Cost of an extraction so far."""

    queries: int
    calls: int
    spend: float
    budget: int | None
    seconds_in_target: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "queries": self.queries,
            "calls": self.calls,
            "spend": self.spend,
            "budget": self.budget,
            "seconds_in_target": round(self.seconds_in_target, 4),
        }


class Oracle:
    """Budgeted, mode-shaped query access to a target.

    Parameters
    ----------
    target:
        The model as its owner holds it, or an :class:`AnswerPipeline` in front of it (e.g. a
        gateway tier's :class:`~extractguard.serving.ServingPipeline`).  Kept private; only
        ``schema`` is public.
    output:
        What each answer reveals (an ``OutputSpec``: parse text such as ``"top-3"`` with
        :meth:`OutputSpec.parse` where it enters, a command-line option or a configuration file;
        default ``probabilities``).  A pipeline has its own output mode: leave this out, or give the same.
    budget:
        Maximum number of input rows the oracle will answer, or ``None`` for unlimited.  A batch
        that would cross it is refused whole, before it reaches the model.  The oracle is the one
        place queries are counted against a budget: attacks read :attr:`queries_used` and
        :attr:`remaining` rather than keeping counts of their own.
    price_per_query:
        Price of one row, for cost accounting (e.g. a cloud API's per-prediction price).
    transcript:
        Optional store that records every batch before the answer is returned.
    account:
        Who the pipeline answers (detection and watermarks are per account).
    clock:
        When each batch is answered (default: the wall clock); a
        :class:`~extractguard.oracle.pipeline.PacedClock` simulates an account's pace.
    """

    def __init__(
        self,
        target: Target | AnswerPipeline,
        output: OutputSpec | None = None,
        budget: int | None = None,
        price_per_query: float = 0.0,
        transcript: Transcript | None = None,
        *,
        account: str = "oracle",
        clock: Clock | None = None,
    ) -> None:
        if budget is not None and budget < 0:
            raise BudgetExceededError(f"a budget must be >= 0 queries, got {budget}")
        if output is not None and not isinstance(output, OutputSpec):
            raise TypeError(f"output must be an OutputSpec (parse text with OutputSpec.parse), got {output!r}")
        if isinstance(target, AnswerPipeline):
            if output is not None and output != target.output:
                raise ConfigurationError(f"output {output} differs from the pipeline's own output mode {target.output}")
            self.__pipeline: AnswerPipeline = target
        else:
            self.__pipeline = OutputStage(target, output or OutputSpec())
        self.output = self.__pipeline.output
        self.account = account
        self.clock: Clock = clock or WallClock()
        self.budget = budget
        self.price_per_query = float(price_per_query)
        self.transcript = transcript
        self._queries = 0
        self._calls = 0
        self._seconds = 0.0

    @property
    def schema(self) -> InputSchema:
        """Public facts about the target's inputs and classes."""
        return self.__pipeline.schema

    @property
    def queries_used(self) -> int:
        """Rows answered so far (a row replayed from a transcript was paid, so it counts too)."""
        return self._queries

    @property
    def calls(self) -> int:
        """Batches answered so far."""
        return self._calls

    @property
    def remaining(self) -> int | None:
        """Rows left in the budget (``None`` when unlimited)."""
        return None if self.budget is None else self.budget - self._queries

    def admit(self, X: Any) -> np.ndarray:
        """Validated rows of ``X``, or an error if they are malformed or would pass the budget.

        Nothing is counted here: a refused batch costs nothing.  Subclasses that answer in their
        own way (e.g. a remote oracle replaying a transcript) call this before anything is sent.
        """
        rows = self.schema.validate(X, what="query batch")
        n = rows.shape[0]
        if self.budget is not None and self._queries + n > self.budget:
            raise BudgetExceededError(
                f"batch of {n} rows refused: {self._queries} of {self.budget} queries already used "
                f"({self.budget - self._queries} left)"
            )
        return rows

    def charge(self, rows: int, seconds: float = 0.0) -> None:
        """Count one answered batch of ``rows`` rows against the budget: the only place queries are counted.

        Called once per batch that :meth:`admit` let through and that was answered, whether
        the answer came from the model or from a transcript of rows already paid for.
        """
        if rows < 0 or (self.budget is not None and self._queries + rows > self.budget):
            raise BudgetExceededError(f"cannot charge {rows} rows: {self._queries} of {self.budget} queries used")
        self._queries += rows
        self._calls += 1
        self._seconds += seconds

    def stats(self) -> OracleStats:
        return OracleStats(
            queries=self._queries,
            calls=self._calls,
            spend=self._queries * self.price_per_query,
            budget=self.budget,
            seconds_in_target=self._seconds,
        )

    def query(self, X: Any) -> Answer:
        """Answer a batch of rows; every row counts as one query.

        Raises :class:`~extractguard.errors.InputValidationError` for malformed rows and
        :class:`~extractguard.errors.BudgetExceededError` when the batch would exceed the
        budget; in both cases nothing is sent and nothing is charged.  A batch whose answer the
        pipeline withholds (a suspended account) raises :class:`AnswerWithheldError`, uncharged.
        """
        rows = self.admit(X)
        n = rows.shape[0]
        t0 = time.perf_counter()
        served = self.__pipeline.answer(self.account, rows, self.clock.tick(n))
        seconds = time.perf_counter() - t0
        if served.answer is None:
            self._seconds += seconds  # the pipeline's time, but no answer: nothing is counted
            raise AnswerWithheldError(served.withheld or "the answer was withheld")
        answer = served.answer
        self.charge(n, seconds)
        if self.transcript is not None:
            self.transcript.record(rows, answer)
        return answer

    def __repr__(self) -> str:
        return f"Oracle(output={self.output}, budget={self.budget}, queries_used={self._queries})"
