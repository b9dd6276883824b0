"""Extraction attacks: query strategies plus surrogates, all through the oracle."""

from __future__ import annotations

from typing import Any

import numpy as np

from extractguard.attacks.base import Attack, Checkpoint, CheckpointCallback
from extractguard.attacks.active_learning import ActiveThief, ActiveThiefDFAL, ActiveThiefEntropy, ActiveThiefKCenter
from extractguard.attacks.jacobian import JacobianAugmentation
from extractguard.attacks.knockoff import KnockoffNets
from extractguard.attacks.knockoff_adaptive import KnockoffAdaptive
from extractguard.attacks.random_queries import RandomQueries
from extractguard.errors import ConfigurationError

#: Every attack by its CLI name.
ATTACKS: dict[str, type[Attack]] = {cls.name: cls for cls in (RandomQueries, KnockoffNets)}
# Learning-based attacks (docs/attacks.md, "Learning-based attacks").
ATTACKS.update({cls.name: cls for cls in (
    KnockoffAdaptive, ActiveThief, ActiveThiefEntropy, ActiveThiefKCenter, ActiveThiefDFAL, JacobianAugmentation,
)})


def create_attack(
    name: str, *, pool: np.ndarray | None = None, surrogate: str = "auto", seed: int = 0, **params: Any
) -> Attack:
    """Build attack ``name``; pool-based attacks get the attacker's natural data ``pool``."""
    key = name.strip().lower()
    if key not in ATTACKS:
        raise ConfigurationError(f"unknown attack {name!r}; available: {', '.join(ATTACKS)}")
    cls = ATTACKS[key]
    if cls.needs_pool:
        if pool is None or len(pool) == 0:
            raise ConfigurationError(f"attack {key!r} needs attacker data (a pool of natural inputs)")
        return cls(pool=pool, surrogate=surrogate, seed=seed, **params)  # type: ignore[call-arg]
    return cls(surrogate=surrogate, seed=seed, **params)


__all__ = ["ATTACKS", "ActiveThief", "Attack", "JacobianAugmentation", "KnockoffAdaptive", "Checkpoint", "CheckpointCallback", "KnockoffNets", "RandomQueries", "create_attack"]
