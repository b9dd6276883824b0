"""Detection in the real gateway app: graduated responses, audit evidence, restart, challenge."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from checkout import ROOT
from extractguard.detect.policy import POW_HEADER, solve
from extractguard.errors import ConfigurationError
from extractguard.gateway import create_app, parse_config, verify_file
from gateway_helpers import infer_body

URL = "/v2/models/digits/infer"


def gw_config(state_dir: Path, **tiers: dict[str, Any]):  # type: ignore[no-untyped-def]
    return parse_config({
        "model": {"name": "digits", "victim": "digits-logreg"},
        "state_dir": str(state_dir),
        "storage": f"sqlite:///{state_dir / 'limits.db'}",
        "tiers": {"plain": {"output": "probabilities"}, **tiers},
        "max_rows_per_request": 100,
        "seed": 0,
    })


RATE_ONLY = {"output": "probabilities", "detection": {
    "detectors": ["rate"], "baseline_rows_per_hour": 600,  # alarm above 100 rows in a minute
    "responses": {"flag": 1.0, "challenge": 2.0, "suspend": 4.0}, "challenge_bits": 6}}
CONTENT = {"output": "top-1", "detection": {"detectors": ["prada", "inputs", "outputs", "hardness"]}}


def post(client: TestClient, key: str, X: np.ndarray, **headers: str):  # type: ignore[no-untyped-def]
    return client.post(URL, json=infer_body(X), headers={"Authorization": f"Bearer {key}", **headers})


def detection_records(state_dir: Path) -> list[dict[str, Any]]:
    with sqlite3.connect(state_dir / "audit.db") as c:
        rows = c.execute("SELECT account, n_rows, output FROM audit ORDER BY seq").fetchall()
    return [{"account": a, **json.loads(o)["detection"]} for a, n, o in rows if n == 0]


def test_responses_escalate_flag_challenge_suspend_and_survive_restart(tmp_path: Path, victim) -> None:  # type: ignore[no-untyped-def]
    cfg = gw_config(tmp_path, watched=RATE_ONLY)
    X = victim.pool()
    with TestClient(create_app(cfg)) as client:
        keys = client.app.state.gateway.keys
        mallory, alice = keys.create("mallory", "watched"), keys.create("alice", "watched")
        assert post(client, alice, X[:3]).status_code == 200
        statuses = [post(client, mallory, X[i * 50:(i + 1) * 50]).status_code for i in range(2)]
        assert statuses == [200, 200]  # 100 rows in a minute: flagged, still served
        assert post(client, mallory, X[100:150]).status_code == 200
        assert post(client, mallory, X[150:200]).status_code == 200  # 200 rows: challenge from now on
        r = post(client, mallory, X[200:250])
        assert r.status_code == 428 and r.json()["challenge"]["header"] == POW_HEADER
        token = solve(r.json()["challenge"]["nonce"], r.json()["challenge"]["bits"])
        assert post(client, mallory, X[200:250], **{POW_HEADER: token}).status_code == 200
        assert post(client, mallory, X[250:300], **{POW_HEADER: token}).status_code == 428  # spent
        codes = []
        for i in range(5, 8):  # 300, 350, 400 rows answered or not
            nonce = post(client, mallory, X[:1]).json()["challenge"]["nonce"]
            last = post(client, mallory, X[i * 50:(i + 1) * 50], **{POW_HEADER: solve(nonce, 6)})
            codes.append(last.status_code)
        assert codes == [200, 200, 403]
        assert last.status_code == 403 and "suspended" in last.json()["error"]  # 400 rows: not even this answer
        assert post(client, alice, X[3:5]).status_code == 200  # other accounts unaffected
        metrics = client.get("/metrics").text
        assert 'extractguard_detection_actions_total{reason="suspend",tier="watched"} 1.0' in metrics

    events = detection_records(tmp_path)
    assert [(e["account"], e["previous"], e["action"]) for e in events] == [
        ("mallory", "none", "flag"), ("mallory", "flag", "challenge"), ("mallory", "challenge", "suspend")]
    assert events[-1]["risk"]["fired"][0]["signal"] == "rows_last_minute"
    assert "tier baseline" in events[-1]["risk"]["explanation"]
    assert verify_file(tmp_path / "audit.db").ok  # evidence is in the hash chain

    with TestClient(create_app(cfg)) as client:  # restart: sanctions and state are back
        gw = client.app.state.gateway
        keys = gw.keys
        assert post(client, keys.create("mallory2", "watched"), X[:2]).status_code == 200
        r = post(client, keys.create("mallory", "watched"), X[:1])  # any key of the account
        assert r.status_code == 403
        assert gw.detection.monitors["watched"].risk("watched/alice").queries == 5
        assert gw.detection.clear("mallory")
        assert post(client, keys.create("mallory", "watched"), X[:1]).status_code == 200


def test_content_detectors_suspend_random_queries_not_natural_ones(tmp_path: Path, victim) -> None:  # type: ignore[no-untyped-def]
    cfg = gw_config(tmp_path, label=CONTENT)
    rng = np.random.default_rng(0)
    with TestClient(create_app(cfg)) as client:
        keys = client.app.state.gateway.keys
        thief, honest = keys.create("thief", "label"), keys.create("honest", "label")
        X = victim.pool()
        for i in range(0, 360, 20):
            assert post(client, honest, X[i:i + 20]).status_code == 200
        codes = [post(client, thief, rng.uniform(0, 16, size=(25, 64))).status_code for _ in range(12)]
        assert 403 in codes and codes.index(403) <= 8  # within 225 queries
        assert codes[codes.index(403):] == [403] * (12 - codes.index(403))
    events = detection_records(tmp_path)
    assert {e["account"] for e in events} == {"thief"}
    fired = {f["detector"] for e in events for f in e["risk"]["fired"]}
    assert "inputs" in fired


def test_throttle_is_a_tight_limit_in_rows(tmp_path: Path, victim) -> None:  # type: ignore[no-untyped-def]
    tier = {"output": "label", "detection": {"detectors": ["rate"], "baseline_rows_per_hour": 600,
                                             "responses": {"throttle": 1.0}, "throttle_limit": "60/minute"}}
    with TestClient(create_app(gw_config(tmp_path, slow=tier))) as client:
        key = client.app.state.gateway.keys.create("bulk", "slow")
        X = victim.pool()
        assert [post(client, key, X[i:i + 50]).status_code for i in (0, 50)] == [200, 200]  # now throttled
        assert post(client, key, X[100:150]).status_code == 200  # 50 of 60 throttled rows
        r = post(client, key, X[150:200])
        assert r.status_code == 429 and "throttled" in r.json()["error"] and int(r.headers["Retry-After"]) >= 1


def test_detection_config_errors_are_one_line(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="tiers.t.detection.responses: unknown response"):
        gw_config(tmp_path, t={"detection": {"responses": {"ban": 1.0}}})
    with pytest.raises(ConfigurationError, match="rate detector needs baseline_rows_per_hour"):
        gw_config(tmp_path, t={"detection": {"detectors": ["rate"]}})
    with pytest.raises(ConfigurationError, match="unknown detector"):
        gw_config(tmp_path, t={"detection": {"detectors": ["seat"]}})
    with pytest.raises(ConfigurationError, match="has 3 columns"):
        ref = tmp_path / "ref.npy"
        np.save(ref, np.zeros((60, 3)))
        create_app(gw_config(tmp_path, t={"detection": {"reference": str(ref)}}))


def test_example_detection_config_loads() -> None:
    from extractguard.gateway import load_config

    cfg = load_config(ROOT / "examples" / "detection-gateway.yaml")
    dc = cfg.tiers["standard"].detection
    assert dc is not None and dc.baseline_rows_per_hour == 600 and dc.action_for(5.0) == "challenge"
    assert cfg.detect_path.name == "detect.db"


class ScriptedMonitor:
    """Stands in for a tier's detection monitor: reports the risk levels it is given, in order."""

    def __init__(self, levels: list[float]) -> None:
        self.levels = list(levels)

    def observe(self, key: str, X: np.ndarray, probabilities: np.ndarray, ts: float | None = None) -> Any:
        from extractguard.detect import Risk

        return Risk(key, self.levels.pop(0), len(X))

    def flush(self) -> None:
        pass

    def accounts(self) -> list[str]:
        return []


def test_a_sanction_survives_falling_risk(tmp_path: Path, victim) -> None:  # type: ignore[no-untyped-def]
    """Actions only escalate: an account whose risk falls back stays challenged until an operator clears it."""
    X = victim.pool()
    with TestClient(create_app(gw_config(tmp_path, watched=RATE_ONLY))) as client:
        gw = client.app.state.gateway
        gw.detection.monitors["watched"] = ScriptedMonitor([2.5, 0.0, 0.5])
        mallory = gw.keys.create("mallory", "watched")
        assert post(client, mallory, X[:3]).status_code == 200  # risk 2.5: challenged from now on
        r = post(client, mallory, X[3:4])
        assert r.status_code == 428
        token = solve(r.json()["challenge"]["nonce"], r.json()["challenge"]["bits"])
        assert post(client, mallory, X[3:4], **{POW_HEADER: token}).status_code == 200  # risk falls to 0.0
        assert gw.detection.action("mallory") == "challenge"
        r = post(client, mallory, X[4:5])
        assert r.status_code == 428  # still challenged
        token = solve(r.json()["challenge"]["nonce"], r.json()["challenge"]["bits"])
        assert post(client, mallory, X[4:5], **{POW_HEADER: token}).status_code == 200  # risk 0.5: still below flag
        assert gw.detection.action("mallory") == "challenge" and post(client, mallory, X[5:6]).status_code == 428
    assert [(e["previous"], e["action"]) for e in detection_records(tmp_path)] == [("none", "challenge")]
