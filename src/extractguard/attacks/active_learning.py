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

import copy
import math
from typing import ClassVar

import numpy as np

from extractguard.attacks._gradients import deepfool_distances, torch_module
from extractguard.attacks._pool import helper_family, resolve_size, validate_pool
from extractguard.attacks.base import Attack
from extractguard.errors import ConfigurationError
from extractguard.oracle.schema import InputSchema
from extractguard.surrogates import Surrogate, TorchClassifier, make_surrogate

STRATEGIES: tuple[str, ...] = ("entropy", "kcenter", "dfal")
SEED_ROUNDS: tuple[str, ...] = ("typical", "random")
#: Step floor of a student grown over rounds (a from-scratch TorchClassifier's is 200).
GROWN_MIN_STEPS = 150


def typical_rows(X: np.ndarray, k: int, seed: int = 0, neighbours: int = 20, max_cluster: int = 2000) -> np.ndarray:
    """Indices of ``k`` rows of ``X``: the most *typical* row of each of ``k`` k-means clusters.

    TypiClust (Hacohen, Dekel & Weinshall 2022, "Active learning on a budget: opposite strategies
    suit high and low budgets"): with a few labels per class, representative rows teach a
    student more than uncertain or random ones.  Rows are embedded by PCA (at most 50
    components), clustered by k-means, and in each cluster the row with the smallest mean
    distance to its ``neighbours`` nearest neighbours (the densest spot) is taken.  Clusters larger
    than ``max_cluster`` are subsampled for the density estimate, which bounds the cost on big
    pools.  Uses scikit-learn throughout.
    """
    from scipy.spatial.distance import cdist
    from sklearn.cluster import KMeans, MiniBatchKMeans
    from sklearn.decomposition import PCA

    X = np.asarray(X, dtype=np.float64).reshape(len(X), -1)
    k = min(k, len(X))
    if k == len(X):
        return np.arange(len(X))
    n_comp = min(50, X.shape[1], len(X))
    pca = PCA(n_components=n_comp, svd_solver="randomized", random_state=seed)
    Z = pca.fit_transform(X) if X.shape[1] > n_comp else X
    km_cls = KMeans if len(X) <= 20000 else MiniBatchKMeans
    labels = km_cls(n_clusters=k, n_init=1, random_state=seed).fit(Z).labels_
    rng = np.random.default_rng(seed)
    chosen: list[int] = []
    # Largest clusters first (TypiClust's order), so any prefix of the answer is itself a
    # representative sample: a run checkpointed before the seed round ends still gets one.
    sizes = np.bincount(labels, minlength=k)
    for c in np.argsort(-sizes, kind="stable"):
        idx = np.flatnonzero(labels == c)
        if idx.size == 0:
            continue
        if idx.size > max_cluster:
            idx = rng.choice(idx, size=max_cluster, replace=False)
        if idx.size <= 2:
            chosen.append(int(idx[0]))
            continue
        nn = min(neighbours, idx.size - 1)
        dist = np.sqrt(cdist(Z[idx], Z[idx], "sqeuclidean"))
        dist.sort(axis=1)  # column 0 is each row's zero distance to itself
        chosen.append(int(idx[np.argmin(dist[:, 1 : nn + 1].mean(axis=1))]))
    out = np.asarray(chosen, dtype=np.int64)
    if out.size < k:  # empty clusters (duplicate rows): top up at random
        rest = np.setdiff1d(np.arange(len(X)), out)
        out = np.concatenate([out, rng.choice(rest, size=k - out.size, replace=False)])
    return out


def entropy_scores(proba: np.ndarray) -> np.ndarray:
    """Shannon entropy of each row of probabilities (nats)."""
    p = np.clip(proba, 1e-12, 1.0)
    return -(p * np.log(p)).sum(axis=1)


def kcenter_greedy(candidates: np.ndarray, centers: np.ndarray, k: int) -> np.ndarray:
    """Indices of ``k`` candidates chosen by the greedy 2-approximation of k-center.

    Each step takes the candidate farthest from every center so far (Sener & Savarese 2018,
    Alg. 1).  Written out because scikit-learn has no k-center; distances come from scipy's
    ``cdist`` in row blocks, so memory stays bounded on large transcripts.
    """
    from scipy.spatial.distance import cdist

    k = min(k, candidates.shape[0])
    d2 = np.full(candidates.shape[0], np.inf)
    if centers.shape[0]:
        for s in range(0, centers.shape[0], 4096):
            d2 = np.minimum(d2, cdist(candidates, centers[s : s + 4096], "sqeuclidean").min(axis=1))
    else:
        d2[0] = -1.0  # no centers yet: start from the first candidate
    chosen: list[int] = []
    for _ in range(k):
        i = int(np.argmax(d2))
        chosen.append(i)
        d2 = np.minimum(d2, cdist(candidates, candidates[i : i + 1], "sqeuclidean")[:, 0])
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
        Size of the seed round: rows (int) or a fraction of the budget (float).  Default: 10% of
        the budget, but at least ten rows per class (capped by the budget), since selection by a
        student trained on a handful of rows is worse than no selection.
    seed_round:
        How the seed round is drawn: ``typical`` (TypiClust, Hacohen et al. 2022: the densest row
        of each k-means cluster of the pool; the better choice at small budgets) or ``random``
        (the paper's).  Text pools always use ``random``.
    per_round:
        Rows chosen per later round (int or fraction of the budget).  Default 20% of the budget:
        at most five selection rounds after the seed round.  The paper's 10% rounds gave the
        same fidelity on mnist-cnn at 500 queries (0.922 vs 0.924, 3 seeds) for about 10% more
        CPU in scoring candidates and warm restarts.
    max_candidates:
        Pool rows scored per round, drawn at random from the unqueried ones; bounds the cost
        of DeepFool and k-center on large pools.
    incremental:
        Grow one student through the rounds (warm restarts) instead of retraining from scratch
        every round, and return it, after a last fine-tune, as the stolen copy.  The paper
        retrains each round, which costs a full fit per round (about ten fits in all); growing
        one student spends ``train_steps`` over the whole run, split between the rounds in
        proportion to the rows each adds.  Applies to torch students; other families (``tree``,
        ``select``...) are fitted fresh at each checkpoint.
    train_steps:
        Optimiser steps of the incremental student over the whole run.  Default: the student's
        own epoch schedule for the full budget (so the same as one from-scratch fit once the
        budget is a few hundred rows) but with a floor of 150 steps instead of the from-scratch
        floor of 200: a student grown over rounds needs fewer steps on small transcripts
        (benchmarks/RESULTS.md, "Attacks vs IBM ART").
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
        seed_round: str = "typical",
        max_candidates: int = 1000,
        incremental: bool = True,
        train_steps: int | None = None,
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
        if seed_round not in SEED_ROUNDS:
            raise ConfigurationError(f"unknown seed_round {seed_round!r}; choose one of {', '.join(SEED_ROUNDS)}")
        if train_steps is not None and train_steps < 1:
            raise ConfigurationError(f"train_steps must be at least 1, got {train_steps}")
        self.pool = pool
        self.strategy = strategy
        self.incremental = incremental
        self.train_steps = train_steps
        self.initial = initial
        self.per_round = per_round
        self.seed_round = seed_round
        self.max_candidates = max_candidates

    def _start(self, schema: InputSchema, rng: np.random.Generator) -> None:
        self._schema = schema
        self._rng = rng
        self._pool = validate_pool(schema, self.pool)
        budget = max(1, self._budget)
        self._initial = resolve_size(self.initial, budget, 0.1)
        if self.initial is None:
            self._initial = max(self._initial, min(budget, 10 * schema.n_classes))
        self._round = resolve_size(self.per_round, budget, 0.2)
        self._used = np.zeros(self._pool.shape[0], dtype=bool)
        self._queue = np.empty(0, dtype=np.int64)
        self.rounds_ = 0
        self._student: TorchClassifier | None = None
        self._trained_rows = 0
        self.train_steps_ = 0
        # The helper family's unfitted estimator: its schedule sizes the grown student's steps.
        recipe = make_surrogate(helper_family(self.surrogate), schema, seed=self.seed)
        self._recipe = recipe if isinstance(recipe, TorchClassifier) else None
        self._grow = self.incremental and self._recipe is not None
        if self._grow:
            self._total_steps = self._grown_steps(budget)

    def _select(self, n: int) -> np.ndarray | None:
        if self._queue.size == 0:
            free = np.flatnonzero(~self._used)
            if free.size == 0:
                return None
            if self.rounds_ == 0 and (self.seed_round == "random" or self._schema.is_text):
                self._queue = self._rng.permutation(free)[: self._initial]
            elif self.rounds_ == 0:
                self._queue = free[typical_rows(self._pool[free], self._initial, seed=self.seed)]
            else:
                self._queue = self._next_round(free)
            self._used[self._queue] = True
            self.rounds_ += 1
        take, self._queue = self._queue[:n], self._queue[n:]
        return self._pool[take]

    def _train_student(self) -> Surrogate:
        """The working student, trained on every answer so far.

        Incremental mode fine-tunes the one growing student with a share of the run's step
        budget proportional to the rows added since its last fit; otherwise a fresh student.
        """
        X = np.concatenate(self._X)
        Y = np.concatenate(self._Y)
        if not self._grow:
            return self.new_student(helper_family(self.surrogate), self._schema, self.seed + self.rounds_).fit(X, Y)
        if self._student is not None and self._trained_rows == len(X):
            return self._student
        if self._student is None:
            student = self.new_student(helper_family(self.surrogate), self._schema, self.seed)
            assert isinstance(student, TorchClassifier)
            student.warm_start = True
            self._student = student
        new_rows = len(X) - self._trained_rows
        steps = max(10, math.ceil(self._total_steps * new_rows / max(1, self._budget)))
        self._student.fit(X, Y, n_steps=steps)
        self._trained_rows = len(X)
        self.train_steps_ += steps
        return self._student

    def _grown_steps(self, rows: int) -> int:
        """Total optimiser steps a grown student gets in a run whose budget is ``rows``."""
        if self.train_steps is not None:
            return max(1, math.ceil(self.train_steps * rows / max(1, self._budget)))
        assert self._recipe is not None  # only called when the student grows
        return self._recipe.schedule_steps(rows, min_steps=GROWN_MIN_STEPS)

    def fit_surrogate(self, schema: InputSchema) -> Surrogate:
        """The grown student (a snapshot) when it is the user's family, else a fresh fit.

        The run's step budget is spread over the whole budget, so at an early checkpoint the
        student has had only that share of it; the snapshot is topped up to what a run ending
        there would have spent, without changing the student the later rounds keep growing.
        """
        if not (self._grow and self.surrogate == helper_family(self.surrogate)):
            return super().fit_surrogate(schema)
        student = self._train_student()
        snapshot = copy.deepcopy(student)
        missing = self._grown_steps(self._trained_rows) - self.train_steps_
        if missing > 0:
            snapshot.fit(np.concatenate(self._X), np.concatenate(self._Y), n_steps=missing)
        return snapshot

    def _next_round(self, free: np.ndarray) -> np.ndarray:
        k = min(self._round, free.size)
        if free.size > self.max_candidates:
            free = self._rng.choice(free, size=self.max_candidates, replace=False)
        X = np.concatenate(self._X)
        student = self._train_student()
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
