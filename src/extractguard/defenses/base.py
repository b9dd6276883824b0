"""Output defenses: transforms of a model's probability vectors applied before anyone sees them.

Every defense maps probabilities ``(n, C)`` to probabilities ``(n, C)`` (rows on the simplex);
how much of the result a caller sees (full vector, rounded, top-k, label) is the tier's
:class:`~extractguard.oracle.OutputSpec`, applied last.  A chain runs inside the one answer
pipeline (:class:`extractguard.serving.ServingPipeline`) that both the gateway and the
assessments answer through, so what is measured is what is deployed.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from extractguard.defenses import DEFENSES
from extractguard.errors import ConfigurationError
from extractguard.oracle.answer import softmax
from extractguard.oracle.targets import Target


class Defense(ABC):
    """One step of a defense chain."""

    #: Name used in configuration files (``{"name": ..., **params}``).
    name: ClassVar[str] = ""

    def fit(self, target: Target, X: np.ndarray | None = None) -> Defense:
        """Prepare from the owner's model and data (e.g. a surrogate for MAD). Default: nothing."""
        return self

    @abstractmethod
    def apply(self, probabilities: np.ndarray, X: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Return defended probabilities for rows ``X`` (same shape, rows summing to 1)."""


class Temperature(Defense):
    """Soften (T > 1) or sharpen (T < 1) probabilities; argmax unchanged, so accuracy is free."""

    name = "temperature"

    def __init__(self, temperature: float = 2.0) -> None:
        if not temperature > 0:
            raise ConfigurationError(f"temperature must be > 0, got {temperature}")
        self.temperature = temperature

    def apply(self, probabilities: np.ndarray, X: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        return softmax(np.log(np.clip(probabilities, 1e-300, None)) / self.temperature)


@dataclass
class DefenseChain:
    """Defenses applied in order."""

    defenses: list[Defense] = field(default_factory=list)

    def fit(self, target: Target, X: np.ndarray | None = None) -> DefenseChain:
        for d in self.defenses:
            d.fit(target, X)
        return self

    def apply(self, probabilities: np.ndarray, X: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        p = np.asarray(probabilities, dtype=np.float64)
        for d in self.defenses:
            p = d.apply(p, X, rng)
        return p

    def describe(self) -> list[dict[str, Any]]:
        return [{"name": d.name, **{k: v for k, v in vars(d).items() if not k.startswith("_") and not k.endswith("_")}} for d in self.defenses]


def build_chain(specs: list[dict[str, Any]] | None) -> DefenseChain:
    """``[{"name": "temperature", "temperature": 2.0}, ...]`` -> a :class:`DefenseChain`."""
    chain = DefenseChain()
    for spec in specs or []:
        if not isinstance(spec, dict) or "name" not in spec:
            raise ConfigurationError(f"each defense needs a 'name', got {spec!r}")
        params = {k: v for k, v in spec.items() if k != "name"}
        name = DEFENSES.canonical(str(spec["name"]))
        try:
            chain.defenses.append(DEFENSES.load(name)(**params))
        except TypeError as exc:
            raise ConfigurationError(f"defense {name!r}: {exc}") from None
    return chain


def canonical_specs(specs: list[dict[str, Any]] | None) -> list[dict[str, Any]]:
    """Validate defense specs (by building them) and return them with canonical names, so a
    config read once carries the spelling reports and dumps should show."""
    build_chain(specs)
    return [{**spec, "name": DEFENSES.resolve(str(spec["name"]))} for spec in specs or []]
