"""What an attacker is assumed to know about a target's inputs and outputs.

An API's documentation tells callers the input shape, the valid value range and the classes;
that is public and attacks may use it.  Nothing else about the model is.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from math import prod
from typing import Any, Literal

import numpy as np

from extractguard.errors import InputValidationError


@dataclass(frozen=True)
class InputSchema:
    """Input shape, value domain and class count of a target.

    Inputs travel as flat rows ``(n, n_features)``; ``input_shape`` tells models (and attacks
    that care, such as image augmentations) how to reshape a row, e.g. ``(1, 28, 28)``.
    ``low``/``high`` are the documented bounds per feature, used by attacks that synthesise
    queries and by the oracle to reject out-of-domain rows when ``enforce_bounds`` is set.

    ``kind="text"`` describes a model whose input is one string (``input_shape=(1,)``): a batch
    is then a 1-D object array of ``str``, one string per query, and ``max_length`` (characters)
    is the documented limit a text API enforces.  Bounds do not apply to text.
    """

    input_shape: tuple[int, ...]
    n_classes: int
    low: np.ndarray | float = 0.0
    high: np.ndarray | float = 1.0
    class_names: tuple[str, ...] | None = None
    enforce_bounds: bool = False
    feature_names: tuple[str, ...] | None = field(default=None, compare=False)
    kind: Literal["numeric", "text"] = "numeric"
    max_length: int = 10_000

    def __post_init__(self) -> None:
        if self.kind not in ("numeric", "text"):
            raise InputValidationError(f"input kind must be 'numeric' or 'text', got {self.kind!r}")
        if self.kind == "text":
            if tuple(int(s) for s in self.input_shape) != (1,):
                raise InputValidationError(f"a text input is one string: input shape must be (1,), got {self.input_shape}")
            if int(self.max_length) <= 0:
                raise InputValidationError(f"max_length must be a positive number of characters, got {self.max_length}")
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
        return self.kind == "numeric" and len(self.input_shape) in (2, 3) and min(self.input_shape[-2:]) >= 4

    @property
    def is_text(self) -> bool:
        """True when one input is a string rather than a numeric row."""
        return self.kind == "text"

    def _validate_text(self, X: Any, what: str) -> np.ndarray:
        # One string is one query; a 2-D (n, 1) column (e.g. read from a CSV) is flattened.
        if isinstance(X, str):
            X = [X]
        if isinstance(X, np.ndarray) and X.ndim == 2 and X.shape[1] == 1:
            X = X[:, 0]
        if isinstance(X, np.ndarray):
            if X.ndim != 1:
                raise InputValidationError(f"{what} must be a list of strings (one per query), got an array of shape {X.shape}")
            items = X.tolist()
        else:
            try:
                items = list(X)
            except TypeError:
                raise InputValidationError(f"{what} must be a list of strings, got {type(X).__name__}") from None
        if not items:
            raise InputValidationError(f"{what} is empty: send at least one text")
        for i, item in enumerate(items):
            if not isinstance(item, str):
                raise InputValidationError(
                    f"{what} must contain only strings; item {i} is {type(item).__name__} ({str(item)[:40]!r})"
                )
            if len(item) > self.max_length:
                raise InputValidationError(
                    f"{what}: text {i} has {len(item)} characters, more than the documented limit of {self.max_length}"
                )
        out = np.empty(len(items), dtype=object)
        out[:] = items
        return out

    def validate(self, X: Any, *, what: str = "input") -> np.ndarray:
        """Return ``X`` as a float64 array of shape (n, n_features), or raise a clear error.

        Float64 on purpose: exact attacks (equation solving, critical-point search) need the
        precision, and each target casts to its own dtype.

        Accepts flat rows or rows already in ``input_shape``; rejects wrong widths, NaN/inf,
        empty batches and, when ``enforce_bounds`` is set, values outside ``[low, high]``.

        For a text schema it returns a 1-D object array of ``str`` instead, rejecting non-strings,
        empty batches and texts longer than ``max_length``.
        """
        if self.kind == "text":
            return self._validate_text(X, what)
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
        if self.kind == "text":
            return {
                "kind": "text",
                "input_shape": list(self.input_shape),
                "n_classes": self.n_classes,
                "max_length": self.max_length,
                "class_names": list(self.class_names) if self.class_names else None,
            }
        return {
            "input_shape": list(self.input_shape),
            "n_features": self.n_features,
            "n_classes": self.n_classes,
            "low": float(low[0]) if uniform else low.tolist(),
            "high": float(high[0]) if uniform else high.tolist(),
            "class_names": list(self.class_names) if self.class_names else None,
        }
