"""scikit-learn estimators as surrogates.

Most scikit-learn classifiers only learn from hard labels, so soft answers are reduced to their
argmax; probability columns are re-aligned to all ``n_classes`` even when a class never
appeared in a small transcript (a common case at 50 queries).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.base import clone


class SklearnSurrogate:
    """Wrap an unfitted scikit-learn classifier so it fits on oracle answers."""

    def __init__(self, estimator: Any, n_classes: int) -> None:
        self.estimator = estimator
        self.n_classes = n_classes

    def fit(self, X: np.ndarray, y: np.ndarray) -> SklearnSurrogate:
        labels = np.asarray(y)
        if labels.ndim == 2:
            labels = labels.argmax(axis=1)
        self.classes_ = np.unique(labels)
        self.estimator_ = clone(self.estimator)
        if len(self.classes_) == 1:
            self.estimator_ = None  # a constant model: sklearn refuses to fit one class
        else:
            self.estimator_.fit(X, labels)
        return self

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        out = np.zeros((np.asarray(X).shape[0], self.n_classes))
        if self.estimator_ is None:
            out[:, self.classes_[0]] = 1.0
            return out
        p = self.estimator_.predict_proba(X)
        out[:, self.estimator_.classes_.astype(int)] = p
        return out

    def predict(self, X: np.ndarray) -> np.ndarray:
        return self.predict_proba(X).argmax(axis=1)
