"""Datasets that ship offline, and the victim/attacker/probe splits."""

from extractguard.data.base import Dataset
from extractguard.data.datasets import DATASETS, Splits, default_cache_dir, load_dataset, split_dataset

__all__ = ["DATASETS", "Dataset", "Splits", "default_cache_dir", "load_dataset", "split_dataset"]
