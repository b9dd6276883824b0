"""Per-account streaming detection: every detector over every request, one risk per account.

The combined risk is the largest calibrated level among the signals (1.0 = a detector's alarm
threshold) together with *which* signals are over 1.0 and since which query: an operator sees
"prada: W=0.71 after 230 queries" rather than an opaque score.  Taking the maximum rather than a
learned combination keeps each alarm traceable to one published test with its own threshold.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from extractguard.detect import DETECTORS
from extractguard.detect.base import Detector, Observation, Reference, Signal, State, check_state
from extractguard.detect.store import DetectionStore
from extractguard.errors import ConfigurationError


@dataclass
class Risk:
    """An account's combined risk: ``level`` >= 1 means at least one signal fired."""

    account: str
    level: float
    queries: int
    signals: list[Signal] = field(default_factory=list)
    first_alarm: dict[str, int] = field(default_factory=dict)

    @property
    def fired(self) -> list[Signal]:
        return sorted((s for s in self.signals if s.fired), key=lambda s: -s.level)

    @property
    def first_detected(self) -> int | None:
        """Queries the account had made when its first signal fired (``None``: never)."""
        return min(self.first_alarm.values()) if self.first_alarm else None

    def explain(self) -> str:
        if not self.fired:
            top = max(self.signals, key=lambda s: s.level, default=None)
            return "no signal fired" + (f" (highest: {top.detector}/{top.name} at {top.level:.2f} of its threshold)" if top else "")
        return "; ".join(f"{s.detector}/{s.name}: {s.detail}" for s in self.fired)

    def to_dict(self) -> dict[str, Any]:
        return {"account": self.account, "level": round(self.level, 4), "queries": self.queries,
                "first_detected": self.first_detected, "first_alarm": dict(self.first_alarm),
                "fired": [s.to_dict() for s in self.fired], "explanation": self.explain()}


@dataclass
class _Account:
    states: dict[str, State]
    queries: int = 0
    level: float = 0.0
    first: dict[str, int] = field(default_factory=dict)
    signals: list[Signal] = field(default_factory=list)
    dirty: bool = False
    saved_at: float = 0.0


def build_detectors(
    names: Sequence[str], n_classes: int, n_features: int, *, baseline_rows_per_hour: float | None = None,
    params: dict[str, dict[str, Any]] | None = None, seed: int = 0,
) -> list[Detector]:
    """Detectors by name, with per-detector keyword overrides in ``params``.

    Each detector class says which of the context values below its constructor takes
    (:attr:`Detector.context`), so adding a detector is one registry entry.
    """
    unknown = [n for n in [*names, *(params or {})] if n not in DETECTORS]
    if unknown:
        raise ConfigurationError(f"unknown detector(s) {', '.join(sorted(set(unknown)))}; available: {', '.join(DETECTORS)}")
    params = {DETECTORS.canonical(k): v for k, v in (params or {}).items()}
    context: dict[str, Any] = {"n_classes": n_classes, "n_features": n_features,
                               "baseline_rows_per_hour": baseline_rows_per_hour, "seed": seed}
    out: list[Detector] = []
    for name in (DETECTORS.canonical(n) for n in names):
        cls = DETECTORS.load(name)
        if baseline_rows_per_hour is None and "baseline_rows_per_hour" in cls.context:
            raise ConfigurationError(f"the {name} detector needs baseline_rows_per_hour (honest rows per hour of one account)")
        try:
            out.append(cls(**{k: context[k] for k in cls.context}, **params.get(name, {})))
        except TypeError as exc:
            raise ConfigurationError(f"detector {name}: {exc}") from None
    return out


class DetectionMonitor:
    """Runs ``detectors`` over each account's requests and keeps each account's risk.

    Parameters
    ----------
    detectors:
        Fitted (or to-be-fitted with :meth:`fit`) detectors.
    store:
        Where account states persist; ``None`` keeps them in memory only.
    flush_seconds:
        An account's state is written at most this often (and on :meth:`flush`/:meth:`close`):
        a crash loses at most this much history, a clean shutdown nothing.
    max_cached_accounts:
        Accounts kept in memory (least recently seen are written out and dropped), so memory
        stays bounded with millions of accounts.
    """

    def __init__(self, detectors: Sequence[Detector], store: DetectionStore | None = None, flush_seconds: float = 10.0,
                 max_cached_accounts: int = 1000) -> None:
        if not detectors:
            raise ConfigurationError("detection needs at least one detector")
        self.detectors = list(detectors)
        self.store = store
        self.flush_seconds = flush_seconds
        self.max_cached_accounts = max_cached_accounts
        self._accounts: OrderedDict[str, _Account] = OrderedDict()
        self._lock = threading.RLock()

    def fit(self, reference: Reference | None) -> DetectionMonitor:
        for d in self.detectors:
            d.fit(reference)
        return self

    # -- per-account state ----------------------------------------------------------------
    def _get(self, account: str) -> _Account:
        acc = self._accounts.get(account)
        if acc is not None:
            self._accounts.move_to_end(account)
            return acc
        acc = _Account({d.name: d.new_state() for d in self.detectors})
        stored = self.store.load(account) if self.store is not None else None
        if stored is not None:
            for d in self.detectors:
                st = stored["states"].get(d.name)
                if st is not None and check_state(d, st):  # a changed configuration starts fresh
                    acc.states[d.name] = {k: np.array(v) for k, v in st.items()}
            acc.queries, acc.level, acc.first = stored["queries"], stored["level"], {k: int(v) for k, v in stored["first"].items()}
            acc.signals = [Signal(s["detector"], s["signal"], s["value"], s["threshold"], s["level"], s["queries"], s["detail"])
                           for s in stored["signals"]]
        self._accounts[account] = acc
        while len(self._accounts) > self.max_cached_accounts:
            old, old_acc = self._accounts.popitem(last=False)
            self._save(old, old_acc)
        return acc

    def _save(self, account: str, acc: _Account) -> None:
        if self.store is not None and acc.dirty:
            self.store.save(account, acc.queries, acc.level, acc.first, [s.to_dict() for s in acc.signals], acc.states)
            acc.dirty, acc.saved_at = False, time.monotonic()

    # -- the stream -----------------------------------------------------------------------
    def observe(self, account: str, X: np.ndarray | None, answer: Any, ts: float | None = None) -> Risk:
        """Account ``account`` sent rows ``X`` and got ``answer``; its updated risk.

        ``answer`` is the owner's probabilities (array ``(n, classes)``), an
        :class:`~extractguard.oracle.answer.Answer` (its soft scores are used unless it is
        label-only or top-k) or a 1-D array of labels.  ``X`` may be ``None`` (output-only logs):
        detectors that need inputs then skip the request.
        """
        labels, probs = _labels_probs(answer)
        Xa = None if X is None else np.asarray(X, dtype=np.float64).reshape(len(labels), -1)
        return self.observe_obs(account, Observation(labels, time.time() if ts is None else float(ts), Xa, probs))

    def observe_obs(self, account: str, obs: Observation) -> Risk:
        with self._lock:
            acc = self._get(account)
            acc.queries += len(obs)
            signals: list[Signal] = []
            for d in self.detectors:
                if d.usable(obs):
                    signals.extend(d.update(acc.states[d.name], obs))
                else:  # keep the last value of a detector that cannot run on this request
                    signals.extend(s for s in acc.signals if s.detector == d.name)
            acc.signals = signals
            acc.level = max((s.level for s in signals), default=0.0)
            for s in signals:
                if s.fired:
                    acc.first.setdefault(f"{s.detector}/{s.name}", acc.queries)
            acc.dirty = True
            if self.store is not None and time.monotonic() - acc.saved_at >= self.flush_seconds:
                self._save(account, acc)
            return Risk(account, acc.level, acc.queries, list(signals), dict(acc.first))

    def risk(self, account: str) -> Risk:
        with self._lock:
            acc = self._get(account)
            return Risk(account, acc.level, acc.queries, list(acc.signals), dict(acc.first))

    def accounts(self) -> list[str]:
        return list(self._accounts)

    def forget(self, account: str) -> None:
        with self._lock:
            self._accounts.pop(account, None)

    def flush(self) -> None:
        with self._lock:
            for name, acc in self._accounts.items():
                self._save(name, acc)

    def close(self) -> None:
        self.flush()
        if self.store is not None:
            self.store.close()


def _labels_probs(answer: Any) -> tuple[np.ndarray, np.ndarray | None]:
    from extractguard.oracle.answer import Answer

    if isinstance(answer, Answer):
        if answer.spec.kind in ("probabilities", "logits", "rounded"):
            return answer.labels, answer.soft_labels()
        return answer.labels, None
    arr = np.asarray(answer)
    if arr.ndim == 1:
        return arr.astype(np.int64), None
    if arr.ndim == 2:
        p = arr.astype(np.float64)
        return p.argmax(axis=1), p
    raise ConfigurationError(f"an answer must be probabilities (n, classes) or labels (n,), got shape {arr.shape}")


def build_monitor(
    target: Any, reference_X: np.ndarray | None, *, detectors: Sequence[str] | None = None,
    baseline_rows_per_hour: float | None = None, params: dict[str, dict[str, Any]] | None = None,
    store: DetectionStore | None = None, seed: int = 0, **monitor_kw: Any,
) -> DetectionMonitor:
    """A fitted monitor for the owner's ``target`` (any object with ``.schema`` and ``.predict``).

    ``reference_X`` is the owner's held-out data (``None``: only PRADA and rate can run).
    ``detectors`` defaults to every detector that the given information allows.
    """
    schema = target.schema
    if schema.is_text:
        raise ConfigurationError("detection works on numeric inputs; text models are not supported yet")
    if detectors is None:
        detectors = [d for d in DETECTORS if (reference_X is not None or not DETECTORS.entry(d).needs_data)
                     and (baseline_rows_per_hour is not None or d != "rate")]
    else:
        detectors = [DETECTORS.canonical(d) if d in DETECTORS else d for d in detectors]
        need = sorted({d for d in detectors if d in DETECTORS and DETECTORS.entry(d).needs_data})
        if reference_X is None and need:
            raise ConfigurationError(f"detector(s) {', '.join(need)} need the owner's reference data")
    dets = build_detectors(list(detectors), schema.n_classes, schema.n_features,
                           baseline_rows_per_hour=baseline_rows_per_hour, params=params, seed=seed)
    ref = None if reference_X is None else Reference.from_target(target, reference_X, seed=seed)
    return DetectionMonitor(dets, store=store, **monitor_kw).fit(ref)
