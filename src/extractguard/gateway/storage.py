"""A SQLite storage backend for the ``limits`` library.

Why our own: ``limits`` ships memory, Redis, Memcached and MongoDB storages but no SQLite one,
and the embedded (single-machine) gateway needs quotas that survive a restart without asking the
owner to run a database server.  Subclassing :class:`limits.storage.Storage` registers the
``sqlite://`` scheme, so ``limits.storage.storage_from_string("sqlite:///path.db")`` works like the
built-in URIs and the rest of the gateway never knows which backend it talks to.

Only the fixed-window strategy is supported (``incr``/``get``/``get_expiry``): it is what the
gateway uses for every limit and quota.  Each increment is one atomic UPSERT statement, so
several processes sharing the file still count correctly.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from limits.storage import Storage


class SQLiteStorage(Storage):
    """Fixed-window counters in one SQLite table: ``sqlite:///relative.db`` or ``sqlite:////abs.db``."""

    STORAGE_SCHEME = ["sqlite"]

    def __init__(self, uri: str | None = None, wrap_exceptions: bool = False, **options: float | str | bool) -> None:
        super().__init__(uri, wrap_exceptions=wrap_exceptions, **options)
        rest = (uri or "sqlite:///limits.db").removeprefix("sqlite://")
        path = rest[1:] if rest.startswith("/") else rest  # sqlite:///rel.db, sqlite:////abs.db
        self.path = Path(path) if path else Path("limits.db")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()  # re-entered by incr/get inside atomic()
        self._conn = sqlite3.connect(str(self.path), timeout=30, check_same_thread=False, isolation_level=None)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=NORMAL")
        self._conn.execute(
            "CREATE TABLE IF NOT EXISTS counters (key TEXT PRIMARY KEY, value INTEGER NOT NULL, expires REAL NOT NULL)"
        )

    @contextmanager
    def atomic(self) -> Iterator[None]:
        """Run several counter reads and increments as one transaction.

        The gateway checks and charges all of a request's limits inside one ``atomic()`` block:
        other threads and processes cannot spend the same headroom between the check and the
        charge, and the request costs one commit instead of one per limit.
        """
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")

    @property
    def base_exceptions(self) -> type[Exception]:
        return sqlite3.Error

    def incr(self, key: str, expiry: int, amount: int = 1) -> int:
        # One UPSERT ... RETURNING statement is one atomic SQLite transaction (autocommit, or part
        # of an enclosing atomic() block): a
        # counter whose window has expired restarts at ``amount``, otherwise it grows.  A single
        # statement instead of BEGIN/SELECT/INSERT/COMMIT keeps the per-request cost low.
        now = time.time()
        with self._lock:
            row = self._conn.execute(
                "INSERT INTO counters (key, value, expires) VALUES (?1, ?2, ?3) "
                "ON CONFLICT(key) DO UPDATE SET "
                "value = CASE WHEN counters.expires <= ?4 THEN excluded.value ELSE counters.value + excluded.value END, "
                "expires = CASE WHEN counters.expires <= ?4 THEN excluded.expires ELSE counters.expires END "
                "RETURNING value",
                (key, amount, now + expiry, now),
            ).fetchone()
        return int(row[0])

    def get(self, key: str) -> int:
        with self._lock:
            row = self._conn.execute("SELECT value, expires FROM counters WHERE key = ?", (key,)).fetchone()
        return 0 if row is None or row[1] <= time.time() else int(row[0])

    def get_expiry(self, key: str) -> float:
        with self._lock:
            row = self._conn.execute("SELECT expires FROM counters WHERE key = ?", (key,)).fetchone()
        return time.time() if row is None else float(row[0])

    def check(self) -> bool:
        try:
            with self._lock:
                self._conn.execute("SELECT 1").fetchone()
            return True
        except sqlite3.Error:
            return False

    def reset(self) -> int | None:
        with self._lock:
            n = self._conn.execute("DELETE FROM counters").rowcount
        return int(n)

    def clear(self, key: str) -> None:
        with self._lock:
            self._conn.execute("DELETE FROM counters WHERE key = ?", (key,))

    def close(self) -> None:
        with self._lock:
            self._conn.close()
