"""Graduated responses to an account's risk, and the proof-of-work challenge.

Per tier, an owner maps risk levels (1.0 = a detector's calibrated alarm threshold) to actions
of increasing cost for the caller: ``flag`` (audit and alert only), ``throttle`` (a much
tighter row limit), ``challenge`` (each request must carry a fresh proof of work) and
``suspend`` (refused until an operator clears the account).  Actions only escalate: a risk that
falls back does not lift a sanction, an operator does (``extractguard detect clear``).

The challenge is hashcash (Back, 2002): the gateway issues a nonce bound to the account and time
by an HMAC; the client finds a counter such that SHA-256 of ``"<nonce>:<counter>"`` starts with
``bits`` zero bits (2**bits hashes on average) and sends ``X-ExtractGuard-PoW: <nonce>:<counter>``.
Each nonce buys one request, so an extraction of N queries costs N puzzles while an honest user
who was wrongly challenged pays a second or so per request.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from pathlib import Path
from typing import Any, Optional

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

#: Actions from mildest to harshest.
ACTIONS: tuple[str, ...] = ("none", "flag", "throttle", "challenge", "suspend")
POW_HEADER = "X-ExtractGuard-PoW"


class DetectionConfig(BaseModel):
    """The ``detection:`` block of a gateway tier."""

    model_config = ConfigDict(extra="forbid")

    detectors: Optional[list[str]] = Field(None, description="Detectors to run (default: all the reference data allows).")
    baseline_rows_per_hour: Optional[float] = Field(None, gt=0, description="Honest rows per hour of one account (enables 'rate').")
    params: dict[str, dict[str, Any]] = Field(default_factory=dict, description="Per-detector parameters, e.g. {prada: {delta: 0.9}}.")
    reference: Optional[Path] = Field(None, description="Owner's held-out rows (.npy or .csv) to calibrate on (default: the victim's held-out split).")
    responses: dict[str, float] = Field(
        default_factory=lambda: {"flag": 1.0, "throttle": 2.0, "challenge": 4.0, "suspend": 8.0},
        description="Risk level at which each action starts; leave an action out to never take it.",
    )
    throttle_limit: str = Field("10/minute", description="Row limit of a throttled account.")
    challenge_bits: int = Field(18, ge=1, le=32, description="Leading zero bits of a proof of work.")
    challenge_ttl_seconds: int = Field(300, ge=10)
    seed: int = 0

    @field_validator("detectors")
    @classmethod
    def _detectors(cls, v: Optional[list[str]]) -> Optional[list[str]]:
        from extractguard.detect import DETECTORS

        if v is not None:
            bad = [d for d in v if d not in DETECTORS]
            if bad or not v:
                raise ValueError(f"unknown detector(s) {bad}; available: {', '.join(DETECTORS)}")
            v = [DETECTORS.canonical(d) for d in v]
        return v

    @field_validator("responses")
    @classmethod
    def _responses(cls, v: dict[str, float]) -> dict[str, float]:
        bad = [a for a in v if a not in ACTIONS[1:]]
        if bad:
            raise ValueError(f"unknown response(s) {bad}; use flag, throttle, challenge, suspend")
        levels = [v[a] for a in ACTIONS[1:] if a in v]
        if any(x <= 0 for x in levels) or levels != sorted(levels):
            raise ValueError("response levels must be > 0 and not decrease from flag to suspend")
        return v

    @field_validator("throttle_limit")
    @classmethod
    def _limit(cls, v: str) -> str:
        from limits import parse

        try:
            parse(v)
        except ValueError:
            raise ValueError(f"{v!r} is not a rate limit; write e.g. '10/minute'") from None
        return v

    @model_validator(mode="after")
    def _rate(self) -> DetectionConfig:
        if self.detectors is not None and "rate" in self.detectors and self.baseline_rows_per_hour is None:
            raise ValueError("the rate detector needs baseline_rows_per_hour")
        return self

    def action_for(self, level: float) -> str:
        """The harshest action whose level ``level`` reaches."""
        act = "none"
        for a in ACTIONS[1:]:
            if a in self.responses and level >= self.responses[a]:
                act = a
        return act


def harsher(a: str, b: str) -> str:
    return a if ACTIONS.index(a) >= ACTIONS.index(b) else b


# -- proof of work ----------------------------------------------------------------------------
def leading_zero_bits(digest: bytes) -> int:
    n = 0
    for byte in digest:
        if byte == 0:
            n += 8
            continue
        return n + 8 - byte.bit_length()
    return n


def issue_nonce(secret: bytes, account: str, now: float | None = None) -> str:
    """``<time>.<random>.<mac>``: verifiable later without server-side storage."""
    body = f"{int(time.time() if now is None else now)}.{secrets.token_hex(8)}"
    mac = hmac.new(secret, f"{account}|{body}".encode(), hashlib.sha256).hexdigest()[:24]
    return f"{body}.{mac}"


def solve(nonce: str, bits: int) -> str:
    """The client's side: a header value ``<nonce>:<counter>`` with ``bits`` leading zero bits."""
    counter = 0
    while True:
        if leading_zero_bits(hashlib.sha256(f"{nonce}:{counter}".encode()).digest()) >= bits:
            return f"{nonce}:{counter}"
        counter += 1


class ChallengeBook:
    """Issues and checks proof-of-work tokens; each accepted nonce is spent (kept until it expires)."""

    def __init__(self, secret: bytes, bits: int, ttl_seconds: int) -> None:
        self.secret = secret
        self.bits = bits
        self.ttl = ttl_seconds
        self._spent: dict[str, float] = {}

    def issue(self, account: str) -> dict[str, Any]:
        return {"nonce": issue_nonce(self.secret, account), "bits": self.bits, "algorithm": "sha256",
                "header": POW_HEADER, "format": "<nonce>:<counter> with sha256('<nonce>:<counter>') starting with `bits` zero bits",
                "expires_in": self.ttl}

    def check(self, account: str, token: str, now: float | None = None) -> str | None:
        """``None`` if ``token`` is a fresh, unspent, solved challenge of ``account``; else why not."""
        now = time.time() if now is None else now
        nonce, sep, counter = token.strip().rpartition(":")
        parts = nonce.split(".")
        if not sep or len(parts) != 3 or not counter.isdigit() or not parts[0].isdigit():
            return "malformed proof of work"
        mac = hmac.new(self.secret, f"{account}|{parts[0]}.{parts[1]}".encode(), hashlib.sha256).hexdigest()[:24]
        if not hmac.compare_digest(mac, parts[2]):
            return "proof of work for a nonce this gateway did not issue to this account"
        if now - int(parts[0]) > self.ttl:
            return "expired challenge"
        if nonce in self._spent:
            return "challenge already used"
        if leading_zero_bits(hashlib.sha256(token.strip().encode()).digest()) < self.bits:
            return f"proof of work has fewer than {self.bits} leading zero bits"
        self._spent = {k: t for k, t in self._spent.items() if now - t <= self.ttl}
        self._spent[nonce] = now
        return None


def new_secret() -> str:
    return secrets.token_hex(32)
