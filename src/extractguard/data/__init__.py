"""Datasets that ship offline, and the victim/attacker/probe splits.

Names load on first access (PEP 562), so reading a user's data file (:mod:`.files`) does not
import scikit-learn.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from extractguard.data.base import Dataset
    from extractguard.data.datasets import DATASETS, Splits, default_cache_dir, load_dataset, split_dataset

_WHERE = {"Dataset": "base", **{name: "datasets" for name in
          ("DATASETS", "Splits", "default_cache_dir", "load_dataset", "split_dataset")}}


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        return getattr(import_module(f"extractguard.data.{_WHERE[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = sorted(_WHERE)
