"""The `extractguard` command as a user runs it: real subprocesses, real files."""

from __future__ import annotations

import json
from pathlib import Path

import joblib
import numpy as np
import pytest
from sklearn.datasets import load_digits
from sklearn.linear_model import LogisticRegression

from checkout import run_cli


@pytest.fixture(scope="module")
def model_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A digits classifier saved as joblib, ONNX and TorchScript, plus attacker data files."""
    d = tmp_path_factory.mktemp("models")
    X, y = load_digits(return_X_y=True)
    X = X.astype(np.float32)
    clf = LogisticRegression(max_iter=2000).fit(X[:900], y[:900])
    joblib.dump(clf, d / "digits.joblib")
    files = {"joblib": d / "digits.joblib"}
    try:
        import skl2onnx
        from skl2onnx.common.data_types import FloatTensorType

        onx = skl2onnx.convert_sklearn(clf, initial_types=[("input", FloatTensorType([None, 64]))])
        (d / "digits.onnx").write_bytes(onx.SerializeToString())
        files["onnx"] = d / "digits.onnx"
    except ImportError:
        pass
    import torch

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 10))
    torch.jit.script(net).save(str(d / "net.pt"))
    files["torchscript"] = d / "net.pt"
    np.save(d / "attacker.npy", X[900:1500])
    np.savez(d / "probe.npz", X=X[1500:], y=y[1500:])
    np.save(d / "narrow.npy", X[900:1500, :60])
    nan = X[900:1500].copy()
    nan[3, 7] = np.nan
    np.save(d / "nan.npy", nan)
    (d / "garbage.joblib").write_bytes(b"this is not a pickle")
    files.update(
        attacker=d / "attacker.npy", probe=d / "probe.npz", narrow=d / "narrow.npy", nan=d / "nan.npy", garbage=d / "garbage.joblib"
    )
    return files


def test_assess_default_victim_end_to_end(tmp_path: Path) -> None:
    # The default victim and attacks on a tiny ladder: exercises training, caching, report writing.
    r = run_cli("assess", "--budgets", "20,60", "--out", "rep", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    report = json.loads((tmp_path / "rep" / "report.json").read_text())
    assert report["target"]["name"] == "mnist-cnn"
    assert [run["attack"] for run in report["runs"]] == ["random", "knockoff"]
    for run in report["runs"]:
        assert run["queries"] == 60 and [p["queries"] for p in run["points"]] == [20, 60]
    html = (tmp_path / "rep" / "report.html").read_text()
    assert '<img id="curves"' in html and "data:image/png;base64," in html
    assert "knockoff" in r.stdout


@pytest.mark.parametrize("kind", ["joblib", "onnx", "torchscript"])
def test_assess_model_file(kind: str, model_files: dict[str, Path], tmp_path: Path) -> None:
    if kind not in model_files:
        pytest.skip("skl2onnx not installed")
    r = run_cli(
        "assess", "--model", str(model_files[kind]), "--attacker-data", str(model_files["attacker"]),
        "--probe-data", str(model_files["probe"]), "--input-shape", "1,8,8", "--attack", "knockoff",
        "--budgets", "50,200", "--surrogate", "mlp", "--out", "rep", cwd=tmp_path,
    )
    assert r.returncode == 0, r.stderr
    report = json.loads((tmp_path / "rep" / "report.json").read_text())
    assert report["target"]["format"] == ("sklearn" if kind == "joblib" else kind)
    points = report["runs"][0]["points"]
    assert points[-1]["fidelity"] >= 0.6 and points[-1]["accuracy"] is not None


@pytest.mark.parametrize(
    ("model", "data", "message"),
    [
        ("joblib", "narrow", "has 60 features per row, but digits.joblib expects 64"),
        ("onnx", "narrow", "has 60 features per row, but digits.onnx expects 64"),
        ("torchscript", "narrow", "net.pt rejected an input of width 60"),
        ("joblib", "nan", "NaN or infinite values (first at row 3, column 7)"),
        ("garbage", "attacker", "garbage.joblib is not a readable scikit-learn pickle/joblib file"),
        ("missing", "attacker", "model file not found"),
    ],
)
def test_bad_model_inputs_give_one_line_and_exit_2(
    model: str, data: str, message: str, model_files: dict[str, Path], tmp_path: Path
) -> None:
    if model not in model_files and model != "missing":
        pytest.skip("skl2onnx not installed")
    path = model_files.get(model, tmp_path / "missing.onnx")
    r = run_cli("assess", "--model", str(path), "--attacker-data", str(model_files[data]), "--budgets", "10", cwd=tmp_path)
    assert r.returncode == 2, (r.stdout, r.stderr)
    lines = [ln for ln in r.stderr.strip().splitlines() if ln.strip()]
    assert len(lines) == 1, r.stderr
    assert lines[0].startswith("error:") and message in lines[0]
    assert "Traceback" not in r.stderr + r.stdout


def test_usage_mistakes_exit_2(tmp_path: Path) -> None:
    for args, message in [
        (["assess", "--attack", "nope"], "unknown attack"),
        (["assess", "--budgets", "10,x"], "whole numbers"),
        (["assess", "--victim", "nothing-here"], "DATASET-ARCH"),
        (["assess", "--output", "everything"], "unknown output mode"),
        (["assess", "--model", "x.onnx"], "--attacker-data"),
    ]:
        r = run_cli(*args, cwd=tmp_path)
        assert r.returncode == 2 and message in r.stderr and "Traceback" not in r.stderr, (args, r.stderr)


def test_listing_commands(tmp_path: Path) -> None:
    r = run_cli("attacks", cwd=tmp_path)
    assert r.returncode == 0 and "knockoff" in r.stdout and "Orekondy" in r.stdout
    r = run_cli("victims", cwd=tmp_path)
    assert r.returncode == 0 and "mnist-cnn" in r.stdout
