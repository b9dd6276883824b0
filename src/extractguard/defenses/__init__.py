"""Output defenses against extraction, composable as a chain.

Importing this package registers every defense in :data:`DEFENSES` by its configuration name.
"""

from extractguard.defenses.base import DEFENSES, Defense, DefenseChain, Temperature, build_chain
from extractguard.defenses.mad import MAD
from extractguard.defenses.misinformation import AdaptiveMisinformation
from extractguard.defenses.noise import GaussianNoise
from extractguard.defenses.reverse_sigmoid import ReverseSigmoid
from extractguard.defenses.utility import DefenseCost, evaluate_defense, expected_calibration_error

__all__ = [
    "DEFENSES",
    "MAD",
    "AdaptiveMisinformation",
    "Defense",
    "DefenseChain",
    "DefenseCost",
    "GaussianNoise",
    "ReverseSigmoid",
    "Temperature",
    "build_chain",
    "evaluate_defense",
    "expected_calibration_error",
]
