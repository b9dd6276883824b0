"""Extraction detection inside the gateway: per-tier monitors, graduated responses, audit evidence.

Two hooks in the request path (gateway/app.py): :meth:`GatewayDetection.admit` runs before the
rate limits (a suspended account is refused, a challenged one must carry a solved proof of work,
a throttled one is charged against a tight extra limit) and :meth:`GatewayDetection.observe`
runs after the model, on the owner's *undefended* probabilities, updates the account's risk and
escalates its action.  Every escalation is appended to the hash-chained audit log (a record with
``n_rows = 0`` whose output is ``{"detection": {...}}``: the action, the risk and the signals
that fired), so the evidence is as tamper-evident as the queries it is about.  State lives in
``state_dir/detect.db`` and survives restarts.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from extractguard.detect import DetectionMonitor, DetectionStore, Risk, build_monitor
from extractguard.detect.policy import ACTIONS, POW_HEADER, ChallengeBook, DetectionConfig, harsher, new_secret
from extractguard.errors import ConfigurationError
from extractguard.gateway.audit import AuditLog
from extractguard.gateway.config import GatewayConfig
from extractguard.gateway.logs import get_logger

log = get_logger()


@dataclass(frozen=True)
class DetectionRefusal:
    status: int
    reason: str
    message: str
    body: dict[str, Any] | None = None
    retry_after: int | None = None


def load_reference(path: Path, n_features: int) -> np.ndarray:
    """Owner's reference rows from ``.npy``, ``.npz`` or ``.csv``, checked against the model's width."""
    from extractguard.data.files import load_table

    X, _ = load_table(path, "detection reference")
    X = np.asarray(X, dtype=np.float64).reshape(len(X), -1)
    if X.shape[1] != n_features:
        raise ConfigurationError(f"detection reference {path} has {X.shape[1]} columns; the model takes {n_features}")
    return X


def reference_rows(cfg: DetectionConfig, config: GatewayConfig, n_features: int, owner_data: np.ndarray | None) -> np.ndarray | None:
    """A tier's in-distribution reference rows: its ``reference`` file, else the victim's held-out
    probe, else the owner's data (public: ``extractguard detect --config`` replays the same choice)."""
    if cfg.reference is not None:
        return load_reference(cfg.reference, n_features)
    if config.model.victim is not None:
        from extractguard.victims import build_victim

        return build_victim(config.model.victim, seed=config.model.seed).probe()[0]  # held out from training
    return owner_data


def suspended_message(account: str) -> str:
    """What a suspended account is told: generic on purpose, the evidence stays in the audit log."""
    return f"account {account!r} is suspended after extraction alarms; ask the operator to review it"


class GatewayDetection:
    """Monitors for the tiers that have a ``detection:`` block, and the sanctions they decide."""

    def __init__(self, config: GatewayConfig, target: Any, owner_data: np.ndarray | None, audit: AuditLog | None) -> None:
        self.config = config
        self.audit = audit
        self.n_features = target.schema.n_features
        self.store = DetectionStore(config.detect_path)
        self.tiers: dict[str, DetectionConfig] = {n: t.detection for n, t in config.tiers.items() if t.detection is not None}
        self.monitors: dict[str, DetectionMonitor] = {}
        for name, dc in self.tiers.items():
            ref = reference_rows(dc, config, self.n_features, owner_data)
            if ref is None and dc.detectors is None:
                log.warning("detection", extra={"fields": {"event": "detection_config", "tier": name, "detail":
                            "no reference data (set detection.reference): only prada and rate run"}})
            self.monitors[name] = build_monitor(target, ref, detectors=dc.detectors, baseline_rows_per_hour=dc.baseline_rows_per_hour,
                                                params=dc.params, store=self.store, seed=dc.seed)
        secret = bytes.fromhex(self.store.meta("challenge_secret", new_secret()))
        self.challenges = {n: ChallengeBook(secret, dc.challenge_bits, dc.challenge_ttl_seconds) for n, dc in self.tiers.items()}
        self.actions: dict[str, dict[str, Any]] = self.store.actions()
        self._throttles: dict[str, Any] = {}
        self.levels: dict[str, float] = {}  # latest risk level per account (for the account_risk gauge)

    def action(self, account: str) -> str:
        return str(self.actions.get(account, {}).get("action", "none"))

    def _throttle(self, tier: str) -> Any:
        from limits import parse

        if tier not in self._throttles:
            self._throttles[tier] = parse(self.tiers[tier].throttle_limit)
        return self._throttles[tier]

    def admit(self, account: str, tier: str, rows: int, headers: Any, limiter: Any) -> DetectionRefusal | None:
        """Apply the account's current sanction to a request of ``rows`` rows (before any limit).

        ``limiter`` is the gateway's ``limits`` rate limiter: a throttle is one more fixed-window
        limit on the same storage (memory, SQLite or Redis) as every other limit.
        """
        act = self.action(account)
        if act == "none" or act == "flag":
            return None
        if act == "suspend":
            return DetectionRefusal(403, "suspended", suspended_message(account))
        if tier not in self.tiers:  # sanctioned under another tier: hold the line with its defaults
            return DetectionRefusal(403, "suspended", f"account {account!r} is under a detection sanction ({act})")
        if act == "challenge":
            book = self.challenges[tier]
            token = headers.get(POW_HEADER.lower()) or headers.get(POW_HEADER)
            problem = "proof of work required" if not token else book.check(account, token)
            if problem is not None:
                return DetectionRefusal(428, "challenged", f"{problem}: solve the challenge and resend with header {POW_HEADER}",
                                        {"challenge": book.issue(account)})
        if act == "throttle":
            item = self._throttle(tier)
            if not limiter.hit(item, "detect-throttle", account, cost=rows):
                stats = limiter.get_window_stats(item, "detect-throttle", account)
                wait = max(1, int(stats.reset_time - time.time()) + 1)
                return DetectionRefusal(429, "throttled", f"account throttled after extraction alarms: {item} rows; retry after {wait} s",
                                        retry_after=wait)
        return None

    def observe(self, *, account: str, key_id: str, tier: str, model: str, client_ip: str, X: np.ndarray,
                probabilities: np.ndarray) -> tuple[str, Risk] | None:
        """Update the account's risk; returns ``(new_action, risk)`` when the action escalated."""
        monitor = self.monitors.get(tier)
        if monitor is None:
            return None
        risk = monitor.observe(f"{tier}/{account}", X, probabilities)
        self.levels[account] = float(risk.level)
        wanted = self.tiers[tier].action_for(risk.level)
        current = self.action(account)
        new = harsher(wanted, current)
        if new == current:
            return None
        evidence = {"action": new, "previous": current, "tier": tier, "risk": risk.to_dict()}
        self.actions[account] = {"action": new, "level": risk.level, "evidence": evidence}
        self.store.set_action(account, new, risk.level, evidence)
        monitor.flush()  # the evidence and the state behind it are on disk before we act on them
        if self.audit is not None:
            self.audit.append(account=account, key_id=key_id, tier=tier, model=model, client_ip=client_ip,
                              X=np.empty((0, self.n_features)), output={"detection": evidence})
        log.warning("detection", extra={"fields": {"event": "detection", "account": account, "tier": tier, "action": new,
                                                   "previous": current, "level": round(risk.level, 3), "explanation": risk.explain()}})
        return new, risk

    def clear(self, account: str) -> bool:
        self.actions.pop(account, None)
        for m in self.monitors.values():
            for key in [k for k in m.accounts() if k.split("/", 1)[-1] == account]:
                m.forget(key)
        return self.store.clear(account, tuple(f"{t}/{account}" for t in self.config.tiers))

    def close(self) -> None:
        for m in self.monitors.values():
            m.flush()
        self.store.close()


__all__ = ["ACTIONS", "DetectionRefusal", "GatewayDetection"]
