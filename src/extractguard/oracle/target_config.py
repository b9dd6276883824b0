"""``target.yaml``: everything needed to run an extraction campaign against a deployed model API.

Validated with pydantic so a typo or a missing field is one clear line naming the field, not a
failure half-way through a paid campaign.  Paths inside the file are relative to the file.

The ``authorization`` block is mandatory: ExtractGuard only attacks endpoints whose owner has
said, in writing, that this test is allowed.  The statement travels into the transcript and the
report so the evidence of permission stays next to the evidence of the attack.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, field_validator, model_validator

from extractguard.errors import ConfigurationError, read_yaml
from extractguard.oracle.answer import OutputSpec
from extractguard.oracle.schema import InputSchema

#: The placeholder that the generic JSON protocol replaces by the list of rows.
ROWS_PLACEHOLDER = "{{rows}}"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Authorization(_Strict):
    """Written permission to run extraction attacks against this endpoint."""

    statement: str = Field(min_length=10, description="e.g. 'We own this model and authorise this test.'")
    owner: str = Field(min_length=1, description="Who owns the model or granted permission.")
    contact: str | None = None
    reference: str | None = Field(default=None, description="Ticket, contract or scope document id.")
    expires: str | None = Field(default=None, description="ISO date after which the permission lapses.")

    @field_validator("statement", "owner")
    @classmethod
    def _not_blank(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("must not be blank")
        return v.strip()

    @field_validator("expires")
    @classmethod
    def _iso_date(cls, v: str | None) -> str | None:
        if v is None:
            return v
        import datetime as dt

        try:
            dt.date.fromisoformat(str(v))
        except ValueError:
            raise ValueError(f"must be an ISO date like 2026-12-31, got {v!r}") from None
        return str(v)


class SchemaConfig(_Strict):
    """The public facts about the endpoint's inputs (its API documentation)."""

    input_shape: list[int] = Field(min_length=1)
    n_classes: int = Field(ge=2)
    low: float | list[float] = 0.0
    high: float | list[float] = 1.0
    class_names: list[str] | None = None

    def to_schema(self) -> InputSchema:
        try:
            return InputSchema(
                tuple(self.input_shape),
                self.n_classes,
                low=self.low,  # type: ignore[arg-type]
                high=self.high,  # type: ignore[arg-type]
                class_names=tuple(self.class_names) if self.class_names else None,
            )
        except ValueError as exc:
            raise ConfigurationError(f"target schema: {exc}") from None


class JsonMapping(_Strict):
    """How a non-OIP JSON API is spoken.

    ``request`` is the body template; the string ``{{rows}}`` (anywhere inside it) is replaced by
    the batch as a list of rows.  The ``*_path`` fields are JMESPath expressions into the response
    (e.g. ``predictions[*].probabilities``).
    """

    request: Any = Field(default_factory=lambda: {"instances": ROWS_PLACEHOLDER})
    scores_path: str | None = None
    label_path: str | None = None
    top_indices_path: str | None = None
    top_values_path: str | None = None

    @model_validator(mode="after")
    def _check(self) -> JsonMapping:
        import json

        if ROWS_PLACEHOLDER not in json.dumps(self.request):
            raise ValueError(f"the request template must contain the placeholder {ROWS_PLACEHOLDER!r}")
        if not (self.scores_path or self.label_path or self.top_indices_path):
            raise ValueError("give at least one of scores_path, label_path or top_indices_path")
        if bool(self.top_indices_path) != bool(self.top_values_path):
            raise ValueError("top_indices_path and top_values_path go together")
        import jmespath

        for name in ("scores_path", "label_path", "top_indices_path", "top_values_path"):
            expr = getattr(self, name)
            if expr:
                try:
                    jmespath.compile(expr)
                except jmespath.exceptions.JMESPathError as exc:
                    raise ValueError(f"{name} is not a valid JMESPath expression: {exc}") from None
        return self


class Variant(_Strict):
    """One way of calling the same endpoint, e.g. one gateway tier, reached with its own API key.

    A target with variants is assessed once per variant: the first variant is the *reference*
    (normally an undefended tier), whose probe answers stand for the owner's model, so each
    variant's stolen copy is scored against the real model and each variant's honest-user
    accuracy is measured on the same probe rows.  That makes one row per defense in the report.
    """

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$", description="Short label used in the report.")
    description: str | None = None
    keys: list[str] = Field(default_factory=list)
    key_env: list[str] = Field(default_factory=list)
    output: OutputSpec | None = Field(default=None, description="What this variant answers (default: the target's output).")

    @model_validator(mode="after")
    def _check(self) -> Variant:
        if not (self.keys or self.key_env):
            raise ValueError(f"variant {self.name!r} needs keys or key_env (the API key that selects it)")
        return self


class TargetConfig(_Strict):
    """A remote target and the campaign settings that go with it."""

    url: str
    protocol: Literal["oip", "json"] = "oip"
    model: str | None = Field(default=None, description="OIP model name (used in /v2/models/{model}/infer).")
    input_name: str = "input"
    json_mapping: JsonMapping | None = Field(default=None, alias="json")
    keys: list[str] = Field(default_factory=list)
    key_env: list[str] = Field(default_factory=list, description="Environment variables holding API keys.")
    auth_header: str = "Authorization"
    auth_scheme: str = Field(default="Bearer", description="Prefix before the key; '' for X-API-Key style headers.")
    headers: dict[str, str] = Field(default_factory=dict)
    tls_verify: bool | str = Field(default=True, description="false, true or a CA bundle path.")
    timeout: float = Field(default=30.0, gt=0)
    concurrency: int = Field(default=4, ge=1, le=256)
    max_rows_per_request: int = Field(default=32, ge=1)
    retries: int = Field(default=6, ge=0, le=50)
    backoff: float = Field(default=0.5, gt=0, description="First retry delay in seconds; doubles each time.")
    max_backoff: float = Field(default=60.0, gt=0)
    max_retry_after: float = Field(default=300.0, gt=0, description="Longest Retry-After we wait out before stopping.")
    schema_: SchemaConfig = Field(alias="schema")
    output: OutputSpec = Field(default=OutputSpec(), description="probabilities, logits, rounded:N, top-K or label.")
    price_per_query: float = Field(default=0.0, ge=0)
    budget: int | None = Field(default=None, ge=1, description="Attack queries (rows) per attack.")
    spend_cap: float | None = Field(default=None, ge=0, description="Most money the whole campaign may spend.")
    transcript: str = "transcript.sqlite"
    attacker_data: str | None = None
    probe_data: str
    authorization: Authorization
    variants: list[Variant] = Field(
        default_factory=list, description="Assess each (e.g. each gateway tier/defense) against the first."
    )

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    #: Directory of the YAML file; relative paths resolve against it.
    _base_dir: Path = PrivateAttr(default=Path("."))

    @field_validator("url")
    @classmethod
    def _url(cls, v: str) -> str:
        if not (v.startswith("http://") or v.startswith("https://")):
            raise ValueError(f"must start with http:// or https://, got {v!r}")
        return v.rstrip("/")

    @model_validator(mode="after")
    def _check(self) -> TargetConfig:
        if self.protocol == "oip" and not self.model:
            raise ValueError("protocol 'oip' needs 'model' (the model name in /v2/models/{model}/infer)")
        if self.protocol == "json" and self.json_mapping is None:
            raise ValueError("protocol 'json' needs a 'json' block (request template and response paths)")
        names = [v.name for v in self.variants]
        if len(set(names)) != len(names):
            raise ValueError(f"variant names must be unique, got {names}")
        if len(self.variants) == 1:
            raise ValueError("give at least two variants (the first is the reference), or none")
        return self

    def for_variant(self, variant: Variant) -> TargetConfig:
        """This target as seen through ``variant``: its keys and output, its own transcript file."""
        transcript = Path(self.transcript)
        return self.model_copy(  # private attributes (the file's directory) are copied too
            update={
                "keys": list(variant.keys),
                "key_env": list(variant.key_env),
                "output": variant.output or self.output,
                "transcript": str(transcript.with_name(f"{transcript.stem}-{variant.name}{transcript.suffix or '.sqlite'}")),
                "variants": [],
            }
        )

    # -- resolved views ----------------------------------------------------------------------
    @property
    def input_schema(self) -> InputSchema:
        return self.schema_.to_schema()

    def path(self, value: str) -> Path:
        p = Path(value).expanduser()
        return p if p.is_absolute() else self._base_dir / p

    @property
    def transcript_path(self) -> Path:
        return self.path(self.transcript)

    def api_keys(self) -> list[str]:
        """Literal keys plus those read from ``key_env``; a named variable that is unset is an error."""
        out = list(self.keys)
        for name in self.key_env:
            value = os.environ.get(name)
            if not value:
                raise ConfigurationError(f"target config: environment variable {name} (in key_env) is not set")
            out.append(value)
        return out

    def endpoint(self) -> str:
        """The inference URL: OIP's ``/v2/models/{model}/infer`` unless the url already is one."""
        if self.protocol == "oip" and "/infer" not in self.url:
            return f"{self.url}/v2/models/{self.model}/infer"
        return self.url

    def describe(self) -> dict[str, Any]:
        """Report-safe description: never includes key material."""
        return {
            "url": self.endpoint(),
            "protocol": self.protocol,
            "model": self.model,
            "output": str(self.output),
            "api_keys": len(self.keys) + len(self.key_env),
            "tls_verify": self.tls_verify,
            "concurrency": self.concurrency,
            "max_rows_per_request": self.max_rows_per_request,
            "price_per_query": self.price_per_query,
            "spend_cap": self.spend_cap,
            "authorization": self.authorization.model_dump(exclude_none=True),
            **({"variants": [v.name for v in self.variants]} if self.variants else {}),
        }


def _format_error(exc: ValidationError) -> str:
    first = exc.errors()[0]
    loc = ".".join(str(p) for p in first["loc"]) or "(top level)"
    msg = " ".join(first["msg"].removeprefix("Value error, ").split())
    if first["type"] == "missing" and loc == "authorization":
        return (
            "the target has no 'authorization' block: ExtractGuard only attacks endpoints you own or are "
            "allowed to test; add authorization: {statement: ..., owner: ...}"
        )
    more = f" (and {len(exc.errors()) - 1} more problem(s))" if len(exc.errors()) > 1 else ""
    return f"{loc}: {msg}{more}"


def parse_target_config(data: Any, base_dir: Path | str = ".", source: str = "target config") -> TargetConfig:
    """Validate a mapping (already parsed YAML/JSON) as a :class:`TargetConfig`."""
    if not isinstance(data, dict):
        raise ConfigurationError(f"{source} must be a mapping of settings, got {type(data).__name__}")
    if "authorization" not in data or not data.get("authorization"):
        raise ConfigurationError(
            f"{source} has no 'authorization' statement: ExtractGuard only attacks endpoints you own or are "
            "allowed to test; add authorization: {statement: ..., owner: ...}"
        )
    try:
        cfg = TargetConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigurationError(f"{source}: {_format_error(exc)}") from None
    cfg._base_dir = Path(base_dir)
    return cfg


def load_target_config(path: str | Path) -> TargetConfig:
    """Read and validate ``target.yaml`` with one-line errors."""
    p = Path(path)
    if not p.is_file():
        raise ConfigurationError(f"target config not found: {p}")
    data = read_yaml(p, "target config")
    return parse_target_config(data, base_dir=p.parent, source=f"target config {p.name}")
