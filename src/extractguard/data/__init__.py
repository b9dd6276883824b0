"""Datasets that ship offline, and the victim/attacker/probe splits.

Names load on first access (PEP 562), so reading a user's data file (:mod:`.files`) does not
import scikit-learn.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from extractguard.registry import lazy_exports

if TYPE_CHECKING:
    from extractguard.data.base import Dataset
    from extractguard.data.datasets import DATASETS, Splits, default_cache_dir, load_dataset, split_dataset

_WHERE = {"Dataset": "base", **{name: "datasets" for name in
          ("DATASETS", "Splits", "default_cache_dir", "load_dataset", "split_dataset")}}


__getattr__ = lazy_exports(__name__, _WHERE)


__all__ = sorted(_WHERE)
