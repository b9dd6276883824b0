"""Query a deployed model over HTTP: Open Inference Protocol or any JSON API.

Red teams test endpoints, not pickles.  :class:`RemoteTarget` speaks the Open Inference Protocol
(KServe v2 / Triton / MLServer, through the shared codec in :mod:`extractguard.oracle.oip`) or a
generic JSON API described by a request template and JMESPath expressions.  It sends requests
concurrently with httpx (bounded by a semaphore), retries 429/5xx/connection failures with
exponential backoff and full jitter ("Exponential Backoff And Jitter", Brooker, AWS 2015), never
sooner than the server's ``Retry-After``, rotates several API keys, and stops on 401/403 with one
line.

:class:`RemoteOracle` is the budgeted oracle over such a target.  It writes every answered
request to a :class:`~extractguard.oracle.transcript.SqliteTranscript` before handing the answer
to the attack, and replays stored answers when a killed campaign is resumed, so no row is paid
for twice.  Budget contract unchanged: one input row = one query, replayed or sent.
"""

from __future__ import annotations

import asyncio
import datetime as _dt
import email.utils
import json
import random
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from extractguard.errors import (
    AuthorizationError,
    BudgetExceededError,
    ConfigurationError,
    ExtractGuardError,
    InputValidationError,
    RemoteTargetError,
)
from extractguard.oracle import oip
from extractguard.oracle.answer import Answer, OutputSpec
from extractguard.oracle.oracle import Oracle
from extractguard.oracle.target_config import ROWS_PLACEHOLDER, TargetConfig
from extractguard.oracle.targets import Prediction
from extractguard.oracle.transcript import SqliteTranscript, rows_digest

#: Status codes worth retrying: throttling and server-side failures.
RETRYABLE = frozenset({408, 429, 500, 502, 503, 504})


def check_authorization(config: TargetConfig, today: _dt.date | None = None) -> None:
    """Refuse a target whose permission statement is missing or has expired."""
    auth = getattr(config, "authorization", None)
    if auth is None or not auth.statement.strip() or not auth.owner.strip():
        raise AuthorizationError(
            "remote target refused: its configuration has no authorization statement "
            "(authorization: {statement: ..., owner: ...})"
        )
    if auth.expires:
        day = today or _dt.datetime.now(_dt.timezone.utc).date()
        if _dt.date.fromisoformat(auth.expires) < day:
            raise AuthorizationError(f"remote target refused: the authorization from {auth.owner} expired on {auth.expires}")


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delay-seconds or HTTP-date), or ``None``."""
    if value is None or not value.strip():
        return None
    text = value.strip()
    try:
        return max(0.0, float(text))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=_dt.timezone.utc)
    current = now if now is not None else time.time()
    return max(0.0, when.timestamp() - current)


@dataclass
class RemoteStats:
    """What talking to the endpoint cost, beyond the rows themselves."""

    requests: int = 0
    rows_sent: int = 0
    throttled: int = 0
    server_errors: int = 0
    network_errors: int = 0
    retries: int = 0
    waited_seconds: float = 0.0
    #: The first refusals (403, 428, 429) seen, each with the rows answered before it: how an
    #: outside caller observes a gateway's detection responses (throttle, challenge, suspend).
    refusals: list[dict[str, Any]] = field(default_factory=list)

    def refused(self, status: int, text: str) -> None:
        if len(self.refusals) < 20:
            self.refusals.append({"status": status, "message": " ".join(text.split())[:300], "rows_before": self.rows_sent})

    def to_dict(self) -> dict[str, Any]:
        d = dict(vars(self))
        d["waited_seconds"] = round(self.waited_seconds, 3)
        d.pop("refusals")
        return d


def _substitute(template: Any, rows: list[list[float]]) -> Any:
    if template == ROWS_PLACEHOLDER:
        return rows
    if isinstance(template, dict):
        return {k: _substitute(v, rows) for k, v in template.items()}
    if isinstance(template, list):
        return [_substitute(v, rows) for v in template]
    return template


def _tls_failure(exc: BaseException) -> str | None:
    """The reason if ``exc`` (or what caused it) is a failed certificate verification."""
    import ssl

    seen: BaseException | None = exc
    for _ in range(10):
        if seen is None:
            return None
        if isinstance(seen, ssl.SSLCertVerificationError):
            return seen.verify_message or str(seen)
        if "CERTIFICATE_VERIFY_FAILED" in str(seen):
            return "certificate verify failed"
        seen = seen.__cause__ or seen.__context__
    return None


async def _pause(seconds: float, stop: asyncio.Event) -> None:
    """Sleep, but give up (raise :class:`_Stopped`) as soon as the batch is being stopped."""
    try:
        await asyncio.wait_for(stop.wait(), timeout=seconds)
    except asyncio.TimeoutError:
        return
    raise _Stopped()


class _Stopped(Exception):
    """A request not sent because another one in the same batch failed for good."""


class RemoteTarget:
    """A model behind an HTTP API, configured by a :class:`TargetConfig`.

    Implements the :class:`~extractguard.oracle.targets.Target` protocol (``schema`` and
    ``predict``) and, for the oracle, :meth:`fetch`, which returns the endpoint's answers in its
    own output mode.  ``transport`` lets tests and embedders plug an httpx transport.
    """

    def __init__(self, config: TargetConfig, transport: Any = None, seed: int | None = None) -> None:
        check_authorization(config)
        self.config = config
        self.schema = config.input_schema
        self.spec: OutputSpec = config.output
        self.keys = config.api_keys()
        self.url = config.endpoint()
        self.stats = RemoteStats()
        self._transport = transport
        self._jitter = random.Random(seed)
        self._key_turn = 0
        self._key_not_before: dict[int, float] = {}
        if config.protocol == "json":
            import jmespath

            m = config.json_mapping
            assert m is not None
            self._paths = {
                name: jmespath.compile(expr)
                for name, expr in (
                    ("scores", m.scores_path),
                    ("label", m.label_path),
                    ("top_indices", m.top_indices_path),
                    ("top_values", m.top_values_path),
                )
                if expr
            }
            if self.spec.kind in ("probabilities", "logits", "rounded") and "scores" not in self._paths:
                raise ConfigurationError(f"output {self.spec} needs json.scores_path")
            if self.spec.kind == "top_k" and "top_indices" not in self._paths:
                raise ConfigurationError(f"output {self.spec} needs json.top_indices_path and json.top_values_path")
            if self.spec.kind == "label" and not ({"label", "scores"} & set(self._paths)):
                raise ConfigurationError("output label needs json.label_path")

    # -- wire formats --------------------------------------------------------------------------
    def _body(self, rows: np.ndarray, request_id: str) -> dict[str, Any]:
        if self.config.protocol == "oip":
            shape = self.schema.input_shape if len(self.schema.input_shape) > 1 else None
            return oip.encode_request(rows, self.config.input_name, request_id=request_id, input_shape=shape)
        assert self.config.json_mapping is not None
        return _substitute(self.config.json_mapping.request, np.asarray(rows, dtype=np.float64).tolist())

    def _decode(self, body: Any, n: int) -> Answer:
        c = self.schema.n_classes
        if self.config.protocol == "oip":
            answer = oip.decode_response(body, n, c, self.spec)
        else:
            answer = self._decode_json(body, n)
        if self.spec.kind in ("probabilities", "logits", "rounded") and answer.scores is None:
            raise InputValidationError(f"the endpoint's answer has no scores, but the target's output is {self.spec}")
        if self.spec.kind == "top_k" and answer.top_indices is None:
            raise InputValidationError("the endpoint's answer has no top-k classes, but the target's output is top-k")
        if answer.scores is not None and not np.all(np.isfinite(answer.scores)):
            raise InputValidationError("the endpoint's scores contain NaN or infinite values")
        if np.any((answer.labels < 0) | (answer.labels >= c)):
            raise InputValidationError(f"the endpoint returned a label outside 0..{c - 1}")
        return answer

    def _decode_json(self, body: Any, n: int) -> Answer:
        c = self.schema.n_classes
        found: dict[str, np.ndarray] = {}
        for name, expr in self._paths.items():
            value = expr.search(body)
            if value is None:
                raise InputValidationError(f"response has nothing at {name} path {expr.expression!r}")
            try:
                found[name] = np.asarray(value, dtype=np.float64)
            except (TypeError, ValueError):
                raise InputValidationError(f"response value at {expr.expression!r} is not numeric") from None
        scores = found.get("scores")
        if scores is not None and scores.shape != (n, c):
            raise InputValidationError(f"response scores have shape {scores.shape}, expected {(n, c)}")
        labels = found.get("label")
        if labels is None and scores is not None:
            labels = scores.argmax(axis=1)
        top_i, top_v = found.get("top_indices"), found.get("top_values")
        if labels is None and top_i is not None:
            labels = top_i.reshape(n, -1)[:, 0]
        if labels is None:
            raise InputValidationError("response has neither labels nor scores")
        labels = labels.reshape(-1)
        if labels.shape[0] != n:
            raise InputValidationError(f"response has {labels.shape[0]} labels for {n} inputs")
        if top_i is not None and top_v is not None:
            top_i, top_v = top_i.reshape(n, -1), top_v.reshape(n, -1)
            if top_i.shape != top_v.shape:
                raise InputValidationError("response top-k indices and values differ in shape")
        return Answer(
            spec=self.spec,
            n_classes=c,
            labels=labels.astype(np.int64),
            scores=scores if self.spec.kind != "label" else None,
            top_indices=None if top_i is None else top_i.astype(np.int64),
            top_values=top_v,
        )

    def _headers(self, key_index: int | None, request_id: str) -> dict[str, str]:
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        headers.update(self.config.headers)
        # An idempotency key lets a server that supports it refuse to charge a retried request twice.
        headers["Idempotency-Key"] = request_id
        if key_index is not None:
            key = self.keys[key_index]
            scheme = self.config.auth_scheme.strip()
            headers[self.config.auth_header] = f"{scheme} {key}" if scheme else key
        return headers

    # -- sending -------------------------------------------------------------------------------
    def _next_key(self) -> int | None:
        if not self.keys:
            return None
        i = self._key_turn % len(self.keys)
        self._key_turn += 1
        return i

    def _delay(self, attempt: int, retry_after: float | None) -> float:
        """Full-jitter exponential backoff, never below the server's Retry-After."""
        cap = min(self.config.max_backoff, self.config.backoff * (2**attempt))
        delay = self._jitter.uniform(0.0, cap)
        if retry_after is not None:
            # Strictly after the deadline: a little jitter spreads the retries of parallel requests.
            delay = max(delay, retry_after + self._jitter.uniform(0.01, 0.1 + 0.1 * retry_after))
        return delay

    async def _send(
        self, client: Any, sem: asyncio.Semaphore, rows: np.ndarray, request_id: str, stop: asyncio.Event
    ) -> tuple[Answer, int]:
        import httpx

        body = self._body(rows, request_id)
        attempt = 0
        while True:
            key = self._next_key()
            if key is not None:
                wait = self._key_not_before.get(key, 0.0) - time.monotonic()
                if wait > 0:
                    self.stats.waited_seconds += wait
                    await _pause(wait, stop)
            status: int | None = None
            retry_after: float | None = None
            async with sem:
                if stop.is_set():  # another request hit a fatal error: send nothing new
                    raise _Stopped()
                try:
                    resp = await client.post(self.url, json=body, headers=self._headers(key, request_id))
                    status = resp.status_code
                except httpx.TransportError as exc:
                    tls = _tls_failure(exc)
                    if tls is not None:  # retrying cannot fix a certificate: stop now, clearly
                        raise RemoteTargetError(
                            f"TLS certificate of {self.url} not trusted ({tls}); for a private CA set tls_verify "
                            "to its CA bundle path (tls_verify: false disables the check, not recommended)"
                        ) from None
                    self.stats.network_errors += 1
                    problem = f"network error: {type(exc).__name__}: {exc}".strip()
            self.stats.requests += 1
            if status is not None:
                if status == 200:
                    try:
                        payload = resp.json()
                    except (json.JSONDecodeError, UnicodeDecodeError):
                        raise RemoteTargetError(f"{self.url} answered HTTP 200 with a body that is not JSON") from None
                    try:
                        answer = self._decode(payload, rows.shape[0])
                    except InputValidationError as exc:
                        raise RemoteTargetError(f"{self.url} answered something unusable: {exc}") from None
                    self.stats.rows_sent += rows.shape[0]
                    return answer, attempt + 1
                if status in (403, 428, 429):
                    self.stats.refused(status, resp.text)
                if status in (401, 403):
                    which = "" if key is None else f" (API key #{key + 1} of {len(self.keys)})"
                    hint = "no API key is configured" if key is None else "check the key and its permissions"
                    raise RemoteTargetError(
                        f"{self.url} refused the request with HTTP {status}{which}: {hint}; campaign stopped"
                    )
                if status not in RETRYABLE:
                    snippet = " ".join(resp.text.split())[:200]
                    raise RemoteTargetError(f"{self.url} answered HTTP {status}: {snippet or '(empty body)'}")
                retry_after = parse_retry_after(resp.headers.get("Retry-After"))
                if status == 429:
                    self.stats.throttled += 1
                else:
                    self.stats.server_errors += 1
                problem = f"HTTP {status}"
                if retry_after is not None and retry_after > self.config.max_retry_after:
                    raise RemoteTargetError(
                        f"{self.url} asks to wait {retry_after:.0f} s (Retry-After) before retrying, more than "
                        f"max_retry_after={self.config.max_retry_after:g} s; run again later with --resume"
                    )
            if attempt >= self.config.retries:
                raise RemoteTargetError(
                    f"{self.url} still failing after {attempt + 1} attempts (last: {problem}); "
                    "answers so far are saved, run again with --resume"
                )
            delay = self._delay(attempt, retry_after)
            if key is not None and retry_after is not None:
                self._key_not_before[key] = max(self._key_not_before.get(key, 0.0), time.monotonic() + retry_after)
            self.stats.retries += 1
            self.stats.waited_seconds += delay
            await _pause(delay, stop)
            attempt += 1

    async def _fetch(
        self,
        chunks: list[np.ndarray],
        request_ids: list[str],
        on_answer: Callable[[int, Answer, int], None] | None,
    ) -> list[Answer]:
        import httpx

        limits = httpx.Limits(max_connections=self.config.concurrency, max_keepalive_connections=self.config.concurrency)
        sem = asyncio.Semaphore(self.config.concurrency)
        results: list[Answer | None] = [None] * len(chunks)
        async with httpx.AsyncClient(
            verify=self._verify(), timeout=self.config.timeout, limits=limits, transport=self._transport
        ) as client:

            stop = asyncio.Event()

            async def one(i: int) -> None:
                try:
                    answer, attempts = await self._send(client, sem, chunks[i], request_ids[i], stop)
                    if on_answer is not None:
                        on_answer(i, answer, attempts)  # commits to the transcript before anyone uses it
                except BaseException:
                    stop.set()
                    raise
                results[i] = answer

            tasks = [asyncio.create_task(one(i)) for i in range(len(chunks))]
            # After a fatal error, or Ctrl-C, no new request goes out, but those already in flight
            # finish and are committed: an answer the server has charged for must not be thrown
            # away.  Then report the first real failure.  (asyncio.wait, unlike gather, does not
            # cancel the requests when this coroutine is cancelled by Ctrl-C; a second Ctrl-C
            # still ends the process at once.)
            try:
                await asyncio.wait(tasks)
            except asyncio.CancelledError:
                stop.set()
                await asyncio.wait(tasks)
                for t in tasks:
                    t.exception()  # retrieve, so asyncio does not log "never retrieved"
                raise
            failures = [e for e in (t.exception() for t in tasks) if e is not None and not isinstance(e, _Stopped)]
            if failures:
                raise failures[0]
        return [r for r in results if r is not None]

    def _verify(self) -> Any:
        """TLS verification: on by default; a CA bundle path becomes an SSL context."""
        verify = self.config.tls_verify
        if isinstance(verify, str):
            import ssl

            path = self.config.path(verify)
            if not path.is_file():
                raise ConfigurationError(f"tls_verify: CA bundle not found: {path}")
            try:
                return ssl.create_default_context(cafile=str(path))
            except ssl.SSLError as exc:
                raise ConfigurationError(f"tls_verify: {path} is not a usable CA bundle: {exc}") from None
        return verify

    def fetch(
        self,
        chunks: list[np.ndarray],
        request_ids: list[str] | None = None,
        on_answer: Callable[[int, Answer, int], None] | None = None,
    ) -> list[Answer]:
        """Send each chunk as one request, concurrently; ``on_answer(i, answer, attempts)`` runs
        as soon as chunk ``i`` is answered (before any other use of the answer)."""
        if not chunks:
            return []
        ids = request_ids or [f"eg-{time.time_ns()}-{i}" for i in range(len(chunks))]
        try:
            return asyncio.run(self._fetch(chunks, ids, on_answer))
        except ValueError as exc:  # httpx rejects malformed URLs and TLS settings with ValueError
            raise RemoteTargetError(f"cannot send to {self.url}: {exc}") from None
        except OSError as exc:  # e.g. a CA bundle path that does not exist
            raise RemoteTargetError(f"cannot send to {self.url}: {exc}") from None

    def split(self, rows: np.ndarray) -> list[np.ndarray]:
        """A batch cut into requests of at most ``max_rows_per_request`` rows."""
        m = self.config.max_rows_per_request
        return [rows[i : i + m] for i in range(0, rows.shape[0], m)]

    def answer(self, X: np.ndarray) -> Answer:
        """The endpoint's answer for validated rows, in its own output mode (no transcript)."""
        return concat_answers(self.fetch(self.split(np.asarray(X, dtype=np.float64))))

    def predict(self, X: np.ndarray) -> Prediction:
        """Target protocol: the best probability estimate the endpoint reveals."""
        return Prediction(self.answer(X).soft_labels())


def concat_answers(answers: list[Answer]) -> Answer:
    """One answer for consecutive batches."""
    if not answers:
        raise ExtractGuardError("no answers to join")
    first = answers[0]
    if len(answers) == 1:
        return first

    def cat(name: str) -> np.ndarray | None:
        parts = [getattr(a, name) for a in answers]
        return None if any(p is None for p in parts) else np.concatenate(parts)

    labels = cat("labels")
    assert labels is not None
    return Answer(first.spec, first.n_classes, labels, cat("scores"), cat("top_indices"), cat("top_values"))


QueryCallback = Callable[["RemoteOracle", int], None]


class RemoteOracle(Oracle):
    """A budgeted oracle over a :class:`RemoteTarget`, with a durable, replayable transcript.

    Parameters
    ----------
    target, transcript:
        The endpoint, and the SQLite store every answered request is committed to.
    run:
        Name of this query stream in the transcript (e.g. ``attack:random``); calls are numbered
        within it, which is what lets a resumed deterministic attack find its earlier answers.
    budget:
        Rows this oracle may answer (replayed rows count: they were paid for).
    spend_cap:
        Most money the whole transcript may have cost, across runs and sessions, checked before
        each send against ``price_per_query`` times the rows already paid.
    purpose:
        ``attack`` or ``evaluation``, stored per request so reports can tell them apart.
    on_query:
        Called with ``(oracle, rows)`` after each answered batch (progress bars).
    """

    def __init__(
        self,
        target: RemoteTarget,
        transcript: SqliteTranscript,
        run: str,
        budget: int | None = None,
        price_per_query: float = 0.0,
        spend_cap: float | None = None,
        purpose: str = "attack",
        campaign_id: str = "",
        on_query: QueryCallback | None = None,
    ) -> None:
        super().__init__(target, output=target.spec, budget=budget, price_per_query=price_per_query)
        self.remote = target
        self.store = transcript
        self.run = run
        self.spend_cap = spend_cap
        self.purpose = purpose
        self.campaign_id = campaign_id
        self.on_query = on_query
        self.replayed = 0
        self.sent = 0

    def query(self, X: Any) -> Answer:
        rows = self.admit(X)
        n = rows.shape[0]
        call = self.calls
        parts = self.remote.split(rows)
        answers: list[Answer | None] = [None] * len(parts)
        missing: list[int] = []
        seconds = 0.0
        for i, part in enumerate(parts):
            hit = self.store.lookup(self.run, call, i)
            if hit is None:
                missing.append(i)
                continue
            digest, stored = hit
            if digest != rows_digest(part) or len(stored) != part.shape[0]:
                raise ConfigurationError(
                    f"cannot resume: {self.run} asks different rows at call {call} than the transcript "
                    f"{self.store.path} holds (settings, data or seed changed); use a new transcript path"
                )
            answers[i] = stored
        if missing:
            to_send = sum(parts[i].shape[0] for i in missing)
            if self.spend_cap is not None:
                paid = self.store.paid_rows()
                if (paid + to_send) * self.price_per_query > self.spend_cap + 1e-9:
                    raise BudgetExceededError(
                        f"spend cap reached: {paid} rows paid ({paid * self.price_per_query:.4g}); sending {to_send} "
                        f"more would pass the cap of {self.spend_cap:g}"
                    )

            def on_answer(j: int, answer: Answer, attempts: int) -> None:
                i = missing[j]
                self.store.commit(self.run, call, i, parts[i], answer, purpose=self.purpose, attempts=attempts)
                answers[i] = answer

            t0 = time.perf_counter()
            ids = [f"{self.campaign_id}:{self.run}:{call}:{i}" for i in missing]
            self.remote.fetch([parts[i] for i in missing], ids, on_answer)
            seconds += time.perf_counter() - t0
            self.sent += to_send
        self.replayed += n - sum(parts[i].shape[0] for i in missing)
        answer = concat_answers([a for a in answers if a is not None])
        self.charge(n, seconds)  # replayed rows too: they were paid, and count once, here
        if self.on_query is not None:
            self.on_query(self, n)
        return answer
