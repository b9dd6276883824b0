"""Offline forensics: the streaming detectors over a request log, accounts ranked by risk.

Three log formats:

* a gateway **audit log** (``audit.db``): who, when, and the answer served.  It stores a digest
  of the inputs, not the inputs, so detectors that need inputs (PRADA, typicality) cannot run;
  rate, label mix and, when the tier served probabilities, entropy/confidence and hardness can.
* **JSONL**: one request per line, ``{"ts": 1700000000.5 or "2026-11-23T14:00:00Z", "account":
  "alice", "inputs": [[...], ...]}`` with optional ``"probabilities"`` or ``"labels"``.
* **CSV**: one query per row with header columns ``ts``, ``account``, optional ``label``, and
  one column per input feature.

When inputs are logged without answers, the owner's model answers them (as it did online).
Every account's requests run through a fresh :class:`DetectionMonitor` in time order, so the
offline verdict is what the gateway would have concluded, query for query.
"""

from __future__ import annotations

import csv
import datetime as _dt
import json
import sqlite3
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from extractguard.detect.base import Observation
from extractguard.detect.monitor import DetectionMonitor, Risk
from extractguard.errors import DataLoadError, check_readable_file


@dataclass(frozen=True)
class LoggedRequest:
    ts: float
    account: str
    X: np.ndarray | None
    probabilities: np.ndarray | None
    labels: np.ndarray | None


def _ts(value: Any, where: str) -> float:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            pass
        try:
            return _dt.datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
        except ValueError:
            pass
    raise DataLoadError(f"{where}: 'ts' must be seconds since the epoch or an ISO 8601 time, got {value!r}")


def _is_sqlite(path: Path) -> bool:
    with path.open("rb") as fh:
        return fh.read(16) == b"SQLite format 3\x00"


def read_audit(path: Path) -> Iterator[LoggedRequest]:
    """Answered requests of a gateway audit log (detection events are skipped)."""
    try:
        conn = sqlite3.connect(f"file:{path.resolve()}?mode=ro", uri=True)
        rows = conn.execute("SELECT seq, ts, account, n_rows, output FROM audit ORDER BY seq").fetchall()
        conn.close()
    except sqlite3.DatabaseError as exc:
        raise DataLoadError(f"{path} is not a gateway audit log: {exc}") from None
    for seq, ts, account, n, output in rows:
        if n == 0:
            continue
        tensors = {}
        try:
            for t in json.loads(output):
                tensors[t["name"]] = np.asarray(t["data"], dtype=np.float64).reshape(t["shape"])
        except (ValueError, KeyError, TypeError):
            raise DataLoadError(f"{path}: record {seq} has an unreadable output") from None
        probs = tensors.get("probabilities")
        if probs is None and "logits" in tensors:
            from extractguard.oracle.answer import softmax

            probs = softmax(tensors["logits"])
        labels = tensors.get("label")
        yield LoggedRequest(float(ts), str(account), None, probs,
                            None if labels is None else labels.reshape(-1).astype(np.int64))


def read_jsonl(path: Path) -> Iterator[LoggedRequest]:
    with path.open() as fh:
        for i, line in enumerate(fh, 1):
            if not line.strip():
                continue
            where = f"{path.name} line {i}"
            try:
                rec = json.loads(line)
            except ValueError as exc:
                raise DataLoadError(f"{where}: not JSON ({exc})") from None
            if not isinstance(rec, dict) or "account" not in rec or "ts" not in rec:
                raise DataLoadError(f"{where}: each line needs 'ts' and 'account'")
            X = rec.get("inputs", rec.get("input"))
            probs, labels = rec.get("probabilities"), rec.get("labels")
            try:
                Xa = None if X is None else np.atleast_2d(np.asarray(X, dtype=np.float64))
                Pa = None if probs is None else np.atleast_2d(np.asarray(probs, dtype=np.float64))
                La = None if labels is None else np.atleast_1d(np.asarray(labels, dtype=np.int64))
            except (ValueError, TypeError):
                raise DataLoadError(f"{where}: inputs, probabilities and labels must be numeric arrays") from None
            if Xa is None and Pa is None and La is None:
                raise DataLoadError(f"{where}: needs 'inputs', 'probabilities' or 'labels'")
            yield LoggedRequest(_ts(rec["ts"], where), str(rec["account"]), Xa, Pa, La)


def read_csv(path: Path) -> Iterator[LoggedRequest]:
    with path.open(newline="") as fh:
        reader = csv.reader(fh)
        header = next(reader, None)
        if header is None or "account" not in header or "ts" not in header:
            raise DataLoadError(f"{path.name}: the header needs 'ts' and 'account' columns (one query per row)")
        ia, it = header.index("account"), header.index("ts")
        il = header.index("label") if "label" in header else None
        feats = [j for j in range(len(header)) if j not in (ia, it, il)]
        for i, row in enumerate(reader, 2):
            where = f"{path.name} line {i}"
            if len(row) != len(header):
                raise DataLoadError(f"{where}: {len(row)} fields, the header has {len(header)}")
            try:
                X = np.asarray([[float(row[j]) for j in feats]]) if feats else None
                lab = None if il is None else np.asarray([int(float(row[il]))])
            except ValueError:
                raise DataLoadError(f"{where}: feature and label values must be numbers") from None
            yield LoggedRequest(_ts(row[it], where), row[ia], X, None, lab)


def read_log(path: Path | str) -> list[LoggedRequest]:
    """Every request in an audit log, JSONL or CSV file, sorted by time."""
    p = Path(path)
    check_readable_file(p, "request log", DataLoadError)
    suffix = p.suffix.lower()
    if _is_sqlite(p):
        reqs = list(read_audit(p))
    elif suffix in (".jsonl", ".ndjson", ".json"):
        reqs = list(read_jsonl(p))
    elif suffix == ".csv":
        reqs = list(read_csv(p))
    else:
        raise DataLoadError(f"{p.name}: expected a gateway audit log (SQLite), .jsonl or .csv request log")
    if not reqs:
        raise DataLoadError(f"{p.name} holds no answered requests")
    return sorted(reqs, key=lambda r: r.ts)


def scan(requests: Iterable[LoggedRequest], monitor: DetectionMonitor, target: Any | None = None) -> list[Risk]:
    """Run ``monitor`` over ``requests``; every account's final risk, highest first.

    ``target`` (the owner's model) answers requests logged with inputs but without answers.
    """
    n_features = None if target is None else target.schema.n_features
    for r in requests:
        X, P, L = r.X, r.probabilities, r.labels
        if X is not None and n_features is not None and X.shape[1] != n_features:
            raise DataLoadError(f"account {r.account!r} at ts={r.ts}: {X.shape[1]} input features, the model takes {n_features}")
        if P is None and X is not None and target is not None:
            P = target.predict(X).probabilities
        if P is not None:
            L = P.argmax(axis=1)
        if L is None:
            raise DataLoadError(f"account {r.account!r} at ts={r.ts}: no answer logged and no model given to answer it (use --victim or --config)")
        monitor.observe_obs(r.account, Observation(L, r.ts, X, P))
    risks = [monitor.risk(a) for a in monitor.accounts()]
    return sorted(risks, key=lambda k: (-k.level, k.first_detected if k.first_detected is not None else 1 << 62, k.account))
