"""ActiveThief: pool-based active learning as an extraction strategy (Pal et al., AAAI 2020).

Rounds of *query -> retrain -> select*: a random seed set from the attacker's pool is answered,
a student is trained on it, and each later round queries the pool rows the current student
finds most informative.  Three selection strategies from the paper:

- ``entropy``: highest predictive entropy of the student (uncertainty sampling, Lewis & Gale 1994);
- ``kcenter``: greedy k-center core-set in the student's output space (Sener & Savarese 2018),
  which spreads queries over regions the transcript does not cover yet;
- ``dfal``: smallest DeepFool perturbation that flips the student's label (DFAL, Ducoffe &
  Precioso 2018), i.e. rows nearest the student's decision boundary.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from extractguard.attacks._gradients import deepfool_distances, torch_module
from extractguard.attacks._pool import helper_family, resolve_size, validate_pool
from extractguard.attacks.base import Attack
from extractguard.errors import ConfigurationError
from extractguard.oracle.schema import InputSchema
from extractguard.surrogates import make_surrogate

STRATEGIES: tuple[str, ...] = ("entropy", "kcenter", "dfal")


def entropy_scores(proba: np.ndarray) -> np.ndarray:
    """Shannon entropy of each row of probabilities (nats)."""
    p = np.clip(proba, 1e-12, 1.0)
    return -(p * np.log(p)).sum(axis=1)


def kcenter_greedy(candidates: np.ndarray, centers: np.ndarray, k: int) -> np.ndarray:
    """Indices of ``k`` candidates chosen by the greedy 2-approximation of k-center.

    Each step takes the candidate farthest from every center so far (Sener & Savarese 2018,
    Alg. 1).  Written out because scikit-learn has no k-center; it is a dozen numpy lines.
    """
    k = min(k, candidates.shape[0])
    if centers.shape[0]:
        d2 = np.full(candidates.shape[0], np.inf)
        for s in range(0, centers.shape[0], 2048):  # bounded memory for large transcripts
            c = centers[s : s + 2048]
            d2 = np.minimum(d2, ((candidates[:, None, :] - c[None, :, :]) ** 2).sum(axis=2).min(axis=1))
    else:
        d2 = np.full(candidates.shape[0], np.inf)
        d2[0] = -1.0  # no centers yet: start from the first candidate
    chosen: list[int] = []
    for _ in range(k):
        i = int(np.argmax(d2))
        chosen.append(i)
        d2 = np.minimum(d2, ((candidates - candidates[i]) ** 2).sum(axis=1))
        d2[i] = -1.0
    return np.asarray(chosen, dtype=np.int64)


class ActiveThief(Attack):
    """Active-learning extraction from an attacker pool (Pal et al. 2020).

    Parameters
    ----------
    pool:
        Natural inputs the attacker owns, shape (n, n_features).
    strategy:
        ``entropy``, ``kcenter`` or ``dfal``.
    initial:
        Size of the random seed round: rows (int) or a fraction of the budget (float).
        Default 10% of the budget.
    per_round:
        Rows chosen per later round (int or fraction of the budget).  Default 10% of the budget,
        i.e. about ten retrain-and-select rounds like the paper.
    max_candidates:
        Pool rows scored per round, drawn at random from the unqueried ones; bounds the cost
        of DeepFool and k-center on large pools.
    """

    name: ClassVar[str] = "activethief"
    paper: ClassVar[str] = "Pal et al. 2020, ActiveThief: Model Extraction Using Active Learning and Unannotated Public Data"
    needs_pool = True
    supports_text = True  # entropy and k-center work from the student's probabilities
    fixed_strategy: ClassVar[str | None] = None

    def __init__(
        self,
        pool: np.ndarray,
        strategy: str = "entropy",
        initial: int | float | None = None,
        per_round: int | float | None = None,
        max_candidates: int = 3000,
        surrogate: str = "auto",
        batch_size: int = 100,
        seed: int = 0,
    ) -> None:
        super().__init__(surrogate=surrogate, batch_size=batch_size, seed=seed)
        strategy = self.fixed_strategy or strategy
        if strategy not in STRATEGIES:
            raise ConfigurationError(f"unknown active-learning strategy {strategy!r}; choose one of {', '.join(STRATEGIES)}")
        if max_candidates < 1:
            raise ConfigurationError(f"max_candidates must be at least 1, got {max_candidates}")
        self.pool = pool
        self.strategy = strategy
        self.initial = initial
        self.per_round = per_round
        self.max_candidates = max_candidates

    def _start(self, schema: InputSchema, rng: np.random.Generator) -> None:
        self._schema = schema
        self._rng = rng
        self._pool = validate_pool(schema, self.pool)
        budget = max(1, self._budget)
        self._initial = resolve_size(self.initial, budget, 0.1)
        self._round = resolve_size(self.per_round, budget, 0.1)
        self._used = np.zeros(self._pool.shape[0], dtype=bool)
        self._queue = np.empty(0, dtype=np.int64)
        self.rounds_ = 0

    def _select(self, n: int) -> np.ndarray | None:
        if self._queue.size == 0:
            free = np.flatnonzero(~self._used)
            if free.size == 0:
                return None
            if self.rounds_ == 0:
                self._queue = self._rng.permutation(free)[: self._initial]
            else:
                self._queue = self._next_round(free)
            self._used[self._queue] = True
            self.rounds_ += 1
        take, self._queue = self._queue[:n], self._queue[n:]
        return self._pool[take]

    def _next_round(self, free: np.ndarray) -> np.ndarray:
        k = min(self._round, free.size)
        if free.size > self.max_candidates:
            free = self._rng.choice(free, size=self.max_candidates, replace=False)
        X = np.concatenate(self._X)
        Y = np.concatenate(self._Y)
        student = make_surrogate(helper_family(self.surrogate), self._schema, seed=self.seed + self.rounds_).fit(X, Y)
        cand = self._pool[free]
        if self.strategy == "entropy":
            order = np.argsort(-entropy_scores(student.predict_proba(cand)), kind="stable")[:k]
        elif self.strategy == "kcenter":
            order = kcenter_greedy(student.predict_proba(cand), student.predict_proba(X), k)
        else:
            if torch_module(student) is None:  # cannot happen with helper_family, kept as a guard
                raise ConfigurationError("DFAL needs a differentiable student")
            dist = deepfool_distances(student, cand, self._schema.low, self._schema.high)  # type: ignore[arg-type]
            order = np.argsort(dist, kind="stable")[:k]
        return free[order]


class ActiveThiefEntropy(ActiveThief):
    """ActiveThief with uncertainty (entropy) selection."""

    name = "activethief-entropy"
    fixed_strategy = "entropy"


class ActiveThiefKCenter(ActiveThief):
    """ActiveThief with k-center core-set selection (Sener & Savarese 2018)."""

    name = "activethief-kcenter"
    fixed_strategy = "kcenter"


class ActiveThiefDFAL(ActiveThief):
    """ActiveThief with DFAL margin selection (Ducoffe & Precioso 2018)."""

    name = "activethief-dfal"
    fixed_strategy = "dfal"
    supports_text = False  # DeepFool needs a differentiable student on numeric inputs
