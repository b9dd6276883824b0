"""How faithful a stolen copy is.

Fidelity (argmax agreement with the victim) is the extraction literature's headline number
(Jagielski et al. 2020 call it "fidelity" as opposed to task accuracy); L1 and KL between the
probability vectors show how closely the copy mimics confidences, which matters for attacks that
build on the copy (transfer of adversarial examples, membership inference).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from extractguard.errors import ConfigurationError
from extractguard.oracle.targets import Target


def _labels(a: np.ndarray) -> np.ndarray:
    a = np.asarray(a)
    return a.argmax(axis=1) if a.ndim == 2 else a


def fidelity(victim: np.ndarray, surrogate: np.ndarray) -> float:
    """Fraction of rows where the two models predict the same class (labels or probabilities)."""
    v, s = _labels(victim), _labels(surrogate)
    if v.shape != s.shape or v.size == 0:
        raise ConfigurationError(f"fidelity needs two non-empty label vectors of equal length, got {v.shape} and {s.shape}")
    return float(np.mean(v == s))


def accuracy(y_true: np.ndarray, predicted: np.ndarray) -> float:
    """Fraction of rows whose predicted class equals the true label."""
    return fidelity(np.asarray(y_true), predicted)


def mean_l1(p: np.ndarray, q: np.ndarray) -> float:
    """Mean over rows of the L1 distance between probability vectors (0 to 2)."""
    p, q = np.asarray(p, dtype=np.float64), np.asarray(q, dtype=np.float64)
    return float(np.mean(np.abs(p - q).sum(axis=1)))


def mean_kl(p: np.ndarray, q: np.ndarray, eps: float = 1e-12) -> float:
    """Mean over rows of KL(p || q) in nats, with ``q`` clipped at ``eps`` to stay finite.

    ``p`` is the victim's distribution, ``q`` the surrogate's: the cost of describing the
    victim's answers with the copy.
    """
    p, q = np.asarray(p, dtype=np.float64), np.asarray(q, dtype=np.float64)
    q = np.clip(q, eps, None)
    q = q / q.sum(axis=1, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(p > 0, p * (np.log(np.clip(p, eps, None)) - np.log(q)), 0.0)
    return float(np.mean(terms.sum(axis=1)))


@dataclass(frozen=True)
class ProbeSet:
    """Held-out rows the attack never queried, with the victim's probabilities on them.

    The owner computes ``victim_proba`` straight from the target: measuring the copy is not an
    attack query and is not charged to any budget.
    """

    X: np.ndarray
    victim_proba: np.ndarray
    y: np.ndarray | None = None

    @classmethod
    def from_target(cls, target: Target, X: np.ndarray, y: np.ndarray | None = None) -> ProbeSet:
        rows = target.schema.validate(X, what="probe data")
        return cls(rows, target.predict(rows).probabilities, None if y is None else np.asarray(y))

    def __len__(self) -> int:
        return int(self.X.shape[0])

    def victim_accuracy(self) -> float | None:
        return None if self.y is None else accuracy(self.y, self.victim_proba)

    def score(self, surrogate: Any) -> dict[str, float | None]:
        """Fidelity, accuracy (when labels are known), L1 and KL of a fitted surrogate."""
        q = surrogate.predict_proba(self.X)
        return {
            "fidelity": fidelity(self.victim_proba, q),
            "accuracy": None if self.y is None else accuracy(self.y, q),
            "l1": mean_l1(self.victim_proba, q),
            "kl": mean_kl(self.victim_proba, q),
        }
