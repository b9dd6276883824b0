"""Equation-solving extraction of logistic and softmax regression (Tramèr et al. 2016).

Tramèr, Zhang, Juels, Reiter & Ristenpart, "Stealing Machine Learning Models via Prediction
APIs" (USENIX Security 2016), section 4.1: for a softmax model ``p = softmax(W x + b)`` the
log-ratios ``log p_k - log p_j`` are affine in ``x``, so each answered query is a set of linear
equations in the unknown parameters.  Centring the log-probabilities over classes removes the
unidentifiable per-row constant, giving one linear system ``Y = [x, 1] @ Theta`` shared by all
classes: ``d + 1`` generic queries determine it exactly, the information-theoretic minimum.
Scalers in front of the model (a StandardScaler pipeline) keep it affine in the raw input, so
the parameters are recovered in raw-input space.

Saturation: a probability that is exactly 0 (or 1) in float64 has no usable logarithm.  The
query design uses only public knowledge, the schema bounds: it starts at the centre of the input
box, and if that answer is saturated it looks for a point of another class (random points and
random corners of the box) and bisects towards
the decision boundary, where logits are moderate; the ``d`` other queries are small steps from
that anchor along each feature.  A saturated step is re-asked with half the step.  Every one of
these queries counts.

Rounded answers (``rounded:N``) break the exact equations, so the attack keeps querying random
points around the anchor until the budget is spent and fits the softmax model by minimising the
cross-entropy to the rounded vectors (convex; Tramèr et al.'s formulation for multiclass models),
which, unlike least squares on log-probabilities, copes with probabilities rounded to 0.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
from scipy.optimize import minimize

from extractguard.attacks.algorithmic import check_numeric, check_output, check_surrogate
from extractguard.attacks.base import Attack, CheckpointCallback
from extractguard.errors import ConfigurationError
from extractguard.oracle import Answer, Oracle
from extractguard.oracle.schema import InputSchema
from extractguard.surrogates.recovered import LinearSoftmaxModel


class EquationSolving(Attack):
    """Exact parameters of a (multiclass) logistic regression from ``d + 1`` queries.

    Parameters
    ----------
    step:
        Size of the design steps from the anchor, as a fraction of each feature's half range.
    spread:
        Rounded mode only: extra queries start uniform within ``spread`` half ranges of the
        anchor; the spread halves after a batch of mostly one-hot answers and doubles after a
        batch of almost none.
    max_anchor_queries:
        Queries allowed for finding a non-saturated anchor before giving up.
    seed:
        Seeds the anchor search and the extra queries of rounded mode.
    """

    name = "equation-solving"
    paper = "Tramèr et al. 2016, Stealing Machine Learning Models via Prediction APIs (equation solving)"
    outputs = ("probabilities", "logits", "rounded")

    def __init__(
        self,
        surrogate: str = "recovered",
        step: float = 0.1,
        spread: float = 0.25,
        max_anchor_queries: int = 64,
        batch_size: int = 100,
        seed: int = 0,
    ) -> None:
        check_surrogate(self.name, surrogate)
        super().__init__(surrogate="recovered", batch_size=batch_size, seed=seed)
        if not 0 < step <= 1:
            raise ConfigurationError(f"equation-solving: step must be in (0, 1], got {step}")
        if not 0 < spread <= 1:
            raise ConfigurationError(f"equation-solving: spread must be in (0, 1], got {spread}")
        self.step = step
        self.spread = spread
        self.max_anchor_queries = max_anchor_queries

    # -- the loop -------------------------------------------------------------------------
    def fit(
        self,
        oracle: Oracle,
        budget: int | None = None,
        checkpoints: Sequence[int] | None = None,
        callback: CheckpointCallback | None = None,
    ) -> EquationSolving:
        """Query until the system is determined (or, for rounded answers, the budget is spent).

        With a budget below ``d + 1`` the copy is the minimum-norm solution of the
        under-determined system: an honest partial result at the real query count.
        """
        check_output(self.name, oracle, self.outputs)
        check_numeric(self.name, oracle.schema)
        self._mode = oracle.output.kind
        super().fit(oracle, budget, checkpoints, callback)
        return self

    def _start(self, schema: InputSchema, rng: np.random.Generator) -> None:
        self._rng = rng
        self._low = np.asarray(schema.low, dtype=np.float64)
        self._high = np.asarray(schema.high, dtype=np.float64)
        self._center = (self._low + self._high) / 2
        self._half = (self._high - self._low) / 2
        # A feature the schema pins to one value cannot be varied, and never needs to be.
        self._free = np.flatnonzero(self._half > 0)
        self._n_classes = schema.n_classes
        self._phase = "anchor"
        self._pending: list[tuple[str, np.ndarray, int]] = [("anchor", self._center.copy(), 0)]
        self._anchor: np.ndarray | None = None
        self._anchor_queries = 0
        self._far: tuple[np.ndarray, int] | None = None  # saturated point and its label
        self._other: np.ndarray | None = None  # point of another label, for bisection
        self._good = 0
        self._saturated: list[np.ndarray] = []
        self._spread = self.spread

    def _is_saturated(self, answer: Answer) -> np.ndarray:
        assert answer.scores is not None
        s = answer.scores
        if self._mode == "logits":
            return ~np.all(np.isfinite(s), axis=1)
        if self._mode == "rounded":
            return s.max(axis=1) >= 1.0  # one-hot after rounding: no confidence left
        return ~np.all(s > 0, axis=1)

    def _select(self, n: int) -> np.ndarray | None:
        if self._pending:
            kind = self._pending[0][0]
            take = 1 if kind != "design" else n
            rows = []
            while self._pending and len(rows) < take and self._pending[0][0] == kind:
                rows.append(self._pending.pop(0))
            self._batch = rows
            return np.stack([r[1] for r in rows])
        if self._phase == "extra":
            assert self._anchor is not None
            u = self._rng.uniform(-self._spread, self._spread, size=(n, self._center.shape[0]))
            X = np.clip(self._anchor + u * self._half, self._low, self._high)
            self._batch = [("extra", x, 0) for x in X]
            return X
        return None

    def _design(self, anchor: np.ndarray) -> None:
        """The anchor plus one step along each free feature, staying inside the bounds."""
        self._anchor = anchor
        self._phase = "design"
        for i in self._free:
            self._queue_step(i, self.step)

    def _queue_step(self, i: int, step: float) -> None:
        assert self._anchor is not None
        h = step * self._half[i]
        x = self._anchor.copy()
        x[i] = x[i] + h if x[i] + h <= self._high[i] else x[i] - h
        self._pending.append(("design", x, int(i)))

    def _observe(self, X: np.ndarray, answer: Answer) -> None:
        sat = self._is_saturated(answer)
        self._X.append(X)
        self._Y.append(np.asarray(answer.scores, dtype=np.float64))
        self._saturated.append(sat)
        if self._batch and self._batch[0][0] == "extra":
            # Keep answers informative: shrink the cloud while most come back one-hot, widen it
            # while almost none do (the spread is all the attacker controls).
            frac = float(sat.mean())
            if frac > 0.5:
                self._spread /= 2
            elif frac < 0.1:
                self._spread = min(1.0, self._spread * 2)
        for (kind, x, i), s, label in zip(self._batch, sat, answer.labels):
            if kind == "anchor":
                self._observe_anchor(x, bool(s), int(label))
            elif kind == "design":
                if not s:
                    self._good += 1
                elif self._mode != "rounded":
                    # Halve the step until the answer is informative again (costs a query each).
                    dist = abs(x[i] - self._anchor[i]) / self._half[i] if self._anchor is not None else 0.0
                    if dist > 1e-9:
                        self._queue_step(i, dist / 2)
        if self._phase == "design" and not any(k == "design" for k, _, _ in self._pending):
            self._phase = "extra" if self._mode == "rounded" else "done"

    def _observe_anchor(self, x: np.ndarray, saturated: bool, label: int) -> None:
        self._anchor_queries += 1
        if not saturated:
            self._good += 1
            self._design(x)
            return
        if self._far is None:
            self._far = (x, label)
        elif label != self._far[1]:
            self._other = x
        else:
            self._far = (x, label) if self._other is not None else self._far
        if self._anchor_queries >= self.max_anchor_queries:
            raise ConfigurationError(
                f"{self.name}: every answer was saturated (probabilities of exactly 0 or 1) after "
                f"{self._anchor_queries} queries; the model is too confident on its input domain"
            )
        if self._other is None:
            # Alternate uniform points with random corners of the box: a linear logit varies
            # most between corners (its extremes over a box are corners), which matters when
            # the data, and the other class, live in a small corner of the documented domain.
            if self._anchor_queries % 2:
                nxt = np.where(self._rng.random(self._low.shape[0]) < 0.5, self._low, self._high)
            else:
                nxt = self._rng.uniform(self._low, self._high)
        else:
            # Logits are affine along the segment and change sign between the two labels.
            nxt = (self._far[0] + self._other) / 2
        self._pending.insert(0, ("anchor", nxt, 0))

    # -- solving --------------------------------------------------------------------------
    def fit_surrogate(self, schema: InputSchema) -> LinearSoftmaxModel:
        X = np.concatenate(self._X)
        S = np.concatenate(self._Y)
        sat = np.concatenate(self._saturated)
        U = (X[:, self._free] - self._center[self._free]) / self._half[self._free]
        design = np.column_stack([U, np.ones(U.shape[0])])
        if self._mode == "rounded":
            theta = self._cross_entropy_fit(design, S)
        else:
            keep = ~sat
            if not keep.any():
                raise ConfigurationError(f"{self.name}: no unsaturated answer to solve from")
            Y = S[keep] if self._mode == "logits" else np.log(S[keep])
            Y = Y - Y.mean(axis=1, keepdims=True)
            # Minimum-norm solution when under-determined (budget < d + 1): a partial copy.
            theta = np.linalg.lstsq(design[keep], Y, rcond=None)[0]
        return self._to_raw(theta, schema.n_features)

    def _cross_entropy_fit(self, design: np.ndarray, P: np.ndarray) -> np.ndarray:
        P = np.clip(P, 0.0, None)
        P = P / np.where(P.sum(axis=1, keepdims=True) > 0, P.sum(axis=1, keepdims=True), 1.0)
        n, k = design.shape
        c = P.shape[1]
        lam = 1e-8

        def loss(flat: np.ndarray) -> tuple[float, np.ndarray]:
            theta = flat.reshape(k, c)
            Z = design @ theta
            Z = Z - Z.max(axis=1, keepdims=True)
            logq = Z - np.log(np.exp(Z).sum(axis=1, keepdims=True))
            value = -(P * logq).sum() / n + lam * (theta**2).sum()
            grad = design.T @ (np.exp(logq) - P) / n + 2 * lam * theta
            return float(value), grad.ravel()

        res = minimize(loss, np.zeros(k * c), jac=True, method="L-BFGS-B", options={"maxiter": 2000, "gtol": 1e-10})
        theta = res.x.reshape(k, c)
        return theta - theta.mean(axis=1, keepdims=True)

    def _to_raw(self, theta: np.ndarray, n_features: int) -> LinearSoftmaxModel:
        """Undo the public normalisation ``u = (x - centre) / half_range`` on free features."""
        free = self._free
        A, a0 = theta[:-1], theta[-1]
        coef = np.zeros((theta.shape[1], n_features))
        coef[:, free] = (A / self._half[free, None]).T
        intercept = a0 - (self._center[free] / self._half[free]) @ A
        return LinearSoftmaxModel(coef, intercept)

    def params(self) -> dict[str, Any]:
        out = super().params()
        out.pop("surrogate", None)
        return out
