"""Uniform random queries over the documented input domain.

The baseline of Tramèr et al. (2016, "Stealing Machine Learning Models via Prediction APIs")
for models whose decision regions cover the input space.  It needs no data at all, which is
why it is the first thing an attacker tries, and why its poor fidelity on natural-image models
is worth showing next to pool-based attacks.
"""

from __future__ import annotations

import numpy as np

from extractguard.attacks.base import Attack
from extractguard.oracle.schema import InputSchema


class RandomQueries(Attack):
    """Rows drawn uniformly from ``[low, high]`` of each feature."""

    name = "random"
    paper = "Tramèr et al. 2016, Stealing Machine Learning Models via Prediction APIs (random baseline)"

    def _start(self, schema: InputSchema, rng: np.random.Generator) -> None:
        self._rng = rng
        self._low = np.asarray(schema.low, dtype=np.float64)
        self._high = np.asarray(schema.high, dtype=np.float64)

    def _select(self, n: int) -> np.ndarray:
        return self._rng.uniform(self._low, self._high, size=(n, self._low.shape[0]))
