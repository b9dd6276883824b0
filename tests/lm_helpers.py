"""Tiny language-model victims shared by the LM tests (victims, text oracle, logit-subspace attack)."""

from __future__ import annotations

from dataclasses import replace

from extractguard.victims.lm import TINY_LM, LMVictim, build_lm_victim

_VICTIMS: dict[tuple[int, int], LMVictim] = {}


def tiny(hidden: int = 16, seed: int = 0) -> LMVictim:
    """Tiny victims train in about a second; memoised across tests (never written to disk)."""
    key = (hidden, seed)
    if key not in _VICTIMS:
        _VICTIMS[key] = build_lm_victim(f"tiny{hidden}", seed=seed, cache_dir=None, config=replace(TINY_LM, hidden=hidden))
    return _VICTIMS[key]
