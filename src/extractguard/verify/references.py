"""Independently trained reference models: the owner's stand-ins for "a model nobody stole".

The fingerprint's null rate is calibrated on them, and the benchmark checks that none of another
set (other seeds) is accused.  Diversity matters more than accuracy: the families differ in how
they draw boundaries (linear, axis-aligned trees, ensembles, nearest neighbours, kernels, neural
nets), so the calibrated rate covers more than one way of learning the task.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from extractguard.errors import ConfigurationError
from extractguard.oracle.schema import InputSchema
from extractguard.oracle.targets import CallableTarget, Target

#: Families in the order they are cycled through.
REFERENCE_FAMILIES: tuple[str, ...] = ("logreg", "mlp", "forest", "tree", "knn", "svm", "extra", "cnn")


def _estimator(family: str, seed: int) -> Any:
    from sklearn.ensemble import ExtraTreesClassifier, RandomForestClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.neighbors import KNeighborsClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import SVC
    from sklearn.tree import DecisionTreeClassifier

    if family == "logreg":
        return make_pipeline(StandardScaler(), LogisticRegression(C=0.5 + (seed % 4) * 0.5, max_iter=3000, random_state=seed))
    if family == "forest":
        return RandomForestClassifier(n_estimators=100, random_state=seed)
    if family == "extra":
        return ExtraTreesClassifier(n_estimators=100, random_state=seed)
    if family == "tree":
        return DecisionTreeClassifier(max_depth=12, random_state=seed)
    if family == "knn":
        return make_pipeline(StandardScaler(), KNeighborsClassifier(n_neighbors=3 + 2 * (seed % 4)))
    if family == "svm":
        from sklearn.calibration import CalibratedClassifierCV

        # scikit-learn 1.9 deprecates SVC(probability=True) in favour of this calibration.
        return make_pipeline(StandardScaler(), CalibratedClassifierCV(SVC(C=1.0 + seed % 5, random_state=seed), ensemble=False))
    raise ConfigurationError(f"unknown reference family {family!r}; choose from {', '.join(REFERENCE_FAMILIES)}")


def train_reference(family: str, X: np.ndarray, y: np.ndarray, schema: InputSchema, seed: int) -> Target:
    """One reference model of ``family`` trained on ``(X, y)`` with ``seed``, as a target."""
    X = np.asarray(X, dtype=np.float64)
    y = np.asarray(y, dtype=np.int64)
    c = schema.n_classes
    if family in ("mlp", "cnn"):
        from extractguard.surrogates.torch_models import TorchClassifier

        if family == "cnn" and len(schema.input_shape) < 2:
            family = "mlp"  # tabular task: no convolution to speak of
        width = (64, 128, 256)[seed % 3]
        clf = TorchClassifier(family, schema.input_shape, c, hidden=(width,), epochs=60, min_steps=400, max_steps=1500, seed=seed)  # type: ignore[arg-type]
        clf.fit(X, y)
        return CallableTarget(clf.predict_proba, schema)
    est = _estimator(family, seed).fit(X, y)
    present = np.asarray(est.classes_, dtype=np.int64)

    def proba(Z: np.ndarray) -> np.ndarray:
        # A small training set can miss a class: put its probability at zero, in the right column.
        out = np.zeros((len(Z), c))
        out[:, present] = est.predict_proba(Z)
        return out

    return CallableTarget(proba, schema)


def train_references(
    X: np.ndarray, y: np.ndarray, schema: InputSchema, n_models: int = 8, seed: int = 0,
    families: tuple[str, ...] = REFERENCE_FAMILIES,
) -> list[tuple[str, Target]]:
    """``n_models`` references cycling through ``families``, each on a seeded 80 % bootstrap-free subsample."""
    if n_models < 1:
        raise ConfigurationError("train at least one reference model")
    rng = np.random.default_rng(seed)
    out: list[tuple[str, Target]] = []
    for i in range(n_models):
        fam = families[i % len(families)]
        s = seed * 1000 + i
        idx = rng.permutation(len(X))[: max(2, int(0.8 * len(X)))]
        out.append((f"{fam}-seed{s}", train_reference(fam, X[idx], y[idx], schema, s)))
    return out
