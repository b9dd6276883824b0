"""Structured attacker pools: natural on-task data drowned in off-task data.

Real attackers do not hold a clean sample of the victim's input distribution; they hold a
scrape in which most rows are off-task (Orekondy et al. 2019 query an ImageNet classifier's
look-alikes with OpenImages; Pal et al. 2020 use ImageNet for every victim).  Pool-based
strategies that *choose* rows (Knockoff adaptive, ActiveThief) only matter on such pools, so
benchmarks and tests build them here from the bundled datasets, with no downloads.
"""

from __future__ import annotations

import numpy as np

from extractguard.data import load_dataset
from extractguard.errors import ConfigurationError
from extractguard.oracle.schema import InputSchema


def _rescale_other(n: int, schema: InputSchema, rng: np.random.Generator, name: str) -> np.ndarray:
    """Rows of another bundled dataset, column-tiled to the width and min-max scaled into bounds."""
    X = load_dataset(name).X.astype(np.float64)
    X = X[rng.integers(0, X.shape[0], size=n)]
    cols = np.resize(np.arange(X.shape[1]), schema.n_features)
    X = X[:, cols]
    lo, hi = X.min(axis=0), X.max(axis=0)
    X = (X - lo) / np.where(hi > lo, hi - lo, 1.0)
    low, high = np.asarray(schema.low), np.asarray(schema.high)
    return low + X * (high - low)


def structured_pool(
    natural: np.ndarray, schema: InputSchema, off_task_ratio: float = 3.0, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Mix ``natural`` rows with ``off_task_ratio`` times as many off-task rows.

    Off-task sources, in equal shares: uniform noise in the documented bounds; inverted
    natural rows (low + high - x); natural rows with each feature shuffled independently
    (right marginals, no structure); for images, natural rows rotated by 90 degrees; and rows
    of another bundled dataset rescaled to the input domain.  Returns ``(rows, source)`` where
    ``source`` names each row's origin ("natural", "noise", ...), usable as Knockoff arms.
    """
    X = schema.validate(natural, what="natural pool")
    if off_task_ratio < 0:
        raise ConfigurationError(f"off_task_ratio must be >= 0, got {off_task_ratio}")
    rng = np.random.default_rng(seed)
    low, high = np.asarray(schema.low), np.asarray(schema.high)
    sources = ["noise", "inverted", "shuffled", "other"]
    if schema.is_image and int(np.prod(schema.input_shape[-2:])) == schema.n_features:
        sources.append("rotated")  # single-channel images only
    share = int(round(off_task_ratio * X.shape[0] / len(sources)))
    parts, names = [X], [np.full(X.shape[0], "natural", dtype=object)]
    for src in sources:
        base = X[rng.integers(0, X.shape[0], size=share)]
        if src == "noise":
            rows = rng.uniform(low, high, size=(share, schema.n_features))
        elif src == "inverted":
            rows = low + high - base
        elif src == "shuffled":
            rows = np.stack([rng.permutation(X[:, j])[:share] if share <= X.shape[0] else rng.choice(X[:, j], share) for j in range(X.shape[1])], axis=1)
        elif src == "rotated":
            h, w = schema.input_shape[-2:]
            rows = np.rot90(base.reshape(share, h, w), k=1, axes=(1, 2)).reshape(share, -1)
        else:
            other = "breast_cancer" if schema.is_image or schema.n_features > 30 else "digits"
            rows = _rescale_other(share, schema, rng, other)
        parts.append(np.clip(rows, low, high))
        names.append(np.full(share, src, dtype=object))
    order = rng.permutation(sum(len(p) for p in parts))
    return np.concatenate(parts)[order], np.concatenate(names)[order]
