"""Append-only, hash-chained audit log of every query the gateway answers.

Each record stores who asked (account, key id, client IP), when, which model, a SHA-256 of the
input rows, and the output actually served; its ``hash`` is SHA-256 over the record's canonical
JSON *including the previous record's hash*.  Editing any stored field changes that record's hash
and breaks the link to the next one; deleting a record leaves a gap in the sequence numbers or a
broken link; deleting records at the end is caught against the ``head`` row (sequence and hash of
the last record, written in the same transaction) — and, against an attacker who can rewrite the
whole file, by anchoring the head hash elsewhere (``extractguard audit verify`` prints it).  This
is the classic hash chain of tamper-evident logging (Schneier & Kelsey, 1999).

Each served request also stores the ``X-Request-ID`` the gateway returned with it, so a client
(or an incident review) can prove that an acknowledged answer is in the log.  It enters the hash
only when present, so logs written before the column existed still verify.  Records are committed
before the response is sent: a request the client saw answered survives a crash of the gateway
process (SQLite WAL; ``synchronous=NORMAL`` loses nothing on a process crash, only on power loss).
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from extractguard.errors import ConfigurationError

GENESIS = "0" * 64
_FIELDS = ("seq", "ts", "account", "key_id", "tier", "model", "client_ip", "n_rows", "input_sha256", "output", "prev_hash")


def input_digest(X: np.ndarray) -> str:
    """SHA-256 of the validated float64 rows: identical queries hash identically."""
    arr = np.ascontiguousarray(X, dtype=np.float64)
    return hashlib.sha256(str(arr.shape).encode() + arr.tobytes()).hexdigest()


def record_hash(record: dict[str, Any]) -> str:
    fields = {k: record[k] for k in _FIELDS}
    if record.get("request_id") is not None:  # absent in records older than the column: same hash as before
        fields["request_id"] = record["request_id"]
    body = json.dumps(fields, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(body.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class VerifyResult:
    """Outcome of :meth:`AuditLog.verify`: ``ok``, how many records, and the first problem found."""

    ok: bool
    records: int
    head_hash: str
    bad_seq: int | None = None
    problem: str = ""


class AuditLog:
    """SQLite-backed hash chain.  Appends are serialised so the chain stays linear."""

    def __init__(self, path: Path | str, read_only: bool = False) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        if read_only:  # verification must never change the evidence it checks
            self._conn = sqlite3.connect(f"file:{self.path.resolve()}?mode=ro", uri=True, check_same_thread=False)
            self._columns = self._stored_columns()
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._conn = sqlite3.connect(str(self.path), timeout=30, check_same_thread=False, isolation_level=None)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=NORMAL")
        self._conn.execute(
            "CREATE TABLE IF NOT EXISTS audit (seq INTEGER PRIMARY KEY, ts REAL NOT NULL, account TEXT, key_id TEXT, "
            "tier TEXT, model TEXT, client_ip TEXT, n_rows INTEGER NOT NULL, input_sha256 TEXT NOT NULL, "
            "output TEXT NOT NULL, prev_hash TEXT NOT NULL, hash TEXT NOT NULL)"
        )
        self._conn.execute("CREATE TABLE IF NOT EXISTS head (id INTEGER PRIMARY KEY CHECK (id = 1), seq INTEGER, hash TEXT)")
        if "request_id" not in self._stored_columns():  # a log from before request ids: add the column
            try:
                self._conn.execute("ALTER TABLE audit ADD COLUMN request_id TEXT")
            except sqlite3.OperationalError:  # another replica added it first
                pass
        self._columns = self._stored_columns()

    def _stored_columns(self) -> tuple[str, ...]:
        names = {row[1] for row in self._conn.execute("PRAGMA table_info(audit)")}
        return (*_FIELDS, "hash", *(("request_id",) if "request_id" in names else ()))

    def append(
        self,
        *,
        account: str,
        key_id: str,
        tier: str,
        model: str,
        client_ip: str,
        X: np.ndarray,
        output: dict[str, Any] | list[Any],
        ts: float | None = None,
        request_id: str | None = None,
    ) -> str:
        """Add one record (committed when this returns); returns its hash."""
        rec: dict[str, Any] = {
            "ts": round(time.time() if ts is None else ts, 6),
            "account": account,
            "key_id": key_id,
            "tier": tier,
            "model": model,
            "client_ip": client_ip,
            "n_rows": int(X.shape[0]),
            "input_sha256": input_digest(X),
            "output": json.dumps(output, separators=(",", ":")),
            "request_id": request_id,
        }
        with self._lock:
            c = self._conn
            c.execute("BEGIN IMMEDIATE")  # also serialises appends from other processes
            try:
                head = c.execute("SELECT seq, hash FROM head WHERE id = 1").fetchone()
                rec["seq"], rec["prev_hash"] = (1, GENESIS) if head is None else (head[0] + 1, head[1])
                rec["hash"] = h = record_hash(rec)
                c.execute(
                    f"INSERT INTO audit ({', '.join(_FIELDS)}, hash, request_id) VALUES ({', '.join('?' * (len(_FIELDS) + 2))})",
                    [rec[k] for k in _FIELDS] + [h, request_id],
                )
                c.execute("INSERT OR REPLACE INTO head (id, seq, hash) VALUES (1, ?, ?)", (rec["seq"], h))
                c.execute("COMMIT")
            except BaseException:
                c.execute("ROLLBACK")
                raise
        return h

    def records(self) -> list[dict[str, Any]]:
        with self._lock:
            cur = self._conn.execute(f"SELECT {', '.join(self._columns)} FROM audit ORDER BY seq")
            return [dict(zip(self._columns, row)) for row in cur.fetchall()]

    def verify(self) -> VerifyResult:
        """Walk the chain; report the first edited, deleted or reordered record."""
        recs = self.records()
        with self._lock:
            head = self._conn.execute("SELECT seq, hash FROM head WHERE id = 1").fetchone()
        prev, expected_seq = GENESIS, 1
        for r in recs:
            if r["seq"] != expected_seq:
                return VerifyResult(False, len(recs), prev, expected_seq,
                                    f"record {expected_seq} is missing (next stored record is {r['seq']})")
            if record_hash(r) != r["hash"]:
                return VerifyResult(False, len(recs), prev, r["seq"], f"record {r['seq']} was edited (its hash does not match its contents)")
            if r["prev_hash"] != prev:
                return VerifyResult(False, len(recs), prev, r["seq"] - 1,
                                    f"record {r['seq'] - 1} was edited or replaced (record {r['seq']} no longer links to it)")
            prev, expected_seq = r["hash"], expected_seq + 1
        if head is not None and (head[0] != expected_seq - 1 or head[1] != prev):
            return VerifyResult(False, len(recs), prev, expected_seq,
                                f"records after {expected_seq - 1} are missing (the head says the log ends at record {head[0]})")
        if head is None and recs:
            return VerifyResult(False, len(recs), prev, None, "the head row was deleted")
        return VerifyResult(True, len(recs), prev)

    def close(self) -> None:
        with self._lock:
            self._conn.close()


def verify_file(path: Path | str) -> VerifyResult:
    """Verify an audit database on disk (``extractguard audit verify``)."""
    p = Path(path)
    if not p.is_file():
        raise ConfigurationError(f"no audit log at {p}")
    try:
        log = AuditLog(p, read_only=True)
    except sqlite3.DatabaseError as exc:
        raise ConfigurationError(f"{p} is not an audit database: {exc}") from None
    try:
        return log.verify()
    except sqlite3.DatabaseError as exc:
        raise ConfigurationError(f"{p} is not an audit database: {exc}") from None
    finally:
        log.close()
