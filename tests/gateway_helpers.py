"""Shared helpers for the gateway tests: a small victim, a call-counting target, a real uvicorn."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from extractguard.gateway import GatewayConfig, create_app, parse_config
from extractguard.oracle.targets import Prediction, Target
from gateway_procs import free_port  # noqa: F401  (one free-port finder; tests import it from here too)


class CountingTarget:
    """Wraps a target and counts the rows and calls that reach it."""

    def __init__(self, inner: Target) -> None:
        self.inner = inner
        self.schema = inner.schema
        self.calls = 0
        self.rows = 0

    def predict(self, X: np.ndarray) -> Prediction:
        self.calls += 1
        self.rows += int(X.shape[0])
        return self.inner.predict(X)


def iris_target() -> Target:
    from extractguard.victims import build_victim

    return build_victim("iris-logreg", seed=0).target


def config(state_dir: Path, **overrides: Any) -> GatewayConfig:
    data: dict[str, Any] = {
        "model": {"name": "iris", "victim": "iris-logreg"},
        "state_dir": str(state_dir),
        "storage": "memory://",
        "tiers": {
            "free": {"output": "label", "limits": ["10/minute"]},
            "pro": {"output": "probabilities", "defenses": [{"name": "temperature", "temperature": 2.0}]},
            "raw": {"output": "probabilities"},
        },
        "max_rows_per_request": 50,
        "max_body_bytes": 4096,
        "seed": 0,
    }
    data.update(overrides)
    return parse_config(data)


def infer_body(X: Any, datatype: str = "FP32") -> dict[str, Any]:
    arr = np.asarray(X, dtype=np.float64)
    return {"inputs": [{"name": "input", "shape": list(arr.shape), "datatype": datatype, "data": arr.reshape(-1).tolist()}]}


class UvicornThread:
    """A real uvicorn server on 127.0.0.1 in a background thread, stopped on exit."""

    def __init__(self, app: Any) -> None:
        import uvicorn

        self.port = free_port()
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="error", proxy_headers=False))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> UvicornThread:
        self.thread.start()
        for _ in range(500):  # wait for startup (not a timing assertion)
            if self.server.started:
                return self
            time.sleep(0.02)
        raise RuntimeError("uvicorn did not start")

    def __exit__(self, *exc: Any) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


def make_app(state_dir: Path, target: Target | None = None, **overrides: Any):  # type: ignore[no-untyped-def]
    return create_app(config(state_dir, **overrides), target=target)
