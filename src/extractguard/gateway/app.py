"""The protection gateway: an Open Inference Protocol server in front of a model.

Order of checks on ``POST /v2/models/{name}/infer`` (cheapest and least revealing first, and
nothing invalid ever reaches the model):

1. authenticate the API key (401) and the tier's access to the model (403, 404);
2. body size (413), JSON (400), tensor name/shape/dtype/NaN (400), rows per request (413);
3. a detection sanction in force (403, 428, 429), then rate limits, quota and spend cap charged
   per input row (429 + Retry-After);
4. the model, then the tier's :class:`~extractguard.serving.ServingPipeline` (detection ->
   defense chain -> keyed watermark and its record -> the tier's output mode): the same pipeline
   an assessment measures;
5. audit record (hash chain, committed before the response is sent; an escalation's evidence
   first), metrics, one JSON log line.

Every infer response carries an ``X-Request-ID``; a served request's id is in its audit record.
Only health and metrics answer without a valid API key.
"""

from __future__ import annotations

import ipaddress
import json
import sqlite3
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from extractguard import __version__
from extractguard.detect.policy import POW_HEADER
from extractguard.errors import ExtractGuardError, InputValidationError
from extractguard.gateway.audit import AuditLog
from extractguard.gateway.backend import UpstreamError, UpstreamTarget, build_backend
from extractguard.gateway.config import GatewayConfig, TierConfig
from extractguard.gateway.keys import Account, KeyStore
from extractguard.gateway.limiter import LimitsUnavailable, RateLimits
from extractguard.gateway.logs import get_logger
from extractguard.gateway.metrics import GatewayMetrics
from extractguard.gateway.openapi import (AUTH_ERRORS, INFER_ERRORS, MODEL_ERRORS, REQUEST_ID_HEADER, InferenceResponse, Live,
                                          ModelMetadata, ModelReady, Ready, ServerMetadata, build_openapi)
from extractguard.oracle.oip import decode_request, encode_response
from extractguard.oracle.pipeline import Clock, WallClock
from extractguard.oracle.targets import Prediction, Target
from extractguard.serving import Decision, Detection, Escalation, ServingPipeline, Withheld, reference_rows
from extractguard.watermark import WatermarkRecord, load_or_create_master_key

log = get_logger()

#: HTTP status of each reason a detection sanction withholds an answer (serving.WITHHELD_REASONS).
WITHHELD_STATUS = {"suspended": 403, "challenged": 428, "throttled": 429}


@dataclass
class Gateway:
    """Everything one gateway app holds; built by :func:`create_app`, reachable as ``app.state.gateway``.

    ``tiers`` are the tiers' answer pipelines; they share ``rng`` (randomised defenses),
    ``watermarks`` (the watermark record) and ``detection`` (per-account sanctions).
    """

    config: GatewayConfig
    target: Target
    keys: KeyStore
    limits: RateLimits
    audit: AuditLog | None
    metrics: GatewayMetrics
    tiers: dict[str, ServingPipeline]
    rng: np.random.Generator
    watermarks: WatermarkRecord | None = None
    trusted: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = field(default_factory=list)
    detection: Detection | None = None  # tiers with a detection: block (docs/detection.md)
    clock: Clock = field(default_factory=WallClock)  # the time the pipelines answer at

    @property
    def model_name(self) -> str:
        return self.config.model.name

    def tier_config(self, tier: str) -> TierConfig:
        return self.config.tiers[tier]

    def max_rows(self, tier: str) -> int:
        """Rows one request of ``tier`` may carry: the tier's own cap within the gateway's."""
        own = self.config.tiers[tier].max_rows_per_request
        return min(own or self.config.max_rows_per_request, self.config.max_rows_per_request)

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
UNAUTHENTICATED = "missing, unknown or revoked API key; send 'Authorization: Bearer KEY' or 'X-API-Key: KEY'"


def _error(status: int, message: str, headers: dict[str, str] | None = None, body: dict[str, Any] | None = None) -> JSONResponse:
    return JSONResponse({"error": message, **(body or {})}, status_code=status, headers=headers)


def build_detection(config: GatewayConfig, target: Target, owner_data: np.ndarray | None) -> Detection | None:
    """The gateway's detection (state in ``state_dir/detect.db``), or ``None`` when no tier detects."""
    tiers = {n: t.detection for n, t in config.tiers.items() if t.detection is not None}
    if not tiers:
        return None
    from extractguard.detect import DetectionStore

    store = DetectionStore(config.detect_path)
    n_features = target.schema.n_features
    references = {}
    for name, dc in tiers.items():
        references[name] = reference_rows(dc, n_features, owner_data, victim=config.model.victim, seed=config.model.seed)
        if references[name] is None and dc.detectors is None:
            log.warning("detection", extra={"fields": {"event": "detection_config", "tier": name, "detail":
                        "no reference data (set detection.reference): only prada and rate run"}})
    return Detection.build(tiers, target, references, store, tier_names=tuple(config.tiers))


def build_gateway(config: GatewayConfig, target: Target | None = None, owner_data: np.ndarray | None = None,
                  clock: Clock | None = None) -> Gateway:
    """Open every piece of state and build the tiers' pipelines (fitting their defense chains).

    ``clock`` is the time the pipelines answer at (default: the wall clock; tests inject one).
    """
    if target is None:
        target, owner_data = build_backend(config.model)
    marking = any(tc.watermark is not None for tc in config.tiers.values())
    master = load_or_create_master_key(config.watermark_key_path) if marking else None
    watermarks = WatermarkRecord(config.watermark_db_path) if marking else None
    rng = np.random.default_rng(config.seed)
    detection = build_detection(config, target, owner_data)
    tiers = {name: ServingPipeline.from_policy(target, tc, tier=name, owner_data=owner_data, rng=rng, master_key=master,
                                               record=watermarks, detection=detection)
             for name, tc in config.tiers.items()}
    return Gateway(
        config=config,
        target=target,
        keys=KeyStore(config.keys_path),
        limits=RateLimits(config),
        audit=AuditLog(config.audit_path) if config.audit_enabled else None,
        metrics=GatewayMetrics(config.metrics.per_account, config.metrics.max_accounts),
        tiers=tiers,
        rng=rng,
        watermarks=watermarks,
        trusted=[ipaddress.ip_network(p, strict=False) for p in config.trusted_proxies],
        detection=detection,
        clock=clock or WallClock(),
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


class _Refused(Exception):
    """A step of the infer route refused the request: ``response`` is the answer to send."""

    def __init__(self, response: Response) -> None:
        self.response = response


@dataclass
class _Infer:
    """One ``infer`` request on its way through authenticate -> validate -> limits -> pipeline -> audit.

    Each step returns what the next needs or raises :class:`_Refused` with the error response
    (counted in the metrics and logged once by :meth:`refuse`).
    """

    gw: Gateway
    request: Request
    model: str
    t0: float = field(default_factory=time.perf_counter)
    rid: str = field(default_factory=lambda: uuid.uuid4().hex)  # ours, never the client's: it identifies the audit record
    ip: str = ""
    ctx: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.ip = self.gw.client_ip(self.request)
        self.ctx = {"event": "infer", "model": self.model, "client_ip": self.ip, "request_id": self.rid}

    def refuse(self, status: int, reason: str, message: str, tier: str = "none", rows: int = 0,
               headers: dict[str, str] | None = None, body: dict[str, Any] | None = None) -> _Refused:
        m = self.gw.metrics
        m.refusals.labels(reason).inc()
        m.requests.labels(self.gw.model_name, tier, str(status)).inc()
        m.refused(self.ctx.get("account"), status, reason)
        if rows and reason == "rate_limited":
            m.refused_rows.labels(self.gw.model_name, tier, reason).inc(rows)
        log.warning("refused", extra={"fields": {**self.ctx, "status": status, "reason": reason, "detail": message, "rows": rows}})
        return _Refused(_error(status, message, {**(headers or {}), REQUEST_ID_HEADER: self.rid}, body))

    def withheld(self, w: Withheld, tier: str, rows: int = 0) -> _Refused:
        return self.refuse(WITHHELD_STATUS[w.reason], w.reason, w.message, tier, rows,
                           headers={"Retry-After": str(w.retry_after)} if w.retry_after else None,
                           body={"challenge": w.challenge} if w.challenge is not None else None)

    def storage_down(self, exc: LimitsUnavailable, tier: str, rows: int) -> None:
        """The configured policy when limits cannot be counted: 503 (fail_closed) or serve (fail_open)."""
        policy = self.gw.config.on_storage_error
        self.gw.metrics.storage_errors.labels(policy).inc()
        if policy == "fail_open":
            log.error("rate-limit storage unavailable; serving uncounted (fail_open)",
                      extra={"fields": {**self.ctx, "detail": str(exc)}})
            return
        raise self.refuse(503, "storage_unavailable", f"{exc}; the request was not served, retry after {STORAGE_RETRY_AFTER} s",
                          tier, rows, headers={"Retry-After": str(STORAGE_RETRY_AFTER)})

    # -- the steps --------------------------------------------------------------------------
    def authorize(self) -> tuple[Account, ServingPipeline]:
        """The caller's account and its tier's pipeline: 401, 403 or 404 otherwise."""
        account = self.gw.authenticate(self.request)
        if account is None:
            raise self.refuse(401, "unauthenticated", UNAUTHENTICATED, headers={"WWW-Authenticate": "Bearer"})
        self.ctx.update(account=account.account, key_id=account.key_id, tier=account.tier)
        pipe = self.gw.tiers.get(account.tier)
        if pipe is None:
            raise self.refuse(403, "forbidden", f"tier {account.tier!r} of this key is not configured on this gateway")
        if self.model != self.gw.model_name:
            raise self.refuse(404, "invalid", f"unknown model {self.model!r}", pipe.tier)
        allowed = self.gw.tier_config(pipe.tier).models
        if allowed is not None and self.model not in allowed:
            raise self.refuse(403, "forbidden", f"tier {pipe.tier!r} may not call model {self.model!r}", pipe.tier)
        return account, pipe

    async def read_rows(self, tier: str) -> tuple[dict[str, Any], np.ndarray]:
        """The request body and its validated rows: 413 or 400 otherwise."""
        limit = self.gw.config.max_body_bytes
        raw = await _read_body(self.request, limit)
        if raw is None:
            raise self.refuse(413, "invalid", f"request body exceeds {limit} bytes", tier)
        try:
            body = json.loads(raw)
        except (ValueError, UnicodeDecodeError) as exc:
            raise self.refuse(400, "invalid", f"malformed JSON: {exc}", tier) from None
        except RecursionError:  # "[[[[..." deeper than the parser's stack
            raise self.refuse(400, "invalid", "malformed JSON: nested too deeply", tier) from None
        schema = self.gw.target.schema
        max_rows = self.gw.max_rows(tier)
        try:
            X = decode_request(body, schema.n_features, max_rows=None)
            if X.shape[0] > max_rows:
                raise self.refuse(413, "invalid", f"batch of {X.shape[0]} rows exceeds the limit of {max_rows} rows per request", tier)
            X = schema.validate(X)
        except InputValidationError as exc:
            raise self.refuse(400, "invalid", str(exc), tier) from None
        self.ctx["rows"] = int(X.shape[0])
        return body, X

    def charge(self, account: Account, pipe: ServingPipeline, n: int) -> None:
        """A sanction in force (suspended, challenged, throttled), then the rate limits, quota and spend cap."""
        gw = self.gw
        if gw.detection is not None:
            token = self.request.headers.get(POW_HEADER.lower()) or self.request.headers.get(POW_HEADER)
            try:
                sanction = pipe.admit(account.account, n, token, gw.limits.limiter)
            except gw.limits.storage_errors() as exc:  # the throttle counts on the same storage as the limits
                sanction = None
                self.storage_down(LimitsUnavailable(f"rate-limit storage unavailable ({type(exc).__name__})"), pipe.tier, n)
            if sanction is not None:
                raise self.withheld(sanction, pipe.tier, n)
        try:
            refusal = gw.limits.charge(account.key_id, account.account, pipe.tier, self.ip, n)
        except LimitsUnavailable as exc:
            refusal = None
            self.storage_down(exc, pipe.tier, n)
        if refusal is not None:
            msg = f"{refusal.scope} limit {refusal.limit} reached; {n} rows requested; retry after {refusal.retry_after} s"
            raise self.refuse(429, "rate_limited", msg, pipe.tier, n, headers={"Retry-After": str(refusal.retry_after)})

    async def predict(self, X: np.ndarray, tier: str) -> Prediction:
        """The owner's model on the rows (a local model, or the upstream server): 502 or 500 otherwise."""
        gw, name = self.gw, self.gw.model_name
        tm = time.perf_counter()
        try:
            if isinstance(gw.target, UpstreamTarget):
                pred = await gw.target.apredict(X)
            else:
                pred = gw.target.predict(X)
        except UpstreamError as exc:
            gw.metrics.upstream_errors.labels(name).inc()
            raise self.refuse(502, "upstream", str(exc), tier) from None
        except ExtractGuardError as exc:
            raise self.refuse(500, "model", f"model failed: {exc}", tier) from None
        gw.metrics.model_latency.labels(name).observe(time.perf_counter() - tm)
        return pred

    def record_escalation(self, account: Account, esc: Escalation) -> None:
        """An account's sanction escalated: its evidence joins the audit log before anything is sent."""
        gw = self.gw
        if gw.audit is not None:
            gw.audit.append(account=account.account, key_id=account.key_id, tier=esc.tier, model=gw.model_name,
                            client_ip=self.ip, X=np.empty((0, gw.target.schema.n_features)), output={"detection": esc.evidence})
        log.warning("detection", extra={"fields": {"event": "detection", "account": account.account, "tier": esc.tier,
                                                   "action": esc.action, "previous": esc.previous,
                                                   "level": round(esc.risk.level, 3), "explanation": esc.risk.explain()}})

    def account_decision(self, account: Account, tier: str, decision: Decision) -> None:
        """Metrics and evidence of the pipeline's decision: risk, escalation, watermark marks."""
        gw, m = self.gw, self.gw.metrics
        if decision.escalation is not None:
            self.record_escalation(account, decision.escalation)
        if gw.detection is not None and account.account in gw.detection.levels:
            m.risk(account.account, gw.detection.levels[account.account])
        if decision.escalation is not None:
            m.detection_actions.labels(tier, decision.escalation.action).inc()
        if decision.marks is not None:
            recorded = int((decision.marks.marked | decision.marks.control).sum())
            m.watermarked(gw.model_name, tier, account.account, int(decision.marks.marked.sum()), recorded - decision.recorded)

    def audit(self, account: Account, tier: str, X: np.ndarray, out: dict[str, Any]) -> None:
        """The served request's audit record, committed before the answer leaves: 503 otherwise."""
        gw = self.gw
        if gw.audit is None:
            return
        try:
            gw.audit.append(account=account.account, key_id=account.key_id, tier=tier, model=gw.model_name,
                            client_ip=self.ip, X=X, output=out["outputs"], request_id=self.rid)
        except sqlite3.Error as exc:  # locked past its timeout, disk full: no record, no answer
            log.error("audit log unavailable", extra={"fields": {**self.ctx, "detail": str(exc)}})
            raise self.refuse(503, "audit_unavailable", f"audit log unavailable ({exc}); the answer was not sent, retry after "
                              f"{STORAGE_RETRY_AFTER} s", tier, int(X.shape[0]),
                              headers={"Retry-After": str(STORAGE_RETRY_AFTER)}) from None

    async def run(self) -> Response:
        gw = self.gw
        account, pipe = self.authorize()
        body, X = await self.read_rows(pipe.tier)
        n = int(X.shape[0])
        self.charge(account, pipe, n)
        pred = await self.predict(X, pipe.tier)
        served = pipe.answer(account.account, X, gw.clock.tick(n), prediction=pred)
        self.account_decision(account, pipe.tier, served.decision)
        if served.answer is None:  # withheld: a suspension this very batch triggered
            assert served.decision.withheld is not None
            raise self.withheld(served.decision.withheld, pipe.tier)
        request_id = body.get("id") if isinstance(body.get("id"), str) else None
        out = encode_response(served.answer, gw.model_name, request_id)
        self.audit(account, pipe.tier, X, out)
        self.served(account, pipe, n, served.probabilities)
        return Response(json.dumps(out, separators=(",", ":")), media_type="application/json", headers={REQUEST_ID_HEADER: self.rid})

    def served(self, account: Account, pipe: ServingPipeline, n: int, probabilities: Any) -> None:
        gw, m, name = self.gw, self.gw.metrics, self.gw.model_name
        elapsed = time.perf_counter() - self.t0
        m.requests.labels(name, pipe.tier, "200").inc()
        m.rows.labels(name, pipe.tier).inc(n)
        m.latency.labels(name).observe(elapsed)
        m.served(name, pipe.tier, account.account, n, elapsed, gw.tier_config(pipe.tier).price_per_row, probabilities)
        log.info("served", extra={"fields": {**self.ctx, "status": 200, "output": str(pipe.output), "duration_seconds": round(elapsed, 6)}})


# -- the app ------------------------------------------------------------------------------------
def _lifespan(gw: Gateway) -> Callable[[FastAPI], Any]:
    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        if isinstance(gw.target, UpstreamTarget):
            await gw.target.aclose()
        gw.close()  # checkpoint and close the SQLite state on a clean shutdown

    return lifespan


async def _internal_error(request: Request, exc: Exception) -> Response:
    """A bug still answers in the gateway's format (JSON, one line), never a bare text 500."""
    log.error("internal error", exc_info=exc, extra={"fields": {"event": "error", "path": request.url.path}})
    return _error(500, f"internal error ({type(exc).__name__}); the request was not served")


def _start_metrics(gw: Gateway) -> None:
    """Ready, and the counters exported as 0 from the start, so rate()/increase() in alerts see the first event."""
    m = gw.metrics
    m.ready.set(1)
    m.upstream_errors.labels(gw.model_name)
    for detect_tier in gw.detection.tiers if gw.detection is not None else ():
        for action in ("flag", "throttle", "challenge", "suspend"):
            m.detection_actions.labels(detect_tier, action)


def _unauthenticated(gw: Gateway) -> Response:
    gw.metrics.refusals.labels("unauthenticated").inc()
    return _error(401, UNAUTHENTICATED, headers={"WWW-Authenticate": "Bearer"})


def _metadata(gw: Gateway) -> dict[str, Any]:
    schema = gw.target.schema
    return {
        "name": gw.model_name,
        "versions": ["1"],
        "platform": "extractguard-gateway",
        "inputs": [{"name": "input", "datatype": "FP32", "shape": [-1, *schema.input_shape]}],
        "outputs": [
            {"name": "label", "datatype": "INT64", "shape": [-1]},
            {"name": "probabilities", "datatype": "FP64", "shape": [-1, schema.n_classes]},
        ],
    }


def _add_public_routes(app: FastAPI, gw: Gateway) -> None:
    """Health and metrics: the only routes that answer without an API key."""

    @app.get("/v2/health/live", response_model=Live)
    async def live() -> dict[str, bool]:
        return {"live": True}

    @app.get("/v2/health/ready", response_model=Ready, responses={503: {"model": Ready, "description": "Storage unreachable."}})
    async def ready() -> Response:
        ok = gw.limits.storage.check()
        gw.metrics.ready.set(1 if ok else 0)
        return JSONResponse({"ready": ok}, status_code=200 if ok else 503)

    @app.get("/metrics", response_class=Response,
             responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}}, "description": "Prometheus text format."}})
    async def metrics() -> Response:
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        return Response(generate_latest(gw.metrics.registry), media_type=CONTENT_TYPE_LATEST)


def _add_metadata_routes(app: FastAPI, gw: Gateway) -> None:
    """Server and model metadata, model readiness and the OpenAPI document (API key needed)."""

    @app.get("/v2", response_model=ServerMetadata, responses=AUTH_ERRORS)
    async def server_metadata(request: Request) -> Response:
        if gw.authenticate(request) is None:
            return _unauthenticated(gw)
        return JSONResponse({"name": "extractguard-gateway", "version": __version__, "extensions": []})

    @app.get("/v2/models/{model}", response_model=ModelMetadata, responses=MODEL_ERRORS)
    async def model_metadata(model: str, request: Request) -> Response:
        if gw.authenticate(request) is None:
            return _unauthenticated(gw)
        if model != gw.model_name:
            return _error(404, f"unknown model {model!r}")
        return JSONResponse(_metadata(gw))

    @app.get("/v2/models/{model}/ready", response_model=ModelReady, responses=MODEL_ERRORS)
    async def model_ready(model: str, request: Request) -> Response:
        if gw.authenticate(request) is None:
            return _unauthenticated(gw)
        if model != gw.model_name:
            return _error(404, f"unknown model {model!r}")
        return JSONResponse({"name": gw.model_name, "ready": True})

    @app.get("/openapi.json", include_in_schema=False)
    async def openapi(request: Request) -> Response:
        if gw.authenticate(request) is None:
            return _unauthenticated(gw)
        return JSONResponse(app.openapi())


def _add_infer_route(app: FastAPI, gw: Gateway) -> None:
    @app.post("/v2/models/{model}/infer", response_model=InferenceResponse, responses=INFER_ERRORS)
    async def infer(model: str, request: Request) -> Response:
        try:
            return await _Infer(gw, request, model).run()
        except _Refused as refused:
            return refused.response


def create_app(config: GatewayConfig, target: Target | None = None, owner_data: np.ndarray | None = None,
               clock: Clock | None = None) -> FastAPI:
    """The FastAPI app.  ``target`` overrides the configured model (tests, embedding in Python);
    ``clock`` the time the pipelines answer at (default: the wall clock)."""
    gw = build_gateway(config, target, owner_data, clock)
    app = FastAPI(title="ExtractGuard gateway", version=__version__, docs_url=None, redoc_url=None,
                  openapi_url=None, lifespan=_lifespan(gw))
    app.state.gateway = gw
    app.add_exception_handler(Exception, _internal_error)
    app.openapi = lambda: build_openapi(app, gw.model_name)  # type: ignore[method-assign]
    _start_metrics(gw)
    _add_public_routes(app, gw)
    _add_metadata_routes(app, gw)
    _add_infer_route(app, gw)
    return app
