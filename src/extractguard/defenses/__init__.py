"""Output defenses against extraction, composable as a chain."""

from extractguard.defenses.base import DEFENSES, DefendedTarget, Defense, DefenseChain, Temperature, build_chain

__all__ = ["DEFENSES", "DefendedTarget", "Defense", "DefenseChain", "Temperature", "build_chain"]
