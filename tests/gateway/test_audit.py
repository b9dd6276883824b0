"""The audit log's hash chain (gateway/audit.py), tested on the log itself, without a gateway.

Every stored field that the record hash covers is edited in turn, in the newest record (which
no later record links to, so only its own hash can catch the edit) and in a middle one; the whole
hash is compared, not a prefix; the head row, deletions and an empty log are checked too.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import sqlite3
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from extractguard.errors import ConfigurationError
from extractguard.gateway.audit import GENESIS, AuditLog, input_digest, record_hash, verify_file

ROWS = np.array([[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3], [5.9, 3.0, 4.2, 1.5]])

#: A different value for every field the record hash covers (seq and prev_hash have their own tests).
EDITS: dict[str, Any] = {
    "ts": 1.5,
    "account": "mallory",
    "key_id": "ffffffffffffffff",
    "tier": "raw",
    "model": "other",
    "client_ip": "10.9.9.9",
    "n_rows": 99,
    "input_sha256": "ab" * 32,
    "output": "[]",
    "request_id": "req-forged",
}


def _log(tmp_path: Path, n: int = 4) -> Path:
    log = AuditLog(tmp_path / "audit.db")
    for i in range(n):
        log.append(account=f"acct-{i % 2}", key_id=f"{i:016x}", tier="free", model="iris", client_ip=f"10.0.0.{i + 1}",
                   X=ROWS[: 1 + i % 3], output=[{"name": "label", "data": [i]}], ts=1000.0 + i, request_id=f"req-{i}")
    log.close()
    return tmp_path / "audit.db"


def _sql(db: Path, statement: str, *args: Any) -> None:
    with sqlite3.connect(db) as c:
        c.execute(statement, args)


def test_an_untouched_log_verifies_and_reports_its_head(tmp_path: Path) -> None:
    db = _log(tmp_path)
    log = AuditLog(db, read_only=True)
    recs = log.records()
    result = log.verify()
    assert result.ok and result.records == 4 and result.bad_seq is None and result.problem == ""
    assert result.head_hash == recs[-1]["hash"] == record_hash(recs[-1])
    assert [r["seq"] for r in recs] == [1, 2, 3, 4]
    assert recs[0]["prev_hash"] == "0" * 64 and all(recs[i]["prev_hash"] == recs[i - 1]["hash"] for i in range(1, 4))
    assert recs[2]["input_sha256"] == input_digest(ROWS) and recs[2]["n_rows"] == 3
    assert recs[3]["client_ip"] == "10.0.0.4" and recs[3]["request_id"] == "req-3"
    log.close()
    assert verify_file(db) == result
    with pytest.raises(dataclasses.FrozenInstanceError):
        result.ok = False  # type: ignore[misc]  # a verdict on evidence is not edited after the fact


def test_an_empty_log_verifies(tmp_path: Path) -> None:
    log = AuditLog(tmp_path / "audit.db")
    result = log.verify()
    assert result.ok and result.records == 0 and result.head_hash == GENESIS
    log.close()


@pytest.mark.parametrize("seq", [4, 2], ids=["newest", "middle"])
@pytest.mark.parametrize("field", list(EDITS))
def test_every_hashed_field_is_tamper_evident(tmp_path: Path, field: str, seq: int) -> None:
    """Editing any field the hash covers, in any record including the newest, names that record."""
    db = _log(tmp_path)
    _sql(db, f"UPDATE audit SET {field} = ? WHERE seq = ?", EDITS[field], seq)
    result = verify_file(db)
    assert not result.ok
    assert result.bad_seq == seq and result.problem == f"record {seq} was edited (its hash does not match its contents)"
    assert result.records == 4


def test_edits_to_the_newest_record_are_caught_by_its_own_hash(tmp_path: Path) -> None:
    """No later record links to the newest one and the head holds its *stored* hash: only its own hash guards it."""
    db = _log(tmp_path)
    _sql(db, "UPDATE audit SET output = '[]', client_ip = '1.2.3.4' WHERE seq = 4")
    result = verify_file(db)
    assert not result.ok and result.bad_seq == 4 and "record 4 was edited" in result.problem


def test_the_whole_hash_is_compared_not_a_prefix(tmp_path: Path) -> None:
    """A forged hash that shares its first hex characters with the true one (cheap to find for a
    short prefix) is refused: the newest record's stored hash, and the head with it, are replaced."""
    db = _log(tmp_path)
    true = AuditLog(db, read_only=True).records()[-1]["hash"]
    for keep in (8, 16, 63):
        forged = true[:keep] + ("0" if true[keep] != "0" else "1") + true[keep + 1:]
        _sql(db, "UPDATE audit SET hash = ? WHERE seq = 4", forged)
        _sql(db, "UPDATE head SET hash = ? WHERE id = 1", forged)
        result = verify_file(db)
        assert not result.ok and result.bad_seq == 4 and "record 4 was edited" in result.problem, keep


@pytest.mark.parametrize("seq", [1, 2, 3])
def test_a_rehashed_edit_breaks_the_next_link(tmp_path: Path, seq: int) -> None:
    """Recomputing the edited record's own hash still breaks the next record's link, which names it."""
    db = _log(tmp_path)
    rec = AuditLog(db, read_only=True).records()[seq - 1]
    rec["client_ip"] = "6.6.6.6"
    _sql(db, "UPDATE audit SET client_ip = ?, hash = ? WHERE seq = ?", "6.6.6.6", record_hash(rec), seq)
    result = verify_file(db)
    assert not result.ok and result.bad_seq == seq
    assert result.problem == f"record {seq} was edited or replaced (record {seq + 1} no longer links to it)"


@pytest.mark.parametrize("forged", ["0" * 64, "f" * 64])
def test_a_forged_link_is_caught_even_when_its_record_is_rehashed(tmp_path: Path, forged: str) -> None:
    """Record 4 re-pointed at a forged predecessor hash (below or above the true one) and rehashed."""
    db = _log(tmp_path)
    rec = AuditLog(db, read_only=True).records()[3]
    rec["prev_hash"] = forged
    _sql(db, "UPDATE audit SET prev_hash = ?, hash = ? WHERE seq = 4", forged, record_hash(rec))
    _sql(db, "UPDATE head SET hash = ? WHERE id = 1", record_hash(rec))
    result = verify_file(db)
    assert not result.ok and result.bad_seq == 3
    assert result.problem == "record 3 was edited or replaced (record 4 no longer links to it)"


def test_a_long_log_verifies_and_its_sequence_is_compared_by_value(tmp_path: Path) -> None:
    log = AuditLog(tmp_path / "audit.db")
    for i in range(300):
        log.append(account="a", key_id="k", tier="t", model="m", client_ip="ip", X=ROWS[:1], output=[i], ts=float(i))
    result = log.verify()
    assert result.ok and result.records == 300
    log.close()


def test_a_failed_append_leaves_no_open_transaction(tmp_path: Path) -> None:
    """An append that fails inside its transaction rolls back: the log stays writable and intact."""
    log = AuditLog(tmp_path / "audit.db")
    log.append(account="a", key_id="k", tier="t", model="m", client_ip="ip", X=ROWS, output=[])
    with pytest.raises(TypeError):
        log.append(account="a", key_id="k", tier="t", model="m", client_ip="ip", X=ROWS, output=[],
                   request_id=object())  # type: ignore[arg-type]  # not JSON: the record hash fails mid-transaction
    log.append(account="b", key_id="k", tier="t", model="m", client_ip="ip", X=ROWS, output=[])
    assert [r["seq"] for r in log.records()] == [1, 2] and log.verify().ok
    log.close()


def test_the_log_is_usable_from_other_threads(tmp_path: Path) -> None:
    """The gateway appends from its worker threads; a read-only log is verified wherever it was opened."""
    import threading

    log = AuditLog(tmp_path / "audit.db")
    threads = [threading.Thread(target=lambda i=i: log.append(account=f"a{i}", key_id="k", tier="t", model="m",
                                                               client_ip="ip", X=ROWS, output=[])) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    ro = AuditLog(tmp_path / "audit.db", read_only=True)
    out: list[Any] = []
    reader = threading.Thread(target=lambda: out.append(ro.verify()))
    reader.start()
    reader.join()
    assert out and out[0].ok and out[0].records == 4 and len(log.records()) == 4
    ro.close()
    log.close()


def test_a_log_from_before_request_ids_gains_the_column_and_still_verifies(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    db = _log(tmp_path)
    with sqlite3.connect(db) as c:  # the layout before the column existed, records without request ids
        c.execute("UPDATE audit SET request_id = NULL")
        c.execute("ALTER TABLE audit DROP COLUMN request_id")
    with sqlite3.connect(db) as c:  # rechain the records as they were hashed then
        prev = GENESIS
        for seq in range(1, 5):
            rec = dict(zip(("seq", "ts", "account", "key_id", "tier", "model", "client_ip", "n_rows", "input_sha256", "output"),
                           c.execute("SELECT seq, ts, account, key_id, tier, model, client_ip, n_rows, input_sha256, output "
                                     "FROM audit WHERE seq = ?", (seq,)).fetchone()))
            rec["prev_hash"] = prev
            prev = record_hash(rec)
            c.execute("UPDATE audit SET prev_hash = ?, hash = ? WHERE seq = ?", (rec["prev_hash"], prev, seq))
        c.execute("UPDATE head SET hash = ? WHERE id = 1", (prev,))
    assert verify_file(db).ok  # read-only: verified as it is, without the column
    log = AuditLog(db)
    assert log.verify().ok and log.records()[0]["request_id"] is None
    log.append(account="new", key_id="k", tier="t", model="m", client_ip="ip", X=ROWS, output=[], request_id="r-5")
    assert log.verify().ok and log.records()[-1]["request_id"] == "r-5"
    log.close()
    # A second replica that saw the old layout but lost the race to add the column opens fine.
    real = AuditLog._stored_columns
    calls: list[int] = []

    def stale(self: AuditLog) -> tuple[str, ...]:
        calls.append(1)
        cols = real(self)
        return tuple(c for c in cols if c != "request_id") if len(calls) == 1 else cols

    monkeypatch.setattr(AuditLog, "_stored_columns", stale)
    again = AuditLog(db)
    assert again.verify().ok and again.records()[-1]["request_id"] == "r-5"
    again.close()


def test_a_sqlite_file_without_an_audit_table_is_refused(tmp_path: Path) -> None:
    with sqlite3.connect(tmp_path / "other.db") as c:
        c.execute("CREATE TABLE t (x)")
    with pytest.raises(ConfigurationError, match="other.db is not an audit database"):
        verify_file(tmp_path / "other.db")


def test_verification_never_writes_to_the_evidence(tmp_path: Path) -> None:
    db = _log(tmp_path)
    before = db.read_bytes()
    log = AuditLog(db, read_only=True)
    assert log.verify().ok
    with pytest.raises(sqlite3.OperationalError, match="readonly"):
        log.append(account="x", key_id="k", tier="t", model="m", client_ip="ip", X=ROWS, output=[])
    log.close()
    assert verify_file(db).ok and db.read_bytes() == before


def test_edited_links_and_sequence_numbers_are_caught(tmp_path: Path) -> None:
    db = _log(tmp_path)
    _sql(db, "UPDATE audit SET prev_hash = ? WHERE seq = 4", "cd" * 32)
    assert verify_file(db).bad_seq == 4 and not verify_file(db).ok
    db2 = _log(tmp_path / "b")
    _sql(db2, "UPDATE audit SET seq = 7 WHERE seq = 3")
    result = verify_file(db2)
    assert not result.ok and result.bad_seq == 3 and result.problem == "record 3 is missing (next stored record is 4)"


@pytest.mark.parametrize(("statement", "bad_seq", "problem"), [
    ("DELETE FROM audit WHERE seq = 4", 4, "records after 3 are missing (the head says the log ends at record 4)"),
    ("DELETE FROM audit WHERE seq >= 3", 3, "records after 2 are missing (the head says the log ends at record 4)"),
    ("UPDATE head SET seq = 5", 5, "records after 4 are missing (the head says the log ends at record 5)"),
    # a record appended behind the head's back (or a head rolled back): the counts disagree
    ("UPDATE head SET seq = 3", 5, "records after 4 are missing (the head says the log ends at record 3)"),
    ("UPDATE head SET hash = '" + "e" * 64 + "'", 5, "records after 4 are missing (the head says the log ends at record 4)"),
    ("UPDATE head SET hash = '" + "0" * 64 + "'", 5, "records after 4 are missing (the head says the log ends at record 4)"),
    ("DELETE FROM head", None, "the head row was deleted"),
    ("DELETE FROM audit WHERE seq = 1", 1, "record 1 is missing (next stored record is 2)"),
    ("UPDATE audit SET seq = 0 WHERE seq = 1", 1, "record 1 is missing (next stored record is 0)"),
])
def test_deletions_and_head_edits_are_caught(tmp_path: Path, statement: str, bad_seq: int | None, problem: str) -> None:
    db = _log(tmp_path)
    _sql(db, statement)
    result = verify_file(db)
    assert not result.ok and result.bad_seq == bad_seq and result.problem == problem


def test_the_record_hash_is_sha256_of_the_documented_canonical_json(tmp_path: Path) -> None:
    """The hash format is a promise to every log already written: SHA-256 of the sorted, compact JSON
    of the hashed fields; a record with no request id hashes exactly as before the column existed."""
    log = AuditLog(tmp_path / "audit.db")
    h = log.append(account="a", key_id="k", tier="t", model="m", client_ip="ip", X=ROWS, output=[], ts=5.0)
    h2 = log.append(account="a", key_id="k", tier="t", model="m", client_ip="ip", X=ROWS, output=[], ts=6.0, request_id="r")
    old, new = log.records()
    fields = ("seq", "ts", "account", "key_id", "tier", "model", "client_ip", "n_rows", "input_sha256", "output", "prev_hash")

    def independent(rec: dict[str, Any], extra: tuple[str, ...] = ()) -> str:
        body = json.dumps({k: rec[k] for k in fields + extra}, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(body.encode("utf-8")).hexdigest()

    assert old["request_id"] is None and h == old["hash"] == independent(old)
    assert h2 == new["hash"] == independent(new, ("request_id",)) != independent(new)
    log.close()


def test_appends_are_committed_and_reopen_as_one_chain(tmp_path: Path) -> None:
    db = _log(tmp_path / "state" / "gateway", n=2)  # the state directory is created on first use
    log = AuditLog(db)
    log.append(account="c", key_id="k", tier="t", model="m", client_ip="ip", X=ROWS[:1], output={"x": 1}, ts=7.25)
    recs = log.records()
    assert [r["seq"] for r in recs] == [1, 2, 3] and recs[2]["prev_hash"] == recs[1]["hash"]
    assert recs[2]["output"] == '{"x":1}' and recs[2]["ts"] == 7.25 and recs[2]["n_rows"] == 1
    log.append(account="c", key_id="k", tier="t", model="m", client_ip="ip", X=ROWS[:1], output=[], ts=1000.1234567)
    assert log.records()[3]["ts"] == 1000.123457  # stored to the microsecond
    with pytest.raises(TypeError):  # keyword-only: no record is written with its fields in the wrong places
        log.append("c", "k", "t", "m", "ip", ROWS, [])  # type: ignore[misc]
    assert log.verify().ok
    log.close()


def test_verify_file_refuses_what_is_not_an_audit_log(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="no audit log at"):
        verify_file(tmp_path / "missing.db")
    (tmp_path / "junk.db").write_bytes(b"not sqlite at all" * 100)
    with pytest.raises(ConfigurationError, match="is not an audit database"):
        verify_file(tmp_path / "junk.db")
