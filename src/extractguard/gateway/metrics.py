"""Prometheus metrics of the gateway (prometheus-client), named by Prometheus conventions.

Prefix ``extractguard_``, base units (``_seconds``, ``_ratio``), counters ending in ``_total``.
The totals carry low-cardinality labels only: model, tier, status code, refusal reason.  Series
labelled ``account`` (the account *name* from the key store) exist so alerts can compare an
account with its own baseline (monitoring/prometheus/extractguard-rules.yml); they are switched
by ``metrics.per_account`` and capped by ``metrics.max_accounts``.  No series ever carries an API
key, a key id or an IP: per-key or per-IP series would leak who calls from where to anyone who
can read /metrics and would grow without bound; per-request detail belongs in the audit log.
"""

from __future__ import annotations

import bisect
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Summary
from prometheus_client.core import HistogramMetricFamily
from prometheus_client.registry import Collector

#: Label names allowed on any gateway metric; tests assert nothing else appears.
ALLOWED_LABELS = frozenset({"model", "tier", "code", "reason", "account"})

#: Label value shared by the accounts beyond ``max_accounts``.
OTHER_ACCOUNT = "_other"

CONFIDENCE_BUCKETS = (0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99, 1.0)


class BatchHistogram(Collector):
    """A labelled histogram that takes a whole batch of observations in one numpy call.

    prometheus-client's Histogram takes one value per call (about 8 ms for a 1024-row batch on a
    loaded core, in the request path); answers come in batches, so we bucket them with
    ``np.searchsorted`` and expose the counts through the library's custom-collector API.
    """

    def __init__(self, name: str, documentation: str, labelnames: tuple[str, ...], buckets: tuple[float, ...],
                 registry: CollectorRegistry) -> None:
        self.name, self.documentation, self.labelnames = name, documentation, labelnames
        self.bounds = np.asarray(buckets, dtype=np.float64)
        self._bounds = [float(b) for b in buckets]
        self._series: dict[tuple[str, ...], list] = {}  # labels -> [per-bucket counts (+Inf last), sum]
        self._lock = threading.Lock()
        registry.register(self)

    def observe_many(self, labels: tuple[str, ...], values: np.ndarray) -> None:
        v = np.asarray(values, dtype=np.float64).ravel()
        small = v.size <= 16  # below this, numpy's per-call overhead costs more than a bisect per value
        if small:
            vs = v.tolist()
            where = [bisect.bisect_left(self._bounds, x) for x in vs]
            total = sum(vs)
        else:
            counts = np.bincount(np.searchsorted(self.bounds, v, side="left"), minlength=len(self.bounds) + 1)
            total = float(v.sum())
        with self._lock:
            s = self._series.get(labels)
            if s is None:
                s = self._series[labels] = [np.zeros(len(self.bounds) + 1, dtype=np.int64), 0.0]
            if small:
                for i in where:
                    s[0][i] += 1
            else:
                s[0] += counts
            s[1] += total

    def describe(self) -> Iterator[HistogramMetricFamily]:
        yield HistogramMetricFamily(self.name, self.documentation, labels=list(self.labelnames))

    def collect(self) -> Iterator[HistogramMetricFamily]:
        family = HistogramMetricFamily(self.name, self.documentation, labels=list(self.labelnames))
        with self._lock:
            items = [(k, c.copy(), t) for k, (c, t) in self._series.items()]
        for labels, counts, total in items:
            cumulative = np.cumsum(counts)
            edges = [*(repr(float(b)) for b in self.bounds), "+Inf"]
            family.add_metric(list(labels), list(zip(edges, (float(c) for c in cumulative))), total)
        yield family


@dataclass(frozen=True)
class _Children:
    """Label children looked up once per account or (model, tier): ``.labels()`` takes a lock and
    builds a key on every call, and the request path touches several series per answer."""

    served: tuple[Any, ...]
    watermark: tuple[Any, ...]


class GatewayMetrics:
    """One registry per gateway app, so several apps in one process do not collide."""

    def __init__(self, per_account: bool = True, max_accounts: int = 1000) -> None:
        self.per_account = per_account
        self.max_accounts = max_accounts
        self._accounts: set[str] = set()
        self._accounts_lock = threading.Lock()
        self._other_risk: dict[str, float] = {}
        self._tier_children: dict[tuple[str, str], _Children] = {}
        self._account_children: dict[str, _Children] = {}
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter(
            "extractguard_requests_total", "Inference requests answered, by HTTP status code.",
            ["model", "tier", "code"], registry=r,
        )
        self.rows = Counter(
            "extractguard_rows_served_total", "Input rows answered (one row = one query).",
            ["model", "tier"], registry=r,
        )
        self.refused_rows = Counter(
            "extractguard_rows_refused_total", "Input rows in requests refused by a limit or quota.",
            ["model", "tier", "reason"], registry=r,
        )
        self.refusals = Counter(
            "extractguard_refusals_total",
            "Requests refused before the model, by reason (unauthenticated=401, forbidden=403, "
            "rate_limited=429, invalid=400/404/413/415, storage_unavailable=503, audit_unavailable=503).",
            ["reason"], registry=r,
        )
        self.latency = Histogram(
            "extractguard_request_duration_seconds", "Time to answer an inference request.",
            ["model"], registry=r,
            buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
        )
        self.model_latency = Histogram(
            "extractguard_model_duration_seconds", "Time spent in the model (or upstream) per request.",
            ["model"], registry=r,
            buckets=(0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0),
        )
        self.upstream_errors = Counter(
            "extractguard_upstream_errors_total", "Failed calls to the upstream inference server.",
            ["model"], registry=r,
        )
        self.detection_actions = Counter(
            "extractguard_detection_actions_total", "Accounts escalated by extraction detection, by action (reason).",
            ["tier", "reason"], registry=r,
        )
        self.storage_errors = Counter(
            "extractguard_storage_errors_total",
            "Requests that found the rate-limit storage unreachable, by the policy applied (fail_closed=503, fail_open=served).",
            ["reason"], registry=r,
        )
        self.ready = Gauge("extractguard_ready", "1 when the model is loaded and state storage answers.", registry=r)
        self.spend = Counter(
            "extractguard_spend_total", "Spend of answered rows: rows x the tier's price_per_row (0 for unpriced tiers).",
            ["model", "tier"], registry=r,
        )
        self.watermarked_rows = Counter(
            "extractguard_watermarked_rows_total", "Answered rows that carried the keyed watermark (a keyed wrong label).",
            ["model", "tier"], registry=r,
        )
        self.watermark_repeats = Counter(
            "extractguard_watermark_repeat_rows_total",
            "Answered rows whose exact input the watermark record already held for this account (marked or control): "
            "replays of recorded inputs, e.g. someone probing for the watermark.",
            ["model", "tier"], registry=r,
        )
        self.confidence = BatchHistogram(
            "extractguard_answer_confidence_ratio",
            "Top-1 probability of each answered row after defenses and watermark (before the tier's output mode).",
            ("model", "tier"), CONFIDENCE_BUCKETS, r,
        )
        self.accounts = Gauge(
            "extractguard_metrics_accounts", "Distinct account label values in use (capped by metrics.max_accounts).", registry=r,
        )
        if not per_account:
            return
        self.account_requests = Counter(
            "extractguard_account_requests_total", "Authenticated inference requests by account and HTTP status code.",
            ["account", "code"], registry=r,
        )
        self.account_rows = Counter("extractguard_account_rows_total", "Input rows answered, by account.", ["account"], registry=r)
        self.account_refusals = Counter(
            "extractguard_account_refusals_total", "Authenticated requests refused, by account and reason.",
            ["account", "reason"], registry=r,
        )
        self.account_spend = Counter(
            "extractguard_account_spend_total", "Spend of answered rows (rows x price_per_row), by account.", ["account"], registry=r,
        )
        self.account_latency = Summary(
            "extractguard_account_request_duration_seconds",
            "Time to answer an inference request, by account (sum and count only: mean latency without per-account buckets).",
            ["account"], registry=r,
        )
        self.account_risk = Gauge(
            "extractguard_account_risk",
            "Latest extraction risk of the account from the tier's detection monitor (1.0 = a calibrated alarm threshold).",
            ["account"], registry=r,
        )
        self.account_watermarked_rows = Counter(
            "extractguard_account_watermarked_rows_total", "Watermarked answers served, by account.", ["account"], registry=r,
        )
        self.account_watermark_repeats = Counter(
            "extractguard_account_watermark_repeat_rows_total",
            "Answered rows replaying an input the watermark already recorded for the account, by account.", ["account"], registry=r,
        )

    # -- helpers the request path calls ------------------------------------------------------
    def account_label(self, account: str | None) -> str | None:
        """The ``account`` label value (``_other`` past the cap), or ``None`` when per-account is off."""
        if not self.per_account or account is None:
            return None
        with self._accounts_lock:
            if account in self._accounts:
                return account
            if len(self._accounts) >= self.max_accounts:
                return OTHER_ACCOUNT
            self._accounts.add(account)
            self.accounts.set(len(self._accounts))
            return account

    def refused(self, account: str | None, status: int, reason: str) -> None:
        label = self.account_label(account)
        if label is not None:
            self.account_requests.labels(label, str(status)).inc()
            self.account_refusals.labels(label, reason).inc()

    def _tier(self, model: str, tier: str) -> _Children:
        c = self._tier_children.get((model, tier))
        if c is None:
            c = self._tier_children[(model, tier)] = _Children(
                (self.spend.labels(model, tier),), (self.watermarked_rows.labels(model, tier), self.watermark_repeats.labels(model, tier)))
        return c

    def _account(self, label: str) -> _Children:
        c = self._account_children.get(label)
        if c is None:
            c = self._account_children[label] = _Children(
                (self.account_requests.labels(label, "200"), self.account_rows.labels(label), self.account_spend.labels(label),
                 self.account_latency.labels(label)),
                (self.account_watermarked_rows.labels(label), self.account_watermark_repeats.labels(label)))
        return c

    def served(self, model: str, tier: str, account: str, rows: int, seconds: float, price_per_row: float,
               probabilities: np.ndarray) -> None:
        spend = rows * price_per_row
        (tier_spend,) = self._tier(model, tier).served
        if spend:
            tier_spend.inc(spend)
        if probabilities.size:
            self.confidence.observe_many((model, tier), probabilities.max(axis=1))
        label = self.account_label(account)
        if label is not None:
            requests, acct_rows, acct_spend, latency = self._account(label).served
            requests.inc()
            acct_rows.inc(rows)
            if spend:
                acct_spend.inc(spend)
            latency.observe(seconds)

    def watermarked(self, model: str, tier: str, account: str, marked: int, repeats: int) -> None:
        children = [self._tier(model, tier)]  # children exist (exported at 0) even before the first mark
        label = self.account_label(account)
        if label is not None:
            children.append(self._account(label))
        for c in children:
            rows, replays = c.watermark
            if marked:
                rows.inc(marked)
            if repeats:
                replays.inc(repeats)

    def risk(self, account: str, level: float) -> None:
        label = self.account_label(account)
        if label == OTHER_ACCOUNT:  # pooled accounts: the riskiest one speaks for them all
            with self._accounts_lock:
                self._other_risk[account] = level
                level = max(self._other_risk.values())
        if label is not None:
            self.account_risk.labels(label).set(level)
