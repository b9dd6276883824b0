"""What a defense costs honest users: accuracy, calibration and how far answers move.

A defense is only worth deploying if legitimate callers barely notice it, so every defense is
reported with the same utility numbers next to the extraction fidelity it allows.  Calibration
uses expected calibration error (Guo et al. 2017, "On Calibration of Modern Neural Networks"),
negative log-likelihood and the Brier score; accuracy is measured both against the true labels
and as top-1 agreement with the undefended model.

It lives in ``evaluate`` (not ``defenses``) because it is a measurement: it scores a defense with
the same metrics as a stolen copy, and ``evaluate`` is the layer above the defenses it measures.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from sklearn.metrics import log_loss

from extractguard.defenses.base import DefenseChain
from extractguard.errors import ConfigurationError
from extractguard.evaluate.metrics import accuracy, fidelity, mean_l1
from extractguard.oracle.targets import Target


def expected_calibration_error(probabilities: np.ndarray, y: np.ndarray, n_bins: int = 15) -> float:
    """Top-label ECE with ``n_bins`` equal-width confidence bins (Guo et al. 2017).

    scikit-learn's ``calibration_curve`` covers binary problems only, hence these few lines.
    """
    p = np.asarray(probabilities, dtype=np.float64)
    conf = p.max(axis=1)
    correct = (p.argmax(axis=1) == np.asarray(y)).astype(np.float64)
    bins = np.minimum((conf * n_bins).astype(np.int64), n_bins - 1)
    ece = 0.0
    for b in range(n_bins):
        m = bins == b
        if np.any(m):
            ece += m.mean() * abs(correct[m].mean() - conf[m].mean())
    return float(ece)


def brier_score(probabilities: np.ndarray, y: np.ndarray) -> float:
    """Mean over rows of the squared distance to the one-hot label (0 to 2)."""
    p = np.asarray(probabilities, dtype=np.float64)
    onehot = np.zeros_like(p)
    onehot[np.arange(p.shape[0]), np.asarray(y, dtype=np.int64)] = 1.0
    return float(np.mean(((p - onehot) ** 2).sum(axis=1)))


def negative_log_likelihood(probabilities: np.ndarray, y: np.ndarray) -> float:
    p = np.asarray(probabilities, dtype=np.float64)
    return float(log_loss(np.asarray(y), np.clip(p, 1e-12, 1.0), labels=np.arange(p.shape[1])))


@dataclass(frozen=True)
class DefenseCost:
    """Honest-user utility of a defended model relative to the undefended one (same rows)."""

    n: int
    agreement: float  #: top-1 agreement between defended and undefended answers
    accuracy_undefended: float
    accuracy_defended: float
    accuracy_change: float  #: defended minus undefended
    ece_undefended: float
    ece_defended: float
    nll_undefended: float
    nll_defended: float
    brier_undefended: float
    brier_defended: float
    mean_l1: float  #: mean L1 distance between defended and undefended probability vectors
    max_l1: float

    def to_dict(self) -> dict[str, float | int]:
        return asdict(self)


def evaluate_defense(
    target: Target, chain: DefenseChain, X_test: np.ndarray, y_test: np.ndarray, seed: int = 0
) -> DefenseCost:
    """Utility cost of ``chain`` (already fitted) for honest users sending ``X_test``.

    ``X_test`` should be held-out, in-distribution data: what legitimate callers send.
    """
    X = target.schema.validate(X_test, what="test data")
    y = np.asarray(y_test).reshape(-1)
    if y.shape[0] != X.shape[0]:
        raise ConfigurationError(f"test data has {X.shape[0]} rows but {y.shape[0]} labels")
    if not np.issubdtype(y.dtype, np.integer) or y.min() < 0 or y.max() >= target.schema.n_classes:
        raise ConfigurationError(f"test labels must be integers in 0..{target.schema.n_classes - 1}")
    p = target.predict(X).probabilities
    q = chain.apply(p, X, np.random.default_rng(seed))
    acc_p, acc_q = accuracy(y, p), accuracy(y, q)
    return DefenseCost(
        n=int(X.shape[0]),
        agreement=fidelity(p, q),
        accuracy_undefended=acc_p,
        accuracy_defended=acc_q,
        accuracy_change=acc_q - acc_p,
        ece_undefended=expected_calibration_error(p, y),
        ece_defended=expected_calibration_error(q, y),
        nll_undefended=negative_log_likelihood(p, y),
        nll_defended=negative_log_likelihood(q, y),
        brier_undefended=brier_score(p, y),
        brier_defended=brier_score(q, y),
        mean_l1=mean_l1(p, q),
        max_l1=float(np.abs(p - q).sum(axis=1).max()),
    )
