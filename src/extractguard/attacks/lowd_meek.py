"""Label-only extraction of a binary linear classifier by line search (Lowd & Meek 2005).

Lowd & Meek, "Adversarial Learning" (KDD 2005): with only the predicted label, the decision
boundary ``w . x + b = 0`` of a linear classifier can be reconstructed to any precision.  Find a
negative and a positive point, bisect between them to get a negative point ``x0`` near the
boundary, then along each feature ``j`` find where the label flips: ``x0 + t_j e_j`` lies on the
boundary, so ``w . x0 + b + w_j t_j = 0`` and every weight is ``w_j = -(w . x0 + b) / t_j``, i.e.
proportional to ``1 / t_j``.  Locating each ``t_j`` to relative precision ``eps`` by bisection
costs ``log2(1/eps)`` queries, hence the ``d log2(1/eps)`` bound (plus a few queries to bracket
each crossing and to find the starting points).  Only ``w`` up to a positive scale is
identifiable from labels: the copy reproduces the decision, not the confidences.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from extractguard.attacks.algorithmic import AlgorithmicAttack, CountedOracle
from extractguard.errors import ConfigurationError
from extractguard.surrogates.recovered import LinearBoundaryModel


class LowdMeek(AlgorithmicAttack):
    """Recover ``w`` (up to positive scale) and ``b`` of a binary linear classifier from labels.

    Parameters
    ----------
    eps:
        Relative precision of each boundary crossing, hence of each ratio ``w_i / w_j``.
    approach:
        Bisection steps between the first negative and positive points, to start near the
        boundary (crossings along each feature are then short).
    max_search:
        Queries allowed to find one point of each class before giving up.
    max_range:
        Largest step along a feature, in half ranges of that feature; a weight whose crossing
        lies further out is reported as 0.  Targets that enforce their bounds are searched
        inside the bounds only.
    seed:
        Seeds the search for the two starting points.
    """

    name = "lowd-meek"
    paper = "Lowd & Meek 2005, Adversarial Learning (label-only line search on linear classifiers)"
    outputs = ("label", "probabilities", "logits", "rounded", "top_k")

    def __init__(
        self,
        eps: float = 1e-6,
        approach: int = 10,
        max_search: int = 200,
        max_range: float = 1e4,
        surrogate: str = "recovered",
        seed: int = 0,
    ) -> None:
        super().__init__(surrogate=surrogate, seed=seed)
        if not 0 < eps < 1:
            raise ConfigurationError(f"lowd-meek: eps must be in (0, 1), got {eps}")
        if approach < 0 or max_search < 2 or max_range <= 0:
            raise ConfigurationError("lowd-meek: approach >= 0, max_search >= 2 and max_range > 0 are required")
        self.eps = eps
        self.approach = approach
        self.max_search = max_search
        self.max_range = max_range

    def _label(self, U: np.ndarray) -> np.ndarray:
        U = np.atleast_2d(U)
        X = np.repeat(self._center[None, :], U.shape[0], axis=0)
        X[:, self._free] = self._center[self._free] + U * self._half[self._free]
        return self._oracle.query(X).labels

    def bound(self, n_features: int) -> float:
        """The ``d log2(1/eps)`` query bound of Lowd & Meek for ``d`` features."""
        return n_features * float(np.log2(1 / self.eps))

    def _extract(self, oracle: CountedOracle, rng: np.random.Generator) -> LinearBoundaryModel:
        schema = oracle.schema
        if schema.n_classes != 2:
            raise ConfigurationError(f"{self.name} needs a binary task; this target has {schema.n_classes} classes")
        self._oracle = oracle
        low, high = np.asarray(schema.low, np.float64), np.asarray(schema.high, np.float64)
        self._center, self._half = (low + high) / 2, (high - low) / 2
        self._free = np.flatnonzero(self._half > 0)
        n = self._free.shape[0]
        if n == 0:
            raise ConfigurationError(f"{self.name}: the schema pins every feature to one value")
        bounded = schema.enforce_bounds

        # 1. One point of each class: the centre, then uniform points in a box that widens
        #    (when the target accepts it) if the whole domain seems to have one label.
        points: dict[int, np.ndarray] = {}
        u = np.zeros(n)
        radius = 1.0
        for k in range(self.max_search):
            points.setdefault(int(self._label(u)[0]), u)
            if len(points) == 2:
                break
            if not bounded and k and k % 20 == 0:
                radius *= 4
            u = rng.uniform(-radius, radius, n)
        if len(points) < 2:
            raise ConfigurationError(
                f"{self.name}: every one of {self.max_search} queries got the same label; no boundary to follow"
            )
        neg, pos = points[0], points[1]
        # 2. Bisect towards the boundary; keep the negative end as x0.
        for _ in range(self.approach):
            mid = (neg + pos) / 2
            if self._label(mid)[0] == 1:
                pos = mid
            else:
                neg = mid
        u0 = neg
        start = max(float(np.linalg.norm(pos - neg)), 1e-12)
        # 3. Per feature: bracket the label flip along e_j, then bisect to relative precision eps.
        w = np.zeros(n)
        self.crossings_ = 0
        for j in range(n):
            t = self._crossing(u0, j, start, bounded)
            if t is not None:
                w[j] = 1.0 / t  # with the scale fixed by w . x0 + b = -1
                self.crossings_ += 1
        if not np.any(w):
            raise ConfigurationError(f"{self.name}: the label never flipped along any feature")
        # z(u) = w . (u - u0) - 1 in normalised coordinates; back to raw inputs.
        free = self._free
        w_raw = np.zeros(schema.n_features)
        w_raw[free] = w / self._half[free]
        b_raw = float(-1.0 - w @ u0 - w @ (self._center[free] / self._half[free]))
        return LinearBoundaryModel(w_raw, b_raw)

    def _crossing(self, u0: np.ndarray, j: int, start: float, bounded: bool) -> float | None:
        """Signed step along feature j where the label turns positive, or None if none found."""
        limit = self.max_range
        T = min(start, limit)
        prev = 0.0
        while True:
            for sign in (1.0, -1.0):
                if bounded and abs(u0[j] + sign * T) > 1.0:
                    continue
                x = u0.copy()
                x[j] += sign * T
                if self._label(x)[0] == 1:
                    return self._bisect(u0, j, sign * prev, sign * T)
            if T >= limit or (bounded and abs(u0[j]) + T > 2.0):
                return None
            prev, T = T, min(2 * T, limit)

    def _bisect(self, u0: np.ndarray, j: int, a: float, b: float) -> float:
        """Shrink [a, b] (label 0 at a, 1 at b) until its width is eps of its distance from x0."""
        while abs(b - a) > self.eps * min(abs(a), abs(b)) or a == 0.0:
            m = (a + b) / 2
            x = u0.copy()
            x[j] += m
            if self._label(x)[0] == 1:
                b = m
            else:
                a = m
            if abs(b - a) < 1e-15 * max(1.0, abs(b)):
                break
        return (a + b) / 2

    def params(self) -> dict[str, Any]:
        return {"eps": self.eps, "approach": self.approach, "max_search": self.max_search,
                "max_range": self.max_range, "seed": self.seed}
