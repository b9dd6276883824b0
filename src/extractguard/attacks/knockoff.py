"""Knockoff Nets with the random strategy (Orekondy, Schiele & Fritz, CVPR 2019).

The attacker queries natural inputs from its own pool ("transfer set"), without replacement,
and trains a student on the returned probability vectors.  Natural data lies on the victim's
input manifold, so it transfers far better than synthetic noise.
"""

from __future__ import annotations

import numpy as np

from extractguard.attacks.base import Attack
from extractguard.errors import ConfigurationError
from extractguard.oracle.schema import InputSchema


class KnockoffNets(Attack):
    """Random sampling without replacement from an attacker-held pool of natural inputs.

    Parameters
    ----------
    pool:
        Natural inputs the attacker owns, shape (n, n_features); labels are not needed.
    """

    name = "knockoff"
    paper = "Orekondy, Schiele & Fritz 2019, Knockoff Nets: Stealing Functionality of Black-Box Models"
    needs_pool = True
    supports_text = True

    def __init__(
        self, pool: np.ndarray, surrogate: str = "auto", batch_size: int = 100, seed: int = 0
    ) -> None:
        super().__init__(surrogate=surrogate, batch_size=batch_size, seed=seed)
        self.pool = pool

    def _start(self, schema: InputSchema, rng: np.random.Generator) -> None:
        pool = schema.validate(self.pool, what="attacker pool")
        if pool.shape[0] == 0:
            raise ConfigurationError("the attacker pool is empty")
        self._pool = pool
        self._order = rng.permutation(pool.shape[0])
        self._next = 0

    def _select(self, n: int) -> np.ndarray | None:
        if self._next >= len(self._order):
            return None
        idx = self._order[self._next : self._next + n]
        self._next += len(idx)
        return self._pool[idx]
