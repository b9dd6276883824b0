"""Real processes for the gateway reliability tests and the load benchmark: redis-server and
``extractguard serve`` replicas on 127.0.0.1, started, stopped, killed and restarted on purpose.

Logs go to files (never to a pipe nobody reads: a full pipe would stall the server under load).
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from checkout import cli_env


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class RedisProcess:
    """redis-server on a fixed port, so it can be stopped and started again.

    Without ``data_dir`` it keeps nothing across a restart; with it, an append-only file fsynced
    on every write (``appendfsync always``) keeps every counter, as a production Redis holding
    quotas should.
    """

    def __init__(self, port: int | None = None, data_dir: Path | None = None) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise FileNotFoundError("redis-server is not installed")
        self.binary = binary
        self.port = port or free_port()
        self.data_dir = data_dir
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisProcess:
        persist = ["--appendonly", "no"]
        if self.data_dir is not None:
            self.data_dir.mkdir(parents=True, exist_ok=True)
            persist = ["--appendonly", "yes", "--appendfsync", "always", "--dir", str(self.data_dir)]
        self.proc = subprocess.Popen(
            [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", *persist],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        import redis

        client = redis.Redis(host="127.0.0.1", port=self.port)
        for _ in range(500):  # wait until it accepts connections (not a timing assertion)
            try:
                client.ping()
                client.close()
                return self
            except redis.ConnectionError:
                time.sleep(0.02)
        self.stop()
        raise RuntimeError("redis-server did not start")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=10)
        self.proc = None

    def __enter__(self) -> RedisProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class GatewayProcess:
    """One ``python -m extractguard serve --config CFG --port P`` replica."""

    def __init__(self, config: Path, port: int | None = None, log: Path | None = None) -> None:
        self.config = config
        self.port = port or free_port()
        self.log = log or config.with_name(f"gateway-{self.port}.log")
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 300.0) -> GatewayProcess:
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "extractguard", "serve", "--config", str(self.config), "--port", str(self.port)],
                env=cli_env(), stdout=subprocess.DEVNULL, stderr=log,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:  # wait for the model to load (not a timing assertion)
            if self.proc.poll() is not None:
                raise RuntimeError(f"gateway exited with {self.proc.returncode}: {self.log.read_text()[-2000:]}")
            try:
                if httpx.get(f"{self.url}/v2/health/live", timeout=2).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        self.kill()
        raise RuntimeError("gateway did not start")

    def kill(self) -> None:
        """SIGKILL: no shutdown hook runs, nothing is flushed or closed."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=30)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill()

    def __enter__(self) -> GatewayProcess:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()


def create_key(keys_db: Path, account: str, tier: str) -> str:
    """A key straight in the key database (what ``extractguard keys create`` does, without a process)."""
    from extractguard.gateway import KeyStore

    store = KeyStore(keys_db)
    try:
        return store.create(account, tier)
    finally:
        store.close()


def audit_request_ids(audit_db: Path) -> list[str]:
    from extractguard.gateway import AuditLog

    log = AuditLog(audit_db, read_only=True)
    try:
        return [r["request_id"] for r in log.records() if r.get("request_id")]
    finally:
        log.close()
