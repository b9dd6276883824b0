"""SQLite persistence of per-account detection state and of the responses taken.

Why SQLite: the gateway's embedded state (keys, limits, audit) already lives in SQLite files in
``state_dir``; detection state joins them as ``detect.db`` so a restart resumes every account's
windows, growing sets and sanctions.  States are fixed-size numpy arrays saved with ``np.savez``
(no pickle: a state file never executes code when loaded).
"""

from __future__ import annotations

import io
import json
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from extractguard.errors import ConfigurationError

_SCHEMA = """
CREATE TABLE IF NOT EXISTS accounts (account TEXT PRIMARY KEY, queries INTEGER NOT NULL, level REAL NOT NULL,
    first TEXT NOT NULL, signals TEXT NOT NULL, state BLOB NOT NULL, updated REAL NOT NULL);
CREATE TABLE IF NOT EXISTS actions (account TEXT PRIMARY KEY, action TEXT NOT NULL, level REAL NOT NULL,
    since REAL NOT NULL, evidence TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


def pack_states(states: dict[str, dict[str, np.ndarray]]) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **{f"{det}/{key}": arr for det, st in states.items() for key, arr in st.items()})
    return buf.getvalue()


def unpack_states(blob: bytes) -> dict[str, dict[str, np.ndarray]]:
    out: dict[str, dict[str, np.ndarray]] = {}
    with np.load(io.BytesIO(blob), allow_pickle=False) as z:
        for name in z.files:
            det, _, key = name.partition("/")
            out.setdefault(det, {})[key] = z[name]
    return out


class DetectionStore:
    """``detect.db``: one row per account (state blob + summary) and one per sanctioned account."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        try:
            self._conn = sqlite3.connect(str(self.path), timeout=30, check_same_thread=False, isolation_level=None)
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=NORMAL")
            self._conn.executescript(_SCHEMA)
        except sqlite3.DatabaseError as exc:
            raise ConfigurationError(f"{self.path} is not a detection database: {exc}") from None

    # -- account states -------------------------------------------------------------------
    def save(self, account: str, queries: int, level: float, first: dict[str, int], signals: list[dict[str, Any]],
             states: dict[str, dict[str, np.ndarray]]) -> None:
        with self._lock:
            self._conn.execute(
                "INSERT OR REPLACE INTO accounts (account, queries, level, first, signals, state, updated) VALUES (?,?,?,?,?,?,?)",
                (account, queries, level, json.dumps(first), json.dumps(signals), pack_states(states), time.time()),
            )

    def load(self, account: str) -> dict[str, Any] | None:
        with self._lock:
            row = self._conn.execute(
                "SELECT queries, level, first, signals, state FROM accounts WHERE account = ?", (account,)).fetchone()
        if row is None:
            return None
        return {"queries": int(row[0]), "level": float(row[1]), "first": json.loads(row[2]),
                "signals": json.loads(row[3]), "states": unpack_states(row[4])}

    def summaries(self) -> list[dict[str, Any]]:
        with self._lock:
            rows = self._conn.execute("SELECT account, queries, level, first, signals FROM accounts ORDER BY level DESC").fetchall()
        return [{"account": a, "queries": q, "level": lv, "first": json.loads(f), "signals": json.loads(s)} for a, q, lv, f, s in rows]

    # -- sanctions ------------------------------------------------------------------------
    def set_action(self, account: str, action: str, level: float, evidence: dict[str, Any]) -> None:
        with self._lock:
            self._conn.execute("INSERT OR REPLACE INTO actions (account, action, level, since, evidence) VALUES (?,?,?,?,?)",
                               (account, action, level, time.time(), json.dumps(evidence)))

    def actions(self) -> dict[str, dict[str, Any]]:
        with self._lock:
            rows = self._conn.execute("SELECT account, action, level, since, evidence FROM actions").fetchall()
        return {a: {"action": act, "level": lv, "since": s, "evidence": json.loads(e)} for a, act, lv, s, e in rows}

    def clear(self, account: str, state_keys: tuple[str, ...] = ()) -> bool:
        """Lift an account's sanction and forget its detection states (an operator's decision).

        ``state_keys`` are the monitor keys the account's state is stored under besides its
        name (the gateway keys states by ``tier/account``).
        """
        with self._lock:
            n = self._conn.execute("DELETE FROM actions WHERE account = ?", (account,)).rowcount
            for key in (account, *state_keys):
                n += self._conn.execute("DELETE FROM accounts WHERE account = ?", (key,)).rowcount
        return n > 0

    # -- meta -----------------------------------------------------------------------------
    def meta(self, key: str, default: str) -> str:
        """A persistent value, created as ``default`` on first use (e.g. the challenge secret)."""
        with self._lock:
            self._conn.execute("INSERT OR IGNORE INTO meta (key, value) VALUES (?, ?)", (key, default))
            return str(self._conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()[0])

    def close(self) -> None:
        with self._lock:
            self._conn.close()
