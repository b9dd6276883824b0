"""Models rebuilt *exactly* by analytic attacks, as opposed to students trained by SGD.

Equation solving, line search, path finding and critical-point attacks recover a victim's
parameters (or its decision regions) directly; these classes hold the result and predict with it
in float64, so a recovered copy can be compared to the victim to machine precision.  ``fit`` is
not part of their interface: the attack that recovered them is the fit.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from extractguard.oracle.answer import softmax


@dataclass
class LinearSoftmaxModel:
    """``softmax(X @ coef.T + intercept)`` in raw-input space (binary: two rows of logits).

    Logits are only identifiable up to a per-row constant, so the recovered ones are centred
    (they sum to zero over classes); probabilities are unaffected.
    """

    coef: np.ndarray
    intercept: np.ndarray

    def decision_function(self, X: np.ndarray) -> np.ndarray:
        return np.asarray(X, dtype=np.float64) @ self.coef.T + self.intercept

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        return softmax(self.decision_function(X))

    def predict(self, X: np.ndarray) -> np.ndarray:
        return self.decision_function(X).argmax(axis=1)


@dataclass
class LinearBoundaryModel:
    """A binary linear classifier known only up to a positive scale: class 1 iff ``w.x + b > 0``.

    Label-only attacks (Lowd & Meek 2005) cannot see confidences, so ``predict_proba`` is
    one-hot; ``decision_function`` is the margin in the recovered (arbitrary) scale.
    """

    w: np.ndarray
    b: float

    def decision_function(self, X: np.ndarray) -> np.ndarray:
        return np.asarray(X, dtype=np.float64) @ self.w + self.b

    def predict(self, X: np.ndarray) -> np.ndarray:
        return (self.decision_function(X) > 0).astype(np.int64)

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        labels = self.predict(X)
        out = np.zeros((labels.shape[0], 2))
        out[np.arange(labels.shape[0]), labels] = 1.0
        return out


@dataclass
class RegionNode:
    """Either a leaf (``value`` set) or an axis-aligned split ``x[feature] <= threshold``."""

    value: np.ndarray | None = None
    feature: int = -1
    threshold: float = 0.0
    left: RegionNode | None = None
    right: RegionNode | None = None


@dataclass
class RegionTreeModel:
    """Axis-aligned regions with the answer the victim gave inside each (a rebuilt tree).

    Equivalent to the victim wherever the path-finding attack saw every split; regions whose
    leaves returned identical answers are merged, which changes nothing observable.
    """

    root: RegionNode
    n_classes: int
    n_leaves: int = field(default=0)

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        X = np.asarray(X, dtype=np.float64)
        out = np.zeros((X.shape[0], self.n_classes))
        stack: list[tuple[RegionNode, np.ndarray]] = [(self.root, np.arange(X.shape[0]))]
        while stack:
            node, idx = stack.pop()
            if idx.size == 0:
                continue
            if node.value is not None:
                out[idx] = node.value
                continue
            assert node.left is not None and node.right is not None
            go_left = X[idx, node.feature] <= node.threshold
            stack.append((node.left, idx[go_left]))
            stack.append((node.right, idx[~go_left]))
        return out

    def predict(self, X: np.ndarray) -> np.ndarray:
        return self.predict_proba(X).argmax(axis=1)


@dataclass
class ReLUNetworkModel:
    """``A @ relu(W x + b) + c`` (+ ``L x`` when a unit was never seen switching), in float64.

    Recovered up to the symmetries every such network has: permuting hidden units and scaling a
    unit's incoming weights by ``a > 0`` while dividing its outgoing weights by ``a``.
    """

    W: np.ndarray
    b: np.ndarray
    A: np.ndarray
    c: np.ndarray
    L: np.ndarray | None = None

    def decision_function(self, X: np.ndarray) -> np.ndarray:
        X = np.asarray(X, dtype=np.float64)
        z = np.maximum(X @ self.W.T + self.b, 0.0) @ self.A.T + self.c
        if self.L is not None:
            z = z + X @ self.L.T
        return z

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        return softmax(self.decision_function(X))

    def predict(self, X: np.ndarray) -> np.ndarray:
        return self.decision_function(X).argmax(axis=1)
