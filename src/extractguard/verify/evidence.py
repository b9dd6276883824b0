"""Evidence bundles: everything a verification saw, signed with Ed25519 so it cannot be edited.

A bundle is one JSON file: the inputs sent to the suspect, its answers, the labels a copy would
give, SHA-256 of every input, timestamps, the tool version, each test's counts, null hypothesis
and p-value, and the verdict.  The signature (Ed25519, RFC 8032, via ``cryptography``) covers the
canonical JSON of all of it.  :func:`check_bundle` verifies the signature *and* recomputes every
hash, count and p-value from the raw inputs and answers, so a bundle is self-consistent as well
as untouched: a third party needs only the bundle and the owner's public key.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import math
import platform
from pathlib import Path
from typing import Any

import numpy as np

from extractguard import __version__
from extractguard.errors import ConfigurationError, DataLoadError, check_readable_file
from extractguard.verify.ownership import (
    DEFAULT_BETA,
    TestResult,
    Verdict,
    binomial_tail,
    clopper_pearson_upper,
    keyed_label_ranks,
    rank_test_p,
)
from extractguard.watermark.keyed import row_digest

FORMAT = "extractguard-evidence/1"


def canonical_json(obj: Any) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False).encode("ascii")


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="milliseconds")


# -- keys ---------------------------------------------------------------------------------------
def generate_signing_key(path: Path | str) -> tuple[Path, Path]:
    """Write a new Ed25519 private key (PKCS#8 PEM, mode 0600) and its public key (``.pub``)."""
    import os

    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    p = Path(path)
    if p.exists():
        raise ConfigurationError(f"{p} already exists; refusing to overwrite a signing key")
    p.parent.mkdir(parents=True, exist_ok=True)
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(pem)
    pub = p.with_name(p.name + ".pub")
    pub.write_bytes(key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    return p, pub


def load_signing_key(path: Path | str) -> Any:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    p = Path(path)
    check_readable_file(p, "signing key", ConfigurationError)
    try:
        key = serialization.load_pem_private_key(p.read_bytes(), password=None)
    except (ValueError, TypeError) as exc:
        raise ConfigurationError(f"{p.name} is not an unencrypted PEM private key: {exc}") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise ConfigurationError(f"{p.name} is not an Ed25519 key (make one with extractguard verify --keygen)")
    return key


def load_public_key_hex(path: Path | str) -> str:
    """The raw 32-byte public key (hex) from a PEM public key file or a PEM private key file."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    p = Path(path)
    check_readable_file(p, "public key", ConfigurationError)
    data = p.read_bytes()
    try:
        pub = serialization.load_pem_public_key(data)
    except ValueError:
        pub = load_signing_key(p).public_key()
    if not isinstance(pub, Ed25519PublicKey):
        raise ConfigurationError(f"{p.name} is not an Ed25519 public key")
    return pub.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw).hex()


# -- building -----------------------------------------------------------------------------------
def _test_entry(t: TestResult, corrected: float) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "name": t.name,
        "account": t.account,
        "null_hypothesis": t.null,
        "n": t.n,
        "k": t.k,
        "p0": t.p0,
        "p_value": t.p_value,
        "p_value_bonferroni": corrected,
        "answered_at": t.extra.get("answered_at", _now()),
        "inputs": np.asarray(t.inputs, dtype=np.float64).tolist(),
        "input_sha256": [row_digest(x) for x in t.inputs],
        "expected_labels": np.asarray(t.expected).astype(int).tolist(),
        "suspect_labels": np.asarray(t.answers).astype(int).tolist(),
    }
    if t.name == "watermark":
        entry.update(
            method=t.extra["method"],
            n_classes=t.extra["n_classes"],
            owner_labels=np.asarray(t.extra["owner_labels"]).astype(int).tolist(),
            control_inputs=np.asarray(t.extra["control_inputs"], dtype=np.float64).tolist(),
            control_input_sha256=[row_digest(x) for x in t.extra["control_inputs"]],
            control_owner_labels=np.asarray(t.extra["control_expected"]).astype(int).tolist(),
            control_suspect_labels=np.asarray(t.extra["control_answers"]).astype(int).tolist(),
            beta=t.extra.get("beta", DEFAULT_BETA),
        )
        if t.extra["method"] == "rank":
            entry["suspect_scores"] = np.asarray(t.extra["scores"], dtype=np.float64).tolist()
    else:
        entry.update(reference_agreements=[int(a) for a in t.extra["reference_agreements"]], confidence=t.extra["confidence"])
    return entry


def build_bundle(verdict: Verdict, suspect: dict[str, Any], notes: dict[str, Any] | None = None) -> dict[str, Any]:
    """The unsigned body of an evidence bundle for ``verdict`` against the described suspect."""
    return {
        "tool": {"name": "extractguard", "version": __version__, "python": platform.python_version()},
        "created": _now(),
        "suspect": suspect,
        "alpha": verdict.alpha,
        "verdict": {"is_copy": verdict.is_copy, "p_value": verdict.p_value, "statement": verdict.describe()},
        "tests": [_test_entry(t, c) for t, c in zip(verdict.tests, verdict.corrected)],
        "notes": notes or {},
    }


def sign_bundle(body: dict[str, Any], private_key: Any) -> dict[str, Any]:
    """Wrap ``body`` with its SHA-256 and an Ed25519 signature over its canonical JSON."""
    from cryptography.hazmat.primitives import serialization

    data = canonical_json(body)
    pub = private_key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return {
        "format": FORMAT,
        "body": body,
        "body_sha256": hashlib.sha256(data).hexdigest(),
        "signature": {"algorithm": "Ed25519", "public_key": pub.hex(), "value": private_key.sign(data).hex()},
    }


def write_bundle(bundle: dict[str, Any], path: Path | str) -> Path:
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(json.dumps(bundle, indent=1, sort_keys=True))
    return p


# -- checking -----------------------------------------------------------------------------------
def _close(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-300)


def _check_test(i: int, t: dict[str, Any], problems: list[str]) -> float | None:
    where = f"test {i + 1} ({t.get('name')}{', account ' + repr(t['account']) if t.get('account') else ''})"
    try:
        X = np.asarray(t["inputs"], dtype=np.float64)
        exp = np.asarray(t["expected_labels"], dtype=np.int64)
        ans = np.asarray(t["suspect_labels"], dtype=np.int64)
        if not (len(X) == len(exp) == len(ans) == len(t["input_sha256"])):
            problems.append(f"{where}: inputs, hashes, expected and suspect labels have different lengths")
            return None
        bad = [j for j, x in enumerate(X) if row_digest(x) != t["input_sha256"][j]]
        if bad:
            problems.append(f"{where}: input {bad[0]} does not match its SHA-256 ({len(bad)} inputs differ)")
        k = int((exp == ans).sum())
        if t["name"] == "watermark":
            owner = np.asarray(t["owner_labels"], dtype=np.int64)
            c = int(t["n_classes"])
            cX = np.asarray(t["control_inputs"], dtype=np.float64)
            cbad = [j for j, x in enumerate(cX) if row_digest(x) != t["control_input_sha256"][j]]
            if cbad:
                problems.append(f"{where}: control input {cbad[0]} does not match its SHA-256")
            if t["method"] == "rank":
                scores = np.asarray(t["suspect_scores"], dtype=np.float64)
                if scores.shape != (len(ans), c) or not np.array_equal(scores.argmax(axis=1), ans):
                    problems.append(f"{where}: the suspect's scores do not match its labels")
                    return None
                ranks = keyed_label_ranks(scores, owner, exp)
                n, k, p0 = len(ranks), int((ranks == 1).sum()), 1.0 / (c - 1)
                p = rank_test_p(ranks, c)
            elif t["method"] == "conditional":
                n, p0 = int((ans != owner).sum()), 1.0 / (c - 1)
                p = binomial_tail(k, n, p0)
            elif t["method"] == "control-bound":
                cd = int((np.asarray(t["control_owner_labels"]) != np.asarray(t["control_suspect_labels"])).sum())
                n, p0 = len(ans), clopper_pearson_upper(cd, len(t["control_suspect_labels"]), float(t["beta"]))
                p = min(1.0, binomial_tail(k, n, p0) + float(t["beta"]))
            else:  # a renamed method must not be checked as another test's numbers
                problems.append(f"{where}: unknown watermark test method {t['method']!r} (rank, conditional or control-bound)")
                return None
        elif t["name"] == "fingerprint":
            from extractguard.verify.fingerprint import null_rate

            n = len(ans)
            p0 = null_rate([int(a) for a in t["reference_agreements"]], n, float(t["confidence"]))
            p = binomial_tail(k, n, p0)
        else:
            problems.append(f"{where}: unknown test {t['name']!r}")
            return None
        for field, value in (("k", k), ("n", n)):
            if int(t[field]) != value:
                problems.append(f"{where}: recorded {field} = {t[field]} but the answers give {value}")
        if not _close(float(t["p0"]), p0):
            problems.append(f"{where}: recorded p0 = {t['p0']} but the data give {p0}")
        if not _close(float(t["p_value"]), p):
            problems.append(f"{where}: recorded p-value {t['p_value']} but the data give {p}")
        return p
    except (KeyError, TypeError, ValueError) as exc:
        problems.append(f"{where}: malformed ({type(exc).__name__}: {exc})")
        return None


def check_bundle(bundle: Any, public_key_hex: str | None = None) -> list[str]:
    """Every problem found (empty list: the bundle is intact and self-consistent)."""
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    if not isinstance(bundle, dict) or bundle.get("format") != FORMAT:
        return [f"not an evidence bundle (format is not {FORMAT!r})"]
    problems: list[str] = []
    body, sig = bundle.get("body"), bundle.get("signature")
    if not isinstance(body, dict) or not isinstance(sig, dict):
        return ["the bundle has no body or no signature"]
    try:
        data = canonical_json(body)
    except ValueError as exc:
        return [f"the body is not canonical JSON: {exc}"]
    if hashlib.sha256(data).hexdigest() != bundle.get("body_sha256"):
        problems.append("body_sha256 does not match the body (the body was edited)")
    try:
        Ed25519PublicKey.from_public_bytes(bytes.fromhex(str(sig.get("public_key")))).verify(bytes.fromhex(str(sig.get("value"))), data)
    except (InvalidSignature, ValueError):
        problems.append("the Ed25519 signature does not verify (the body or the signature was edited)")
    if public_key_hex is not None and sig.get("public_key") != public_key_hex:
        problems.append("the bundle was signed with a different key than the one given (--public-key)")
    tests = body.get("tests")
    if not isinstance(tests, list) or not tests:
        problems.append("the body lists no tests")
        return problems
    ps = [_check_test(i, t, problems) for i, t in enumerate(tests)]
    if all(p is not None for p in ps):
        m = len(ps)
        corrected = min(min(1.0, p * m) for p in ps if p is not None)
        try:
            if not _close(float(body["verdict"]["p_value"]), corrected):
                problems.append(f"verdict p-value {body['verdict']['p_value']} but the tests give {corrected}")
            if bool(body["verdict"]["is_copy"]) != (corrected < float(body["alpha"])):
                problems.append("the verdict does not follow from the tests and alpha")
        except (KeyError, TypeError, ValueError):
            problems.append("the verdict or alpha is missing or malformed")
    return problems


def check_bundle_file(path: Path | str, public_key_hex: str | None = None) -> list[str]:
    p = Path(path)
    check_readable_file(p, "evidence bundle", DataLoadError)
    try:
        bundle = json.loads(p.read_text())
    except (ValueError, UnicodeDecodeError) as exc:
        return [f"{p.name} is not JSON: {exc}"]
    return check_bundle(bundle, public_key_hex)
