"""What the gateway protects: a local model (zoo victim or model file) or an upstream OIP server."""

from __future__ import annotations

from typing import Any

import numpy as np

from extractguard.errors import ExtractGuardError, InputValidationError
from extractguard.gateway.config import ModelConfig
from extractguard.oracle.answer import OutputSpec, softmax
from extractguard.oracle.oip import decode_response, encode_request
from extractguard.oracle.schema import InputSchema
from extractguard.oracle.targets import Prediction, Target


class UpstreamError(ExtractGuardError):
    """The upstream inference server failed or answered something unusable (a 502 for clients)."""


def _prediction_from_oip(body: Any, n: int, c: int) -> Prediction:
    """Probabilities from an upstream answer carrying a ``probabilities`` or ``logits`` tensor."""
    try:
        ans = decode_response(body, n, c, OutputSpec("probabilities"))
        if ans.scores is not None:
            return Prediction(np.asarray(ans.scores, dtype=np.float64))
        ans = decode_response(body, n, c, OutputSpec("logits"))
        if ans.scores is not None:
            return Prediction(softmax(ans.scores), ans.scores)
    except InputValidationError as exc:
        raise UpstreamError(f"upstream answer unusable: {exc}") from None
    raise UpstreamError("upstream answer has neither a 'probabilities' nor a 'logits' output")


class UpstreamTarget:
    """An Open Inference Protocol server as a :class:`Target` (sync, for fitting defenses) with an
    async :meth:`apredict` for serving, both over httpx with connection reuse."""

    def __init__(self, url: str, model: str, schema: InputSchema, timeout: float = 10.0) -> None:
        import httpx

        self.schema = schema
        self.url = f"{url.rstrip('/')}/v2/models/{model}/infer"
        self._sync = httpx.Client(timeout=timeout)
        self._async = httpx.AsyncClient(timeout=timeout)

    def _check(self, r: Any, n: int) -> Prediction:
        if r.status_code != 200:
            raise UpstreamError(f"upstream answered HTTP {r.status_code}")
        try:
            body = r.json()
        except ValueError:
            raise UpstreamError("upstream answer is not JSON") from None
        return _prediction_from_oip(body, n, self.schema.n_classes)

    def predict(self, X: np.ndarray) -> Prediction:
        import httpx

        try:
            r = self._sync.post(self.url, json=encode_request(X))
        except httpx.HTTPError as exc:
            raise UpstreamError(f"upstream unreachable: {type(exc).__name__}") from None
        return self._check(r, X.shape[0])

    async def apredict(self, X: np.ndarray) -> Prediction:
        import httpx

        try:
            r = await self._async.post(self.url, json=encode_request(X))
        except httpx.HTTPError as exc:
            raise UpstreamError(f"upstream unreachable: {type(exc).__name__}") from None
        return self._check(r, X.shape[0])

    async def aclose(self) -> None:
        self._sync.close()
        await self._async.aclose()


def build_backend(cfg: ModelConfig) -> tuple[Target, np.ndarray | None]:
    """The target named by the config, and the owner's data for fitting defenses (if any)."""
    if cfg.victim is not None:
        from extractguard.victims import build_victim

        v = build_victim(cfg.victim, seed=cfg.seed)
        return v.target, v.dataset.X[v.splits.train]
    shape = tuple(cfg.input_shape or ())
    if cfg.upstream is not None:
        schema = InputSchema(input_shape=shape, n_classes=int(cfg.n_classes or 2), low=cfg.low, high=cfg.high)
        return UpstreamTarget(cfg.upstream, cfg.upstream_model or cfg.name, schema, cfg.upstream_timeout_seconds), None
    from extractguard.oracle.loading import build_target, load_model_file

    assert cfg.path is not None
    loaded = load_model_file(cfg.path)
    sample = np.full((1, int(np.prod(shape))), (cfg.low + cfg.high) / 2.0)
    return build_target(loaded, sample, shape, cfg.n_classes, cfg.low, cfg.high), None
