"""Extraction attacks: query strategies plus surrogates, all through the oracle.

:data:`ATTACKS` names every attack without importing it; :func:`create_attack` builds one.  The
attack classes are importable from here too (``from extractguard.attacks import KnockoffNets``),
but load their modules (and torch) only on first access (PEP 562).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from extractguard.errors import ConfigurationError
from extractguard.registry import Entry, Registry, lazy_exports

if TYPE_CHECKING:
    import numpy as np

    from extractguard.attacks.active_learning import ActiveThief, ActiveThiefDFAL, ActiveThiefEntropy, ActiveThiefKCenter
    from extractguard.attacks.base import Attack, Checkpoint, CheckpointCallback
    from extractguard.attacks.equation_solving import EquationSolving
    from extractguard.attacks.functionally_equivalent import FunctionallyEquivalent
    from extractguard.attacks.jacobian import JacobianAugmentation
    from extractguard.attacks.knockoff import KnockoffNets
    from extractguard.attacks.knockoff_adaptive import KnockoffAdaptive
    from extractguard.attacks.lowd_meek import LowdMeek
    from extractguard.attacks.path_finding import PathFinding
    from extractguard.attacks.random_queries import RandomQueries
    from extractguard.attacks.transfer import TransferAttack

_TRAMER = "Tramèr et al. 2016, Stealing Machine Learning Models via Prediction APIs"
_PAL = "Pal et al. 2020, ActiveThief: Model Extraction Using Active Learning and Unannotated Public Data"
_KNOCKOFF = "Orekondy, Schiele & Fritz 2019, Knockoff Nets: Stealing Functionality of Black-Box Models"

#: Every attack by the name users type (CLI ``--attack``, ``attacks:`` in assess.yaml).
#: ``paper`` and ``needs_data`` repeat the classes' ``paper``/``needs_pool`` so that listing
#: needs no import; tests/test_registry.py checks they agree.
ATTACKS: Registry[type[Attack]] = Registry("attack", [
    Entry("random", "extractguard.attacks.random_queries:RandomQueries",
          "rows drawn uniformly from each feature's valid range", f"{_TRAMER} (random baseline)"),
    Entry("knockoff", "extractguard.attacks.knockoff:KnockoffNets",
          "random sampling from the attacker's pool of natural inputs", _KNOCKOFF, needs_data=True),
    # Learning-based attacks (docs/attacks.md, "Learning-based attacks").
    Entry("knockoff-adaptive", "extractguard.attacks.knockoff_adaptive:KnockoffAdaptive",
          "gradient-bandit sampling over arms of the pool", f"{_KNOCKOFF} (adaptive strategy)", needs_data=True),
    Entry("activethief", "extractguard.attacks.active_learning:ActiveThief",
          "active learning from the pool (strategy=random|entropy|kcenter|dfal)", _PAL, needs_data=True),
    Entry("activethief-entropy", "extractguard.attacks.active_learning:ActiveThiefEntropy",
          "ActiveThief with uncertainty (entropy) selection", _PAL, needs_data=True),
    Entry("activethief-kcenter", "extractguard.attacks.active_learning:ActiveThiefKCenter",
          "ActiveThief with k-center core-set selection", _PAL, needs_data=True),
    Entry("activethief-dfal", "extractguard.attacks.active_learning:ActiveThiefDFAL",
          "ActiveThief with DFAL margin selection", _PAL, needs_data=True),
    Entry("jbda", "extractguard.attacks.jacobian:JacobianAugmentation",
          "substitute training with Jacobian-based augmentation",
          "Papernot et al. 2017, Practical Black-Box Attacks against Machine Learning "
          "(Jacobian-based augmentation, reservoir variant of Juuti et al. 2019)", needs_data=True),
    # Exact / analytic attacks (Tramèr 2016, Lowd & Meek 2005, Jagielski 2020).
    Entry("equation-solving", "extractguard.attacks.equation_solving:EquationSolving",
          "exact parameters of a logistic regression from d + 1 queries", f"{_TRAMER} (equation solving)"),
    Entry("lowd-meek", "extractguard.attacks.lowd_meek:LowdMeek",
          "a binary linear classifier from labels alone",
          "Lowd & Meek 2005, Adversarial Learning (label-only line search on linear classifiers)"),
    Entry("path-finding", "extractguard.attacks.path_finding:PathFinding",
          "a decision tree's regions from leaf identifiers or confidences", f"{_TRAMER} (path finding)"),
    Entry("functionally-equivalent", "extractguard.attacks.functionally_equivalent:FunctionallyEquivalent",
          "a one-hidden-layer ReLU network from logits",
          "Jagielski et al. 2020, High Accuracy and High Fidelity Extraction of Neural Networks; "
          "Carlini, Jagielski & Mironov 2020"),
    # Transfer learning from a pretrained encoder (text victims).
    Entry("transfer", "extractguard.attacks.transfer:TransferAttack",
          "a head on frozen sentence embeddings of natural texts",
          "Krishna et al. 2020, Thieves on Sesame Street! Model Extraction of BERT-based APIs (frozen-encoder variant)",
          needs_data=True),
])


def create_attack(
    name: str, *, pool: np.ndarray | None = None, surrogate: str = "auto", seed: int = 0, **params: Any
) -> Attack:
    """Build attack ``name``; pool-based attacks get the attacker's natural data ``pool``."""
    key = ATTACKS.canonical(name)
    cls = ATTACKS.load(key)
    if cls.needs_pool:
        if pool is None or len(pool) == 0:
            raise ConfigurationError(f"attack {key!r} needs attacker data (a pool of natural inputs)")
        return cls(pool=pool, surrogate=surrogate, seed=seed, **params)  # type: ignore[call-arg]
    return cls(surrogate=surrogate, seed=seed, **params)


_WHERE = {
    "Attack": "base", "Checkpoint": "base", "CheckpointCallback": "base",
    "ActiveThief": "active_learning", "ActiveThiefDFAL": "active_learning", "ActiveThiefEntropy": "active_learning",
    "ActiveThiefKCenter": "active_learning", "EquationSolving": "equation_solving",
    "FunctionallyEquivalent": "functionally_equivalent", "JacobianAugmentation": "jacobian", "KnockoffNets": "knockoff",
    "KnockoffAdaptive": "knockoff_adaptive", "LowdMeek": "lowd_meek", "PathFinding": "path_finding",
    "RandomQueries": "random_queries", "TransferAttack": "transfer",
}


# Import an attack class on first access (PEP 562), so naming attacks costs no torch.
__getattr__ = lazy_exports(__name__, _WHERE)


__all__ = ["ATTACKS", "create_attack", *sorted(_WHERE)]
