"""Output defenses against extraction, composable as a chain.

:data:`DEFENSES` names every defense (the ``name:`` of a ``defenses:`` entry in a config) without
importing it; :func:`build_chain` builds a chain from config dicts.  The classes and helpers are
importable from here and load on first access (PEP 562), so validating a name costs no torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from extractguard.registry import Entry, Registry, lazy_exports

if TYPE_CHECKING:
    from extractguard.defenses.base import Defense, DefenseChain, Temperature, build_chain, canonical_specs
    from extractguard.defenses.mad import MAD
    from extractguard.defenses.misinformation import AdaptiveMisinformation
    from extractguard.defenses.noise import GaussianNoise
    from extractguard.defenses.reverse_sigmoid import ReverseSigmoid

#: Defense classes by configuration name.  snake_case spellings of earlier releases
#: (``reverse_sigmoid``) still resolve, with a deprecation warning.
DEFENSES: Registry[type[Defense]] = Registry("defense", [
    Entry("temperature", "extractguard.defenses.base:Temperature",
          "soften or sharpen probabilities; argmax unchanged"),
    Entry("gaussian-noise", "extractguard.defenses.noise:GaussianNoise",
          "Gaussian noise on each answer, mapped back onto the simplex",
          "baseline of Lee et al. 2019 and Orekondy et al. 2020"),
    Entry("reverse-sigmoid", "extractguard.defenses.reverse_sigmoid:ReverseSigmoid",
          "deceptive perturbation that keeps the top-1 class",
          "Lee, Edraki & Qi 2019, Defending Against NN Model Stealing Attacks Using Deceptive Perturbations"),
    Entry("mad", "extractguard.defenses.mad:MAD",
          "maximizing angular deviation of the attacker's gradient",
          "Orekondy, Schiele & Fritz 2020, Prediction Poisoning: Towards Defenses Against DNN Model Stealing Attacks", needs_data=True),
    Entry("adaptive-misinformation", "extractguard.defenses.misinformation:AdaptiveMisinformation",
          "blend in a misinformation model's answer on out-of-distribution queries",
          "Kariyappa & Qureshi 2020, Defending Against Model Stealing Attacks with Adaptive Misinformation",
          needs_data=True),
])

_WHERE = {
    "Defense": "base", "DefenseChain": "base", "Temperature": "base", "build_chain": "base",
    "canonical_specs": "base", "MAD": "mad", "AdaptiveMisinformation": "misinformation", "GaussianNoise": "noise",
    "ReverseSigmoid": "reverse_sigmoid",
}


# Import on first access (PEP 562): naming or listing defenses needs no torch.
__getattr__ = lazy_exports(__name__, _WHERE)


__all__ = ["DEFENSES", *sorted(_WHERE)]
