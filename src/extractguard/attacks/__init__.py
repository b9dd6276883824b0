"""Extraction attacks: query strategies plus surrogates, all through the oracle."""

from __future__ import annotations

from typing import Any

import numpy as np

from extractguard.attacks.base import Attack, Checkpoint, CheckpointCallback
from extractguard.attacks.active_learning import ActiveThief, ActiveThiefDFAL, ActiveThiefEntropy, ActiveThiefKCenter
from extractguard.attacks.equation_solving import EquationSolving
from extractguard.attacks.functionally_equivalent import FunctionallyEquivalent
from extractguard.attacks.jacobian import JacobianAugmentation
from extractguard.attacks.knockoff import KnockoffNets
from extractguard.attacks.knockoff_adaptive import KnockoffAdaptive
from extractguard.attacks.lowd_meek import LowdMeek
from extractguard.attacks.path_finding import PathFinding
from extractguard.attacks.random_queries import RandomQueries
from extractguard.attacks.transfer import TransferAttack
from extractguard.errors import ConfigurationError

#: Every attack by its CLI name.
ATTACKS: dict[str, type[Attack]] = {cls.name: cls for cls in (RandomQueries, KnockoffNets)}
# Learning-based attacks (docs/attacks.md, "Learning-based attacks").
ATTACKS.update({cls.name: cls for cls in (
    KnockoffAdaptive, ActiveThief, ActiveThiefEntropy, ActiveThiefKCenter, ActiveThiefDFAL, JacobianAugmentation,
)})
# Exact / analytic attacks (Tramèr 2016, Lowd & Meek 2005, Jagielski 2020).
ATTACKS.update({cls.name: cls for cls in (EquationSolving, LowdMeek, PathFinding, FunctionallyEquivalent)})
# Transfer learning from a pretrained encoder (text victims).
ATTACKS.update({cls.name: cls for cls in (TransferAttack,)})


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


__all__ = [
    "ATTACKS", "ActiveThief", "ActiveThiefDFAL", "ActiveThiefEntropy", "ActiveThiefKCenter", "Attack", "Checkpoint",
    "CheckpointCallback", "EquationSolving", "FunctionallyEquivalent", "JacobianAugmentation", "KnockoffAdaptive",
    "KnockoffNets", "LowdMeek", "PathFinding", "RandomQueries", "TransferAttack", "create_attack",
]
