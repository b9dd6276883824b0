"""Shared test set-up: an isolated cache so tests never depend on (or pollute) the user's."""

from __future__ import annotations

import os
from pathlib import Path

import pytest


@pytest.fixture(scope="session", autouse=True)
def isolated_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Point EXTRACTGUARD_CACHE at a per-session temporary directory."""
    path = tmp_path_factory.mktemp("extractguard-cache")
    old = os.environ.get("EXTRACTGUARD_CACHE")
    os.environ["EXTRACTGUARD_CACHE"] = str(path)
    yield path
    if old is None:
        os.environ.pop("EXTRACTGUARD_CACHE", None)
    else:
        os.environ["EXTRACTGUARD_CACHE"] = old
