"""Prometheus metrics of the gateway (prometheus-client), named by Prometheus conventions.

Prefix ``extractguard_``, base units (``_seconds``), counters ending in ``_total``.  Labels are
low-cardinality and never identify a caller: model, tier, status code, refusal reason.  Per-key
or per-IP series would leak who uses the service to anyone who can read /metrics and would grow
without bound; per-caller detail belongs in the audit log.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

#: Label names allowed on any gateway metric; tests assert nothing else appears.
ALLOWED_LABELS = frozenset({"model", "tier", "code", "reason"})


class GatewayMetrics:
    """One registry per gateway app, so several apps in one process do not collide."""

    def __init__(self) -> None:
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
