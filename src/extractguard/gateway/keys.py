"""API keys and accounts, stored hashed in SQLite.

A key looks like ``eg_<key id>_<secret>``: the id (8 random bytes, hex) is public and indexes the
row; the secret is 32 random bytes from :mod:`secrets`.  We store only SHA-256(key).  A slow
password hash (scrypt, argon2) exists to make *guessable* secrets expensive to brute-force; a
256-bit random secret cannot be guessed, so a slow hash would only add milliseconds to every
request without adding security.  The stored digest is compared with :func:`hmac.compare_digest`
so response timing does not leak how much of a forged key matched.

Every request reads the key row, so a revoked key is refused by the very next request, in every
process that shares the database.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from extractguard.errors import ConfigurationError

_PREFIX = "eg"


@dataclass(frozen=True)
class Account:
    """Who is calling: the account, its tier and the (public) id of the key used."""

    key_id: str
    account: str
    tier: str


@dataclass(frozen=True)
class KeyInfo:
    """A stored key, as listed by ``extractguard keys list`` (never the secret)."""

    key_id: str
    account: str
    tier: str
    created: float
    revoked: float | None


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode("utf-8")).digest()


class KeyStore:
    """Create, look up, revoke and list API keys in one SQLite file."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._conn = sqlite3.connect(str(self.path), timeout=30, check_same_thread=False, isolation_level=None)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute(
            "CREATE TABLE IF NOT EXISTS api_keys (key_id TEXT PRIMARY KEY, digest BLOB NOT NULL, "
            "account TEXT NOT NULL, tier TEXT NOT NULL, created REAL NOT NULL, revoked REAL)"
        )

    def create(self, account: str, tier: str) -> str:
        """Make a new key for ``account`` in ``tier``; the returned plaintext is shown once."""
        if not account or not account.strip():
            raise ConfigurationError("an account name is required")
        key_id = secrets.token_hex(8)
        key = f"{_PREFIX}_{key_id}_{secrets.token_urlsafe(32)}"
        with self._lock:
            self._conn.execute(
                "INSERT INTO api_keys (key_id, digest, account, tier, created, revoked) VALUES (?, ?, ?, ?, ?, NULL)",
                (key_id, _digest(key), account.strip(), tier, time.time()),
            )
        return key

    def authenticate(self, key: str) -> Account | None:
        """The account for a presented key, or ``None`` (unknown, malformed or revoked)."""
        parts = key.split("_")
        if len(parts) < 3 or parts[0] != _PREFIX or len(parts[1]) != 16:
            return None
        with self._lock:
            row = self._conn.execute(
                "SELECT digest, account, tier, revoked FROM api_keys WHERE key_id = ?", (parts[1],)
            ).fetchone()
        if row is None:
            _digest(key)  # same work either way
            return None
        if not hmac.compare_digest(bytes(row[0]), _digest(key)) or row[3] is not None:
            return None
        return Account(parts[1], row[1], row[2])

    def revoke(self, key_or_id: str) -> KeyInfo:
        """Revoke by key id (or the full key); effective for the next request."""
        parts = key_or_id.split("_")
        key_id = parts[1] if len(parts) >= 3 and parts[0] == _PREFIX else key_or_id
        with self._lock:
            n = self._conn.execute(
                "UPDATE api_keys SET revoked = ? WHERE key_id = ? AND revoked IS NULL", (time.time(), key_id)
            ).rowcount
        info = self.get(key_id)
        if info is None:
            raise ConfigurationError(f"no API key with id {key_id!r}")
        if n == 0 and info.revoked is None:  # pragma: no cover - defensive
            raise ConfigurationError(f"could not revoke key {key_id!r}")
        return info

    def get(self, key_id: str) -> KeyInfo | None:
        with self._lock:
            row = self._conn.execute(
                "SELECT key_id, account, tier, created, revoked FROM api_keys WHERE key_id = ?", (key_id,)
            ).fetchone()
        return None if row is None else KeyInfo(*row)

    def list(self) -> list[KeyInfo]:
        with self._lock:
            rows = self._conn.execute(
                "SELECT key_id, account, tier, created, revoked FROM api_keys ORDER BY created"
            ).fetchall()
        return [KeyInfo(*r) for r in rows]

    def close(self) -> None:
        with self._lock:
            self._conn.close()
