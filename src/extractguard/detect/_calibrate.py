"""Shared helpers: input scaling/projection and bootstrap calibration of window statistics."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np


@dataclass
class Embedding:
    """Scale each feature by the owner's data, then a seeded Gaussian random projection.

    Why a random projection rather than an ANN library: detectors keep a bounded sample of each
    account's rows (a few hundred per class), and exact search over a few hundred low-dimensional
    vectors is one small matrix product, cheaper than any index and exact.  Projecting to ``dim``
    dimensions keeps pairwise distances within a small factor (Johnson & Lindenstrauss, 1984) and
    shrinks both the per-query cost and the persisted state of image models (784 -> 32 floats).
    """

    center: np.ndarray
    scale: np.ndarray
    matrix: np.ndarray | None

    @classmethod
    def fit(cls, X: np.ndarray | None, n_features: int, dim: int, seed: int) -> Embedding:
        if X is None:
            center, scale = np.zeros(n_features), np.ones(n_features)
        else:
            center = X.mean(axis=0)
            std = X.std(axis=0)
            floor = 0.1 * float(std.mean()) if float(std.mean()) > 0 else 1.0
            scale = np.maximum(std, floor)  # near-constant pixels must not dominate distances
        matrix = None
        if n_features > dim:
            matrix = np.random.default_rng(seed).normal(size=(n_features, dim)) / np.sqrt(dim)
        return cls(center, scale, matrix)

    @property
    def dim(self) -> int:
        return len(self.center) if self.matrix is None else int(self.matrix.shape[1])

    def transform(self, X: np.ndarray) -> np.ndarray:
        Z = (np.asarray(X, dtype=np.float64).reshape(len(X), -1) - self.center) / self.scale
        return (Z if self.matrix is None else Z @ self.matrix).astype(np.float32)


def bootstrap_windows(
    values: np.ndarray, window: int, stat: Callable[[np.ndarray], float], n_boot: int, rng: np.random.Generator
) -> np.ndarray:
    """``stat`` over ``n_boot`` windows of ``window`` rows drawn with replacement from ``values``."""
    idx = rng.integers(0, len(values), size=(n_boot, window))
    return np.array([stat(values[i]) for i in idx])


@dataclass(frozen=True)
class Band:
    """Alarm threshold for a window statistic, from bootstrap windows of the owner's data.

    Two-sided bands alarm on ``|s - center| > width``; one-sided on ``s - center > width``.
    ``width`` is the largest bootstrap deviation times ``margin``: with thousands of honest windows
    per account and many accounts, a plain 99th percentile would alarm on honest users daily.
    """

    center: float
    width: float
    two_sided: bool

    @classmethod
    def fit(cls, samples: np.ndarray, two_sided: bool, margin: float, floor: float = 1e-6) -> Band:
        center = float(np.median(samples))
        dev = np.abs(samples - center) if two_sided else samples - center
        return cls(center, max(float(dev.max()) * margin, floor), two_sided)

    def level(self, s: float) -> float:
        d = abs(s - self.center) if self.two_sided else s - self.center
        return max(d, 0.0) / self.width

    @property
    def threshold(self) -> float:
        return self.center + self.width
