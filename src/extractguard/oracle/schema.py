"""What an attacker is assumed to know about a target's inputs and outputs.

An API's documentation tells callers the input shape, the valid value range and the classes;
that is public and attacks may use it.  Nothing else about the model is.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from math import prod
from typing import Any

import numpy as np

from extractguard.errors import InputValidationError


@dataclass(frozen=True)
class InputSchema:
    """Input shape, value domain and class count of a target.

    Inputs travel as flat rows ``(n, n_features)``; ``input_shape`` tells models (and attacks
    that care, such as image augmentations) how to reshape a row, e.g. ``(1, 28, 28)``.
    ``low``/``high`` are the documented bounds per feature, used by attacks that synthesise
    queries and by the oracle to reject out-of-domain rows when ``enforce_bounds`` is set.
    """

    input_shape: tuple[int, ...]
    n_classes: int
    low: np.ndarray | float = 0.0
    high: np.ndarray | float = 1.0
    class_names: tuple[str, ...] | None = None
    enforce_bounds: bool = False
    feature_names: tuple[str, ...] | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        if not self.input_shape or any(int(s) <= 0 for s in self.input_shape):
            raise InputValidationError(f"input shape must be positive integers, got {self.input_shape}")
        if self.n_classes < 2:
            raise InputValidationError(f"a classifier needs at least 2 classes, got {self.n_classes}")
        low = np.broadcast_to(np.asarray(self.low, dtype=np.float64), (self.n_features,)).copy()
        high = np.broadcast_to(np.asarray(self.high, dtype=np.float64), (self.n_features,)).copy()
        if not (np.all(np.isfinite(low)) and np.all(np.isfinite(high))):
            raise InputValidationError("input bounds must be finite numbers")
        if np.any(high < low):
            raise InputValidationError("input bounds: every 'high' must be >= its 'low'")
        object.__setattr__(self, "low", low)
        object.__setattr__(self, "high", high)
        object.__setattr__(self, "input_shape", tuple(int(s) for s in self.input_shape))

    @property
    def n_features(self) -> int:
        """Width of one flat input row."""
        return int(prod(self.input_shape))

    @property
    def is_image(self) -> bool:
        """True for (C, H, W) or (H, W) inputs, where convolutional surrogates make sense."""
        return len(self.input_shape) in (2, 3) and min(self.input_shape[-2:]) >= 4

    def validate(self, X: Any, *, what: str = "input") -> np.ndarray:
        """Return ``X`` as a float64 array of shape (n, n_features), or raise a clear error.

        Float64 on purpose: exact attacks (equation solving, critical-point search) need the
        precision, and each target casts to its own dtype.

        Accepts flat rows or rows already in ``input_shape``; rejects wrong widths, NaN/inf,
        empty batches and, when ``enforce_bounds`` is set, values outside ``[low, high]``.
        """
        try:
            arr = np.asarray(X, dtype=np.float64)
        except (TypeError, ValueError) as exc:
            raise InputValidationError(f"{what} is not numeric: {exc}") from None
        if arr.ndim == 1:
            arr = arr[None, :]
        if arr.ndim == 0 or arr.shape[0] == 0:
            raise InputValidationError(f"{what} is empty: send at least one row")
        if arr.shape[1:] == self.input_shape:
            arr = arr.reshape(arr.shape[0], -1)
        if arr.ndim != 2 or arr.shape[1] != self.n_features:
            raise InputValidationError(
                f"{what} has width {int(np.prod(arr.shape[1:]))} (shape {arr.shape[1:]}), "
                f"but the model expects {self.n_features} features (shape {self.input_shape})"
            )
        bad = ~np.isfinite(arr)
        if bad.any():
            row, col = np.argwhere(bad)[0]
            raise InputValidationError(
                f"{what} contains NaN or infinite values ({int(bad.sum())} cells; first at row {row}, column {col})"
            )
        if self.enforce_bounds:
            low = np.asarray(self.low)
            high = np.asarray(self.high)
            outside = (arr < low) | (arr > high)
            if outside.any():
                row, col = np.argwhere(outside)[0]
                raise InputValidationError(
                    f"{what} has values outside the documented domain (row {row}, column {col}: "
                    f"{arr[row, col]:g} not in [{low[col]:g}, {high[col]:g}])"
                )
        return arr

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly description, for reports and transcripts."""
        low = np.asarray(self.low)
        high = np.asarray(self.high)
        uniform = bool(np.all(low == low[0]) and np.all(high == high[0]))
        return {
            "input_shape": list(self.input_shape),
            "n_features": self.n_features,
            "n_classes": self.n_classes,
            "low": float(low[0]) if uniform else low.tolist(),
            "high": float(high[0]) if uniform else high.tolist(),
            "class_names": list(self.class_names) if self.class_names else None,
        }
