"""``extractguard detect LOG`` over a real gateway audit log, JSONL and CSV; ``sanctions``."""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import numpy as np
from fastapi.testclient import TestClient

from extractguard.gateway import create_app, parse_config
from gateway_helpers import infer_body


class Result:
    def __init__(self, returncode: int, stdout: str, stderr: str) -> None:
        self.returncode, self.stdout, self.stderr = returncode, stdout, stderr


def run_cli(*args: str, cwd: Path) -> Result:
    """The real CLI in-process (typer's runner): one import of torch for the whole file."""
    from typer.testing import CliRunner

    from extractguard.cli import app

    old = os.getcwd()
    os.chdir(cwd)
    try:
        r = CliRunner().invoke(app, list(args), env={"COLUMNS": "200"})
    finally:
        os.chdir(old)
    return Result(r.exit_code, r.stdout, r.stderr)


def traffic(victim) -> list[tuple[float, str, np.ndarray]]:  # type: ignore[no-untyped-def]
    """Two honest accounts (natural digits, a few rows a minute) and one thief (uniform noise)."""
    rng = np.random.default_rng(0)
    X = victim.pool()
    out = []
    for a, rows in (("alice", X[:300]), ("bob", X[300:600])):
        out += [(1.7e9 + 20.0 * i, a, rows[i:i + 2]) for i in range(0, len(rows), 2)]
    out += [(1.7e9 + 5.0 * i, "mallory", rng.uniform(0, 16, size=(2, 64))) for i in range(150)]
    return sorted(out, key=lambda t: t[0])


def test_detect_ranks_the_thief_first_in_jsonl_and_csv_logs(tmp_path: Path, victim) -> None:  # type: ignore[no-untyped-def]
    reqs = traffic(victim)
    jl = tmp_path / "requests.jsonl"
    jl.write_text("\n".join(json.dumps({"ts": ts, "account": a, "inputs": X.tolist()}) for ts, a, X in reqs) + "\n")
    cv = tmp_path / "requests.csv"
    with cv.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["ts", "account", *[f"px{i}" for i in range(64)]])
        for ts, a, X in reqs:
            for row in X:
                w.writerow([ts, a, *row.tolist()])
    for log in (jl, cv):
        out = tmp_path / f"{log.suffix[1:]}.json"
        r = run_cli("detect", str(log), "--victim", "digits-logreg", "--json", str(out), cwd=tmp_path)
        assert r.returncode == 0, r.stderr
        assert "1 flagged" in r.stdout
        ranked = json.loads(out.read_text())["accounts"]
        assert [a["account"] for a in ranked][0] == "mallory"
        assert ranked[0]["level"] >= 1 and ranked[0]["first_detected"] <= 300
        assert any(f["detector"] == "inputs" for f in ranked[0]["fired"])
        assert all(a["level"] < 1 for a in ranked[1:])


def test_detect_over_a_gateway_audit_log_uses_the_served_answers(tmp_path: Path, victim) -> None:  # type: ignore[no-untyped-def]
    cfg = parse_config({"model": {"name": "digits", "victim": "digits-logreg"}, "state_dir": str(tmp_path / "gw"),
                        "storage": "memory://", "tiers": {"raw": {"output": "probabilities"}}})
    with TestClient(create_app(cfg)) as client:
        keys = client.app.state.gateway.keys
        tokens = {a: keys.create(a, "raw") for a in ("alice", "bob", "mallory")}
        for _, a, X in traffic(victim):
            assert client.post("/v2/models/digits/infer", json=infer_body(X), headers={"Authorization": f"Bearer {tokens[a]}"}).status_code == 200
    out = tmp_path / "audit.json"
    r = run_cli("detect", str(tmp_path / "gw" / "audit.db"), "--victim", "digits-logreg", "--json", str(out), cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    res = json.loads(out.read_text())
    assert "prada" not in res["detectors"] and "inputs" not in res["detectors"]  # the audit log has no inputs
    assert res["accounts"][0]["account"] == "mallory" and res["accounts"][0]["level"] >= 1
    assert {f["detector"] for f in res["accounts"][0]["fired"]} <= {"outputs", "hardness"}


def test_detect_refuses_bad_logs_with_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"ts": 1, "account": "a", "inputs": [[1, 2]]}\n{"account": "b"}\n')
    r = run_cli("detect", str(bad), "--baseline", "600", cwd=tmp_path)
    assert r.returncode == 2 and r.stderr.strip().count("\n") == 0 and "line 2" in r.stderr
    r = run_cli("detect", str(tmp_path / "missing.csv"), cwd=tmp_path)
    assert r.returncode == 2 and "not found" in r.stderr
    wrong = tmp_path / "wrong.jsonl"
    wrong.write_text('{"ts": 1, "account": "a", "inputs": [[1, 2]]}\n')
    r = run_cli("detect", str(wrong), "--victim", "digits-logreg", cwd=tmp_path)
    assert r.returncode == 2 and "2 input features, the model takes 64" in r.stderr


def test_sanctions_list_and_clear(tmp_path: Path) -> None:
    from extractguard.detect import DetectionStore

    store = DetectionStore(tmp_path / "extractguard-gateway" / "detect.db")
    store.set_action("mallory", "suspend", 9.5, {"risk": {"explanation": "inputs/atypical_fraction: 100% of the last 200 rows"}})
    store.close()
    r = run_cli("sanctions", "list", cwd=tmp_path)
    assert r.returncode == 0 and "mallory" in r.stdout and "suspend" in r.stdout
    assert run_cli("sanctions", "clear", "mallory", cwd=tmp_path).returncode == 0
    r = run_cli("sanctions", "clear", "mallory", cwd=tmp_path)
    assert r.returncode == 2 and "no detection state" in r.stderr
