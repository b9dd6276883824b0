"""`extractguard --help` and usage or file errors must not load the heavy libraries.

Checked by module presence in a subprocess, not by timing (benchmarks/startup.py times them):
a command that imports torch, scikit-learn, scipy or matplotlib before rejecting its arguments
costs seconds of CPU for a one-line answer.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

HEAVY = ("torch", "sklearn", "scipy", "matplotlib")

# Runs the real entry point, then reports which heavy libraries ended up in sys.modules.
WRAPPER = f"""
import json, sys
from extractguard.cli import main
code = 0
try:
    main(sys.argv[1:])
except SystemExit as exc:
    code = exc.code
print(json.dumps({{"code": code, "heavy": [m for m in {HEAVY!r} if m in sys.modules]}}))
"""

from checkout import SRC


def run_wrapped(args: list[str], cwd: Path, code: str = WRAPPER) -> tuple[dict, str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")]), "COLUMNS": "120"}
    r = subprocess.run([sys.executable, "-c", code, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    return json.loads(r.stdout.strip().splitlines()[-1]), r.stderr


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["--help"], 0, None),
        (["assess", "--help"], 0, None),
        (["attacks"], 0, None),
        (["assess", "--model", "m.onnx"], 2, "--model needs --attacker-data"),
        (["assess", "--model", "missing.onnx", "--attacker-data", "missing.npy"], 2, "model file not found"),
        (["assess", "--attack", "nope"], 2, "unknown attack 'nope'"),
        (["assess", "--budgets", "10,x"], 2, "whole numbers"),
        (["assess", "--victim", "nothing-here"], 2, "DATASET-ARCH"),
        (["assess", "--surrogate", "nope"], 2, "unknown surrogate 'nope'"),
        (["assess", "--config", "missing.yaml"], 2, "cannot read assessment config"),
        (["assess", "--target", "missing.yaml"], 2, "target config not found"),
    ],
)
def test_help_and_mistakes_do_not_import_heavy_libraries(args: list[str], code: int, message: str | None, tmp_path: Path) -> None:
    result, stderr = run_wrapped(args, tmp_path)
    assert result["code"] == code, stderr
    if message is not None:
        assert message in stderr and "Traceback" not in stderr
    assert result["heavy"] == [], f"{' '.join(args)} imported {result['heavy']}"


def test_the_check_sees_a_heavy_import(tmp_path: Path) -> None:
    # The wrapper must be able to fail: building an attack does load torch.
    code = WRAPPER.replace("from extractguard.cli import main", "from extractguard.attacks import KnockoffNets\nfrom extractguard.cli import main")
    result, _ = run_wrapped(["--help"], tmp_path, code=code)
    assert "torch" in result["heavy"]
