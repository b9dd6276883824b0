"""Gateway reliability: Redis stopped and restarted under load, the gateway SIGKILLed under load,
a corpus of malformed requests, every route's authentication, and no key in any log.

Real processes throughout (redis-server, ``extractguard serve``, uvicorn); the load is a few client
threads (the 64-client run is benchmarks/gateway_load.py).  Waits poll until a state is reached
(bounded), nothing asserts on time.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient

from extractguard.gateway.openapi import PUBLIC_PATHS, REQUEST_ID_HEADER
from gateway_helpers import CountingTarget, UvicornThread, infer_body, make_app
from gateway_procs import GatewayProcess, audit_request_ids, cli_env, create_key

URL = "/v2/models/iris/infer"
ROW = [[5.1, 3.5, 1.4, 0.2]]


def _wait_for(condition: Callable[[], bool], what: str, tries: int = 3000) -> None:
    """Poll until ``condition()`` holds (bounded; a failure means the state was never reached)."""
    for _ in range(tries):
        if condition():
            return
        time.sleep(0.02)
    raise AssertionError(f"never reached: {what}")


class _Clients:
    """A few threads posting one row each, recording every status and the id of every 200."""

    def __init__(self, url: str, key: str, n: int = 3) -> None:
        self.url, self.key = url, key
        self.statuses: list[int] = []
        self.acked: list[str] = []
        self.bodies: list[dict[str, Any]] = []  # every non-200 body
        self.transport_errors = 0
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._run, daemon=True) for _ in range(n)]

    def _run(self) -> None:
        with httpx.Client(base_url=self.url, timeout=60) as c:
            while not self._stop.is_set():
                try:
                    r = c.post(URL, json=infer_body(ROW), headers={"Authorization": f"Bearer {self.key}"})
                except httpx.TransportError:
                    with self._lock:
                        self.transport_errors += 1
                    if self._stop.wait(0.05):
                        return
                    continue
                with self._lock:
                    self.statuses.append(r.status_code)
                    if r.status_code == 200:
                        self.acked.append(r.headers[REQUEST_ID_HEADER])  # acknowledged: must be in the audit log
                    else:
                        self.bodies.append({"status": r.status_code, "headers": dict(r.headers), "body": r.json()})

    def count(self, status: int) -> int:
        with self._lock:
            return self.statuses.count(status)

    def __enter__(self) -> _Clients:
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(timeout=120)


def _metric(text: str, name: str, **labels: str) -> float:
    want = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    for line in text.splitlines():
        if line.startswith(f"{name}{{{want}}} ") or (not labels and line.startswith(f"{name} ")):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


# -- Redis outage ------------------------------------------------------------------------------


def test_redis_stopped_under_load_fails_closed_with_503_and_recovers_without_restart(tmp_path: Path, iris, redis_proc) -> None:  # type: ignore[no-untyped-def]
    target = CountingTarget(iris)
    app = make_app(tmp_path, target=target, storage=redis_proc.url, tiers={"load": {"limits": ["1000000/hour"]}})
    gw = app.state.gateway
    key = gw.keys.create("acme", "load")
    with UvicornThread(app) as srv, _Clients(srv.url, key) as clients:
        _wait_for(lambda: clients.count(200) >= 20, "20 answers before the outage")
        redis_proc.stop()
        _wait_for(lambda: clients.count(503) >= 10, "503s while Redis is down")
        r = httpx.post(srv.url + URL, json=infer_body(ROW), headers={"X-API-Key": key})
        assert r.status_code == 503 and r.headers["Retry-After"] == "5"
        assert "rate-limit storage unavailable" in r.json()["error"] and r.headers[REQUEST_ID_HEADER]
        assert httpx.get(srv.url + "/v2/health/ready").status_code == 503
        served_during_outage = target.calls
        redis_proc.start()  # same port, empty (no persistence): the same gateway process reconnects
        _wait_for(lambda: target.calls > served_during_outage + 20, "answers again after Redis returned")
        assert httpx.get(srv.url + "/v2/health/ready").json() == {"ready": True}
    assert clients.transport_errors == 0
    assert set(clients.statuses) == {200, 503}  # never a 500, never an uncounted answer
    assert all("error" in b["body"] and b["headers"]["retry-after"] == "5" for b in clients.bodies)
    assert target.calls == clients.count(200) + 0  # every model call was an acknowledged answer
    assert sorted(audit_request_ids(gw.config.audit_path)) == sorted(clients.acked)
    metrics = TestClient(app).get("/metrics").text
    assert _metric(metrics, "extractguard_storage_errors_total", reason="fail_closed") == clients.count(503) + 1
    assert _metric(metrics, "extractguard_refusals_total", reason="storage_unavailable") == clients.count(503) + 1


def test_redis_stopped_with_fail_open_serves_uncounted_and_says_so(tmp_path: Path, iris, redis_proc, caplog) -> None:  # type: ignore[no-untyped-def]
    target = CountingTarget(iris)
    app = make_app(tmp_path, target=target, storage=redis_proc.url, on_storage_error="fail_open",
                   tiers={"small": {"limits": ["3/hour"]}})
    key = app.state.gateway.keys.create("acme", "small")
    client = TestClient(app)
    post = lambda: client.post(URL, json=infer_body(ROW), headers={"X-API-Key": key})  # noqa: E731
    assert [post().status_code for _ in range(4)] == [200, 200, 200, 429]
    redis_proc.stop()
    with caplog.at_level("ERROR", logger="extractguard.gateway"):
        assert [post().status_code for _ in range(3)] == [200, 200, 200]  # the owner chose availability
    assert sum("fail_open" in r.getMessage() for r in caplog.records) == 3
    redis_proc.start()  # counting resumes (from zero: this Redis kept nothing)
    assert [post().status_code for _ in range(4)] == [200, 200, 200, 429]
    assert _metric(client.get("/metrics").text, "extractguard_storage_errors_total", reason="fail_open") == 3
    assert target.calls == 9


def test_a_throttled_account_meets_the_same_policy_when_redis_is_down(tmp_path: Path, iris, redis_proc) -> None:  # type: ignore[no-untyped-def]
    """Detection's throttle counts on the limits storage too: it must not turn an outage into a 500."""
    app = make_app(tmp_path, target=None, model={"name": "iris", "victim": "digits-logreg"}, storage=redis_proc.url,
                   max_body_bytes=65536,  # "iris" is the route name; detection needs digits' 64-feature reference data
                   tiers={"watched": {"detection": {"detectors": ["rate"], "baseline_rows_per_hour": 600, "throttle_limit": "5/minute"}}})
    gw = app.state.gateway
    key = gw.keys.create("acme", "watched")
    gw.detection.actions["acme"] = {"action": "throttle"}  # as if the rate detector had escalated it
    client = TestClient(app)
    post = lambda: client.post(URL, json=infer_body(np.full((1, 64), 3.0)), headers={"X-API-Key": key})  # noqa: E731
    assert post().status_code == 200
    redis_proc.stop()
    r = post()
    assert r.status_code == 503 and "rate-limit storage unavailable" in r.json()["error"]
    redis_proc.start()
    assert post().status_code == 200
    assert [x["n_rows"] for x in gw.audit.records() if x.get("request_id")] == [1, 1]


def test_an_unwritable_audit_log_withholds_the_answer(tmp_path: Path, iris) -> None:  # type: ignore[no-untyped-def]
    """No answer leaves without its audit record: a log locked past its timeout gives a 503."""
    import sqlite3

    app = make_app(tmp_path, target=iris)
    gw = app.state.gateway
    key = gw.keys.create("acme", "raw")
    client = TestClient(app)
    assert client.post(URL, json=infer_body(ROW), headers={"X-API-Key": key}).status_code == 200
    gw.audit._conn.execute("PRAGMA busy_timeout = 50")  # the default waits 30 s for the lock
    other = sqlite3.connect(gw.config.audit_path, isolation_level=None)
    other.execute("BEGIN EXCLUSIVE")  # another writer holds the log
    try:
        r = client.post(URL, json=infer_body(ROW), headers={"X-API-Key": key})
    finally:
        other.execute("ROLLBACK")
        other.close()
    assert r.status_code == 503 and "audit log unavailable" in r.json()["error"] and "outputs" not in r.json()
    assert r.headers["Retry-After"] == "5"
    assert client.post(URL, json=infer_body(ROW), headers={"X-API-Key": key}).status_code == 200
    assert len(gw.audit.records()) == 2 and gw.audit.verify().ok


def test_a_bug_still_answers_one_json_line(tmp_path: Path, iris) -> None:  # type: ignore[no-untyped-def]
    class Broken:
        schema = iris.schema

        def predict(self, X: Any) -> Any:
            raise RuntimeError("boom")

    app = make_app(tmp_path, target=Broken())
    key = app.state.gateway.keys.create("acme", "raw")
    r = TestClient(app, raise_server_exceptions=False).post(URL, json=infer_body(ROW), headers={"X-API-Key": key})
    assert r.status_code == 500 and r.json() == {"error": "internal error (RuntimeError); the request was not served"}


def test_redis_limits_check_and_charge_atomically_across_replicas(tmp_path: Path, redis_proc) -> None:  # type: ignore[no-untyped-def]
    """Two limiters on one Redis (two replicas) racing from 8 threads: exactly the limit is admitted,
    and a batch refused by one limit leaves every other limit uncharged."""
    from extractguard.gateway import RateLimits, parse_config

    cfg = parse_config({"model": {"victim": "iris-logreg"}, "state_dir": str(tmp_path), "storage": redis_proc.url,
                        "tiers": {"t": {"limits": ["40/hour"], "quota": "1000/month"}}, "global_limits": ["100000/day"]})
    replicas = [RateLimits(cfg), RateLimits(cfg)]
    admitted: list[int] = []
    lock = threading.Lock()

    def client(i: int) -> None:
        for j in range(15):
            rows = 1 + (i + j) % 3
            if replicas[i % 2].charge("k", "acme", "t", "127.0.0.1", rows) is None:
                with lock:
                    admitted.append(rows)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert 38 <= sum(admitted) <= 40  # batches of 1-3 rows: at most 2 rows of headroom left unusable
    # Nothing was charged for the refused batches: the counters hold exactly the admitted rows.
    assert replicas[0].remaining("k", "acme", "t") == {"40/hour": 40 - sum(admitted), "1000/month": 1000 - sum(admitted)}
    # A batch the quota refuses does not spend the key's own limit (the quota binds first here).
    cfg2 = parse_config({"model": {"victim": "iris-logreg"}, "state_dir": str(tmp_path), "storage": redis_proc.url,
                         "tiers": {"q": {"limits": ["10/hour"], "quota": "12/month"}}})
    lim = RateLimits(cfg2)
    assert lim.charge("k1", "acct", "q", "ip", 10) is None
    refusal = lim.charge("k2", "acct", "q", "ip", 5)
    assert refusal is not None and refusal.scope == "quota"
    assert lim.remaining("k2", "acct", "q") == {"10/hour": 10, "12/month": 2}
    assert lim.charge("k2", "acct", "q", "ip", 2) is None


def test_on_storage_error_is_validated() -> None:
    from extractguard.errors import ConfigurationError
    from extractguard.gateway import parse_config

    with pytest.raises(ConfigurationError, match="on_storage_error"):
        parse_config({"model": {"victim": "iris-logreg"}, "on_storage_error": "ignore"})
    assert parse_config({"model": {"victim": "iris-logreg"}}).on_storage_error == "fail_closed"


# -- SIGKILL -----------------------------------------------------------------------------------


def _write_config(path: Path, extra: str = "") -> Path:
    path.write_text(
        "model: {name: iris, victim: iris-logreg}\n"
        "state_dir: state\n"
        "tiers: {load: {output: probabilities, limits: ['1000000/hour']}}\n" + extra
    )
    return path


def _secret(key: str) -> str:
    return key.split("_", 2)[2]


def test_sigkill_under_load_loses_no_acknowledged_request_and_the_chain_verifies(tmp_path: Path) -> None:
    cfg = _write_config(tmp_path / "gw.yaml")
    state = tmp_path / "state"
    key = create_key(state / "keys.db", "acme", "load")
    py = [sys.executable, "-m", "extractguard"]
    gw = GatewayProcess(cfg, log=tmp_path / "gateway.log").start()
    try:
        with _Clients(gw.url, key, n=4) as clients:
            _wait_for(lambda: clients.count(200) >= 150, "150 acknowledged answers")
            gw.kill()  # mid-load: requests in flight die with the process
            _wait_for(lambda: clients.transport_errors >= 4, "clients see the dead server")
        acked = list(clients.acked)
        assert set(clients.statuses) == {200}
        verified = subprocess.run([*py, "audit", "verify", "--config", str(cfg)], env=cli_env(), capture_output=True, text=True, timeout=120)
        assert verified.returncode == 0, verified.stdout + verified.stderr
        logged = audit_request_ids(state / "audit.db")
        assert set(acked) <= set(logged), f"{len(set(acked) - set(logged))} acknowledged requests missing from the audit log"
        # At most the requests in flight at the kill were committed without their answer arriving.
        assert len(logged) - len(acked) <= 4 and len(set(logged)) == len(logged)

        gw.start()  # restart on the same state: the chain continues where it stopped
        forged = key[:-6] + "AAAAAA"
        with httpx.Client(base_url=gw.url, timeout=60) as c:
            r = c.post(URL, json=infer_body(ROW), headers={"Authorization": f"Bearer {key}"})
            assert r.status_code == 200
            assert c.post(URL, json=infer_body(ROW), headers={"Authorization": f"Bearer {forged}"}).status_code == 401
            assert c.get("/v2/models/iris", headers={"X-API-Key": forged}).status_code == 401
            metrics = c.get("/metrics").text
    finally:
        gw.stop()
    verified = subprocess.run([*py, "audit", "verify", "--config", str(cfg)], env=cli_env(), capture_output=True, text=True, timeout=120)
    assert verified.returncode == 0 and f"{len(logged) + 1} records" in verified.stdout, verified.stdout
    assert r.headers[REQUEST_ID_HEADER] in audit_request_ids(state / "audit.db")

    # Keys never appear in what the run left behind: JSON logs, every state file, the metrics.
    logs = (tmp_path / "gateway.log").read_text()
    assert sum(1 for line in logs.splitlines() if line.startswith("{")) >= len(acked)
    secrets_ = [_secret(key), _secret(forged)]
    stored = b"".join(p.read_bytes() for p in state.iterdir() if p.is_file())
    for s in secrets_:
        assert s not in logs and s not in metrics and s.encode() not in stored


# -- malformed requests ------------------------------------------------------------------------


def _tensor(**over: Any) -> bytes:
    t: dict[str, Any] = {"name": "input", "shape": [1, 4], "datatype": "FP32", "data": [5.1, 3.5, 1.4, 0.2]}
    t.update(over)
    return json.dumps({"inputs": [t]}).encode()


# Bodies beyond tests/gateway/test_gateway.py::BAD_BODIES: structure, types, sizes, numbers, encodings.
FUZZ_BODIES: list[tuple[str, bytes, int]] = [
    ("empty body", b"", 400),
    ("json null", b"null", 400),
    ("json array", b"[1, 2, 3, 4]", 400),
    ("json string", b'"inputs"', 400),
    ("json number", b"4", 400),
    ("inputs is an object", b'{"inputs": {"name": "input"}}', 400),
    ("inputs is a string", b'{"inputs": "1,2,3,4"}', 400),
    ("tensor is a list", b'{"inputs": [[5.1, 3.5, 1.4, 0.2]]}', 400),
    ("tensor is null", b'{"inputs": [null]}', 400),
    ("deeply nested arrays", b"[" * 2000 + b"]" * 2000, 400),  # deeper than the JSON parser's stack
    ("deeply nested objects", b'{"":' * 800 + b"1" + b"}" * 800, 400),
    ("nested data 3000 deep", b'{"inputs": [{"name": "input", "shape": [1, 4], "datatype": "FP32", "data": ' + b"[" * 1500 + b"]" * 1500 + b"}]}", 400),
    ("shape is a string", _tensor(shape="1,4"), 400),
    ("shape of floats", _tensor(shape=[1.0, 4.0]), 400),
    ("shape of booleans", _tensor(shape=[True, 4]), 400),
    ("shape with zero", _tensor(shape=[0, 4], data=[]), 400),
    ("shape empty", _tensor(shape=[]), 400),
    ("shape huge", _tensor(shape=[10**30, 4]), 400),
    ("shape claims a million rows", _tensor(shape=[1_000_000, 4]), 400),
    ("shape 2**63", _tensor(shape=[2**63, 4]), 400),
    ("data is an object", _tensor(data={"0": 1}), 400),
    ("data is a string", _tensor(data="5.1,3.5,1.4,0.2"), 400),
    ("data is null", _tensor(data=None), 400),
    ("data ragged", _tensor(shape=[2, 4], data=[[1, 2, 3], [4, 5, 6, 7, 8]]), 400),
    ("data has null", _tensor(data=[1, None, 3, 4]), 400),
    ("data has an object", _tensor(data=[1, {}, 3, 4]), 400),
    ("data -Infinity", b'{"inputs": [{"name": "input", "shape": [1, 4], "datatype": "FP32", "data": [1, -Infinity, 3, 4]}]}', 400),
    ("data 1e400 (overflows to inf)", b'{"inputs": [{"name": "input", "shape": [1, 4], "datatype": "FP32", "data": [1, 1e400, 3, 4]}]}', 400),
    ("data integer beyond float64", b'{"inputs": [{"name": "input", "shape": [1, 4], "datatype": "FP32", "data": [1, ' + b"9" * 400 + b", 3, 4]}]}", 400),
    ("datatype lower case", _tensor(datatype="fp32"), 400),
    ("datatype FP8", _tensor(datatype="FP8"), 400),
    ("datatype BOOL", _tensor(datatype="BOOL", data=[True, False, True, False]), 400),
    ("datatype number", _tensor(datatype=32), 400),
    ("datatype null", _tensor(datatype=None), 400),
    ("invalid UTF-8", b'{"inputs": [{"name": "\xff\xfe", "shape": [1, 4]}]}', 400),
    ("UTF-16 garbage", "{\"inputs\": []}".encode("utf-16"), 400),
    ("NUL bytes", b"\x00" * 100, 400),
    ("lone surrogate escapes", b'{"inputs": [{"name": "\\ud800\\udfff\\ud800", "shape": "\\udc00"}]}', 400),
    ("huge array over the body limit", _tensor(shape=[2000, 4], data=[0.5] * 8000), 413),
    ("many rows over the row limit", _tensor(shape=[60, 4], data=[1] * 240), 413),
    ("whitespace flood over the body limit", b"\n" * 100_000, 413),
]


@pytest.fixture()
def fuzz_gw(tmp_path: Path, iris):  # type: ignore[no-untyped-def]
    target = CountingTarget(iris)
    app = make_app(tmp_path, target=target)
    return TestClient(app), target, app.state.gateway.keys.create("acme", "raw")


@pytest.mark.parametrize(("body", "status"), [(b, s) for _, b, s in FUZZ_BODIES], ids=[n for n, _, _ in FUZZ_BODIES])
def test_malformed_bodies_get_a_4xx_with_a_message(fuzz_gw, body: bytes, status: int) -> None:  # type: ignore[no-untyped-def]
    client, target, key = fuzz_gw
    r = client.post(URL, content=body, headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"})
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == "application/json" and len(r.json()["error"]) > 10
    assert REQUEST_ID_HEADER in r.headers
    assert target.calls == 0


def test_valid_variants_are_served(fuzz_gw) -> None:  # type: ignore[no-untyped-def]
    """The corpus' near misses that are valid: nested rows, integer types, extra fields, any tensor
    name, a UTF-8 byte-order mark."""
    client, target, key = fuzz_gw
    for body in (b"\xef\xbb\xbf" + _tensor(), _tensor(data=[[5.1, 3.5, 1.4, 0.2]]), _tensor(datatype="INT32", data=[5, 3, 1, 0]), _tensor(name="x\u00e9"),
                 json.dumps({"id": {"not": "a string"}, "inputs": [json.loads(_tensor())["inputs"][0]], "extra": [1]}).encode()):
        r = client.post(URL, content=body, headers={"Authorization": f"Bearer {key}"})
        assert r.status_code == 200, r.text
    assert target.calls == 5


JUNK_HEADERS: list[tuple[str, dict[str, Any]]] = [
    ("latin-1 bytes in Authorization", {"Authorization": b"Bearer \xe9\xff\xfe"}),
    ("latin-1 bytes in X-API-Key", {"X-API-Key": "eg_\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9_x".encode("latin-1")}),
    ("bearer without a key", {"Authorization": "Bearer "}),
    ("key with many underscores", {"X-API-Key": "eg_" + "_" * 500}),
    ("10 KB key", {"X-API-Key": "eg_0123456789abcdef_" + "A" * 10_000}),
    ("key id of SQL", {"X-API-Key": "eg_' OR 1=1 --___x"}),
    ("control characters", {"X-API-Key": "eg_0123456789abcdef_\t\x7f"}),
    ("junk X-Forwarded-For (untrusted peer)", {"X-Forwarded-For": "\u00ff\u00fe, not-an-ip, ::::".encode("latin-1")}),
]


@pytest.mark.parametrize("headers", [h for _, h in JUNK_HEADERS], ids=[n for n, _ in JUNK_HEADERS])
def test_junk_in_headers_gets_a_401_with_a_message(fuzz_gw, headers: dict[str, Any]) -> None:  # type: ignore[no-untyped-def]
    client, target, _ = fuzz_gw
    r = client.post(URL, content=_tensor(), headers={"Content-Type": "application/json", **headers})
    assert r.status_code == 401 and "API key" in r.json()["error"]
    assert target.calls == 0


def test_junk_headers_with_a_valid_key_are_harmless(fuzz_gw) -> None:  # type: ignore[no-untyped-def]
    client, target, key = fuzz_gw
    junk = {"X-Forwarded-For": "\u00ff, ::::, 999.1.1.1", "Content-Type": "text/plain; charset=\u00ff", "X-Request-ID": "\u00e9" * 100,
            "Idempotency-Key": "\u00fe" * 1000}
    r = client.post(URL, content=_tensor(), headers={"Authorization": f"Bearer {key}",
                                                      **{k: v.encode("latin-1") for k, v in junk.items()}})
    assert r.status_code == 200 and re.fullmatch(r"[0-9a-f]{32}", r.headers[REQUEST_ID_HEADER])  # ours, not the client's
    assert target.calls == 1


def test_malformed_http_never_gets_a_5xx_from_a_real_server(tmp_path: Path, iris) -> None:  # type: ignore[no-untyped-def]
    """What uvicorn itself rejects before the app: invalid header bytes, a lying Content-Length."""
    import socket

    app = make_app(tmp_path, target=iris)
    key = app.state.gateway.keys.create("acme", "raw")
    body = _tensor()
    requests = [
        b"POST " + URL.encode() + b" HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer \x00\x01\r\nContent-Length: %d\r\n\r\n" % len(body) + body,
        b"POST " + URL.encode() + b" HTTP/1.1\r\nHost: x\r\nX-API-Key: " + key.encode() + b"\r\nContent-Length: abc\r\n\r\n" + body,
        b"POST " + URL.encode() + b" HTTP/1.1\r\nHost: x\r\nX-API-Key: " + key.encode() + b"\r\nContent-Length: 5\r\n\r\n" + body,
        b"GARBAGE\r\n\r\n",
        b"POST " + URL.encode() + b" HTTP/1.1\r\nHost: x\r\nX-API-Key: " + key.encode() + b"\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
    ]
    with UvicornThread(app) as srv:
        for raw in requests:
            with socket.create_connection(("127.0.0.1", srv.port), timeout=30) as s:
                s.sendall(raw)
                s.shutdown(socket.SHUT_WR)
                reply = b""
                while chunk := s.recv(65536):
                    reply += chunk
            status = int(reply.split(b" ", 2)[1]) if reply.startswith(b"HTTP/1.1 ") else None
            assert status is not None and 400 <= status < 500, (raw[:60], reply[:200])
        ok = httpx.post(srv.url + URL, content=body, headers={"X-API-Key": key})
        assert ok.status_code == 200  # and the server is still fine


# -- authentication of every route -------------------------------------------------------------


def _routes(app: Any) -> set[tuple[str, str]]:
    out = set()
    for route in app.routes:
        for method in getattr(route, "methods", None) or ():
            if method != "HEAD":
                out.add((method, route.path))
    return out


#: Every route the gateway serves.  There is no admin HTTP surface: keys are created, revoked and
#: listed by ``extractguard keys`` on the key database, audit checks by ``extractguard audit``;
#: a new route must be added here with its access rule.
KNOWN_ROUTES = {
    ("GET", "/v2/health/live"), ("GET", "/v2/health/ready"), ("GET", "/metrics"),
    ("GET", "/v2"), ("GET", "/v2/models/{model}"), ("GET", "/v2/models/{model}/ready"),
    ("POST", "/v2/models/{model}/infer"), ("GET", "/openapi.json"),
}


def test_no_route_but_health_and_metrics_answers_without_a_valid_key(tmp_path: Path, iris) -> None:  # type: ignore[no-untyped-def]
    target = CountingTarget(iris)
    app = make_app(tmp_path, target=target)
    assert _routes(app) == KNOWN_ROUTES
    gw = app.state.gateway
    key = gw.keys.create("acme", "raw")
    revoked = gw.keys.create("gone", "raw")
    gw.keys.revoke(revoked)
    bad = {"none": {}, "unknown": {"X-API-Key": "eg_0123456789abcdef_" + "x" * 43},
           "forged secret": {"Authorization": f"Bearer {key[:-4]}ABCD"}, "revoked": {"X-API-Key": revoked},
           "wrong scheme": {"Authorization": f"Basic {key}"}}
    client = TestClient(app)
    for method, path in sorted(KNOWN_ROUTES):
        url = path.replace("{model}", "iris")
        for what, headers in bad.items():
            r = client.request(method, url, headers=headers, json=infer_body(ROW) if method == "POST" else None)
            if path in PUBLIC_PATHS:
                assert r.status_code == 200, (method, path, what)
            else:
                assert r.status_code == 401 and "API key" in r.json()["error"], (method, path, what, r.status_code)
                assert r.headers["WWW-Authenticate"] == "Bearer"
        r = client.request(method, url, headers={"X-API-Key": key}, json=infer_body(ROW) if method == "POST" else None)
        assert r.status_code == 200, (method, path)
    assert target.calls == 1  # only the one authenticated inference reached the model
    # The public routes reveal no model or tier detail; /metrics names accounts (never keys) only
    # while per-account series are on (docs/monitoring.md), and nothing of the caller without them.
    assert client.get("/v2/health/ready").json() == {"ready": True}
    assert "iris-logreg" not in client.get("/metrics").text and key not in client.get("/metrics").text
    assert 'account="acme"' in client.get("/metrics").text
    quiet = make_app(tmp_path / "quiet", target=CountingTarget(iris), metrics={"per_account": False})
    quiet_client = TestClient(quiet)
    quiet_key = quiet.state.gateway.keys.create("acme", "raw")
    assert quiet_client.post("/v2/models/iris/infer", json=infer_body(ROW), headers={"X-API-Key": quiet_key}).status_code == 200
    assert "acme" not in quiet_client.get("/metrics").text
    quiet.state.gateway.close()


def test_a_key_of_a_tier_removed_from_the_config_reads_nothing(tmp_path: Path, iris) -> None:  # type: ignore[no-untyped-def]
    target = CountingTarget(iris)
    app = make_app(tmp_path, target=target)
    key = app.state.gateway.keys.create("ghost", "gone")  # tier not configured
    client = TestClient(app)
    assert client.post(URL, json=infer_body(ROW), headers={"X-API-Key": key}).status_code == 403
    assert target.calls == 0


def test_admin_commands_need_the_key_database_not_a_key(tmp_path: Path) -> None:
    """The admin surface is the CLI on the state files: a gateway API key grants none of it, and
    ``keys list`` never shows a secret."""
    cfg = _write_config(tmp_path / "gw.yaml")
    key = create_key(tmp_path / "state" / "keys.db", "acme", "load")
    py = [sys.executable, "-m", "extractguard"]
    listed = subprocess.run([*py, "keys", "list", "--config", str(cfg)], env=cli_env(), capture_output=True, text=True, timeout=120)
    assert listed.returncode == 0 and key.split("_")[1] in listed.stdout and _secret(key) not in listed.stdout
    app = make_app(tmp_path / "other", target=None)  # a gateway whose key database does not hold the key
    assert TestClient(app).get("/v2", headers={"X-API-Key": key}).status_code == 401
