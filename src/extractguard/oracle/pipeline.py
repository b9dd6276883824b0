"""What stands between an :class:`~extractguard.oracle.Oracle` and a model: an answer pipeline.

An :class:`AnswerPipeline` turns an account's batch, at a given time, into the answer that
account is shown.  The full one (detection, defense chain, watermark, output mode) is
:class:`extractguard.serving.ServingPipeline`, the same object the gateway serves through; a
plain target is the one-stage pipeline :class:`OutputStage` (output mode only).  The Oracle keeps
the budget, the transcript and the timing, and asks its pipeline for each batch, so an assessment
measures exactly the answers a deployment would give.

Time comes from a :class:`Clock`: the wall clock when serving, a :class:`PacedClock` (rows at a
constant pace) when simulating an account, so time-based detectors behave the same in both.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

import numpy as np

from extractguard.errors import ExtractGuardError
from extractguard.oracle.answer import Answer, OutputSpec
from extractguard.oracle.schema import InputSchema
from extractguard.oracle.targets import Target

D = TypeVar("D")


class AnswerWithheldError(ExtractGuardError):
    """The pipeline withheld the answer to a batch (e.g. the account is suspended)."""


class Clock(Protocol):
    """When a batch is answered."""

    def tick(self, rows: int) -> float:
        """The time (seconds) at which a batch of ``rows`` rows is answered."""
        ...


class WallClock:
    """Real time (``time.time()``): what a deployed gateway uses."""

    def tick(self, rows: int) -> float:
        return time.time()


class PacedClock:
    """Simulated time of one account sending rows at a constant pace (rows per second).

    A batch is answered when its last row has been sent: after ``n`` rows in all, ``n / pace``
    seconds from the start.
    """

    def __init__(self, rows_per_second: float) -> None:
        if not rows_per_second > 0:
            raise ValueError(f"a pace must be > 0 rows per second, got {rows_per_second}")
        self.rows_per_second = rows_per_second
        self.rows = 0

    def tick(self, rows: int) -> float:
        self.rows += rows
        return self.rows / self.rows_per_second


@dataclass(frozen=True)
class Served(Generic[D]):
    """A pipeline's answer to one batch.

    ``answer`` is what the caller is shown, ``None`` when it is withheld (``withheld`` says
    why); ``probabilities`` are the vectors behind it before the output mode (defended and
    marked: the owner's view of what was served); ``decision`` is the pipeline's own record of
    what it did (``None`` for a plain target).
    """

    answer: Answer | None
    decision: D
    probabilities: np.ndarray | None = None
    withheld: str | None = None


class AnswerPipeline(ABC):
    """Answers an account's batch at a given time; see the module docstring."""

    schema: InputSchema
    output: OutputSpec

    @abstractmethod
    def answer(self, account: str, X: np.ndarray, now: float) -> Served[Any]:
        """The answer to validated rows ``X`` of ``account``, sent at time ``now``."""


class OutputStage(AnswerPipeline):
    """A plain target behind an output mode: the one-stage pipeline.

    The model's own logits pass through when the mode is ``logits``; time and account do not
    matter to it.
    """

    def __init__(self, target: Target, output: OutputSpec) -> None:
        self.target = target
        self.schema = target.schema
        self.output = output

    def answer(self, account: str, X: np.ndarray, now: float) -> Served[None]:
        pred = self.target.predict(X)
        return Served(Answer.from_probabilities(pred.probabilities, self.output, logits=pred.logits), None, pred.probabilities)
