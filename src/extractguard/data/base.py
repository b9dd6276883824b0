"""The :class:`Dataset` record every loader returns.

Kept apart from the loaders (:mod:`extractguard.data.datasets`, :mod:`extractguard.data.text`) so
that each loader can build one without importing the others: no import cycle inside ``data``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from extractguard.oracle.schema import InputSchema


@dataclass(frozen=True)
class Dataset:
    """Features as flat float32 rows, integer labels, and the public input description."""

    name: str
    X: np.ndarray
    y: np.ndarray
    input_shape: tuple[int, ...]
    n_classes: int
    low: np.ndarray
    high: np.ndarray
    source: str
    class_names: tuple[str, ...] | None = None
    #: ``"text"`` when ``X`` is a 1-D object array of strings (one document per row).
    kind: str = "numeric"

    def schema(self, enforce_bounds: bool = False) -> InputSchema:
        """The schema an API serving a model of this task would document."""
        if self.kind == "text":
            return InputSchema(input_shape=(1,), n_classes=self.n_classes, class_names=self.class_names, kind="text")
        return InputSchema(
            input_shape=self.input_shape,
            n_classes=self.n_classes,
            low=self.low,
            high=self.high,
            class_names=self.class_names,
            enforce_bounds=enforce_bounds,
        )
