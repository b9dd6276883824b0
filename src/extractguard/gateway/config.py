"""The gateway's one configuration file (YAML), validated by pydantic.

Everything an owner decides lives here: which model is served, which tiers exist and what each
tier reveals (output mode, defense chain, limits, quota, spend cap), where state lives (one
``limits``-style storage URI), who counts as a trusted proxy, where the audit log goes and how big
a request may be.  Mistakes end as one :class:`~extractguard.errors.ConfigurationError` line that
names the offending field.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Any, Literal, Optional

from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator, model_validator

from extractguard.detect.policy import DetectionConfig
from extractguard.errors import ConfigurationError, read_yaml
from extractguard.oracle.answer import OutputSpec


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _check_limit(text: str) -> str:
    from limits import parse

    try:
        parse(text)
    except ValueError:
        raise ValueError(f"{text!r} is not a rate limit; write e.g. '100/minute' or '10000 per month'") from None
    return text


class ModelConfig(_Strict):
    """What sits behind the gateway: a zoo victim, a model file, or an upstream OIP server."""

    name: str = Field("model", description="Name clients use in /v2/models/{name}/infer.")
    victim: Optional[str] = Field(None, description="Built-in victim DATASET-ARCH, e.g. mnist-cnn.")
    seed: int = 0
    path: Optional[Path] = Field(None, description="Model file: .onnx, TorchScript .pt, scikit-learn .joblib/.pkl.")
    upstream: Optional[str] = Field(None, description="Base URL of an Open Inference Protocol server to proxy to.")
    upstream_model: Optional[str] = Field(None, description="Model name upstream (default: same as name).")
    upstream_timeout_seconds: float = Field(10.0, gt=0)
    input_shape: Optional[list[int]] = Field(None, description="Shape of one input row (required for path/upstream).")
    n_classes: Optional[int] = Field(None, ge=2)
    low: float = 0.0
    high: float = 1.0

    @model_validator(mode="after")
    def _one_source(self) -> ModelConfig:
        given = [k for k in ("victim", "path", "upstream") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError("set exactly one of model.victim, model.path or model.upstream")
        if self.path is not None and self.input_shape is None:
            raise ValueError("model.path needs model.input_shape (e.g. [64]) so requests can be validated")
        if self.upstream is not None and (self.input_shape is None or self.n_classes is None):
            raise ValueError("model.upstream needs model.input_shape and model.n_classes")
        if self.upstream is not None and not self.upstream.startswith(("http://", "https://")):
            raise ValueError("model.upstream must be an http:// or https:// URL")
        if self.input_shape is not None and (not self.input_shape or any(s <= 0 for s in self.input_shape)):
            raise ValueError("model.input_shape must be positive integers")
        if self.high < self.low:
            raise ValueError("model.high must be >= model.low")
        return self


class WatermarkConfig(_Strict):
    """Keyed answer watermark of a tier (DAWN, Szyller et al. 2021); see docs/verify.md."""

    fraction: float = Field(0.005, gt=0, le=0.2, description="Share of answers altered (a keyed wrong label).")
    control_fraction: Optional[float] = Field(None, ge=0, le=0.2, description="Share recorded unaltered as the control sample (default: fraction).")
    cell_width: Optional[float] = Field(None, gt=0, description="Mark keyed LSH cells of this width (inputs scaled to [0, 1]) instead of exact rows.")
    projections: int = Field(12, ge=1, le=256, description="LSH projections per cell (with cell_width).")
    mark: Literal["flip", "soft"] = Field("flip", description="flip: the keyed label served on top (DAWN); soft: raised under the owner's label (needs an output with scores).")
    soft_ratio: float = Field(0.6, gt=0, lt=1, description="With mark: soft, the keyed label's probability as a share of the top one.")


class AnswerPolicy(_Strict):
    """How answers are served: output mode, defense chain, watermark, detection.

    Shared by a gateway tier and an assessment-matrix defense (evaluate/matrix.py), so a defense
    assessed offline is written, and validated, exactly as the tier that would serve it.
    """

    output: OutputSpec = Field(OutputSpec(), description="probabilities, logits, rounded:N, top-K or label.")
    defenses: list[dict[str, Any]] = Field(default_factory=list, description="Defense chain, applied in order.")
    watermark: Optional[WatermarkConfig] = Field(None, description="Keyed answer watermark, e.g. {fraction: 0.005}.")
    detection: Optional[DetectionConfig] = Field(None, description="Extraction detection and graduated responses (docs/detection.md).")

    @model_validator(mode="after")
    def _soft_mark_needs_scores(self) -> AnswerPolicy:
        out = self.output
        if self.watermark is not None and self.watermark.mark == "soft" and (
            out.kind == "label" or (out.kind == "top_k" and out.k == 1)
        ):
            raise ValueError(f"watermark mark 'soft' keeps the top label, so output '{out}' would hide it: "
                             "use mark: flip, or an output with scores")
        return self


class TierConfig(AnswerPolicy):
    """What one class of customer sees and may spend."""

    limits: list[str] = Field(default_factory=list, description="Per-key rate limits in rows, e.g. ['100/minute'].")
    quota: Optional[str] = Field(None, description="Rows per period, e.g. '100000/month' (persistent with SQLite/Redis).")
    price_per_row: float = Field(0.0, ge=0)
    spend_cap: Optional[float] = Field(None, gt=0, description="Largest spend per month (price_per_row * rows).")
    max_rows_per_request: Optional[int] = Field(None, ge=1)
    models: Optional[list[str]] = Field(None, description="Models this tier may call (default: all).")

    @field_validator("limits")
    @classmethod
    def _limits(cls, v: list[str]) -> list[str]:
        return [_check_limit(x) for x in v]

    @field_validator("quota")
    @classmethod
    def _quota(cls, v: Optional[str]) -> Optional[str]:
        return None if v is None else _check_limit(v)

    @field_validator("defenses")
    @classmethod
    def _defenses(cls, v: list[dict[str, Any]], info: ValidationInfo) -> list[dict[str, Any]]:
        if info.context and info.context.get("check_defenses") is False:
            # Admin commands only need paths and tier names: skip importing the defense code.
            for spec in v:
                if not isinstance(spec, dict) or "name" not in spec:
                    raise ValueError(f"each defense needs a 'name', got {spec!r}")
            return v
        from extractguard.defenses import canonical_specs

        try:
            return canonical_specs(v)
        except ConfigurationError as exc:
            raise ValueError(str(exc)) from None

    @model_validator(mode="after")
    def _spend(self) -> TierConfig:
        if self.spend_cap is not None and self.price_per_row <= 0:
            raise ValueError("spend_cap needs a price_per_row > 0")
        return self


class MetricsConfig(_Strict):
    """What /metrics may say about callers (docs/monitoring.md).

    Per-account series carry the account *name* from the key store (never a key or an IP) so
    alerts can compare an account with its own baseline.  Each account adds about a dozen series;
    accounts beyond ``max_accounts`` share the label value ``_other`` so a flood of new accounts
    cannot blow up Prometheus.
    """

    per_account: bool = Field(True, description="Export per-account series labelled with the account name.")
    max_accounts: int = Field(1000, ge=1, description="Distinct account label values before the rest are pooled as '_other'.")


class GatewayConfig(_Strict):
    """The whole gateway.  See examples/gateway.yaml."""

    model: ModelConfig
    tiers: dict[str, TierConfig] = Field(default_factory=lambda: {"default": TierConfig()})
    state_dir: Path = Field(Path("extractguard-gateway"), description="Where keys.db, limits.db and audit.db live.")
    storage: Optional[str] = Field(
        None, description="Rate-limit state: memory://, sqlite:///path.db (default: state_dir/limits.db), redis://host:port/db."
    )
    on_storage_error: Literal["fail_closed", "fail_open"] = Field(
        "fail_closed",
        description="When the rate-limit storage is unreachable: refuse with 503 (fail_closed) or serve uncounted (fail_open).",
    )
    keys_db: Optional[Path] = Field(None, description="API-key database (default: state_dir/keys.db).")
    audit_db: Optional[Path] = Field(None, description="Audit log (default: state_dir/audit.db).")
    audit_enabled: bool = True
    watermark_key: Optional[Path] = Field(None, description="Watermark master key file (default: state_dir/watermark.key, created once).")
    watermark_db: Optional[Path] = Field(None, description="Record of watermarked answers (default: state_dir/watermarks.db).")
    trusted_proxies: list[str] = Field(default_factory=list, description="IPs/CIDRs whose X-Forwarded-For is believed.")
    ip_limits: list[str] = Field(default_factory=list, description="Per client-IP limits in rows, e.g. ['1000/minute'].")
    global_limits: list[str] = Field(default_factory=list, description="Limits over all callers together, in rows.")
    max_body_bytes: int = Field(8 * 1024 * 1024, ge=256)
    max_rows_per_request: int = Field(1024, ge=1)
    seed: Optional[int] = Field(None, description="Seed for randomised defenses (default: fresh entropy).")
    metrics: MetricsConfig = Field(default_factory=MetricsConfig, description="Per-account metrics switch and cap.")

    @field_validator("trusted_proxies")
    @classmethod
    def _proxies(cls, v: list[str]) -> list[str]:
        for p in v:
            try:
                ipaddress.ip_network(p, strict=False)
            except ValueError:
                raise ValueError(f"{p!r} is not an IP address or CIDR network") from None
        return v

    @field_validator("ip_limits", "global_limits")
    @classmethod
    def _limits(cls, v: list[str]) -> list[str]:
        return [_check_limit(x) for x in v]

    @field_validator("storage")
    @classmethod
    def _storage(cls, v: Optional[str]) -> Optional[str]:
        if v is not None and not v.startswith(("memory://", "sqlite://", "redis://", "rediss://")):
            raise ValueError("storage must start with memory://, sqlite:/// or redis://")
        return v

    @field_validator("tiers")
    @classmethod
    def _tiers(cls, v: dict[str, TierConfig]) -> dict[str, TierConfig]:
        if not v:
            raise ValueError("define at least one tier")
        return v

    # Resolved paths -------------------------------------------------------------------------
    @property
    def storage_uri(self) -> str:
        return self.storage or f"sqlite:///{(self.state_dir / 'limits.db').resolve()}"

    @property
    def keys_path(self) -> Path:
        return self.keys_db or self.state_dir / "keys.db"

    @property
    def audit_path(self) -> Path:
        return self.audit_db or self.state_dir / "audit.db"

    @property
    def watermark_key_path(self) -> Path:
        return self.watermark_key or self.state_dir / "watermark.key"

    @property
    def watermark_db_path(self) -> Path:
        return self.watermark_db or self.state_dir / "watermarks.db"

    @property
    def detect_path(self) -> Path:
        return self.state_dir / "detect.db"


def _format_error(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err["loc"]) or "(top level)"
        msg = str(err["msg"]).removeprefix("Value error, ")
        parts.append(f"{where}: {msg}")
    return "; ".join(parts)


def parse_config(data: Any, source: str = "configuration", check_defenses: bool = True) -> GatewayConfig:
    """Validate a mapping (parsed YAML) into a :class:`GatewayConfig`.

    ``check_defenses=False`` checks only the shape of the defense chains (no import of the
    defense code); :func:`~extractguard.gateway.app.create_app` builds and so checks them anyway.
    """
    if not isinstance(data, dict):
        raise ConfigurationError(f"{source}: expected a YAML mapping at the top level")
    try:
        return GatewayConfig.model_validate(data, context={"check_defenses": check_defenses})
    except ValidationError as exc:
        raise ConfigurationError(f"{source}: {_format_error(exc)}") from None


def load_config(path: Path | str, check_defenses: bool = True) -> GatewayConfig:
    """Read and validate a gateway YAML file; relative paths in it are relative to the file."""
    p = Path(path)
    cfg = parse_config(read_yaml(p, "gateway config"), p.name, check_defenses)
    base = p.resolve().parent
    updates: dict[str, Any] = {}
    for field in ("state_dir", "keys_db", "audit_db", "watermark_key", "watermark_db"):
        val = getattr(cfg, field)
        if val is not None and not Path(val).is_absolute():
            updates[field] = base / val
    if cfg.model.path is not None and not cfg.model.path.is_absolute():
        cfg.model.path = base / cfg.model.path
    for tier in cfg.tiers.values():
        if tier.detection is not None and tier.detection.reference is not None and not tier.detection.reference.is_absolute():
            tier.detection.reference = base / tier.detection.reference
    if cfg.storage and cfg.storage.startswith("sqlite:///") and not cfg.storage.startswith("sqlite:////"):
        updates["storage"] = f"sqlite:///{base / cfg.storage.removeprefix('sqlite:///')}"
    return cfg.model_copy(update=updates)


def default_config(state_dir: Path | str = "extractguard-gateway", victim: str = "mnist-cnn") -> GatewayConfig:
    """The embedded default: a zoo victim, two tiers, SQLite state in ``state_dir``."""
    return parse_config(
        {
            "model": {"name": victim, "victim": victim},
            "state_dir": str(state_dir),
            "tiers": {
                "free": {"output": "label", "limits": ["60/minute"], "quota": "10000/month"},
                "standard": {"output": "top-3", "limits": ["600/minute"], "quota": "1000000/month"},
            },
            "ip_limits": ["1200/minute"],
        },
        "default configuration",
    )
