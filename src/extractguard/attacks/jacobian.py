"""Jacobian-based dataset augmentation (Papernot et al., AsiaCCS 2017).

"Practical Black-Box Attacks against Machine Learning": from a small seed set, train a
substitute, then grow the set with x + lambda * sign(d F_y(x) / dx), where F_y is the
substitute's probability for the oracle's label y of x.  The new points probe the directions in
which the substitute's output changes most, i.e. where its decision boundary is, and the oracle
labels them.  Every ``tau`` rounds the sign of lambda flips, so the set oscillates around the
seed data instead of drifting out of the input domain (Papernot 2017, Sec. 6.2).  Reservoir
sampling caps the new queries per round at ``per_round`` (Papernot 2017 Sec. 6.3; Juuti et al.
2019, PRADA, use the same capped variant as their "JbDA" baseline), keeping the query count
linear in the number of rounds instead of doubling.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from extractguard.attacks._gradients import class_gradients
from extractguard.attacks._pool import helper_family, resolve_size, validate_pool
from extractguard.attacks.base import Attack
from extractguard.errors import ConfigurationError
from extractguard.oracle.schema import InputSchema
from extractguard.surrogates import make_surrogate


class JacobianAugmentation(Attack):
    """Papernot et al. (2017) substitute training with Jacobian-based augmentation.

    Parameters
    ----------
    pool:
        The attacker's data; only ``seed_size`` rows of it are used, as the seed set.
    seed_size:
        Rows in the seed set (int, or a fraction of the budget).  Default: 10 per class,
        Papernot's 150-for-MNIST order of magnitude.
    per_round:
        Cap on new (augmented) queries per round, picked by reservoir sampling.  Default 15%
        of the budget (about seven rounds).
    lam:
        Step size as a fraction of each feature's documented range (Papernot: 0.1 on [0, 1]).
    tau:
        Rounds between sign flips of lambda (Papernot: 3).
    """

    name: ClassVar[str] = "jbda"
    paper: ClassVar[str] = "Papernot et al. 2017, Practical Black-Box Attacks against Machine Learning (Jacobian-based augmentation, reservoir variant of Juuti et al. 2019)"
    needs_pool = True

    def __init__(
        self,
        pool: np.ndarray,
        seed_size: int | float | None = None,
        per_round: int | float | None = None,
        lam: float = 0.1,
        tau: int = 3,
        surrogate: str = "auto",
        batch_size: int = 100,
        seed: int = 0,
    ) -> None:
        super().__init__(surrogate=surrogate, batch_size=batch_size, seed=seed)
        if not lam > 0:
            raise ConfigurationError(f"lam must be positive, got {lam}")
        if tau < 1:
            raise ConfigurationError(f"tau must be at least 1 round, got {tau}")
        self.pool = pool
        self.seed_size = seed_size
        self.per_round = per_round
        self.lam = lam
        self.tau = tau

    def _start(self, schema: InputSchema, rng: np.random.Generator) -> None:
        self._schema = schema
        self._rng = rng
        pool = validate_pool(schema, self.pool)
        budget = max(1, self._budget)
        n_seed = resolve_size(self.seed_size, budget, 0.0) if self.seed_size is not None else 10 * schema.n_classes
        self._cap = resolve_size(self.per_round, budget, 0.15)
        self._queue = pool[rng.permutation(pool.shape[0])[:n_seed]]
        self._low = np.asarray(schema.low, dtype=np.float64)
        self._high = np.asarray(schema.high, dtype=np.float64)
        self.rounds_ = 0

    def _select(self, n: int) -> np.ndarray | None:
        if self._queue.shape[0] == 0:
            self._queue = self._augment()
            self.rounds_ += 1
        take, self._queue = self._queue[:n], self._queue[n:]
        return take

    def _augment(self) -> np.ndarray:
        X = np.concatenate(self._X)
        Y = np.concatenate(self._Y)
        # The gradient needs a differentiable substitute; for tree/forest/select copies a
        # torch student of the default family stands in (the copy itself keeps the user's family).
        sub = make_surrogate(helper_family(self.surrogate), self._schema, seed=self.seed + self.rounds_).fit(X, Y)
        # Reservoir sampling over the stream of candidate points x + lambda*sign(grad) for every
        # x answered so far leaves a uniform sample of size `cap`; drawing the parents uniformly
        # without replacement gives the same distribution and skips the discarded gradients.
        k = min(self._cap, X.shape[0])
        parents = self._rng.choice(X.shape[0], size=k, replace=False)
        labels = Y[parents].argmax(axis=1)
        grad = class_gradients(sub, X[parents], labels)
        sign = -1.0 if (self.rounds_ // self.tau) % 2 else 1.0
        step = sign * self.lam * (self._high - self._low)
        return np.clip(X[parents] + step * np.sign(grad), self._low, self._high)
