"""Bookkeeping shared by attacks that draw rows from an attacker pool without replacement."""

from __future__ import annotations

import numpy as np

from extractguard.errors import ConfigurationError
from extractguard.oracle.schema import InputSchema

#: Torch student families: the ones with input gradients.
TORCH_FAMILIES: tuple[str, ...] = ("auto", "cnn", "mlp", "linear")


def is_torch_family(kind: str) -> bool:
    return kind in TORCH_FAMILIES or kind.startswith("mlp-")


def helper_family(kind: str) -> str:
    """Family for the *working* student a strategy retrains between rounds.

    The strategy needs a student that is cheap to refit every round and, for gradient-guided
    strategies, differentiable.  The user's family is kept when it qualifies; ``select``
    (cross-validation every round would multiply the cost) and the tree families use ``auto``.
    The copy returned at each checkpoint always uses the user's family.
    """
    return kind if is_torch_family(kind) else "auto"


def validate_pool(schema: InputSchema, pool: np.ndarray) -> np.ndarray:
    out = schema.validate(pool, what="attacker pool")
    if out.shape[0] == 0:
        raise ConfigurationError("the attacker pool is empty")
    return out


def resolve_size(value: int | float | None, budget: int, default_fraction: float, floor: int = 1) -> int:
    """``int`` -> itself; ``float`` in (0, 1] -> that fraction of the budget; ``None`` -> default."""
    if value is None:
        value = default_fraction
    if isinstance(value, float):
        if not 0.0 < value <= 1.0:
            raise ConfigurationError(f"a fractional round size must be in (0, 1], got {value}")
        return max(floor, int(round(value * budget)))
    if int(value) < 1:
        raise ConfigurationError(f"round sizes must be at least 1 row, got {value}")
    return int(value)
