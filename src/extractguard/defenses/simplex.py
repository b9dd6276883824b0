"""Small helpers shared by the defenses: parameter checks and staying on the simplex.

Kept separate from the algorithms so every defense validates its parameters the same way
(numbers from a YAML file may arrive as strings such as ``"1e-3"``, which PyYAML does not parse
as floats) and restores the top-1 label the same way.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from extractguard.errors import ConfigurationError


def as_float(
    defense: str,
    name: str,
    value: Any,
    *,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
    high_open: bool = False,
) -> float:
    """``value`` as a finite float within the given bounds, or a one-line ConfigurationError."""
    if isinstance(value, bool):
        raise ConfigurationError(f"defense {defense!r}: {name} must be a number, got {value!r}")
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ConfigurationError(f"defense {defense!r}: {name} must be a number, got {value!r}") from None
    if not np.isfinite(v):
        raise ConfigurationError(f"defense {defense!r}: {name} must be finite, got {value!r}")
    if low is not None and (v < low or (low_open and v == low)):
        op = ">" if low_open else ">="
        raise ConfigurationError(f"defense {defense!r}: {name} must be {op} {low:g}, got {v:g}")
    if high is not None and (v > high or (high_open and v == high)):
        op = "<" if high_open else "<="
        raise ConfigurationError(f"defense {defense!r}: {name} must be {op} {high:g}, got {v:g}")
    return v


def as_int(defense: str, name: str, value: Any, *, low: int = 0) -> int:
    """``value`` as an integer >= ``low`` (``3.0`` is fine, ``3.5`` is not)."""
    v = as_float(defense, name, value, low=low)
    if v != int(v):
        raise ConfigurationError(f"defense {defense!r}: {name} must be an integer, got {value!r}")
    return int(v)


def as_bool(defense: str, name: str, value: Any) -> bool:
    """Booleans, also in the spellings a config file or query string gives."""
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in ("true", "yes", "1", "on", "false", "no", "0", "off"):
        return value.strip().lower() in ("true", "yes", "1", "on")
    if isinstance(value, (int, np.integer)) and value in (0, 1):
        return bool(value)
    raise ConfigurationError(f"defense {defense!r}: {name} must be true or false, got {value!r}")


def as_choice(defense: str, name: str, value: Any, choices: tuple[str, ...]) -> str:
    v = str(value).strip().lower()
    if v not in choices:
        raise ConfigurationError(f"defense {defense!r}: {name} must be one of {', '.join(choices)}, got {value!r}")
    return v


def renormalise(p: np.ndarray, fallback: np.ndarray) -> np.ndarray:
    """Clip to >= 0 and scale rows to sum 1; rows with no mass left take ``fallback``'s row."""
    p = np.clip(np.asarray(p, dtype=np.float64), 0.0, None)
    total = p.sum(axis=1, keepdims=True)
    ok = total[:, 0] > 0
    out = np.array(fallback, dtype=np.float64, copy=True)
    out[ok] = p[ok] / total[ok]
    return out


def restore_argmax(p: np.ndarray, top: np.ndarray) -> np.ndarray:
    """Make class ``top[i]`` row ``i``'s strict argmax again without leaving the simplex.

    Swapping the top class's value with the row maximum keeps the multiset of values (so the
    perturbation's size barely changes) and the row sum.  A tie that remains is broken by moving
    a hair of mass onto the top class, since ``np.argmax`` returns the first maximum.
    """
    p = np.array(p, dtype=np.float64, copy=True)
    rows = np.arange(p.shape[0])
    cur = p.argmax(axis=1)
    bad = cur != top
    if np.any(bad):
        r = rows[bad]
        hi, lo = p[r, cur[bad]].copy(), p[r, top[bad]].copy()
        p[r, top[bad]] = hi
        p[r, cur[bad]] = lo
    still = p.argmax(axis=1) != top
    if np.any(still):
        r = rows[still]
        p[r, top[still]] += 1e-9
        p[r] /= p[r].sum(axis=1, keepdims=True)
    return p
