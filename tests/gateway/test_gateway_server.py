"""The gateway as deployed: `extractguard serve` in a real process, and proxying to an upstream
Open Inference Protocol server over real sockets."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
from fastapi import FastAPI, Request

from extractguard.oracle import Oracle, OutputSpec
from extractguard.oracle.answer import Answer
from extractguard.oracle.oip import decode_request, decode_response, encode_request, encode_response
from checkout import cli_env
from gateway_helpers import UvicornThread, free_port, infer_body, iris_target, make_app

ROWS = np.array([[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3], [5.9, 3.0, 4.2, 1.5]])


def _upstream_app(target, calls: list[int]) -> FastAPI:  # type: ignore[no-untyped-def]
    """A plain OIP model server (what KServe/MLServer would be) with no protection of its own."""
    app = FastAPI()

    @app.post("/v2/models/{model}/infer")
    async def infer(model: str, request: Request) -> dict:  # type: ignore[type-arg]
        X = decode_request(await request.json(), target.schema.n_features)
        calls.append(len(X))
        answer = Answer.from_probabilities(target.predict(X).probabilities, OutputSpec("probabilities"))
        return encode_response(answer, model)

    return app


def test_gateway_proxies_to_an_upstream_oip_server(tmp_path: Path) -> None:
    iris = iris_target()
    calls: list[int] = []
    with UvicornThread(_upstream_app(iris, calls)) as upstream:
        model = {"name": "iris", "upstream": upstream.url, "upstream_model": "iris-v1", "input_shape": [4], "n_classes": 3}
        app = make_app(tmp_path, model=model, tiers={"t": {"output": "top-1"}})
        key = app.state.gateway.keys.create("acme", "t")
        with UvicornThread(app) as gw, httpx.Client(base_url=gw.url) as c:
            r = c.post("/v2/models/iris/infer", json=infer_body(ROWS), headers={"Authorization": f"Bearer {key}"})
            assert r.status_code == 200, r.text
            ans = decode_response(r.json(), 3, 3, OutputSpec("top_k", k=1))
            truth = iris.predict(ROWS).probabilities
            assert ans.top_indices[:, 0].tolist() == truth.argmax(1).tolist()
            np.testing.assert_allclose(ans.top_values[:, 0], truth.max(1))
            assert ans.scores is None  # the tier hides the full vector the upstream returned
            bad = c.post("/v2/models/iris/infer", json=infer_body([[1.0, 2.0, 3.0]]),  # 3 features, not 4
                         headers={"Authorization": f"Bearer {key}"})
            assert bad.status_code == 400
    assert calls == [3]  # the invalid request never reached the upstream


def test_gateway_reports_a_dead_upstream_as_502(tmp_path: Path) -> None:
    model = {"name": "iris", "upstream": f"http://127.0.0.1:{free_port()}", "input_shape": [4], "n_classes": 3,
             "upstream_timeout_seconds": 5}
    app = make_app(tmp_path, model=model, tiers={"t": {}})
    key = app.state.gateway.keys.create("acme", "t")
    with UvicornThread(app) as gw, httpx.Client(base_url=gw.url) as c:
        r = c.post("/v2/models/iris/infer", json=infer_body(ROWS), headers={"X-API-Key": key})
        assert r.status_code == 502 and "upstream" in r.json()["error"]


def test_extractguard_serve_end_to_end(tmp_path: Path) -> None:
    """`extractguard serve --config` in its own process: key via the CLI, OIP request, metrics,
    JSON logs, then `audit verify` on what it wrote."""
    cfg = tmp_path / "gw.yaml"
    cfg.write_text(
        "model: {name: iris, victim: iris-logreg}\n"
        "state_dir: state\n"
        "tiers: {free: {output: 'rounded:1', limits: ['100/minute']}}\n"
    )
    env = cli_env()
    py = [sys.executable, "-m", "extractguard"]
    made = subprocess.run([*py, "keys", "create", "--account", "acme", "--tier", "free", "--config", str(cfg)],
                          env=env, capture_output=True, text=True, timeout=120)
    assert made.returncode == 0, made.stderr
    key = made.stdout.strip().splitlines()[-1]
    port = free_port()
    proc = subprocess.Popen([*py, "serve", "--config", str(cfg), "--port", str(port)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        url = f"http://127.0.0.1:{port}"
        for _ in range(600):  # wait for readiness (model load), not a timing assertion
            try:
                if httpx.get(f"{url}/v2/health/ready").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            time.sleep(0.1)
        oracle_answer = httpx.post(f"{url}/v2/models/iris/infer", json=encode_request(ROWS), headers={"Authorization": f"Bearer {key}"})
        assert oracle_answer.status_code == 200
        ans = decode_response(oracle_answer.json(), 3, 3, OutputSpec("rounded", decimals=1))
        expected = Oracle(iris_target(), output=OutputSpec.parse("rounded:1")).query(ROWS)
        np.testing.assert_array_equal(ans.scores, expected.scores)
        assert httpx.post(f"{url}/v2/models/iris/infer", json=encode_request(ROWS)).status_code == 401
        assert "extractguard_rows_served_total" in httpx.get(f"{url}/metrics").text
    finally:
        proc.terminate()
        out, err = proc.communicate(timeout=30)
    assert "keys create" in out  # serve prints how to create a key
    import json

    logs = [json.loads(line) for line in err.splitlines() if line.startswith("{")]
    assert [entry["status"] for entry in logs] == [200, 401]
    assert key.split("_", 2)[2] not in err
    verified = subprocess.run([*py, "audit", "verify", "--config", str(cfg)], env=env, capture_output=True, text=True, timeout=120)
    assert verified.returncode == 0 and "1 records" in verified.stdout
