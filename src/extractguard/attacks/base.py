"""The shape every extraction attack shares: a query strategy plus a surrogate to fit.

An attack spends its budget in batches chosen by ``_select`` and learns from each answer in
``_observe``.  When the number of queries reaches a checkpoint it fits a *fresh* surrogate on
everything seen so far and hands it to the caller, so one run with nested query prefixes yields
the whole fidelity-vs-queries curve at the cost of its largest budget.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, Callable, ClassVar, Sequence

import numpy as np

from extractguard.errors import ConfigurationError
from extractguard.oracle import Answer, Oracle
from extractguard.oracle.schema import InputSchema
from extractguard.surrogates import Surrogate, TorchClassifier, make_surrogate


@dataclass(frozen=True)
class Checkpoint:
    """A surrogate fitted after ``queries`` real queries, for nominal budget ``budget``."""

    budget: int
    queries: int
    surrogate: Surrogate
    query_seconds: float
    train_seconds: float


CheckpointCallback = Callable[[Checkpoint], None]


class Attack(ABC):
    """Base class for extraction attacks.

    Parameters
    ----------
    surrogate:
        Student family (``auto``, ``cnn``, ``mlp``, ``linear``, ``tree``, ``forest``).
    batch_size:
        Rows per oracle call.  Does not change the query count, only the number of calls.
    seed:
        Seeds the query strategy and the surrogate.
    """

    #: Short name used by the CLI and reports.
    name: ClassVar[str] = ""
    #: Where the algorithm comes from.
    paper: ClassVar[str] = ""
    #: Whether the attack draws natural inputs from an attacker pool.
    needs_pool: ClassVar[bool] = False
    #: Whether the attack can query text models (one string per query).  Attacks that synthesise
    #: or perturb numeric rows cannot; they are refused on a text target before any query.
    supports_text: ClassVar[bool] = False

    def __init__(self, surrogate: str = "auto", batch_size: int = 100, seed: int = 0) -> None:
        self.surrogate = surrogate
        self.batch_size = batch_size
        self.seed = seed

    # -- hooks for subclasses -------------------------------------------------------------
    def _start(self, schema: InputSchema, rng: np.random.Generator) -> None:
        """Prepare per-run state."""

    @abstractmethod
    def _select(self, n: int) -> np.ndarray | None:
        """Up to ``n`` rows to query next, or ``None`` when the strategy has nothing left."""

    def _observe(self, X: np.ndarray, answer: Answer) -> None:
        """Learn from an answered batch (adaptive strategies override and call super)."""
        self._X.append(X)
        self._Y.append(answer.soft_labels())

    def params(self) -> dict[str, Any]:
        """Constructor parameters, for reports (arrays summarised by shape)."""
        out: dict[str, Any] = {}
        for k, v in vars(self).items():
            if k.startswith("_") or k.endswith("_"):
                continue
            out[k] = f"array{tuple(v.shape)}" if isinstance(v, np.ndarray) else v
        chosen = getattr(getattr(self, "surrogate_", None), "selection_", None)
        if chosen is not None:  # surrogate="select": say which family won, and why
            out["surrogate_selected"] = chosen.to_dict()
        return out

    def _check_input_kind(self, schema: InputSchema) -> None:
        """Refuse a text target, before any query, unless the attack can query strings."""
        if schema.is_text and not self.supports_text:
            raise ConfigurationError(
                f"the {self.name} attack works on numeric inputs and cannot write text for a text model; "
                "use one that queries natural texts from a pool: knockoff, activethief, activethief-entropy, "
                "activethief-kcenter or transfer"
            )

    # -- the loop -------------------------------------------------------------------------
    def new_student(self, kind: str, schema: InputSchema, seed: int) -> Surrogate:
        """An unfitted student; pool attacks scale its inputs by their whole unlabeled pool.

        The pool is the attacker's own data, so its statistics cost no queries; ART's harness
        gives its students the same pool scaling (benchmarks/attacks.py).
        """
        student = make_surrogate(kind, schema, seed=seed)
        pool = getattr(self, "_pool", None)
        if isinstance(student, TorchClassifier) and isinstance(pool, np.ndarray) and pool.dtype.kind == "f":
            student.scale_from = pool
        return student

    def fit_surrogate(self, schema: InputSchema) -> Surrogate:
        """A fresh surrogate trained on every answer so far."""
        X = np.concatenate(self._X)
        Y = np.concatenate(self._Y)
        return self.new_student(self.surrogate, schema, self.seed).fit(X, Y)

    def _resolve_budget(
        self, oracle: Oracle, budget: int | None, checkpoints: Sequence[int] | None
    ) -> tuple[int, list[int]]:
        """The run's budget (default: the oracle's remaining) and its sorted checkpoints.

        Kept as ``self._budget`` too, so strategies can size their rounds from it in ``_start``.
        """
        if budget is None:
            budget = oracle.remaining
        if budget is None or budget <= 0:
            raise ConfigurationError("an attack needs a positive query budget")
        marks = sorted({int(c) for c in (checkpoints or [budget]) if 0 < int(c) <= budget})
        if not marks:
            raise ConfigurationError(f"no checkpoint within the budget of {budget} queries")
        self._budget = int(budget)
        return int(budget), marks

    def fit(
        self,
        oracle: Oracle,
        budget: int | None = None,
        checkpoints: Sequence[int] | None = None,
        callback: CheckpointCallback | None = None,
    ) -> Attack:
        """Spend up to ``budget`` queries (default: the oracle's remaining budget).

        At each value in ``checkpoints`` (default: just ``budget``) a fresh surrogate is fitted
        and passed to ``callback``; the last one is kept as ``surrogate_``.  If the strategy
        runs out of inputs early (e.g. a small pool), the remaining checkpoints are reported
        with the real, smaller query count.
        """
        budget, marks = self._resolve_budget(oracle, budget, checkpoints)
        self._check_input_kind(oracle.schema)
        rng = np.random.default_rng(self.seed)
        self._X: list[np.ndarray] = []
        self._Y: list[np.ndarray] = []
        self._start(oracle.schema, rng)
        self.checkpoints_: list[Checkpoint] = []
        # The oracle counts the queries (the one budget counter); this run's share is what it
        # counted since the run began.
        start = oracle.queries_used

        def spent() -> int:
            return oracle.queries_used - start

        query_seconds = 0.0
        exhausted = False
        for mark in marks:
            while spent() < mark and not exhausted:
                want = min(self.batch_size, mark - spent())
                X = self._select(want)
                if X is None or len(X) == 0:
                    exhausted = True
                    break
                X = X[:want]
                t0 = time.perf_counter()
                answer = oracle.query(X)
                query_seconds += time.perf_counter() - t0
                rows = X if oracle.schema.is_text else np.asarray(X, dtype=np.float64).reshape(len(X), -1)
                self._observe(rows, answer)
            if spent() == 0:
                raise ConfigurationError(f"{self.name}: the strategy produced no queries")
            t0 = time.perf_counter()
            surrogate = self.fit_surrogate(oracle.schema)
            cp = Checkpoint(mark, spent(), surrogate, query_seconds, time.perf_counter() - t0)
            self.checkpoints_.append(cp)
            if callback is not None:
                callback(cp)
        self.surrogate_ = self.checkpoints_[-1].surrogate
        self.queries_ = spent()
        return self
