"""Evidence bundles (verify/evidence.py) built from small hand-made verdicts: every test kind
(rank, conditional, two-class control-bound, fingerprint) round-trips, and a bundle that was edited
and then *re-signed* (so the signature verifies) is still refused by the recomputation."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from extractguard.oracle.schema import InputSchema
from extractguard.oracle.targets import CallableTarget
from extractguard.verify import (
    Fingerprint,
    build_bundle,
    check_bundle,
    generate_signing_key,
    load_signing_key,
    sign_bundle,
    verify_suspect,
)
from extractguard.verify.fingerprint import null_rate
from extractguard.watermark.record import AccountRecord


def lookup_suspect(table: np.ndarray) -> CallableTarget:
    """A suspect whose answer to row ``[i]`` is ``table[i]``."""
    schema = InputSchema((1,), table.shape[1], 0.0, float(len(table)))
    return CallableTarget(lambda X: table[np.asarray(X[:, 0], dtype=int)], schema)


def record(account: str, n_marked: int, served: list[int], owner: list[int], control_owner: list[int]) -> AccountRecord:
    idx = np.arange(n_marked + len(control_owner), dtype=np.float64)[:, None]
    return AccountRecord(account, idx[:n_marked], np.array(served), np.array(owner), idx[n_marked:],
                         np.array(control_owner, dtype=np.int64), None, None)


@pytest.fixture(scope="module")
def key(tmp_path_factory: pytest.TempPathFactory) -> Any:
    return load_signing_key(generate_signing_key(tmp_path_factory.mktemp("keys") / "owner.pem")[0])


@pytest.fixture(scope="module")
def two_class(key: Any) -> dict[str, Any]:
    """A two-class copy: 18 of 20 marked rows carry the keyed label, 2 of 30 control rows disagree."""
    answers = [1] * 18 + [0, 0] + [1] + [0] * 14 + [0] + [1] * 14  # control: one disagreement each way
    rec = record("mallory", 20, [1] * 20, [0] * 20, [0] * 15 + [1] * 15)
    verdict = verify_suspect(lookup_suspect(np.eye(2)[answers]), [rec], alpha=1e-3, beta=1e-4)
    return sign_bundle(build_bundle(verdict, {"kind": "test"}), key)


@pytest.fixture(scope="module")
def ten_class(key: Any) -> dict[str, Any]:
    """A rank test, a conditional test (one-hot suspect) and a fingerprint test in one bundle each."""
    rng = np.random.default_rng(0)
    served = rng.integers(1, 10, size=30).tolist()
    scores = rng.dirichlet(np.ones(10), size=32)
    scores[np.arange(25), served[:25]] += 2.0  # the copy learned 25 of the 30 marks: some ranks above 1
    scores /= scores.sum(1, keepdims=True)
    rec = record("mallory", 30, served, [0] * 30, [0, 0])
    rank = verify_suspect(lookup_suspect(scores), [rec], alpha=1e-6)
    labels = np.array([i % 10 for i in range(32)])
    fp = Fingerprint(np.arange(32, dtype=np.float64)[:, None], labels, 0.05)
    fp.reference_agreements, fp.confidence = [10, 12], 0.95
    fp.p0 = null_rate(fp.reference_agreements, 32, fp.confidence)
    onehot = lookup_suspect(np.eye(10)[scores.argmax(1)])
    cond = verify_suspect(onehot, [rec], fingerprint=fp, alpha=1e-6)
    return {"rank": sign_bundle(build_bundle(rank, {"kind": "test"}), key),
            "conditional": sign_bundle(build_bundle(cond, {"kind": "test"}), key), "rank_verdict": rank}


def resigned(bundle: dict[str, Any], key: Any, path: list[Any], value: Any) -> list[str]:
    """Edit one field of the body and sign it again: only the recomputation can notice."""
    body = copy.deepcopy(bundle["body"])
    node = body
    for step in path[:-1]:
        node = node[step]
    node[path[-1]] = value
    problems = check_bundle(sign_bundle(body, key))
    assert not any("signature" in p for p in problems)
    return problems


def test_every_kind_of_test_round_trips_through_a_bundle(two_class: dict[str, Any], ten_class: dict[str, Any]) -> None:
    t = two_class["body"]["tests"][0]
    assert t["method"] == "control-bound" and (t["k"], t["n"]) == (18, 20) and t["beta"] == 1e-4
    assert check_bundle(two_class) == []
    assert two_class["body"]["verdict"]["is_copy"] and two_class["body"]["verdict"]["p_value"] >= 1e-4
    rank, cond = ten_class["rank"]["body"], ten_class["conditional"]["body"]
    assert rank["tests"][0]["method"] == "rank" and rank["verdict"]["is_copy"] and 25 <= rank["tests"][0]["k"] < 30
    assert [t.get("method") for t in cond["tests"]] == ["conditional", None] and cond["tests"][1]["name"] == "fingerprint"
    assert check_bundle(ten_class["rank"]) == [] and check_bundle(ten_class["conditional"]) == []
    for bundle in (two_class, ten_class["rank"], ten_class["conditional"]):  # as a third party reads it: parsed JSON
        assert check_bundle(json.loads(json.dumps(bundle))) == []


def test_a_resigned_bundle_with_an_edited_input_is_refused(two_class: dict[str, Any], ten_class: dict[str, Any], key: Any) -> None:
    """The signature covers what the bundle *says*; the input hashes tie it to what was *asked*."""
    for bundle in (two_class, ten_class["rank"], ten_class["conditional"]):
        t0 = bundle["body"]["tests"][0]
        problems = resigned(bundle, key, ["tests", 0, "inputs", 3, 0], t0["inputs"][3][0] + 0.5)
        assert any("input 3 does not match its SHA-256 (1 inputs differ)" in p for p in problems), problems
        body = copy.deepcopy(bundle["body"])
        body["tests"][0]["control_inputs"][1][0] += 0.5
        body["tests"][0]["control_inputs"][0][0] += 0.5
        problems = check_bundle(sign_bundle(body, key))
        assert any("control input 0 does not match its SHA-256" in p for p in problems), problems  # the first named
    fp = ten_class["conditional"]["body"]["tests"][1]
    problems = resigned(ten_class["conditional"], key, ["tests", 1, "inputs", 0, 0], fp["inputs"][0][0] - 1.0)
    assert any(p.startswith("test 2 (fingerprint): input 0 does not match its SHA-256") for p in problems), problems


@pytest.mark.parametrize(("path", "value", "named"), [
    (["tests", 0, "k"], 19, "recorded k = 19 but the answers give 18"),
    (["tests", 0, "n"], 25, "recorded n = 25 but the answers give 20"),
    (["tests", 0, "beta"], 1e-9, "recorded p0"),  # a smaller miss probability: a different bound and p-value
    (["tests", 0, "control_suspect_labels", 0], 0, "recorded p0"),  # hide the control disagreement
    (["tests", 0, "p_value"], 1e-12, "recorded p-value 1e-12"),
    (["tests", 0, "suspect_labels", 19], 1, "recorded k = 18 but the answers give 19"),
    (["verdict", "p_value"], 1e-9, "verdict p-value 1e-09"),
    (["verdict", "is_copy"], False, "the verdict does not follow from the tests and alpha"),
    (["alpha"], 1e-9, "the verdict does not follow from the tests and alpha"),
])
def test_a_resigned_two_class_bundle_is_recomputed(two_class: dict[str, Any], key: Any, path: list[Any], value: Any,
                                                   named: str) -> None:
    problems = resigned(two_class, key, path, value)
    assert any(named in p for p in problems), problems


def test_a_resigned_rank_bundle_is_recomputed(ten_class: dict[str, Any], key: Any) -> None:
    t0 = ten_class["rank"]["body"]["tests"][0]
    row = list(t0["suspect_scores"][0])
    top = int(np.argmax(row))
    assert top != 0
    row[0], row[top] = row[top], row[0]  # the owner's label now on top: no longer the recorded answer
    problems = resigned(ten_class["rank"], key, ["tests", 0, "suspect_scores", 0], row)
    assert any("scores do not match its labels" in p for p in problems), problems
    problems = resigned(ten_class["rank"], key, ["tests", 0, "suspect_scores"], [r + [0.0] for r in t0["suspect_scores"]])
    assert any("scores do not match its labels" in p for p in problems), problems  # an 11th class appeared
    problems = resigned(ten_class["rank"], key, ["tests", 0, "n_classes"], 11)
    assert any("scores do not match its labels" in p for p in problems), problems
    problems = resigned(ten_class["conditional"], key, ["tests", 0, "owner_labels", 0], t0["expected_labels"][0])
    # Every marked row now both carries the keyed label and agrees with the owner: inconsistent, refused.
    assert any(p.startswith("test 1 (watermark, account 'mallory'): ") for p in problems), problems
    problems = resigned(ten_class["conditional"], key, ["tests", 1, "reference_agreements"], [1, 1])
    assert any("test 2 (fingerprint" in p and "p0" in p for p in problems), problems


def test_unsigned_edits_and_malformed_bundles(two_class: dict[str, Any], tmp_path: Path) -> None:
    b = copy.deepcopy(two_class)
    b["body"]["notes"] = {"added": True}
    problems = check_bundle(b)
    assert "body_sha256 does not match the body (the body was edited)" in problems
    assert any("signature does not verify" in p for p in problems)
    for other in ("00" * 32, "ff" * 32):
        assert check_bundle(two_class, public_key_hex=other) == [
            "the bundle was signed with a different key than the one given (--public-key)"]
    assert check_bundle(two_class, public_key_hex=two_class["signature"]["public_key"]) == []
    assert check_bundle([]) == ["not an evidence bundle (format is not 'extractguard-evidence/1')"]
    for fmt in ("extractguard-evidence/0", "extractguard-evidence/2"):
        assert check_bundle({**two_class, "format": fmt}) == ["not an evidence bundle (format is not 'extractguard-evidence/1')"]
    assert check_bundle({"format": "extractguard-evidence/1"}) == ["the bundle has no body or no signature"]
    assert check_bundle({**two_class, "signature": None}) == ["the bundle has no body or no signature"]
    b = copy.deepcopy(two_class)
    del b["body"]["tests"][0]["k"]
    assert any("malformed (KeyError" in p for p in check_bundle(b))
    b["body"]["tests"] = []
    assert "the body lists no tests" in check_bundle(b)


def test_the_signature_is_ed25519_over_the_documented_canonical_json(two_class: dict[str, Any]) -> None:
    """A third party can check a bundle with any JSON library and any Ed25519 implementation."""
    import hashlib
    import json

    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    data = json.dumps(two_class["body"], sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode("ascii")
    assert two_class["format"] == "extractguard-evidence/1" and two_class["body_sha256"] == hashlib.sha256(data).hexdigest()
    sig = two_class["signature"]
    assert sig["algorithm"] == "Ed25519"
    Ed25519PublicKey.from_public_bytes(bytes.fromhex(sig["public_key"])).verify(bytes.fromhex(sig["value"]), data)
    body = two_class["body"]
    assert body["tool"]["name"] == "extractguard" and body["suspect"] == {"kind": "test"} and body["notes"] == {}
    assert body["alpha"] == 1e-3 and body["verdict"]["statement"].startswith("COPY: the watermark test (account 'mallory')")
    t = body["tests"][0]
    assert t["p_value_bonferroni"] == t["p_value"] and t["n_classes"] == 2 and len(t["control_input_sha256"]) == 30


def test_bundle_files_round_trip_and_bad_files_are_named(two_class: dict[str, Any], tmp_path: Path) -> None:
    from extractguard.errors import DataLoadError
    from extractguard.verify.evidence import check_bundle_file, write_bundle

    path = write_bundle(two_class, tmp_path / "cases" / "c-1" / "evidence.json")
    assert check_bundle_file(path) == []  # read back from disk: still verifies
    assert check_bundle_file(write_bundle(two_class, tmp_path / "cases" / "c-1" / "again.json")) == []
    assert check_bundle_file(path, public_key_hex=two_class["signature"]["public_key"]) == []
    (tmp_path / "bad.json").write_text("{not json")
    assert check_bundle_file(tmp_path / "bad.json")[0].startswith("bad.json is not JSON")
    with pytest.raises(DataLoadError):
        check_bundle_file(tmp_path / "missing.json")
    b = copy.deepcopy(two_class)
    b["body"]["tests"][0]["p_value"] = float("nan")
    assert check_bundle(b)[0].startswith("the body is not canonical JSON")
    b = copy.deepcopy(two_class)
    b["signature"]["public_key"] = "zz"
    assert any("signature does not verify" in p for p in check_bundle(b))


def test_resigned_structural_edits_are_refused(two_class: dict[str, Any], key: Any) -> None:
    t0 = two_class["body"]["tests"][0]
    problems = resigned(two_class, key, ["tests", 0, "suspect_labels"], t0["suspect_labels"][:-1])
    assert any("inputs, hashes, expected and suspect labels have different lengths" in p for p in problems), problems
    problems = resigned(two_class, key, ["tests", 0, "suspect_labels"], t0["suspect_labels"] + [1])
    assert any("inputs, hashes, expected and suspect labels have different lengths" in p for p in problems), problems
    # Every way the four per-row lists can disagree in length (one longer or shorter, or two together).
    fields = ("inputs", "expected_labels", "suspect_labels", "input_sha256")
    for changed in ([0], [1], [2], [3], [0, 1], [1, 2], [2, 3], [0, 3]):
        for grow in (True, False):
            body = copy.deepcopy(two_class["body"])
            for i in changed:
                rows = body["tests"][0][fields[i]]
                rows.append(rows[0]) if grow else rows.pop()
            problems = check_bundle(sign_bundle(body, key))
            assert any("inputs, hashes, expected and suspect labels have different lengths" in p for p in problems), (changed, grow)
    body = copy.deepcopy(two_class["body"])
    body["tests"][0]["inputs"][4][0] += 0.5
    body["tests"][0]["inputs"][7][0] += 0.5
    problems = check_bundle(sign_bundle(body, key))
    assert any("input 4 does not match its SHA-256 (2 inputs differ)" in p for p in problems), problems
    for name in ("oracle", "zzz", "aaa"):  # sorting before, between and after the known names
        problems = resigned(two_class, key, ["tests", 0, "name"], name)
        assert any(f"unknown test {name!r}" in p for p in problems), problems
    problems = resigned(two_class, key, ["tests"], [])
    assert problems == ["the body lists no tests"]
    problems = resigned(two_class, key, ["verdict"], None)
    assert problems == ["the verdict or alpha is missing or malformed"]


def test_signing_keys_are_private_ed25519_and_never_overwritten(tmp_path: Path) -> None:
    import stat

    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    from extractguard.errors import ConfigurationError
    from extractguard.verify.evidence import load_public_key_hex

    priv, pub = generate_signing_key(tmp_path / "keys" / "2026" / "owner.pem")  # directories created as needed
    assert pub == tmp_path / "keys" / "2026" / "owner.pem.pub" and stat.S_IMODE(priv.stat().st_mode) == 0o600
    key = load_signing_key(priv)
    raw = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw).hex()
    assert load_public_key_hex(pub) == load_public_key_hex(priv) == raw
    before = priv.read_bytes()
    with pytest.raises(ConfigurationError, match="already exists"):
        generate_signing_key(priv)
    assert priv.read_bytes() == before
    (tmp_path / "junk.pem").write_text("not a key")
    with pytest.raises(ConfigurationError, match="junk.pem is not an unencrypted PEM private key"):
        load_signing_key(tmp_path / "junk.pem")
    other = ec.generate_private_key(ec.SECP256R1())
    (tmp_path / "ec.pem").write_bytes(other.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                          serialization.NoEncryption()))
    with pytest.raises(ConfigurationError, match="ec.pem is not an Ed25519 key"):
        load_signing_key(tmp_path / "ec.pem")
    (tmp_path / "ec.pub").write_bytes(other.public_key().public_bytes(serialization.Encoding.PEM,
                                                                      serialization.PublicFormat.SubjectPublicKeyInfo))
    with pytest.raises(ConfigurationError, match="ec.pub is not an Ed25519 public key"):
        load_public_key_hex(tmp_path / "ec.pub")
    with pytest.raises(ConfigurationError):
        load_signing_key(tmp_path / "absent.pem")


def test_large_bundles_and_runtime_built_method_names_round_trip(ten_class: dict[str, Any], key: Any) -> None:
    """Lengths above Python's small-int cache and method names that are not interned literals."""
    verdict = copy.deepcopy(ten_class["rank_verdict"])
    verdict.tests[0].extra["method"] = "".join(["ra", "nk"])
    verdict.tests[0].name = "".join(["water", "mark"])
    assert check_bundle(sign_bundle(build_bundle(verdict, {"kind": "test"}), key)) == []
    served = [1 + i % 9 for i in range(300)]
    rec = record("big", 300, served, [0] * 300, [0, 0])
    big = verify_suspect(lookup_suspect(np.eye(10)[served + [0, 0]]), [rec], alpha=1e-6)
    bundle = sign_bundle(build_bundle(big, {"kind": "test"}), key)
    assert bundle["body"]["tests"][0]["n"] == 300 and check_bundle(bundle) == []


def test_a_signing_key_is_not_overwritten_even_in_a_race(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The existence check and the exclusive create guard the key separately: another process may
    write the file between the two."""
    priv, _ = generate_signing_key(tmp_path / "owner.pem")
    before = priv.read_bytes()
    monkeypatch.setattr(Path, "exists", lambda self: False)  # the check ran before the other process wrote it
    with pytest.raises(FileExistsError):
        generate_signing_key(priv)
    assert priv.read_bytes() == before


def test_an_innocent_two_account_bundle_caps_its_p_values_at_one(key: Any) -> None:
    """The owner's own answers carry no keyed label: p = 1 per test, and 1 after Bonferroni, exactly."""
    answers = [0] * 20 + [0] * 15 + [1] * 15
    recs = [record(a, 20, [1] * 20, [0] * 20, [0] * 15 + [1] * 15) for a in ("x", "y")]
    verdict = verify_suspect(lookup_suspect(np.eye(2)[answers]), recs, alpha=1e-3)
    bundle = sign_bundle(build_bundle(verdict, {"kind": "test"}), key)
    assert [t["p_value"] for t in bundle["body"]["tests"]] == [1.0, 1.0] and bundle["body"]["verdict"]["p_value"] == 1.0
    assert not bundle["body"]["verdict"]["is_copy"] and check_bundle(bundle) == []


def test_every_wrong_hash_is_caught_whichever_way_it_differs(two_class: dict[str, Any], key: Any) -> None:
    """Hashes are compared for equality, not order: an edit whose digest sorts above or below the
    recorded one is caught (inputs, control inputs, and the body hash)."""
    from extractguard.watermark.keyed import row_digest

    t0 = two_class["body"]["tests"][0]
    for field, hashes, named in (("inputs", "input_sha256", "input 2 does not match"),
                                 ("control_inputs", "control_input_sha256", "control input 2 does not match")):
        row = t0[field][2]
        above = next(d for d in np.arange(0.5, 50, 0.5) if row_digest(np.array([row[0] + d])) > t0[hashes][2])
        below = next(d for d in np.arange(0.5, 50, 0.5) if row_digest(np.array([row[0] + d])) < t0[hashes][2])
        for d in (above, below):
            problems = resigned(two_class, key, ["tests", 0, field, 2, 0], row[0] + float(d))
            assert any(named in p for p in problems), (field, d, problems)
    for forged in ("0" * 64, "f" * 64):
        assert check_bundle({**two_class, "body_sha256": forged}) == ["body_sha256 does not match the body (the body was edited)"]


def test_a_conditional_bundle_whose_owner_labels_are_high_verifies(key: Any) -> None:
    """Disagreement is inequality, whichever side of the owner's label the suspect's answer falls."""
    served = [i % 9 for i in range(30)]
    answers = served[:20] + [9] * 10  # 20 keyed labels below the owner's 9, then 10 agreements
    rec = record("high", 30, served, [9] * 30, [9, 9])
    verdict = verify_suspect(lookup_suspect(np.eye(10)[answers + [9, 0]]), [rec], alpha=1e-6)
    t = verdict.tests[0]
    assert t.extra["method"] == "conditional" and (t.k, t.n) == (20, 20)
    bundle = sign_bundle(build_bundle(verdict, {"kind": "test", "owner": "Müller GmbH"}), key)  # non-ASCII is escaped
    assert check_bundle(bundle) == [] and check_bundle(json.loads(json.dumps(bundle))) == []


def test_a_p_value_equal_to_alpha_does_not_accuse(two_class: dict[str, Any], key: Any) -> None:
    body = copy.deepcopy(two_class["body"])
    body["alpha"] = body["verdict"]["p_value"]
    body["verdict"]["is_copy"] = False
    assert check_bundle(sign_bundle(body, key)) == []
    body["verdict"]["is_copy"] = True
    assert check_bundle(sign_bundle(body, key)) == ["the verdict does not follow from the tests and alpha"]


def test_a_resigned_bundle_with_an_unknown_watermark_method_is_refused(two_class: dict[str, Any], ten_class: dict[str, Any],
                                                                        key: Any) -> None:
    """A renamed method is not checked as another test's numbers (the two mutation survivors of
    evidence.py: any unknown method used to be checked as the two-class control-bound test)."""
    for bundle in (two_class, ten_class["rank"], ten_class["conditional"]):
        for name in ("control-bound-v2", "", "RANK"):
            problems = resigned(bundle, key, ["tests", 0, "method"], name)
            assert any(f"unknown watermark test method {name!r}" in p for p in problems), problems
    assert two_class["body"]["tests"][0]["method"] == "control-bound" and check_bundle(two_class) == []
