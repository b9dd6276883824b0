"""A durable transcript of every query sent to a target and every answer it gave.

Paid APIs make a lost answer a lost coin, so each HTTP request's rows and answer are committed to
SQLite (stdlib ``sqlite3``: embedded, crash-safe, one file to archive with the report) *before*
the attack sees the answer.  A campaign killed at any point replays committed answers on
``--resume`` instead of sending those rows again.

Entries are keyed by ``(run, call, part)``: the attack run (e.g. ``attack:knockoff``), the index
of the oracle call within that run, and the index of the HTTP request within that call.  A
deterministic attack with the same seed asks the same rows in the same calls, so the key finds
the stored answer; the rows' SHA-256 is checked too, so a run that asks something different is
stopped instead of being fed someone else's answer.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import sqlite3
from pathlib import Path
from typing import Any

import numpy as np

from extractguard.errors import ConfigurationError
from extractguard.oracle.answer import Answer, OutputSpec

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS sessions (
    id INTEGER PRIMARY KEY AUTOINCREMENT, started_at TEXT NOT NULL, resumed INTEGER NOT NULL,
    authorization TEXT NOT NULL, settings TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS queries (
    run TEXT NOT NULL, call INTEGER NOT NULL, part INTEGER NOT NULL,
    purpose TEXT NOT NULL, n_rows INTEGER NOT NULL, rows_sha256 TEXT NOT NULL,
    rows BLOB NOT NULL, answer TEXT NOT NULL, attempts INTEGER NOT NULL, answered_at TEXT NOT NULL,
    PRIMARY KEY (run, call, part)
);
"""


def rows_digest(rows: np.ndarray) -> str:
    """SHA-256 of the float64 rows, shape included: the identity of a request's content."""
    arr = np.ascontiguousarray(rows, dtype=np.float64)
    h = hashlib.sha256(str(arr.shape).encode())
    h.update(arr.tobytes())
    return h.hexdigest()


def answer_to_json(answer: Answer) -> str:
    """Exact JSON form of an answer (Python's float repr round-trips float64 bit for bit)."""

    def arr(a: np.ndarray | None) -> Any:
        return None if a is None else np.asarray(a).tolist()

    return json.dumps(
        {
            "spec": str(answer.spec),
            "n_classes": answer.n_classes,
            "labels": arr(answer.labels),
            "scores": arr(answer.scores),
            "top_indices": arr(answer.top_indices),
            "top_values": arr(answer.top_values),
        }
    )


def answer_from_json(text: str) -> Answer:
    d = json.loads(text)

    def arr(v: Any, dtype: Any) -> np.ndarray | None:
        return None if v is None else np.asarray(v, dtype=dtype)

    labels = arr(d["labels"], np.int64)
    assert labels is not None
    return Answer(
        spec=OutputSpec.parse(d["spec"]),
        n_classes=int(d["n_classes"]),
        labels=labels,
        scores=arr(d["scores"], np.float64),
        top_indices=arr(d["top_indices"], np.int64),
        top_values=arr(d["top_values"], np.float64),
    )


class SqliteTranscript:
    """Every request's rows and answer, committed one by one.

    Also usable as the local :class:`~extractguard.oracle.Oracle`'s ``transcript`` (``record``),
    which files each batch under run ``"local"``.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(str(self.path), isolation_level=None)
            # WAL: a committed row survives the process being killed at any instant.
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.executescript(_SCHEMA)
        except sqlite3.DatabaseError as exc:
            raise ConfigurationError(f"transcript {self.path} is not a usable SQLite file: {exc}") from None
        self._local_calls = self.count_calls("local")

    # -- metadata ----------------------------------------------------------------------------
    def get_meta(self, key: str) -> Any:
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else json.loads(row[0])

    def set_meta(self, key: str, value: Any) -> None:
        self._db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, json.dumps(value)))

    def start_session(self, authorization: dict[str, Any], settings: dict[str, Any], resumed: bool) -> int:
        """Record who authorised this session of the campaign, and with which settings."""
        now = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
        cur = self._db.execute(
            "INSERT INTO sessions (started_at, resumed, authorization, settings) VALUES (?, ?, ?, ?)",
            (now, int(resumed), json.dumps(authorization), json.dumps(settings)),
        )
        return int(cur.lastrowid or 0)

    def sessions(self) -> list[dict[str, Any]]:
        rows = self._db.execute("SELECT id, started_at, resumed, authorization FROM sessions ORDER BY id").fetchall()
        return [{"id": r[0], "started_at": r[1], "resumed": bool(r[2]), "authorization": json.loads(r[3])} for r in rows]

    # -- queries -----------------------------------------------------------------------------
    def lookup(self, run: str, call: int, part: int) -> tuple[str, Answer] | None:
        """The stored ``(rows digest, answer)`` for a request, or ``None`` if it was never answered."""
        row = self._db.execute(
            "SELECT rows_sha256, answer FROM queries WHERE run = ? AND call = ? AND part = ?", (run, call, part)
        ).fetchone()
        return None if row is None else (row[0], answer_from_json(row[1]))

    def commit(
        self, run: str, call: int, part: int, rows: np.ndarray, answer: Answer, purpose: str = "attack", attempts: int = 1
    ) -> None:
        """Durably store one answered request (autocommit: written when this returns)."""
        arr = np.ascontiguousarray(rows, dtype=np.float64)
        now = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="milliseconds")
        self._db.execute(
            "INSERT INTO queries (run, call, part, purpose, n_rows, rows_sha256, rows, answer, attempts, answered_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (run, call, part, purpose, int(arr.shape[0]), rows_digest(arr), arr.tobytes(), answer_to_json(answer),
             attempts, now),
        )

    def paid_rows(self, purpose: str | None = None, run: str | None = None) -> int:
        """Rows answered by the target so far (all sessions), optionally for one purpose or run."""
        sql, args = "SELECT COALESCE(SUM(n_rows), 0) FROM queries WHERE 1=1", []
        if purpose is not None:
            sql += " AND purpose = ?"
            args.append(purpose)
        if run is not None:
            sql += " AND run = ?"
            args.append(run)
        return int(self._db.execute(sql, args).fetchone()[0])

    def count_calls(self, run: str) -> int:
        row = self._db.execute("SELECT COALESCE(MAX(call) + 1, 0) FROM queries WHERE run = ?", (run,)).fetchone()
        return int(row[0])

    def runs(self) -> dict[str, int]:
        """Rows answered per run."""
        rows = self._db.execute("SELECT run, SUM(n_rows) FROM queries GROUP BY run ORDER BY run").fetchall()
        return {r[0]: int(r[1]) for r in rows}

    def rows(self, run: str) -> np.ndarray:
        """Every row asked in ``run``, in order, as flat float64 rows."""
        out = []
        for n, blob in self._db.execute(
            "SELECT n_rows, rows FROM queries WHERE run = ? ORDER BY call, part", (run,)
        ).fetchall():
            out.append(np.frombuffer(blob, dtype=np.float64).reshape(int(n), -1))
        return np.concatenate(out) if out else np.empty((0, 0))

    # -- the local Oracle's Transcript protocol ----------------------------------------------
    def record(self, X: np.ndarray, answer: Answer) -> None:
        self.commit("local", self._local_calls, 0, X, answer, purpose="attack")
        self._local_calls += 1

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> SqliteTranscript:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
