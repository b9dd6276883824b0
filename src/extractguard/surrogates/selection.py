"""Pick the student family from the transcript itself, so users need not guess the victim's.

The victim's architecture is secret, yet the family of the copy matters: a linear student
cannot mimic a tree's axis-aligned cells, and a forest needs far more queries than a linear
student to copy a logistic regression.  Cross-validation on the rows already answered costs no
extra queries, which is the point: the budget contract counts every row sent to the model.
Model selection by k-fold cross-validation is standard practice (Stone 1974; Kohavi 1995); in
the extraction setting it is the "architecture search on the transfer set" that Orekondy et
al. (2019, Knockoff Nets, Sec. 6) and Papernot et al. (2017, Sec. 5) run by hand.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
from sklearn.model_selection import KFold

from extractguard.errors import ConfigurationError
from extractguard.oracle.schema import InputSchema


def default_candidates(schema: InputSchema) -> tuple[str, ...]:
    """Families (and widths) worth trying for this input schema, cheapest first.

    Order matters: ties go to the earlier, simpler candidate.
    """
    base: tuple[str, ...] = ("linear", "mlp-64", "mlp-256x128", "tree", "forest")
    return (*base, "cnn") if schema.is_image else base


@dataclass
class SelectionResult:
    """Which candidate won and each candidate's mean held-out agreement with the oracle."""

    choice: str
    scores: dict[str, float] = field(default_factory=dict)
    folds: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {"choice": self.choice, "cv_fidelity": {k: round(v, 4) for k, v in self.scores.items()}, "folds": self.folds}


def select_surrogate(
    X: np.ndarray,
    Y: np.ndarray,
    schema: InputSchema,
    seed: int = 0,
    candidates: Sequence[str] | None = None,
    folds: int = 3,
) -> SelectionResult:
    """Score each candidate family by k-fold cross-validated fidelity on (X, Y); no queries.

    ``Y`` holds the oracle's answers as labels (n,) or soft labels (n, C).  Fidelity on a fold
    is argmax agreement with the oracle's label, the quantity the attack is judged on.
    """
    from extractguard.surrogates import make_surrogate  # late: surrogates/__init__ imports us

    X = np.asarray(X, dtype=np.float64)
    Y = np.asarray(Y)
    if X.shape[0] != Y.shape[0]:
        raise ConfigurationError(f"selection needs as many answers as rows, got {X.shape[0]} and {Y.shape[0]}")
    names = tuple(candidates) if candidates else default_candidates(schema)
    if any(n in ("select", "auto") for n in names):
        raise ConfigurationError("selection candidates must be concrete families, not 'auto' or 'select'")
    labels = Y.argmax(axis=1) if Y.ndim == 2 else Y.astype(np.int64)
    k = int(min(folds, X.shape[0]))
    if k < 2:
        return SelectionResult(names[0], {}, 0)  # one row: nothing to validate on
    splitter = KFold(n_splits=k, shuffle=True, random_state=seed)
    scores: dict[str, float] = {}
    for name in names:
        agree = []
        for train, held in splitter.split(X):
            model = make_surrogate(name, schema, seed=seed).fit(X[train], Y[train])
            agree.append(float(np.mean(model.predict_proba(X[held]).argmax(axis=1) == labels[held])))
        scores[name] = float(np.mean(agree))
    best = max(scores.values())
    choice = next(n for n in names if scores[n] >= best - 1e-12)
    return SelectionResult(choice, scores, k)


class SelectedSurrogate:
    """A student that picks its own family by cross-validation at every ``fit``.

    Behaves like any surrogate; after ``fit``, ``choice_`` names the winner and ``selection_``
    holds every candidate's score, so reports can say which family was used.
    """

    def __init__(self, schema: InputSchema, seed: int = 0, candidates: Sequence[str] | None = None, folds: int = 3) -> None:
        self.schema = schema
        self.seed = seed
        self.candidates = tuple(candidates) if candidates else None
        self.folds = folds

    def fit(self, X: np.ndarray, y: np.ndarray) -> SelectedSurrogate:
        from extractguard.surrogates import make_surrogate

        self.selection_ = select_surrogate(X, y, self.schema, seed=self.seed, candidates=self.candidates, folds=self.folds)
        self.choice_ = self.selection_.choice
        self.model_ = make_surrogate(self.choice_, self.schema, seed=self.seed).fit(X, y)
        return self

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        return self.model_.predict_proba(X)

    def predict(self, X: np.ndarray) -> np.ndarray:
        return self.predict_proba(X).argmax(axis=1)
