"""The protection gateway: an Open Inference Protocol server in front of a model.

Order of checks on ``POST /v2/models/{name}/infer`` (cheapest and least revealing first, and
nothing invalid ever reaches the model):

1. authenticate the API key (401) and the tier's access to the model (403, 404);
2. body size (413), JSON (400), tensor name/shape/dtype/NaN (400), rows per request (413);
3. rate limits, quota and spend cap charged per input row (429 + Retry-After);
4. model -> defense chain -> keyed watermark (if the tier has one) -> the tier's output mode;
5. watermark record (marked and control rows only), audit record (hash chain, committed before
   the response is sent), metrics, one JSON log line.

Every infer response carries an ``X-Request-ID``; a served request's id is in its audit record.
Only health and metrics answer without a valid API key.
"""

from __future__ import annotations

import ipaddress
import json
import sqlite3
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from extractguard import __version__
from extractguard.defenses import DefenseChain, build_chain
from extractguard.errors import ExtractGuardError, InputValidationError
from extractguard.gateway.audit import AuditLog
from extractguard.gateway.backend import UpstreamError, UpstreamTarget, build_backend
from extractguard.gateway.config import GatewayConfig, TierConfig
from extractguard.gateway.detection import GatewayDetection, suspended_message
from extractguard.gateway.keys import Account, KeyStore
from extractguard.gateway.limiter import LimitsUnavailable, RateLimits
from extractguard.gateway.logs import get_logger
from extractguard.gateway.metrics import GatewayMetrics
from extractguard.gateway.openapi import (AUTH_ERRORS, INFER_ERRORS, MODEL_ERRORS, REQUEST_ID_HEADER, InferenceResponse, Live,
                                          ModelMetadata, ModelReady, Ready, ServerMetadata, build_openapi)
from extractguard.oracle.answer import Answer, OutputSpec
from extractguard.oracle.oip import decode_request, encode_response
from extractguard.oracle.targets import Target
from extractguard.watermark import AnswerWatermark, WatermarkRecord, load_or_create_master_key

log = get_logger()


@dataclass
class _Tier:
    name: str
    config: TierConfig
    spec: OutputSpec
    chain: DefenseChain
    max_rows: int
    watermark: AnswerWatermark | None = None


@dataclass
class Gateway:
    """Everything one gateway app holds; built by :func:`create_app`, reachable as ``app.state.gateway``."""

    config: GatewayConfig
    target: Target
    keys: KeyStore
    limits: RateLimits
    audit: AuditLog | None
    metrics: GatewayMetrics
    tiers: dict[str, _Tier]
    rng: np.random.Generator
    watermarks: WatermarkRecord | None = None
    trusted: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = field(default_factory=list)
    detection: GatewayDetection | None = None  # tiers with a detection: block (docs/detection.md)

    @property
    def model_name(self) -> str:
        return self.config.model.name

    def client_ip(self, request: Request) -> str:
        """The direct peer, or the X-Forwarded-For client when the peer is a trusted proxy.

        Walks X-Forwarded-For from the right, skipping trusted proxies, so a client cannot
        choose its own IP by prepending addresses.
        """
        peer = request.client.host if request.client else "unknown"
        if not self.trusted or not self._is_trusted(peer):
            return peer
        hops = [h.strip() for h in request.headers.get("x-forwarded-for", "").split(",") if h.strip()]
        for hop in reversed(hops):
            if not self._is_trusted(hop):
                return hop
        return hops[0] if hops else peer

    def _is_trusted(self, addr: str) -> bool:
        try:
            ip = ipaddress.ip_address(addr)
        except ValueError:
            return False
        return any(ip in net for net in self.trusted)

    def authenticate(self, request: Request) -> Account | None:
        auth = request.headers.get("authorization", "")
        key = auth[7:].strip() if auth[:7].lower() == "bearer " else request.headers.get("x-api-key", "").strip()
        return self.keys.authenticate(key) if key else None

    def close(self) -> None:
        self.keys.close()
        if self.detection is not None:
            self.detection.close()  # after the last request: flush every account's state
        if self.audit is not None:
            self.audit.close()
        if self.watermarks is not None:
            self.watermarks.close()
        close_storage = getattr(self.limits.storage, "close", None)  # our SQLite storage
        if callable(close_storage):
            close_storage()


#: Retry-After (seconds) of a 503 while the rate-limit storage is unreachable.
STORAGE_RETRY_AFTER = 5


def _error(status: int, message: str, headers: dict[str, str] | None = None, body: dict[str, Any] | None = None) -> JSONResponse:
    return JSONResponse({"error": message, **(body or {})}, status_code=status, headers=headers)


def build_gateway(config: GatewayConfig, target: Target | None = None, owner_data: np.ndarray | None = None) -> Gateway:
    """Open every piece of state and fit the tiers' defense chains."""
    if target is None:
        target, owner_data = build_backend(config.model)
    tiers: dict[str, _Tier] = {}
    marking = any(tc.watermark is not None for tc in config.tiers.values())
    master = load_or_create_master_key(config.watermark_key_path) if marking else None
    for name, tc in config.tiers.items():
        chain = build_chain(tc.defenses).fit(target, owner_data)
        max_rows = min(tc.max_rows_per_request or config.max_rows_per_request, config.max_rows_per_request)
        wm = None
        if tc.watermark is not None and master is not None:
            w = tc.watermark
            wm = AnswerWatermark.from_config(master, w, target.schema.low, target.schema.high)
        tiers[name] = _Tier(name, tc, OutputSpec.parse(tc.output), chain, max_rows, wm)
    audit = AuditLog(config.audit_path) if config.audit_enabled else None
    detecting = any(tc.detection is not None for tc in config.tiers.values())
    return Gateway(
        config=config,
        target=target,
        keys=KeyStore(config.keys_path),
        limits=RateLimits(config),
        audit=audit,
        metrics=GatewayMetrics(config.metrics.per_account, config.metrics.max_accounts),
        tiers=tiers,
        rng=np.random.default_rng(config.seed),
        watermarks=WatermarkRecord(config.watermark_db_path) if marking else None,
        trusted=[ipaddress.ip_network(p, strict=False) for p in config.trusted_proxies],
        detection=GatewayDetection(config, target, owner_data, audit) if detecting else None,
    )


async def _read_body(request: Request, limit: int) -> bytes | None:
    """The body, or ``None`` as soon as it is longer than ``limit`` (never buffered past it)."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        return None
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


def create_app(config: GatewayConfig, target: Target | None = None, owner_data: np.ndarray | None = None) -> FastAPI:
    """The FastAPI app.  ``target`` overrides the configured model (tests, embedding in Python)."""
    gw = build_gateway(config, target, owner_data)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        if isinstance(gw.target, UpstreamTarget):
            await gw.target.aclose()
        gw.close()  # checkpoint and close the SQLite state on a clean shutdown

    app = FastAPI(title="ExtractGuard gateway", version=__version__, docs_url=None, redoc_url=None,
                  openapi_url=None, lifespan=lifespan)
    app.state.gateway = gw

    @app.exception_handler(Exception)
    async def internal_error(request: Request, exc: Exception) -> Response:
        """A bug still answers in the gateway's format (JSON, one line), never a bare text 500."""
        log.error("internal error", exc_info=exc, extra={"fields": {"event": "error", "path": request.url.path}})
        return _error(500, f"internal error ({type(exc).__name__}); the request was not served")
    app.openapi = lambda: build_openapi(app, gw.model_name)  # type: ignore[method-assign]
    m = gw.metrics
    m.ready.set(1)
    name = gw.model_name
    schema = gw.target.schema
    # Counters exported as 0 from the start, so rate()/increase() in alerts see the first event.
    m.upstream_errors.labels(name)
    for detect_tier in gw.detection.tiers if gw.detection is not None else ():
        for action in ("flag", "throttle", "challenge", "suspend"):
            m.detection_actions.labels(detect_tier, action)

    def unauthenticated() -> Response:
        m.refusals.labels("unauthenticated").inc()
        return _error(401, "missing, unknown or revoked API key; send 'Authorization: Bearer KEY' or 'X-API-Key: KEY'",
                      headers={"WWW-Authenticate": "Bearer"})

    @app.get("/v2/health/live", response_model=Live)
    async def live() -> dict[str, bool]:
        return {"live": True}

    @app.get("/v2/health/ready", response_model=Ready, responses={503: {"model": Ready, "description": "Storage unreachable."}})
    async def ready() -> Response:
        ok = gw.limits.storage.check()
        m.ready.set(1 if ok else 0)
        return JSONResponse({"ready": ok}, status_code=200 if ok else 503)

    @app.get("/v2", response_model=ServerMetadata, responses=AUTH_ERRORS)
    async def server_metadata(request: Request) -> Response:
        if gw.authenticate(request) is None:
            return unauthenticated()
        return JSONResponse({"name": "extractguard-gateway", "version": __version__, "extensions": []})

    def _metadata() -> dict[str, Any]:
        return {
            "name": name,
            "versions": ["1"],
            "platform": "extractguard-gateway",
            "inputs": [{"name": "input", "datatype": "FP32", "shape": [-1, *schema.input_shape]}],
            "outputs": [
                {"name": "label", "datatype": "INT64", "shape": [-1]},
                {"name": "probabilities", "datatype": "FP64", "shape": [-1, schema.n_classes]},
            ],
        }

    @app.get("/v2/models/{model}", response_model=ModelMetadata, responses=MODEL_ERRORS)
    async def model_metadata(model: str, request: Request) -> Response:
        if gw.authenticate(request) is None:
            return unauthenticated()
        if model != name:
            return _error(404, f"unknown model {model!r}")
        return JSONResponse(_metadata())

    @app.get("/v2/models/{model}/ready", response_model=ModelReady, responses=MODEL_ERRORS)
    async def model_ready(model: str, request: Request) -> Response:
        if gw.authenticate(request) is None:
            return unauthenticated()
        if model != name:
            return _error(404, f"unknown model {model!r}")
        return JSONResponse({"name": name, "ready": True})

    @app.get("/openapi.json", include_in_schema=False)
    async def openapi(request: Request) -> Response:
        if gw.authenticate(request) is None:
            return unauthenticated()
        return JSONResponse(app.openapi())

    @app.get("/metrics", response_class=Response,
             responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}}, "description": "Prometheus text format."}})
    async def metrics() -> Response:
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        return Response(generate_latest(m.registry), media_type=CONTENT_TYPE_LATEST)

    @app.post("/v2/models/{model}/infer", response_model=InferenceResponse, responses=INFER_ERRORS)
    async def infer(model: str, request: Request) -> Response:
        t0 = time.perf_counter()
        ip = gw.client_ip(request)
        rid = uuid.uuid4().hex  # ours, never the client's: it identifies the audit record
        ctx: dict[str, Any] = {"event": "infer", "model": model, "client_ip": ip, "request_id": rid}

        def refuse(status: int, reason: str, message: str, tier: str = "none", rows: int = 0,
                   headers: dict[str, str] | None = None, body: dict[str, Any] | None = None) -> Response:
            m.refusals.labels(reason).inc()
            m.requests.labels(name, tier, str(status)).inc()
            m.refused(ctx.get("account"), status, reason)
            if rows and reason == "rate_limited":
                m.refused_rows.labels(name, tier, reason).inc(rows)
            log.warning("refused", extra={"fields": {**ctx, "status": status, "reason": reason, "detail": message, "rows": rows}})
            return _error(status, message, {**(headers or {}), REQUEST_ID_HEADER: rid}, body)

        def storage_down(exc: LimitsUnavailable, tier: str, rows: int) -> Response | None:
            """The configured policy when limits cannot be counted: 503 (fail_closed) or serve (fail_open)."""
            policy = config.on_storage_error
            m.storage_errors.labels(policy).inc()
            if policy == "fail_open":
                log.error("rate-limit storage unavailable; serving uncounted (fail_open)",
                          extra={"fields": {**ctx, "detail": str(exc)}})
                return None
            return refuse(503, "storage_unavailable", f"{exc}; the request was not served, retry after {STORAGE_RETRY_AFTER} s",
                          tier, rows, headers={"Retry-After": str(STORAGE_RETRY_AFTER)})

        account = gw.authenticate(request)
        if account is None:
            return refuse(401, "unauthenticated", "missing, unknown or revoked API key; send 'Authorization: Bearer KEY' or 'X-API-Key: KEY'",
                          headers={"WWW-Authenticate": "Bearer"})
        ctx.update(account=account.account, key_id=account.key_id, tier=account.tier)
        tier = gw.tiers.get(account.tier)
        if tier is None:
            return refuse(403, "forbidden", f"tier {account.tier!r} of this key is not configured on this gateway")
        if model != name:
            return refuse(404, "invalid", f"unknown model {model!r}", tier.name)
        if tier.config.models is not None and model not in tier.config.models:
            return refuse(403, "forbidden", f"tier {tier.name!r} may not call model {model!r}", tier.name)

        raw = await _read_body(request, config.max_body_bytes)
        if raw is None:
            return refuse(413, "invalid", f"request body exceeds {config.max_body_bytes} bytes", tier.name)
        try:
            body = json.loads(raw)
        except (ValueError, UnicodeDecodeError) as exc:
            return refuse(400, "invalid", f"malformed JSON: {exc}", tier.name)
        except RecursionError:  # "[[[[..." deeper than the parser's stack
            return refuse(400, "invalid", "malformed JSON: nested too deeply", tier.name)
        try:
            X = decode_request(body, schema.n_features, max_rows=None)
            if X.shape[0] > tier.max_rows:
                return refuse(413, "invalid", f"batch of {X.shape[0]} rows exceeds the limit of {tier.max_rows} rows per request", tier.name)
            X = schema.validate(X)
        except InputValidationError as exc:
            return refuse(400, "invalid", str(exc), tier.name)
        n = int(X.shape[0])
        ctx["rows"] = n

        if gw.detection is not None:  # a sanctioned account: suspended, challenged or throttled
            try:
                sanction = gw.detection.admit(account.account, tier.name, n, request.headers, gw.limits.limiter)
            except gw.limits.storage_errors() as exc:  # the throttle counts on the same storage as the limits
                unavailable = LimitsUnavailable(f"rate-limit storage unavailable ({type(exc).__name__})")
                sanction, down = None, storage_down(unavailable, tier.name, n)
                if down is not None:
                    return down
            if sanction is not None:
                return refuse(sanction.status, sanction.reason, sanction.message, tier.name, n,
                              headers={"Retry-After": str(sanction.retry_after)} if sanction.retry_after else None,
                              body=sanction.body)

        try:
            refusal = gw.limits.charge(account.key_id, account.account, tier.name, ip, n)
        except LimitsUnavailable as exc:
            refusal, down = None, storage_down(exc, tier.name, n)
            if down is not None:
                return down
        if refusal is not None:
            msg = f"{refusal.scope} limit {refusal.limit} reached; {n} rows requested; retry after {refusal.retry_after} s"
            return refuse(429, "rate_limited", msg, tier.name, n, headers={"Retry-After": str(refusal.retry_after)})

        tm = time.perf_counter()
        try:
            if isinstance(gw.target, UpstreamTarget):
                pred = await gw.target.apredict(X)
            else:
                pred = gw.target.predict(X)
        except UpstreamError as exc:
            m.upstream_errors.labels(name).inc()
            return refuse(502, "upstream", str(exc), tier.name)
        except ExtractGuardError as exc:
            return refuse(500, "model", f"model failed: {exc}", tier.name)
        m.model_latency.labels(name).observe(time.perf_counter() - tm)
        if gw.detection is not None:  # detectors see the owner's undefended probabilities
            escalated = gw.detection.observe(account=account.account, key_id=account.key_id, tier=tier.name, model=name,
                                             client_ip=ip, X=X, probabilities=pred.probabilities)
            if account.account in gw.detection.levels:
                m.risk(account.account, gw.detection.levels[account.account])
            if escalated is not None:
                m.detection_actions.labels(tier.name, escalated[0]).inc()
                if escalated[0] == "suspend":  # this answer is not served either
                    return refuse(403, "suspended", suspended_message(account.account), tier.name)
        p = tier.chain.apply(pred.probabilities, X, gw.rng) if tier.chain.defenses else pred.probabilities
        logits = pred.logits if not tier.chain.defenses else None
        if tier.watermark is not None:
            p, marks = tier.watermark.apply(p, X, account.account)
            logits = None  # the served logits must agree with the marked probabilities
            recorded = int((marks.marked | marks.control).sum())
            new = gw.watermarks.add(account.account, X, marks) if gw.watermarks is not None else recorded
            m.watermarked(name, tier.name, account.account, int(marks.marked.sum()), recorded - new)
        answer = Answer.from_probabilities(p, tier.spec, logits)
        request_id = body.get("id") if isinstance(body.get("id"), str) else None
        out = encode_response(answer, name, request_id)

        if gw.audit is not None:
            try:
                gw.audit.append(account=account.account, key_id=account.key_id, tier=tier.name, model=name,
                                client_ip=ip, X=X, output=out["outputs"], request_id=rid)
            except sqlite3.Error as exc:  # locked past its timeout, disk full: no record, no answer
                log.error("audit log unavailable", extra={"fields": {**ctx, "detail": str(exc)}})
                return refuse(503, "audit_unavailable", f"audit log unavailable ({exc}); the answer was not sent, retry after "
                              f"{STORAGE_RETRY_AFTER} s", tier.name, n, headers={"Retry-After": str(STORAGE_RETRY_AFTER)})
        elapsed = time.perf_counter() - t0
        m.requests.labels(name, tier.name, "200").inc()
        m.rows.labels(name, tier.name).inc(n)
        m.latency.labels(name).observe(elapsed)
        m.served(name, tier.name, account.account, n, elapsed, tier.config.price_per_row, p)
        log.info("served", extra={"fields": {**ctx, "status": 200, "output": str(tier.spec), "duration_seconds": round(elapsed, 6)}})
        return Response(json.dumps(out, separators=(",", ":")), media_type="application/json", headers={REQUEST_ID_HEADER: rid})

    return app
