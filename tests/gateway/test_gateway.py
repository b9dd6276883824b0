"""Gateway: authentication, validation before the model, tiers, metrics, logs, audit chain."""

from __future__ import annotations

import json
import logging
import re
import sqlite3
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from extractguard.errors import ConfigurationError
from extractguard.gateway import load_config, parse_config, verify_file
from extractguard.gateway.metrics import ALLOWED_LABELS
from checkout import ROOT, SRC
from gateway_helpers import CountingTarget, infer_body, make_app

URL = "/v2/models/iris/infer"
ROWS = np.array([[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3], [5.9, 3.0, 4.2, 1.5]])


@pytest.fixture()
def gw(tmp_path: Path, iris: object):  # type: ignore[no-untyped-def]
    target = CountingTarget(iris)  # type: ignore[arg-type]
    app = make_app(tmp_path, target=target)
    client = TestClient(app)
    keys = app.state.gateway.keys
    return client, target, app.state.gateway, {t: keys.create(f"acct-{t}", t) for t in ("free", "pro", "raw")}


def _auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def test_served_answer_follows_tier_output_and_defenses(gw, iris) -> None:  # type: ignore[no-untyped-def]
    client, target, _, keys = gw
    truth = iris.predict(ROWS).probabilities
    r = client.post(URL, json=infer_body(ROWS), headers=_auth(keys["raw"]))
    assert r.status_code == 200
    outs = {o["name"]: o for o in r.json()["outputs"]}
    assert outs["label"]["data"] == truth.argmax(1).tolist()
    np.testing.assert_allclose(np.reshape(outs["probabilities"]["data"], (3, 3)), truth, rtol=1e-12)

    r = client.post(URL, json=infer_body(ROWS), headers={"X-API-Key": keys["free"]})
    assert r.status_code == 200
    assert [o["name"] for o in r.json()["outputs"]] == ["label"]  # label-only tier reveals nothing else

    r = client.post(URL, json=infer_body(ROWS), headers=_auth(keys["pro"]))
    p = np.reshape({o["name"]: o for o in r.json()["outputs"]}["probabilities"]["data"], (3, 3))
    assert np.allclose(p.sum(1), 1.0) and (p.argmax(1) == truth.argmax(1)).all()
    assert p.max(1).max() < truth.max(1).max()  # temperature 2 flattened the answer
    assert target.calls == 3


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer nope"}, {"X-API-Key": "eg_0123456789abcdef_forged"},
                                     {"Authorization": "Basic abc"}])
def test_bad_keys_get_401_and_never_reach_the_model(gw, headers) -> None:  # type: ignore[no-untyped-def]
    client, target, _, _ = gw
    r = client.post(URL, json=infer_body(ROWS), headers=headers)
    assert r.status_code == 401 and "API key" in r.json()["error"]
    assert target.calls == 0


def test_tampered_secret_of_a_real_key_id_is_refused(gw) -> None:  # type: ignore[no-untyped-def]
    client, target, _, keys = gw
    forged = keys["raw"][:-4] + ("AAAA" if not keys["raw"].endswith("AAAA") else "BBBB")
    assert client.post(URL, json=infer_body(ROWS), headers=_auth(forged)).status_code == 401
    assert target.calls == 0


def test_revoked_key_gets_401_on_the_next_request(gw) -> None:  # type: ignore[no-untyped-def]
    client, target, gateway, keys = gw
    assert client.post(URL, json=infer_body(ROWS), headers=_auth(keys["raw"])).status_code == 200
    key_id = keys["raw"].split("_")[1]
    gateway.keys.revoke(key_id)
    r = client.post(URL, json=infer_body(ROWS), headers=_auth(keys["raw"]))
    assert r.status_code == 401
    assert target.calls == 1
    assert client.post(URL, json=infer_body(ROWS), headers=_auth(keys["pro"])).status_code == 200


def test_keys_are_stored_hashed(gw, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    _, _, gateway, keys = gw
    raw = (tmp_path / "keys.db").read_bytes() + b"".join(p.read_bytes() for p in tmp_path.glob("keys.db-*"))
    for k in keys.values():
        assert k.split("_", 2)[2].encode() not in raw
    assert {k.account for k in gateway.keys.list()} == {"acct-free", "acct-pro", "acct-raw"}


BAD_BODIES = [
    (b"{not json", 400, "malformed JSON"),
    (b'{"inputs": []}', 400, "inputs"),
    (json.dumps(infer_body(np.ones((2, 3)))).encode(), 400, "features"),
    (json.dumps({"inputs": [{"name": "input", "shape": [1, 4], "datatype": "FP32", "data": [1, 2, 3]}]}).encode(), 400, "needs 4"),
    (b'{"inputs": [{"name": "input", "shape": [1, 4], "datatype": "FP32", "data": [1, NaN, 3, 4]}]}', 400, "NaN"),
    (b'{"inputs": [{"name": "input", "shape": [1, 4], "datatype": "FP32", "data": [1, Infinity, 3, 4]}]}', 400, "NaN or infinite"),
    (json.dumps({"inputs": [{"name": "input", "shape": [1, 4], "datatype": "BYTES", "data": [1, 2, 3, 4]}]}).encode(), 400, "datatype"),
    (json.dumps({"inputs": [{"name": "input", "shape": [1, 4], "datatype": "FP32", "data": ["a", 2, 3, 4]}]}).encode(), 400, "numbers"),
    (json.dumps({"inputs": [{"name": "input", "shape": [1, 4], "datatype": "FP32", "data": [True, 2, 3, 4]}]}).encode(), 400, "numbers"),
    (json.dumps({"inputs": [{"name": "input", "shape": [-1, 4], "datatype": "FP32", "data": [1, 2, 3, 4]}]}).encode(), 400, "shape"),
    (json.dumps(infer_body(np.ones((2, 4)))).encode()[:40], 400, "malformed JSON"),  # truncated upload
    (json.dumps(infer_body(np.ones((51, 4)), "FP64")).encode(), 413, "51 rows"),
    (b" " * 5000, 413, "exceeds 4096 bytes"),
]


@pytest.mark.parametrize(("body", "status", "message"), BAD_BODIES)
def test_invalid_requests_get_4xx_with_a_message_and_never_reach_the_model(gw, body, status, message) -> None:  # type: ignore[no-untyped-def]
    client, target, _, keys = gw
    r = client.post(URL, content=body, headers={**_auth(keys["raw"]), "Content-Type": "application/json"})
    assert r.status_code == status, r.text
    assert message.lower() in r.json()["error"].lower()
    assert target.calls == 0


def test_oversized_chunked_body_is_cut_off(gw) -> None:  # type: ignore[no-untyped-def]
    client, target, _, keys = gw

    def chunks():  # type: ignore[no-untyped-def]
        for _ in range(10):
            yield b" " * 1000

    r = client.post(URL, content=chunks(), headers=_auth(keys["raw"]))
    assert r.status_code == 413 and target.calls == 0


def test_unknown_model_and_tier_restrictions(tmp_path: Path, iris) -> None:  # type: ignore[no-untyped-def]
    target = CountingTarget(iris)
    app = make_app(tmp_path, target=target, tiers={"a": {"models": ["other"]}, "b": {}})
    client = TestClient(app)
    ka = app.state.gateway.keys.create("x", "a")
    kb = app.state.gateway.keys.create("y", "b")
    kc = app.state.gateway.keys.create("z", "gone")  # tier no longer in the config
    assert client.post(URL, json=infer_body(ROWS), headers=_auth(ka)).status_code == 403
    assert client.post("/v2/models/nope/infer", json=infer_body(ROWS), headers=_auth(kb)).status_code == 404
    assert client.post(URL, json=infer_body(ROWS), headers=_auth(kc)).status_code == 403
    assert target.calls == 0


def test_oip_metadata_and_health(gw) -> None:  # type: ignore[no-untyped-def]
    client, _, _, keys = gw
    assert client.get("/v2/health/live").json() == {"live": True}
    assert client.get("/v2/health/ready").json() == {"ready": True}
    meta = client.get("/v2/models/iris", headers=_auth(keys["free"])).json()
    assert meta["name"] == "iris" and meta["inputs"][0]["shape"] == [-1, 4]
    assert client.get("/v2/models/other", headers=_auth(keys["free"])).status_code == 404
    assert client.get("/v2/models/iris").status_code == 401  # metadata needs a key too


def _metric_lines(text: str) -> list[tuple[str, dict[str, str]]]:
    out = []
    for line in text.splitlines():
        if line.startswith("#") or not line.strip():
            continue
        m = re.match(r"([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? ", line)
        assert m, line
        labels = dict(re.findall(r'([a-zA-Z_]+)="([^"]*)"', m.group(3) or ""))
        out.append((m.group(1), labels))
    return out


def test_metrics_follow_conventions_and_carry_no_caller_labels(gw) -> None:  # type: ignore[no-untyped-def]
    client, _, _, keys = gw
    client.post(URL, json=infer_body(ROWS), headers=_auth(keys["raw"]))
    client.post(URL, json=infer_body(ROWS), headers=_auth("eg_0123456789abcdef_x"))
    for _ in range(4):
        client.post(URL, json=infer_body(ROWS), headers=_auth(keys["free"]))  # 10 rows/minute: the 4th is refused
    text = client.get("/metrics").text
    lines = _metric_lines(text)
    types = dict(re.findall(r"# TYPE (\S+) (\S+)", text))
    for name, labels in lines:
        assert name.startswith("extractguard_"), name
        assert set(labels) - {"le"} <= ALLOWED_LABELS, (name, labels)
        for value in labels.values():
            assert "eg_" not in value and "127.0.0.1" not in value and "testclient" not in value
    for family, kind in types.items():
        if kind == "counter":
            assert family.endswith("_total") or family + "_total" in {n for n, _ in lines}, family
        if kind == "histogram":
            assert family.endswith(("_seconds", "_ratio")), family
    values = {(n, tuple(sorted(lab.items()))): float(line.rsplit(" ", 1)[1])
              for (n, lab), line in zip(lines, [x for x in text.splitlines() if x and not x.startswith("#")])}
    assert values[("extractguard_rows_served_total", (("model", "iris"), ("tier", "raw")))] == 3
    assert values[("extractguard_rows_served_total", (("model", "iris"), ("tier", "free")))] == 9
    assert values[("extractguard_refusals_total", (("reason", "unauthenticated"),))] == 1
    assert values[("extractguard_refusals_total", (("reason", "rate_limited"),))] == 1
    assert values[("extractguard_requests_total", (("code", "429"), ("model", "iris"), ("tier", "free")))] == 1


def test_json_logs_name_the_account_and_never_the_key(gw, caplog) -> None:  # type: ignore[no-untyped-def]
    from extractguard.gateway.logs import JsonFormatter

    client, _, _, keys = gw
    with caplog.at_level(logging.INFO, logger="extractguard.gateway"):
        client.post(URL, json=infer_body(ROWS), headers=_auth(keys["raw"]))
        client.post(URL, json=infer_body(ROWS), headers=_auth(keys["raw"] + "x"))
    lines = [json.loads(JsonFormatter().format(r)) for r in caplog.records if r.name == "extractguard.gateway"]
    assert [ln["status"] for ln in lines] == [200, 401]
    assert lines[0]["account"] == "acct-raw" and lines[0]["rows"] == 3 and lines[0]["key_id"] == keys["raw"].split("_")[1]
    dumped = json.dumps(lines)
    assert keys["raw"].split("_", 2)[2] not in dumped


def test_audit_log_records_every_served_query(gw, tmp_path: Path, iris) -> None:  # type: ignore[no-untyped-def]
    from extractguard.gateway.audit import input_digest

    client, _, gateway, keys = gw
    for k in ("raw", "free", "raw"):
        client.post(URL, json=infer_body(ROWS), headers=_auth(keys[k]))
    client.post(URL, json=infer_body(ROWS), headers=_auth("eg_0123456789abcdef_x"))  # refused: not audited as served
    recs = gateway.audit.records()
    assert [r["account"] for r in recs] == ["acct-raw", "acct-free", "acct-raw"]
    assert recs[0]["input_sha256"] == input_digest(ROWS) and recs[0]["n_rows"] == 3
    served = json.loads(recs[1]["output"])
    assert [o["name"] for o in served] == ["label"]
    assert served[0]["data"] == iris.predict(ROWS).probabilities.argmax(1).tolist()
    assert recs[1]["prev_hash"] == recs[0]["hash"]
    assert verify_file(tmp_path / "audit.db").ok


def _served_audit(tmp_path: Path, iris, n: int = 4) -> Path:  # type: ignore[no-untyped-def]
    app = make_app(tmp_path, target=iris)
    client = TestClient(app)
    key = app.state.gateway.keys.create("alice", "raw")
    for i in range(n):
        assert client.post(URL, json=infer_body(ROWS[: 1 + i % 3]), headers=_auth(key)).status_code == 200
    app.state.gateway.close()
    return tmp_path / "audit.db"


def _cli(*args: str) -> tuple[int, str]:
    from typer.testing import CliRunner

    from extractguard.cli import app

    res = CliRunner().invoke(app, list(args))
    return res.exit_code, res.output + (res.stderr if res.stderr_bytes is not None else "")


@pytest.mark.parametrize(
    ("tamper", "named"),
    [
        ("UPDATE audit SET account = 'mallory' WHERE seq = 2", "record 2 was edited"),
        ("UPDATE audit SET output = '[]' WHERE seq = 3", "record 3 was edited"),
        ("DELETE FROM audit WHERE seq = 2", "record 2 is missing"),
        ("DELETE FROM audit WHERE seq = 4", "after 3 are missing"),
        ("DELETE FROM audit WHERE seq = 1", "record 1 is missing"),
    ],
)
def test_audit_verify_cli_detects_edits_and_deletions(tmp_path: Path, iris, tamper: str, named: str) -> None:  # type: ignore[no-untyped-def]
    db = _served_audit(tmp_path, iris)
    code, out = _cli("audit", "verify", "--path", str(db))
    assert code == 0 and "4 records" in out
    with sqlite3.connect(db) as c:
        c.execute(tamper)
    code, out = _cli("audit", "verify", "--path", str(db))
    assert code == 1
    assert named in out


def test_audit_verify_detects_a_rehashed_edit(tmp_path: Path, iris) -> None:  # type: ignore[no-untyped-def]
    """Recomputing the edited record's own hash still breaks the next record's link."""
    from extractguard.gateway.audit import AuditLog, record_hash

    db = _served_audit(tmp_path, iris)
    log = AuditLog(db)
    rec = log.records()[1]
    rec["account"] = "mallory"
    with sqlite3.connect(db) as c:
        c.execute("UPDATE audit SET account = ?, hash = ? WHERE seq = 2", ("mallory", record_hash(rec)))
    result = log.verify()
    assert not result.ok and result.bad_seq == 2 and "record 2 was edited or replaced" in result.problem


def test_keys_cli_create_list_revoke(tmp_path: Path) -> None:
    cfg = tmp_path / "gw.yaml"
    cfg.write_text("model: {name: iris, victim: iris-logreg}\nstate_dir: state\ntiers: {free: {output: label}}\n")
    code, out = _cli("keys", "create", "--account", "bob", "--tier", "free", "--config", str(cfg))
    assert code == 0
    key = re.search(r"eg_[0-9a-f]{16}_\S+", out).group(0)  # type: ignore[union-attr]
    code, out = _cli("keys", "list", "--config", str(cfg))
    assert code == 0 and "bob" in out and "active" in out and key.split("_", 2)[2] not in out
    code, out = _cli("keys", "revoke", key.split("_")[1], "--config", str(cfg))
    assert code == 0 and "revoked" in out
    assert "revoked" in _cli("keys", "list", "--config", str(cfg))[1]
    code, out = _cli("keys", "create", "--account", "bob", "--tier", "gold", "--config", str(cfg))
    assert code == 2 and "unknown tier 'gold'" in out


def test_config_errors_are_one_clear_line(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="exactly one of model.victim"):
        parse_config({"model": {"name": "m"}})
    with pytest.raises(ConfigurationError, match=r"tiers\.free\.output: .*unknown output mode"):
        parse_config({"model": {"victim": "iris-logreg"}, "tiers": {"free": {"output": "everything"}}})
    with pytest.raises(ConfigurationError, match="not a rate limit"):
        parse_config({"model": {"victim": "iris-logreg"}, "tiers": {"free": {"limits": ["lots"]}}})
    with pytest.raises(ConfigurationError, match="unknown defense"):
        parse_config({"model": {"victim": "iris-logreg"}, "tiers": {"free": {"defenses": [{"name": "magic"}]}}})
    with pytest.raises(ConfigurationError, match="not an IP address"):
        parse_config({"model": {"victim": "iris-logreg"}, "trusted_proxies": ["proxy.local"]})
    with pytest.raises(ConfigurationError, match="Extra inputs"):
        parse_config({"model": {"victim": "iris-logreg"}, "tierz": {}})
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: [unclosed\n")
    code, out = _cli("serve", "--config", str(bad))
    assert code == 2 and "not valid YAML" in out


def test_shipped_example_config_is_valid() -> None:
    cfg = load_config(ROOT / "examples" / "gateway.yaml")
    assert cfg.tiers and cfg.model.name


def test_admin_commands_do_not_load_the_model_code(tmp_path: Path) -> None:
    """`keys` and `audit` need only paths and tier names: no torch import, so they start fast, and
    a config whose defense chain is checked fully when serving is only shape-checked here."""
    import os
    import subprocess
    import sys

    cfg = tmp_path / "gw.yaml"
    cfg.write_text("model: {name: iris, victim: iris-logreg}\nstate_dir: state\n"
                   "tiers: {free: {output: label, defenses: [{name: temperature, temperature: 2.0}]}}\n")
    code = ("import sys; from typer.testing import CliRunner; from extractguard.cli import app; "
            "r = CliRunner().invoke(app, ['keys', 'create', '--account', 'a', '--tier', 'free', '--config', sys.argv[1]]); "
            "print(r.exit_code, 'torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code, str(cfg)], capture_output=True, text=True, timeout=300,
                         env={**os.environ, "PYTHONPATH": str(SRC)})
    assert out.stdout.split()[-2:] == ["0", "False"], out.stdout + out.stderr
    with pytest.raises(ConfigurationError, match=r"tiers\.free\.defenses"):
        parse_config({"model": {"victim": "iris-logreg"}, "tiers": {"free": {"defenses": [{"temperature": 2}]}}},
                     check_defenses=False)
