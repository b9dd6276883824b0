"""Extraction detection in the answer path: per-tier monitors and the per-account sanctions they decide.

Two steps (docs/detection.md).  :meth:`Detection.admit` applies the sanction in force to a
request before anything is charged (a suspended account is refused, a challenged one must carry a
solved proof of work, a throttled one is charged against a tight extra limit).
:meth:`Detection.observe` runs on the owner's *undefended* probabilities of an answered batch,
updates the account's risk and escalates its action; the :class:`Escalation` it returns is the
evidence the caller records (the gateway appends it to its hash-chained audit log).

Sanctions are per account, across tiers: an account sanctioned under one tier is held under
every tier.  With a :class:`~extractguard.detect.DetectionStore` the monitors' state and the
sanctions survive restarts; without one (an assessment) they live in memory.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from extractguard.detect.policy import POW_HEADER, ChallengeBook, DetectionConfig, harsher, new_secret
from extractguard.errors import ConfigurationError
from extractguard.oracle.targets import Target

if TYPE_CHECKING:  # detect's monitors load scipy and scikit-learn: only when a tier detects
    from extractguard.detect import DetectionMonitor, DetectionStore, Risk

#: Why a batch is withheld: the sanction that refuses it.
WITHHELD_REASONS: tuple[str, ...] = ("suspended", "challenged", "throttled")


@dataclass(frozen=True)
class Withheld:
    """A batch not answered, and why: ``reason`` is one of :data:`WITHHELD_REASONS`.

    ``challenge`` is the proof-of-work problem to solve (a challenged account), ``retry_after``
    the seconds until a throttled account may send again.
    """

    reason: str
    message: str
    challenge: dict[str, Any] | None = None
    retry_after: int | None = None


@dataclass(frozen=True)
class Escalation:
    """An account's action just became harsher: the evidence to record (action, risk, signals)."""

    action: str
    previous: str
    tier: str
    risk: Risk
    evidence: dict[str, Any] = field(default_factory=dict)


def load_reference(path: Path, n_features: int) -> np.ndarray:
    """Owner's reference rows from ``.npy``, ``.npz`` or ``.csv``, checked against the model's width."""
    from extractguard.data.files import load_table

    X, _ = load_table(path, "detection reference")
    X = np.asarray(X, dtype=np.float64).reshape(len(X), -1)
    if X.shape[1] != n_features:
        raise ConfigurationError(f"detection reference {path} has {X.shape[1]} columns; the model takes {n_features}")
    return X


def reference_rows(cfg: DetectionConfig, n_features: int, owner_data: np.ndarray | None, *, victim: str | None = None,
                   seed: int = 0) -> np.ndarray | None:
    """The rows a tier's detectors calibrate on: ``cfg.reference``, else a zoo victim's held-out
    split (never used for training), else the owner's data (``None``: only prada and rate run)."""
    if cfg.reference is not None:
        return load_reference(cfg.reference, n_features)
    if victim is not None:
        from extractguard.victims import build_victim

        return build_victim(victim, seed=seed).probe()[0]  # held out from training
    return owner_data


def suspended_message(account: str) -> str:
    """What a suspended account is told: generic on purpose, the evidence stays in the audit log."""
    return f"account {account!r} is suspended after extraction alarms; ask the operator to review it"


class Detection:
    """Monitors of the tiers that have a ``detection:`` block, and the sanctions they decide.

    Parameters
    ----------
    tiers:
        Each detecting tier's :class:`DetectionConfig`.
    monitors:
        Each detecting tier's fitted :class:`~extractguard.detect.DetectionMonitor`.
    store:
        Where sanctions (and, through the monitors, account states) persist; ``None``: memory.
    tier_names:
        Every tier whose account states :meth:`clear` forgets (default: ``tiers``).
    """

    def __init__(self, tiers: dict[str, DetectionConfig], monitors: dict[str, DetectionMonitor], store: DetectionStore | None = None,
                 tier_names: Sequence[str] | None = None) -> None:
        self.tiers = dict(tiers)
        self.monitors = dict(monitors)
        self.store = store
        self.tier_names = tuple(tier_names if tier_names is not None else tiers)
        secret = bytes.fromhex(store.meta("challenge_secret", new_secret()) if store is not None else new_secret())
        self.challenges = {n: ChallengeBook(secret, dc.challenge_bits, dc.challenge_ttl_seconds) for n, dc in self.tiers.items()}
        self.actions: dict[str, dict[str, Any]] = store.actions() if store is not None else {}
        self._throttles: dict[str, Any] = {}
        self.levels: dict[str, float] = {}  # latest risk level per account (for the account_risk gauge)

    @classmethod
    def build(cls, tiers: dict[str, DetectionConfig], target: Target, references: dict[str, np.ndarray | None],
              store: DetectionStore | None = None, tier_names: Sequence[str] | None = None) -> Detection:
        """Fit one monitor per tier on the owner's ``target`` and that tier's reference rows."""
        from extractguard.detect import build_monitor

        monitors = {name: build_monitor(target, references.get(name), detectors=dc.detectors,
                                        baseline_rows_per_hour=dc.baseline_rows_per_hour, params=dc.params, store=store, seed=dc.seed)
                    for name, dc in tiers.items()}
        return cls(tiers, monitors, store, tier_names)

    def action(self, account: str) -> str:
        """The sanction in force for ``account`` (``none``, ``flag``, ``throttle``, ``challenge``, ``suspend``)."""
        return str(self.actions.get(account, {}).get("action", "none"))

    def _throttle(self, tier: str) -> Any:
        from limits import parse

        if tier not in self._throttles:
            self._throttles[tier] = parse(self.tiers[tier].throttle_limit)
        return self._throttles[tier]

    def admit(self, account: str, tier: str, rows: int, token: str | None, limiter: Any) -> Withheld | None:
        """Apply the account's current sanction to a request of ``rows`` rows (before any limit).

        ``token`` is the request's proof of work, if any.  ``limiter`` is the gateway's ``limits``
        rate limiter: a throttle is one more fixed-window limit on the same storage (memory,
        SQLite or Redis) as every other limit, so its windows run on that storage's wall time.
        """
        act = self.action(account)
        if act == "none" or act == "flag":
            return None
        if act == "suspend":
            return Withheld("suspended", suspended_message(account))
        if tier not in self.tiers:  # sanctioned under another tier: hold the line with its defaults
            return Withheld("suspended", f"account {account!r} is under a detection sanction ({act})")
        if act == "challenge":
            book = self.challenges[tier]
            problem = "proof of work required" if not token else book.check(account, token)
            if problem is not None:
                return Withheld("challenged", f"{problem}: solve the challenge and resend with header {POW_HEADER}",
                                challenge=book.issue(account))
        if act == "throttle":
            item = self._throttle(tier)
            if not limiter.hit(item, "detect-throttle", account, cost=rows):
                stats = limiter.get_window_stats(item, "detect-throttle", account)
                wait = max(1, int(stats.reset_time - time.time()) + 1)
                return Withheld("throttled", f"account throttled after extraction alarms: {item} rows; retry after {wait} s",
                                retry_after=wait)
        return None

    def observe(self, account: str, tier: str, X: np.ndarray, probabilities: np.ndarray, now: float) -> tuple[Risk | None, Escalation | None]:
        """Update the account's risk with a batch answered at ``now``.

        Returns the account's risk (``None`` when ``tier`` does not detect) and the escalation
        this batch caused, if any.  An escalation is on disk (with the monitor state behind it)
        before this returns: act on it only after it is stored.
        """
        monitor = self.monitors.get(tier)
        if monitor is None:
            return None, None
        risk = monitor.observe(f"{tier}/{account}", X, probabilities, ts=now)
        self.levels[account] = float(risk.level)
        wanted = self.tiers[tier].action_for(risk.level)
        current = self.action(account)
        new = harsher(wanted, current)
        if new == current:
            return risk, None
        evidence = {"action": new, "previous": current, "tier": tier, "risk": risk.to_dict()}
        self.actions[account] = {"action": new, "level": risk.level, "evidence": evidence}
        if self.store is not None:
            self.store.set_action(account, new, risk.level, evidence)
        monitor.flush()  # the evidence and the state behind it are on disk before we act on them
        return risk, Escalation(new, current, tier, risk, evidence)

    def clear(self, account: str) -> bool:
        """Lift the account's sanction and forget its detection state (an operator's decision)."""
        found = self.actions.pop(account, None) is not None
        for m in self.monitors.values():
            for key in [k for k in m.accounts() if k.split("/", 1)[-1] == account]:
                m.forget(key)
                found = True
        if self.store is None:
            return found
        return bool(self.store.clear(account, tuple(f"{t}/{account}" for t in self.tier_names)))

    def close(self) -> None:
        for m in self.monitors.values():
            m.flush()
        if self.store is not None:
            self.store.close()
