"""Shared test set-up: an isolated cache so tests never depend on (or pollute) the user's, and the
fixtures several test files use (one definition each).

Layout: tests/<package>/ holds the tests of src/extractguard/<package>/ (a test that goes through
several packages lives with the one whose behaviour it asserts: CLI tests under tests/cli/);
tests/benchmarks/ smoke-tests the scripts in benchmarks/.  Helper modules (``gateway_helpers``,
``gateway_procs``, ``servers``, ``browser``, ``checkout``) live beside this file and are imported
by name: tests/ is on ``pythonpath`` (pyproject.toml).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

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


@pytest.fixture(scope="session")
def victim(isolated_cache: Path) -> Any:
    """The suite's usual victim: digits-logreg, seed 0 (10 classes, 64 features, trains in a
    second).  Built once per session: tests only read it (its pool and probe are copies).  A test
    file that needs another victim builds it under another name."""
    from extractguard.victims import build_victim

    return build_victim("digits-logreg", seed=0)


@pytest.fixture(scope="session")
def iris(isolated_cache: Path) -> Any:
    """The gateway tests' small model: iris-logreg's target (seed 0); tests that count calls wrap
    it in their own ``CountingTarget``."""
    from gateway_helpers import iris_target

    return iris_target()


@pytest.fixture()
def redis_proc() -> Iterator[Any]:
    """A fresh redis-server on a free loopback port, stopped after the test (skips without one)."""
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed (apt-get install -y redis-server)")
    from gateway_procs import RedisProcess

    with RedisProcess() as r:
        yield r
