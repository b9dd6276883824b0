"""This checkout, for tests that run it as a user would: where it is, and the environment of an
``extractguard`` subprocess that must run this checkout's code (not some installed copy).

Test files locate the repository through :data:`ROOT` rather than ``Path(__file__).parents[n]``,
so they keep working whichever folder under tests/ they live in.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src"


def cli_env(**extra: str) -> dict[str, str]:
    """The current environment with this checkout's src/ first on PYTHONPATH and one OpenMP thread
    (a subprocess on a shared machine), plus ``extra`` (e.g. ``COLUMNS="160"``)."""
    return {**os.environ, "PYTHONPATH": str(SRC) + os.pathsep + os.environ.get("PYTHONPATH", ""),
            "OMP_NUM_THREADS": "1", **extra}


def run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """``python -m extractguard ARGS`` in a real process, as a user types it (120 columns)."""
    env = {**os.environ, "COLUMNS": "120", "PYTHONPATH": str(SRC) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    return subprocess.run([sys.executable, "-m", "extractguard", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=600)
