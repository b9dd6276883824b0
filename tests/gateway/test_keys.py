"""API keys (gateway/keys.py) without the app: what is stored, who is admitted, revocation.

Written for the mutation testing of issue 23: each test names the promise it protects.
"""

from __future__ import annotations

import hashlib
import re
import sqlite3
import threading
import time
from pathlib import Path

import pytest

from extractguard.errors import ConfigurationError
from extractguard.gateway.keys import Account, KeyInfo, KeyStore

KEY = re.compile(r"eg_([0-9a-f]{16})_([A-Za-z0-9_-]{43})")


@pytest.fixture()
def store(tmp_path: Path) -> KeyStore:
    return KeyStore(tmp_path / "keys.db")


def test_a_key_is_prefix_public_id_and_a_256_bit_secret(store: KeyStore) -> None:
    key = store.create("acme", "pro")
    m = KEY.fullmatch(key)
    assert m is not None, key
    assert store.get(m.group(1)) is not None


def test_only_the_sha256_of_the_key_is_stored(store: KeyStore, tmp_path: Path) -> None:
    before = time.time()
    key = store.create("  acme ", "pro")
    key_id = key.split("_")[1]
    with sqlite3.connect(tmp_path / "keys.db") as c:
        rows = c.execute("SELECT key_id, digest, account, tier, created, revoked FROM api_keys").fetchall()
    assert len(rows) == 1
    kid, digest, account, tier, created, revoked = rows[0]
    assert (kid, bytes(digest), account, tier, revoked) == (key_id, hashlib.sha256(key.encode()).digest(), "acme", "pro", None)
    assert before - 1 <= created <= time.time() + 1
    assert key.encode() not in Path(tmp_path / "keys.db").read_bytes()


@pytest.mark.parametrize("account", ["", "   "])
def test_an_account_name_is_required(store: KeyStore, account: str) -> None:
    with pytest.raises(ConfigurationError, match="account name is required"):
        store.create(account, "pro")
    assert store.list() == []


def test_a_valid_key_authenticates_as_its_account_and_tier(store: KeyStore) -> None:
    key = store.create("acme", "pro")
    assert store.authenticate(key) == Account(key.split("_")[1], "acme", "pro")


def test_a_secret_containing_underscores_still_authenticates(store: KeyStore) -> None:
    """token_urlsafe uses '_', so the secret may contain the separator: only the first two parts are structure."""
    keys = [store.create(f"a{i}", "pro") for i in range(60)]
    with_underscore = [k for k in keys if "_" in k.split("_", 2)[2]]
    assert with_underscore  # P(none of 60) is about 2**-60
    for k in with_underscore:
        assert store.authenticate(k) is not None


def test_forged_and_malformed_keys_are_refused(store: KeyStore) -> None:
    key = store.create("acme", "pro")
    _, key_id, secret = key.split("_", 2)
    other = "A" if secret[0] != "A" else "B"
    for bad in (
        f"eg_{key_id}_{other}{secret[1:]}",  # right id, wrong secret
        f"eg_{key_id}_{secret[:-1]}",  # a prefix of the secret
        f"xx_{key_id}_{secret}",  # wrong prefix (the digest would not match anyway: refused before)
        f"eg_{key_id}",  # no secret
        f"eg_{key_id[:-1]}_{secret}",  # short id
        f"eg_{key_id}0_{secret}",  # long id
        f"eg_{'0' * 16}_{secret}",  # unknown id
        "", "eg", "eg__",
    ):
        assert store.authenticate(bad) is None, bad


@pytest.mark.parametrize("prefix", ["xx", "aa", "EG", "e"])
def test_the_prefix_is_checked_before_the_row_is_read(store: KeyStore, tmp_path: Path, prefix: str) -> None:
    """A row whose digest is of a key with another prefix is still refused: the prefix is part of the format."""
    key = store.create("acme", "pro")
    forged = prefix + key[2:]
    with sqlite3.connect(tmp_path / "keys.db") as c:
        c.execute("UPDATE api_keys SET digest = ?", (hashlib.sha256(forged.encode()).digest(),))
    assert store.authenticate(forged) is None


def test_a_revoked_key_is_refused_by_the_next_request_in_every_process(tmp_path: Path) -> None:
    a, b = KeyStore(tmp_path / "keys.db"), KeyStore(tmp_path / "keys.db")
    key = a.create("acme", "pro")
    assert b.authenticate(key) is not None
    info = a.revoke(key.split("_")[1])
    assert info.revoked is not None and info.account == "acme"
    assert b.authenticate(key) is None and a.authenticate(key) is None


def test_a_key_can_be_revoked_by_the_full_key_and_revocation_keeps_its_first_time(store: KeyStore) -> None:
    key = store.create("acme", "pro")
    first = store.revoke(key)
    assert first.key_id == key.split("_")[1] and first.revoked is not None
    time.sleep(0.01)
    again = store.revoke(first.key_id)
    assert again.revoked == first.revoked
    assert store.authenticate(key) is None


def test_revoking_an_unknown_key_is_one_clear_error(store: KeyStore) -> None:
    with pytest.raises(ConfigurationError, match="no API key with id 'nope'"):
        store.revoke("nope")
    with pytest.raises(ConfigurationError, match="no API key with id '0000000000000000'"):
        store.revoke(f"eg_{'0' * 16}_secret")


def test_other_keys_survive_a_revocation(store: KeyStore) -> None:
    keep, drop = store.create("acme", "pro"), store.create("acme", "pro")
    store.revoke(drop)
    assert store.authenticate(keep) is not None


def test_keys_are_listed_oldest_first_without_secrets(store: KeyStore) -> None:
    made = []
    for name in ("c", "a", "b"):
        made.append(store.create(name, "free"))
        time.sleep(0.005)
    listed = store.list()
    assert [k.account for k in listed] == ["c", "a", "b"]
    assert all(isinstance(k, KeyInfo) and k.tier == "free" and k.revoked is None for k in listed)
    assert [k.key_id for k in listed] == [m.split("_")[1] for m in made]
    assert store.get("missing") is None


def test_the_store_creates_its_directory_and_uses_wal(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b" / "keys.db"
    KeyStore(path).create("acme", "pro")
    with sqlite3.connect(path) as c:
        assert c.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_the_store_is_usable_from_other_threads(store: KeyStore) -> None:
    key = store.create("acme", "pro")
    out: list[object] = []
    t = threading.Thread(target=lambda: out.append(store.authenticate(key)))
    t.start()
    t.join()
    assert out and out[0] is not None


def test_a_closed_store_is_closed(store: KeyStore) -> None:
    store.close()
    with pytest.raises(sqlite3.ProgrammingError):
        store.list()


@pytest.mark.parametrize("prefix", ["zz", "aa"])
def test_only_a_key_with_our_prefix_is_read_as_a_key_when_revoking(store: KeyStore, prefix: str) -> None:
    """``revoke`` takes an id or a whole key; a string that merely looks like one is an id, so no key is revoked by mistake."""
    key = store.create("acme", "pro")
    lookalike = f"{prefix}_{key.split('_')[1]}_x"
    with pytest.raises(ConfigurationError, match=f"no API key with id '{lookalike}'"):
        store.revoke(lookalike)
    assert store.authenticate(key) is not None


def test_a_key_without_its_secret_is_not_read_as_a_key_when_revoking(store: KeyStore) -> None:
    key = store.create("acme", "pro")
    partial = "_".join(key.split("_")[:2])  # eg_<id>: neither an id nor a key
    with pytest.raises(ConfigurationError, match=f"no API key with id '{partial}'"):
        store.revoke(partial)
    assert store.authenticate(key) is not None


def test_an_authenticated_identity_and_a_listed_key_cannot_be_altered() -> None:
    import dataclasses

    who = Account("0" * 16, "acme", "free")
    with pytest.raises(dataclasses.FrozenInstanceError):
        who.tier = "pro"  # type: ignore[misc]
    listed = KeyInfo("0" * 16, "acme", "free", 0.0, None)
    with pytest.raises(dataclasses.FrozenInstanceError):
        listed.revoked = None  # type: ignore[misc]
