"""The sanction policy and the proof-of-work challenge (detect/policy.py), without a victim.

Written for the mutation testing of issue 23: each test names the promise it protects.
"""

from __future__ import annotations

import hashlib
import hmac
import re

import pytest
from pydantic import ValidationError

from extractguard.detect.policy import (
    ACTIONS,
    POW_HEADER,
    ChallengeBook,
    DetectionConfig,
    harsher,
    issue_nonce,
    leading_zero_bits,
    new_secret,
    solve,
)

SECRET = b"s" * 32


def test_actions_run_from_mildest_to_harshest() -> None:
    assert ACTIONS == ("none", "flag", "throttle", "challenge", "suspend")
    assert POW_HEADER == "X-ExtractGuard-PoW"


def test_defaults_are_the_documented_ladder() -> None:
    cfg = DetectionConfig()
    assert cfg.responses == {"flag": 1.0, "throttle": 2.0, "challenge": 4.0, "suspend": 8.0}
    assert (cfg.throttle_limit, cfg.challenge_bits, cfg.challenge_ttl_seconds, cfg.seed) == ("10/minute", 18, 300, 0)
    assert cfg.detectors is None and cfg.baseline_rows_per_hour is None and cfg.params == {} and cfg.reference is None


def test_action_is_the_harshest_level_reached_at_or_above_its_threshold() -> None:
    cfg = DetectionConfig()
    levels = [0.0, 0.999, 1.0, 1.999, 2.0, 3.999, 4.0, 7.999, 8.0, 1e9]
    assert [cfg.action_for(x) for x in levels] == [
        "none", "none", "flag", "flag", "throttle", "throttle", "challenge", "challenge", "suspend", "suspend"]


def test_an_action_left_out_is_never_taken() -> None:
    cfg = DetectionConfig(responses={"throttle": 2.0})
    assert [cfg.action_for(x) for x in (1.5, 2.0, 100.0)] == ["none", "throttle", "throttle"]
    assert DetectionConfig(responses={}).action_for(1e9) == "none"


def test_harsher_is_the_later_action_whichever_order_they_come_in() -> None:
    for i, a in enumerate(ACTIONS):
        for j, b in enumerate(ACTIONS):
            assert harsher(a, b) == ACTIONS[max(i, j)]


def test_response_levels_must_be_positive_known_and_not_decreasing() -> None:
    assert DetectionConfig(responses={"flag": 1.0, "throttle": 1.0}).action_for(1.0) == "throttle"  # equal is fine
    for bad in ({"flag": 0.0}, {"flag": -1.0}, {"flag": 2.0, "throttle": 1.0}, {"challenge": 3.0, "suspend": 2.9},
                {"none": 1.0}, {"ban": 1.0}):
        with pytest.raises(ValidationError):
            DetectionConfig(responses=bad)


def test_detector_names_are_checked_and_canonical() -> None:
    assert DetectionConfig(detectors=["PRADA", "inputs"]).detectors == ["prada", "inputs"]
    for bad in ([], ["seat"], ["prada", "seat"]):
        with pytest.raises(ValidationError, match="unknown detector"):
            DetectionConfig(detectors=bad)


def test_the_rate_detector_needs_a_baseline_and_others_do_not() -> None:
    with pytest.raises(ValidationError, match="baseline_rows_per_hour"):
        DetectionConfig(detectors=["rate"])
    assert DetectionConfig(detectors=["rate"], baseline_rows_per_hour=10.0).detectors == ["rate"]
    assert DetectionConfig(detectors=["prada"]).baseline_rows_per_hour is None
    assert DetectionConfig(baseline_rows_per_hour=0.5).baseline_rows_per_hour == 0.5  # any positive rate
    with pytest.raises(ValidationError):
        DetectionConfig(baseline_rows_per_hour=0.0)


def test_throttle_limit_must_be_a_rate_limit() -> None:
    assert DetectionConfig(throttle_limit="5/second").throttle_limit == "5/second"
    with pytest.raises(ValidationError, match="is not a rate limit"):
        DetectionConfig(throttle_limit="often")


def test_challenge_bits_and_ttl_are_bounded() -> None:
    assert DetectionConfig(challenge_bits=1, challenge_ttl_seconds=10).challenge_bits == 1
    assert DetectionConfig(challenge_bits=32).challenge_bits == 32
    for bad in ({"challenge_bits": 0}, {"challenge_bits": 33}, {"challenge_ttl_seconds": 9}, {"surprise": 1}):
        with pytest.raises(ValidationError):
            DetectionConfig(**bad)


def test_leading_zero_bits_counts_bits_not_bytes() -> None:
    assert leading_zero_bits(b"\x80\x00") == 0
    assert leading_zero_bits(b"\x01\xff") == 7
    assert leading_zero_bits(b"\x00\xff") == 8
    assert leading_zero_bits(b"\x00\x00\x01") == 23
    assert leading_zero_bits(b"\x00\x40") == 9
    assert leading_zero_bits(b"\x00" * 32) == 256
    assert leading_zero_bits(b"") == 0


def test_a_nonce_is_time_random_and_a_mac_over_account_time_and_random() -> None:
    nonce = issue_nonce(SECRET, "alice", now=1234.9)
    t, rand, mac = nonce.split(".")
    assert t == "1234" and re.fullmatch(r"[0-9a-f]{16}", rand)
    assert mac == hmac.new(SECRET, f"alice|1234.{rand}".encode(), hashlib.sha256).hexdigest()[:24]
    assert issue_nonce(SECRET, "alice", now=1234.0) != issue_nonce(SECRET, "alice", now=1234.0)  # fresh randomness


def test_solve_returns_the_first_counter_with_enough_zero_bits() -> None:
    token = solve("abc", 6)
    nonce, counter = token.rsplit(":", 1)
    assert nonce == "abc"
    bits = [leading_zero_bits(hashlib.sha256(f"abc:{c}".encode()).digest()) for c in range(int(counter) + 1)]
    assert bits[-1] >= 6 and all(b < 6 for b in bits[:-1])
    zero = next(c for c in range(10_000) if leading_zero_bits(hashlib.sha256(f"abc:{c}".encode()).digest()) >= 1)
    assert solve("abc", 1) == f"abc:{zero}"


def test_a_challenge_says_how_to_answer_it() -> None:
    ch = ChallengeBook(SECRET, bits=5, ttl_seconds=60).issue("alice")
    assert (ch["bits"], ch["algorithm"], ch["header"], ch["expires_in"]) == (5, "sha256", POW_HEADER, 60)
    assert "<nonce>:<counter>" in ch["format"]


def _book_and_nonce(now: float, bits: int = 4, ttl: int = 60) -> tuple[ChallengeBook, str]:
    return ChallengeBook(SECRET, bits=bits, ttl_seconds=ttl), issue_nonce(SECRET, "alice", now=now)


def test_a_challenge_is_valid_until_its_ttl_and_expired_after() -> None:
    book, nonce = _book_and_nonce(1000.0)
    token = solve(nonce, 4)
    assert book.check("alice", token, now=1060.0) is None  # exactly the ttl: still valid
    book, nonce = _book_and_nonce(1000.0)
    assert book.check("alice", solve(nonce, 4), now=1061.0) == "expired challenge"
    book, nonce = _book_and_nonce(100.0)
    assert book.check("alice", solve(nonce, 4), now=250.0) == "expired challenge"  # long expired, not just 1 s


def test_a_token_with_surrounding_whitespace_is_accepted_once() -> None:
    book, nonce = _book_and_nonce(1000.0)
    token = solve(nonce, 4)
    assert book.check("alice", f"  {token}\n", now=1001.0) is None
    assert book.check("alice", token, now=1002.0) == "challenge already used"


def test_malformed_tokens_are_refused_as_malformed() -> None:
    book, nonce = _book_and_nonce(1000.0)
    t, rand, mac = nonce.split(".")
    for token in (nonce, f"{nonce}:", f"{nonce}:x1", f"{t}.{rand}:5", f"{t}.{rand}.{mac}.x:5", f"x{t}.{rand}.{mac}:5"):
        assert book.check("alice", token, now=1001.0) == "malformed proof of work", token


def test_a_token_needs_every_leading_zero_bit() -> None:
    book, nonce = _book_and_nonce(1000.0, bits=8)
    c = next(c for c in range(100_000) if leading_zero_bits(hashlib.sha256(f"{nonce}:{c}".encode()).digest()) == 7)
    assert book.check("alice", f"{nonce}:{c}", now=1001.0) == "proof of work has fewer than 8 leading zero bits"
    assert book.check("alice", solve(nonce, 8), now=1001.0) is None  # an unsolved try does not spend the nonce


def test_a_nonce_from_another_secret_is_refused() -> None:
    book = ChallengeBook(SECRET, bits=1, ttl_seconds=60)
    forged = solve(issue_nonce(b"t" * 32, "alice", now=1000.0), 1)
    assert "did not issue" in str(book.check("alice", forged, now=1001.0))


def test_spent_nonces_are_forgotten_once_they_have_expired() -> None:
    """The spent list is what stops replay; it must not grow without bound, nor forget too early."""
    book = ChallengeBook(SECRET, bits=1, ttl_seconds=60)

    def spend(t: float) -> str:
        token = solve(issue_nonce(SECRET, "alice", now=t), 1)
        assert book.check("alice", token, now=t) is None
        return token

    first = spend(100.0)
    spend(160.0)
    assert book.check("alice", first, now=160.0) == "challenge already used"  # exactly the ttl: remembered
    assert len(book._spent) == 2
    spend(161.0)
    assert len(book._spent) == 2  # the first (spent at 100) is forgotten at 161: it has expired anyway
    spend(250.0)
    assert len(book._spent) == 1
    book._spent.clear()
    spend(100.0)
    spend(250.0)
    assert len(book._spent) == 1  # one spent long ago (2.5 ttl) is forgotten too


def test_a_new_secret_is_256_random_bits_in_hex() -> None:
    a, b = new_secret(), new_secret()
    assert re.fullmatch(r"[0-9a-f]{64}", a) and a != b
