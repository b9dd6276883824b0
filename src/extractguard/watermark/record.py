"""The owner's record of watermarked (and control) answers, per account, in SQLite.

The audit log keeps only input *hashes*; proving a copy needs the inputs themselves, so the
gateway stores the few rows the watermark touched (``fraction`` + ``control_fraction`` of the
traffic, e.g. 1 %) with the label it served and the model's own label.  A repeated query hits
the same primary key and is stored once: the record is a set of distinct inputs, which is what
the binomial test in :mod:`extractguard.verify` counts.

Also here: the master key file (created once with mode 0600, read at gateway start).
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from extractguard.errors import ConfigurationError
from extractguard.watermark.keyed import WatermarkDecision, generate_master_key, row_digest

MARK, CONTROL = "mark", "control"


@dataclass(frozen=True)
class AccountRecord:
    """Everything recorded for one account: marked and control rows with their labels."""

    account: str
    marked_X: np.ndarray
    marked_served: np.ndarray  # the keyed wrong labels that were served
    marked_owner: np.ndarray  # the model's own labels on those rows
    control_X: np.ndarray
    control_owner: np.ndarray
    first_ts: float | None
    last_ts: float | None


class WatermarkRecord:
    """SQLite table ``watermarks``; safe to share between gateway processes (WAL, one statement per batch)."""

    def __init__(self, path: Path | str, read_only: bool = False) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        if read_only:
            if not self.path.is_file():
                raise ConfigurationError(f"no watermark record at {self.path}")
            self._conn = sqlite3.connect(f"file:{self.path.resolve()}?mode=ro", uri=True, check_same_thread=False)
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._conn = sqlite3.connect(str(self.path), timeout=30, check_same_thread=False, isolation_level=None)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute(
            "CREATE TABLE IF NOT EXISTS watermarks (account TEXT NOT NULL, row_sha256 TEXT NOT NULL, kind TEXT NOT NULL, "
            "ts REAL NOT NULL, n_features INTEGER NOT NULL, input BLOB NOT NULL, served_label INTEGER NOT NULL, "
            "owner_label INTEGER NOT NULL, cell_sha256 TEXT NOT NULL, PRIMARY KEY (account, row_sha256))"
        )

    def add(self, account: str, X: np.ndarray, decision: WatermarkDecision, ts: float | None = None) -> int:
        """Store the marked and control rows of one answered batch; returns how many were new."""
        rows = np.flatnonzero(decision.marked | decision.control)
        if rows.size == 0:
            return 0
        now = time.time() if ts is None else ts
        X = np.asarray(X, dtype=np.float64).reshape(len(X), -1)
        values = [
            (account, row_digest(X[i]), MARK if decision.marked[i] else CONTROL, now, int(X.shape[1]),
             np.ascontiguousarray(X[i], dtype="<f8").tobytes(), int(decision.served_labels[i]), int(decision.owner_labels[i]),
             decision.cells[i])
            for i in rows
        ]
        with self._lock:
            before = self._conn.total_changes
            self._conn.executemany("INSERT OR IGNORE INTO watermarks VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", values)
            return self._conn.total_changes - before

    def accounts(self) -> list[str]:
        with self._lock:
            return [r[0] for r in self._conn.execute("SELECT DISTINCT account FROM watermarks ORDER BY account")]

    def load(self, account: str) -> AccountRecord:
        """The account's marked and control rows, one per keyed cell (the first served).

        Rows sharing a cell (LSH mode) share one keyed label, so they are one trial, not several:
        keeping one row per cell keeps the binomial tests of :mod:`extractguard.verify` exact.
        """
        with self._lock:
            rows = self._conn.execute(
                "SELECT kind, ts, n_features, input, served_label, owner_label, cell_sha256 FROM watermarks "
                "WHERE account = ? ORDER BY ts, row_sha256",
                (account,),
            ).fetchall()
        if not rows:
            raise ConfigurationError(f"the watermark record has no rows for account {account!r}")
        width = rows[0][2]

        def pick(kind: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
            seen: set[str] = set()
            sel = []
            for r in rows:
                if r[0] == kind and r[6] not in seen:
                    seen.add(r[6])
                    sel.append(r)
            X = np.array([np.frombuffer(r[3], dtype="<f8") for r in sel]).reshape(len(sel), width)
            return X, np.array([r[4] for r in sel], dtype=np.int64), np.array([r[5] for r in sel], dtype=np.int64)

        mX, ms, mo = pick(MARK)
        cX, _, co = pick(CONTROL)
        return AccountRecord(account, mX, ms, mo, cX, co, rows[0][1], rows[-1][1])

    def close(self) -> None:
        with self._lock:
            self._conn.close()


def load_or_create_master_key(path: Path | str, create: bool = True) -> bytes:
    """Read the watermark master key (hex in a file); create it (mode 0600) on first use."""
    p = Path(path)
    if p.is_file():
        try:
            key = bytes.fromhex(p.read_text().strip())
        except ValueError:
            raise ConfigurationError(f"{p} is not a watermark key (expected hex)") from None
        if len(key) < 16:
            raise ConfigurationError(f"{p}: the watermark master key must be at least 16 bytes")
        return key
    if not create:
        raise ConfigurationError(f"no watermark key at {p}")
    p.parent.mkdir(parents=True, exist_ok=True)
    key = generate_master_key()
    try:
        fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another gateway process created it first: use theirs
        return load_or_create_master_key(p, create=False)
    with os.fdopen(fd, "w") as fh:
        fh.write(key.hex() + "\n")
    return key
