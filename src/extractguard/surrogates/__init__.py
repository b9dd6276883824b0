"""Student models that learn a victim's behaviour from oracle answers.

The student classes load on first access (PEP 562), and :func:`check_surrogate` validates a
``--surrogate`` value, so a mistyped name is answered before torch loads.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from extractguard.errors import ConfigurationError

from extractguard.registry import lazy_exports

if TYPE_CHECKING:
    from extractguard.oracle.schema import InputSchema
    from extractguard.surrogates.selection import SelectedSurrogate, SelectionResult, select_surrogate
    from extractguard.surrogates.sklearn_models import SklearnSurrogate
    from extractguard.surrogates.torch_models import TorchClassifier, build_network


class Surrogate(Protocol):
    """What attacks need from a student: fit on (rows, labels or probabilities), then predict."""

    def fit(self, X: np.ndarray, y: np.ndarray) -> "Surrogate": ...

    def predict_proba(self, X: np.ndarray) -> np.ndarray: ...


SURROGATES: tuple[str, ...] = ("auto", "select", "cnn", "mlp", "linear", "tree", "forest")


def _mlp_widths(kind: str) -> tuple[int, ...]:
    try:
        widths = tuple(int(w) for w in kind[4:].split("x"))
    except ValueError:
        raise ConfigurationError(f"MLP widths look like mlp-256x128, got {kind!r}") from None
    if not widths or min(widths) < 1:
        raise ConfigurationError(f"MLP widths must be positive, got {kind!r}")
    return widths


def check_surrogate(kind: str) -> str:
    """``kind`` if it names a student family (or ``mlp-WxH``); else one clear error.  Imports nothing."""
    if kind.startswith("mlp-"):
        _mlp_widths(kind)
    elif kind not in SURROGATES:
        raise ConfigurationError(f"unknown surrogate {kind!r}; choose one of {', '.join(SURROGATES)}")
    return kind


def make_surrogate(kind: str, schema: InputSchema, seed: int = 0) -> Surrogate:
    """A fresh, unfitted student suited to the schema.

    ``auto`` picks a CNN for image inputs and an MLP otherwise; ``tree``/``forest`` are
    scikit-learn models that learn from hard labels.  ``select`` picks one of those by
    cross-validation on the transcript at fit time (see :mod:`.selection`); ``mlp-256x128``
    names an MLP with explicit hidden widths.
    """
    if schema.is_text:
        # Text students need a featuriser; the from-scratch one is TF-IDF (surrogates/text.py).
        if kind not in ("auto", "linear"):
            raise ConfigurationError(
                f"surrogate {kind!r} takes numeric rows; for text models use auto (TF-IDF + logistic regression) "
                "or the transfer attack"
            )
        from extractguard.surrogates.text import TfidfSurrogate

        return TfidfSurrogate(schema.n_classes, seed=seed)
    from extractguard.surrogates.selection import SelectedSurrogate
    from extractguard.surrogates.sklearn_models import SklearnSurrogate
    from extractguard.surrogates.torch_models import TorchClassifier

    if kind == "select":
        return SelectedSurrogate(schema, seed=seed)
    if kind.startswith("mlp-"):
        widths = _mlp_widths(kind)
        return TorchClassifier("mlp", schema.input_shape, schema.n_classes, hidden=widths, seed=seed)
    if kind == "auto":
        kind = "cnn" if schema.is_image else "mlp"
    if kind in ("cnn", "mlp", "linear"):
        hidden = (128,) if kind != "mlp" else (256, 128)
        return TorchClassifier(kind, schema.input_shape, schema.n_classes, hidden=hidden, seed=seed)  # type: ignore[arg-type]
    if kind == "tree":
        from sklearn.tree import DecisionTreeClassifier

        return SklearnSurrogate(DecisionTreeClassifier(random_state=seed), schema.n_classes)
    if kind == "forest":
        from sklearn.ensemble import RandomForestClassifier

        return SklearnSurrogate(RandomForestClassifier(n_estimators=100, random_state=seed), schema.n_classes)
    raise ConfigurationError(f"unknown surrogate {kind!r}; choose one of {', '.join(SURROGATES)}")


_WHERE = {"SelectedSurrogate": "selection", "SelectionResult": "selection", "select_surrogate": "selection",
          "SklearnSurrogate": "sklearn_models", "TorchClassifier": "torch_models", "build_network": "torch_models"}


__getattr__ = lazy_exports(__name__, _WHERE)


__all__ = ["SURROGATES", "Surrogate", "check_surrogate", "make_surrogate", *sorted(_WHERE)]
