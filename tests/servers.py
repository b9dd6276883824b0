"""Real HTTP model servers for the remote-target tests (uvicorn on 127.0.0.1, a free port).

:class:`ModelServer` serves a zoo victim over the Open Inference Protocol (and a generic JSON
route), counts rows server-side, and can misbehave on purpose: throttle with 429 + Retry-After,
fail with 500s, or refuse every key with 401.  It also *checks the client*: a retried request
(same body) that arrives before the Retry-After it was given is recorded as a violation.
"""

from __future__ import annotations

import asyncio
import hashlib
import random
import socket
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from extractguard.errors import InputValidationError
from extractguard.oracle import oip
from extractguard.oracle.answer import Answer, OutputSpec
from extractguard.oracle.targets import Target


@dataclass
class ServerCounts:
    requests: int = 0
    rows_answered: int = 0  # every row the model computed and returned with 200
    paid_rows: int = 0  # rows billed: a request id answered twice is billed once (Idempotency-Key)
    throttled: int = 0
    failed: int = 0
    unauthorized: int = 0
    violations: list[dict[str, float]] = field(default_factory=list)
    by_key: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return dict(vars(self))


class ModelServer:
    """A victim behind HTTP.  Use as a context manager; ``url`` is the base URL."""

    def __init__(
        self,
        target: Target,
        model_name: str = "victim",
        output: str = "probabilities",
        keys: tuple[str, ...] = ("key-1",),
        throttle: float = 0.0,
        fail: float = 0.0,
        retry_after: int = 1,
        deny_all: bool = False,
        delay: float = 0.0,
        seed: int = 0,
        tls_cert: str | None = None,
    ) -> None:
        self.target = target
        self.model_name = model_name
        self.spec = OutputSpec.parse(output)
        self.keys = set(keys)
        self.throttle = throttle
        self.fail = fail
        self.retry_after = retry_after
        self.deny_all = deny_all
        self.delay = delay
        self.tls_cert = tls_cert  # PEM with the private key and certificate chain: serve HTTPS
        self.counts = ServerCounts()
        self._rng = random.Random(seed)
        self._deadlines: dict[str, float] = {}
        self._billed: set[str] = set()
        self.app = self._build()
        self.url = ""

    # -- behaviour ---------------------------------------------------------------------------
    def _gate(self, request: Request, raw: bytes) -> JSONResponse | None:
        """Auth, Retry-After compliance check, then injected throttling/failures."""
        c = self.counts
        c.requests += 1
        auth = request.headers.get("authorization", "")
        key = auth.removeprefix("Bearer ").strip() if auth else request.headers.get("x-api-key", "")
        if self.deny_all or key not in self.keys:
            c.unauthorized += 1
            return JSONResponse({"error": "invalid API key"}, status_code=401)
        c.by_key[key] = c.by_key.get(key, 0) + 1
        digest = hashlib.sha256(raw).hexdigest()
        now = time.monotonic()
        deadline = self._deadlines.pop(digest, None)
        if deadline is not None and now < deadline:
            c.violations.append({"early_by_seconds": deadline - now})
        if self._rng.random() < self.throttle:
            c.throttled += 1
            self._deadlines[digest] = time.monotonic() + self.retry_after
            return JSONResponse({"error": "rate limited"}, status_code=429,
                                headers={"Retry-After": str(self.retry_after)})
        if self._rng.random() < self.fail:
            c.failed += 1
            return JSONResponse({"error": "internal error"}, status_code=500)
        return None

    def _answer(self, X: np.ndarray, request: Request) -> Answer:
        pred = self.target.predict(X)
        answer = Answer.from_probabilities(pred.probabilities, self.spec, logits=pred.logits)
        n = X.shape[0]
        self.counts.rows_answered += n
        rid = request.headers.get("idempotency-key")
        if rid is None or rid not in self._billed:
            self.counts.paid_rows += n
            if rid is not None:
                self._billed.add(rid)
        return answer

    def _build(self) -> FastAPI:
        app = FastAPI()
        n_features = self.target.schema.n_features

        @app.post("/v2/models/{name}/infer")
        async def infer(name: str, request: Request) -> JSONResponse:
            raw = await request.body()
            refused = self._gate(request, raw)
            if refused is not None:
                return refused
            if name != self.model_name:
                return JSONResponse({"error": f"unknown model {name}"}, status_code=404)
            if self.delay:
                await asyncio.sleep(self.delay)
            try:
                body = await request.json()
                X = oip.decode_request(body, n_features)
            except (InputValidationError, ValueError) as exc:
                return JSONResponse({"error": str(exc)}, status_code=400)
            answer = self._answer(X, request)
            return JSONResponse(oip.encode_response(answer, self.model_name, request_id=body.get("id")))

        @app.post("/json/predict")
        async def predict(request: Request) -> JSONResponse:
            raw = await request.body()
            refused = self._gate(request, raw)
            if refused is not None:
                return refused
            body = await request.json()
            X = np.asarray(body["data"]["instances"], dtype=np.float64)
            answer = self._answer(X, request)
            preds = [{"class": int(r["label"]), "probs": r.get("scores")} for r in answer.to_records()]
            return JSONResponse({"result": {"predictions": preds}})

        @app.get("/stats")
        async def stats() -> dict[str, Any]:
            return self.counts.to_dict()

        return app

    # -- lifecycle ---------------------------------------------------------------------------
    def __enter__(self) -> ModelServer:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        config = uvicorn.Config(self.app, host="127.0.0.1", port=port, log_level="error", lifespan="off",
                                access_log=False, ssl_certfile=self.tls_cert)
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [sock]}, daemon=True)
        self._thread.start()
        for _ in range(500):
            if self._server.started:
                break
            time.sleep(0.02)
        else:
            raise RuntimeError("test server did not start")
        self._sock = sock
        self.url = f"{'https' if self.tls_cert else 'http'}://127.0.0.1:{port}"
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=10)
        self._sock.close()
