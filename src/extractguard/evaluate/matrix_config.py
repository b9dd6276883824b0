"""The assessment matrix's configuration (``assess.yaml``): its schema, validated once at the boundary.

Relative paths become absolute here, and a defense taken from a gateway tier (``gateway: {config,
tier}``) is resolved into the tier's own answer fields, so the runners only see a checked
:class:`MatrixConfig`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from extractguard.errors import ConfigurationError, read_yaml
from extractguard.gateway.config import AnswerPolicy
from extractguard.oracle.budget import BudgetLadder


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class MatrixTarget(_Strict):
    """The model under assessment: a built-in victim, or a model file with the attacker's data."""

    victim: Optional[str] = Field(None, description="Built-in victim DATASET-ARCH, e.g. digits-mlp.")
    model: Optional[Path] = Field(None, description="Model file: scikit-learn .pkl/.joblib, .onnx or TorchScript .pt.")
    attacker_data: Optional[Path] = Field(None, description="With model: the attacker's natural inputs (.csv/.npy/.npz).")
    probe_data: Optional[Path] = Field(None, description="With model: held-out rows with labels (default: 20% of attacker_data).")
    owner_data: Optional[Path] = Field(None, description="With model: owner's rows to fit data-hungry defenses (MAD) on.")
    input_shape: Optional[list[int]] = None
    n_classes: Optional[int] = Field(None, ge=2)
    low: Optional[float] = None
    high: Optional[float] = None
    remote: Optional[Path] = Field(None, description="A deployed API: target.yaml with authorization and variants (one per defense).")

    @model_validator(mode="after")
    def _one(self) -> MatrixTarget:
        given = [k for k in ("victim", "model", "remote") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError("set exactly one of target.victim, target.model or target.remote")
        if self.remote is not None:
            if self.model_fields_set - {"remote"}:
                raise ValueError("target.remote takes its schema and data from target.yaml; drop "
                                 + ", ".join(sorted(self.model_fields_set - {"remote"})))
            return self
        if self.model is not None and self.attacker_data is None:
            raise ValueError("target.model needs target.attacker_data: the natural inputs an attacker would hold")
        if self.victim is None:
            return self
        if any(getattr(self, k) is not None for k in ("attacker_data", "probe_data", "owner_data", "input_shape", "n_classes", "low", "high")):
            raise ValueError("target.victim takes its data and schema from the zoo; drop the model-file fields")
        return self


class GatewayTierRef(_Strict):
    """Take a defense from a deployed gateway's configuration: assess exactly what is served."""

    config: Path = Field(description="The gateway's YAML (relative to assess.yaml).")
    tier: str = Field(description="The tier whose output mode, defenses, watermark and detection to use.")


class DefenseVariant(AnswerPolicy):
    """One column of the matrix: what a gateway tier applies (the tier's own answer fields, same
    meaning and validation), or a reference to a tier of a gateway configuration file
    (``gateway: {config, tier}``)."""

    description: str = ""
    gateway: Optional[GatewayTierRef] = None
    variant: Optional[str] = Field(None, description="With target.remote: the variant of target.yaml (its API key) to attack.")

    @field_validator("defenses")
    @classmethod
    def _chain(cls, v: list[dict[str, Any]]) -> list[dict[str, Any]]:
        from extractguard.defenses import canonical_specs

        try:
            return canonical_specs(v)
        except ConfigurationError as exc:
            raise ValueError(str(exc)) from None


class HonestTraffic(_Strict):
    """Where honest users' queries come from, to measure what each defense costs them."""

    source: str = Field("probe", description="probe (held-out rows with labels, default) or pool (attacker-like natural rows).")
    rows: Optional[int] = Field(None, ge=10, description="Rows to send (resampled and re-rendered); default: each row once.")
    rows_per_hour: float = Field(60.0, gt=0, description="An honest account's pace (for the rate detector).")

    @field_validator("source")
    @classmethod
    def _source(cls, v: str) -> str:
        if v not in ("probe", "pool"):
            raise ValueError(f"honest.source must be 'probe' or 'pool', got {v!r}")
        return v


class MatrixConfig(_Strict):
    """The whole ``assess.yaml``.  See examples/assess.yaml and docs/assess.md."""

    target: MatrixTarget
    attacks: list[str] = Field(min_length=1)
    budgets: BudgetLadder
    defenses: dict[str, DefenseVariant] = Field(min_length=1)
    honest: HonestTraffic = Field(default_factory=HonestTraffic)
    surrogate: str = "auto"
    price_per_query: float = Field(0.0, ge=0)
    attacker_rows_per_second: float = Field(10.0, gt=0, description="Attacker's pace, for time-based detectors and throttling.")
    alpha: float = Field(1e-6, gt=0, lt=1, description="Significance of the watermark verdict.")
    seed: int = 0
    jobs: int = Field(2, ge=1, le=64)

    @field_validator("attacks")
    @classmethod
    def _attacks(cls, v: list[str]) -> list[str]:
        from extractguard.attacks import ATTACKS

        bad = [a.strip().lower() for a in v if a not in ATTACKS]
        if bad:
            raise ValueError(f"unknown attack(s) {', '.join(bad)}; available: {', '.join(ATTACKS)}")
        names = [ATTACKS.canonical(a) for a in v]
        if len(set(names)) != len(names):
            raise ValueError("an attack is listed twice")
        return names

    @field_validator("defenses")
    @classmethod
    def _names(cls, v: dict[str, DefenseVariant]) -> dict[str, DefenseVariant]:
        for name in v:
            if not name or any(c.isspace() or c in "=," for c in name):
                raise ValueError(f"defense name {name!r}: use letters, digits, '-', '_' (no spaces, '=' or ',')")
        return v


def _format_error(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err["loc"]) or "(top level)"
        msg = str(err["msg"]).removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = "unknown key"
        parts.append(f"{where}: {msg}")
    return "; ".join(parts)


def load_matrix_config(path: Path | str) -> MatrixConfig:
    """Read and validate ``assess.yaml``; relative paths in it are relative to the file."""
    p = Path(path)
    cfg = parse_matrix_config(read_yaml(p, "assessment config"), p.name)
    base = p.resolve().parent
    t = cfg.target
    if t.remote is not None:
        return resolve_remote(cfg, base, p.name)
    for field in ("model", "attacker_data", "probe_data", "owner_data"):
        val = getattr(t, field)
        if val is not None and not val.is_absolute():
            setattr(t, field, base / val)
    for name, d in cfg.defenses.items():
        if d.variant is not None:
            raise ConfigurationError(f"{p.name}: defenses.{name}.variant: only a remote target (target.remote) has variants")
        if d.gateway is not None:
            cfg.defenses[name] = from_gateway(name, d, base, p.name)
            continue
        if d.detection is not None and d.detection.reference is not None and not d.detection.reference.is_absolute():
            d.detection.reference = base / d.detection.reference
    return cfg


def from_gateway(name: str, d: DefenseVariant, base: Path, source: str) -> DefenseVariant:
    """The defense a gateway tier applies, read from the gateway's own configuration file."""
    from extractguard.gateway.config import load_config

    assert d.gateway is not None
    if d.model_fields_set - {"gateway", "description", "variant"}:
        extra = ", ".join(sorted(d.model_fields_set - {"gateway", "description", "variant"}))
        raise ConfigurationError(f"{source}: defenses.{name}: takes its settings from gateway.tier; drop {extra}")
    path = d.gateway.config if d.gateway.config.is_absolute() else base / d.gateway.config
    gw = load_config(path)
    tier = gw.tiers.get(d.gateway.tier)
    if tier is None:
        raise ConfigurationError(f"{source}: defenses.{name}: gateway {path.name} has no tier {d.gateway.tier!r} "
                                 f"(tiers: {', '.join(gw.tiers)})")
    return DefenseVariant(description=d.description or f"tier {d.gateway.tier} of {path.name}", output=tier.output,
                          defenses=tier.defenses, watermark=tier.watermark, detection=tier.detection,
                          variant=d.variant,  # a remote defense keeps its gateway: the watermark verdict reads its record
                          gateway=GatewayTierRef(config=path, tier=d.gateway.tier) if d.variant is not None else None)


def parse_matrix_config(data: Any, source: str = "assessment config") -> MatrixConfig:
    if not isinstance(data, dict):
        raise ConfigurationError(f"{source}: expected a YAML mapping at the top level")
    try:
        return MatrixConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigurationError(f"{source}: {_format_error(exc)}") from None


#: Fields of a defense that describe a simulated (local) pipeline: a deployed API has its own.
LOCAL_FIELDS = ("output", "defenses", "watermark", "detection")


def resolve_remote(cfg: Any, base: Path, source: str) -> Any:
    """Validate an ``assess.yaml`` whose target is remote; paths become absolute."""
    from extractguard.oracle.target_config import load_target_config

    t = cfg.target
    assert t.remote is not None
    if not t.remote.is_absolute():
        t.remote = base / t.remote
    for name in ("honest", "attacker_rows_per_second", "price_per_query"):
        if name in cfg.model_fields_set:
            where = "target.yaml (price_per_query:)" if name == "price_per_query" else "the deployed API"
            raise ConfigurationError(f"{source}: {name}: with target.remote this comes from {where}; drop it")
    try:
        tc = load_target_config(t.remote)
    except ConfigurationError as exc:
        raise ConfigurationError(f"{source}: target.remote: {exc}") from None
    if not tc.variants:
        raise ConfigurationError(f"{source}: target {t.remote.name} has no variants: a remote matrix needs one variant "
                                 "(an API key per deployed tier) per defense, the first being the reference")
    known = {v.name: v for v in tc.variants}
    if tc.budget is not None and cfg.budgets[-1] > tc.budget:
        raise ConfigurationError(f"{source}: budget {cfg.budgets[-1]} exceeds the target's budget of {tc.budget} "
                                 f"queries per attack ({t.remote.name})")
    for name, d in list(cfg.defenses.items()):
        local = [f for f in LOCAL_FIELDS if f in d.model_fields_set]
        if local:
            raise ConfigurationError(f"{source}: defenses.{name}: {', '.join(local)} describe a simulated defense; a remote "
                                     "target's defenses are deployed: use {variant: NAME} (and gateway: {config, tier})")
        if d.variant is None:
            raise ConfigurationError(f"{source}: defenses.{name}: a remote target needs variant: NAME "
                                     f"(variants of {t.remote.name}: {', '.join(known)})")
        if d.variant not in known:
            raise ConfigurationError(f"{source}: defenses.{name}: {t.remote.name} has no variant {d.variant!r} "
                                     f"(variants: {', '.join(known)})")
        if d.gateway is not None:
            resolved = from_gateway(name, d, base, source)
            served = known[d.variant].output or tc.output
            if resolved.output != served:
                raise ConfigurationError(f"{source}: defenses.{name}: variant {d.variant!r} reads '{served}' answers but "
                                         f"tier {d.gateway.tier!r} serves '{resolved.output}'")
            cfg.defenses[name] = resolved
    cfg.jobs = 1  # paid queries and rate limits: cells run one at a time
    return cfg
