"""The gateway's OpenAPI document: request and response bodies, errors, headers and security.

Why by hand around FastAPI's generator: the infer route reads its body itself (streamed, cut off
at ``max_body_bytes`` before parsing), so FastAPI cannot see a request model, and every route
answers with explicit ``Response`` objects whose error bodies FastAPI does not know either.  The
document is built from the pydantic models below so that fuzzers (schemathesis) and client
generators see exactly what the gateway accepts and answers, including every refusal.

The document is served at ``/openapi.json`` to callers with a valid API key only: the gateway
answers nothing but health and metrics without one.
"""

from __future__ import annotations

from typing import Any, Literal, Optional

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel, ConfigDict, Field

REQUEST_ID_HEADER = "X-Request-ID"
#: Routes anyone may call; everything else needs an API key.
PUBLIC_PATHS = frozenset({"/v2/health/live", "/v2/health/ready", "/metrics"})

NumericType = Literal["FP16", "FP32", "FP64", "INT8", "INT16", "INT32", "INT64", "UINT8", "UINT16", "UINT32", "UINT64"]


class RequestTensor(BaseModel):
    """One input tensor of an Open Inference Protocol request (row-major ``data``)."""

    name: str = Field(description="Tensor name; the gateway reads the first input whatever its name.")
    shape: list[int] = Field(min_length=1, description="[rows, *input_shape] or [rows, n_features]; positive integers.")
    datatype: NumericType
    data: list[Any] = Field(description="Numbers, flat or nested, prod(shape) of them; finite.")
    parameters: Optional[dict[str, Any]] = None


class InferenceRequest(BaseModel):
    """``POST /v2/models/{model}/infer`` body (KServe v2 / Open Inference Protocol, REST)."""

    id: Optional[str] = Field(None, description="Echoed in the response body.")
    inputs: list[RequestTensor] = Field(min_length=1)
    outputs: Optional[list[dict[str, Any]]] = None
    parameters: Optional[dict[str, Any]] = None


class ResponseTensor(BaseModel):
    name: str
    shape: list[int]
    datatype: str
    data: list[float]


class InferenceResponse(BaseModel):
    model_config = ConfigDict(protected_namespaces=())

    model_name: str
    id: Optional[str] = None
    outputs: list[ResponseTensor]


class ErrorBody(BaseModel):
    """Every refusal: one human-readable line, plus e.g. a proof-of-work ``challenge`` (428)."""

    model_config = ConfigDict(extra="allow")

    error: str


class Live(BaseModel):
    live: bool


class Ready(BaseModel):
    ready: bool


class ServerMetadata(BaseModel):
    name: str
    version: str
    extensions: list[str]


class TensorMetadata(BaseModel):
    name: str
    datatype: str
    shape: list[int]


class ModelMetadata(BaseModel):
    name: str
    versions: list[str]
    platform: str
    inputs: list[TensorMetadata]
    outputs: list[TensorMetadata]


class ModelReady(BaseModel):
    name: str
    ready: bool


def _error(description: str) -> dict[str, Any]:
    return {"model": ErrorBody, "description": description}


AUTH_ERRORS: dict[int | str, dict[str, Any]] = {401: _error("Missing, unknown or revoked API key.")}
MODEL_ERRORS: dict[int | str, dict[str, Any]] = {**AUTH_ERRORS, 404: _error("Unknown model.")}
INFER_ERRORS: dict[int | str, dict[str, Any]] = {
    **MODEL_ERRORS,
    400: _error("Malformed JSON or a tensor that does not fit the model (shape, dtype, NaN/inf, range)."),
    403: _error("The key's tier may not call this model, or the account is suspended."),
    413: _error("Body larger than max_body_bytes, or more rows than the tier allows per request."),
    428: _error("Detection challenge: solve the proof of work and resend."),
    429: _error("A rate limit, quota or spend cap is reached; see Retry-After."),
    500: _error("The model failed on valid input, or an internal error."),
    502: _error("The upstream inference server failed."),
    503: _error("Rate-limit storage unreachable (on_storage_error: fail_closed) or audit log unwritable; see Retry-After."),
}


def _headers() -> dict[str, Any]:
    return {REQUEST_ID_HEADER: {"description": "Id of this request, also stored in the audit record of a served answer.",
                                "schema": {"type": "string"}}}


def build_openapi(app: FastAPI, model_name: str) -> dict[str, Any]:
    """FastAPI's document plus the infer request body, the security schemes, request-id headers,
    and the one model this gateway serves as the only value of ``{model}``."""
    if app.openapi_schema:
        return app.openapi_schema
    doc = get_openapi(title=app.title, version=app.version, routes=app.routes,
                      description="ExtractGuard protection gateway (Open Inference Protocol).")
    components = doc.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    req = InferenceRequest.model_json_schema(ref_template="#/components/schemas/{model}")
    schemas.update(req.pop("$defs", {}))
    schemas["InferenceRequest"] = req
    components["securitySchemes"] = {
        "bearer": {"type": "http", "scheme": "bearer", "description": "Authorization: Bearer eg_<id>_<secret>"},
        "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
    }
    for path, ops in doc.get("paths", {}).items():
        for method, op in ops.items():
            responses = op.get("responses", {})
            for param in op.get("parameters", []):
                if param.get("in") == "path" and param.get("name") == "model":
                    param["schema"] = {"type": "string", "enum": [model_name], "title": "Model"}
            responses.pop("422", None)  # FastAPI's default for path parameters; the gateway never sends it
            if path not in PUBLIC_PATHS:
                op["security"] = [{"bearer": []}, {"apiKey": []}]
            if path.endswith("/infer") and method == "post":
                op["requestBody"] = {"required": True,
                                     "content": {"application/json": {"schema": {"$ref": "#/components/schemas/InferenceRequest"}}}}
                for resp in responses.values():
                    resp["headers"] = _headers()
    schemas.pop("HTTPValidationError", None)  # only referenced by the 422s removed above
    schemas.pop("ValidationError", None)
    app.openapi_schema = doc
    return doc
