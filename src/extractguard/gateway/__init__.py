"""The protection gateway: API keys, tiers, per-row rate limits and quotas, output defenses,
Prometheus metrics, JSON logs and a hash-chained audit log, in front of a model, speaking the
Open Inference Protocol.  See docs/gateway.md."""

from typing import TYPE_CHECKING

from extractguard.gateway.audit import AuditLog, VerifyResult, verify_file
from extractguard.gateway.config import GatewayConfig, default_config, load_config, parse_config
from extractguard.gateway.keys import Account, KeyStore
from extractguard.gateway.limiter import RateLimits, Refusal
from extractguard.registry import lazy_exports

if TYPE_CHECKING:
    from extractguard.gateway.app import Gateway, build_gateway, create_app

# Load the app (and with it the model and defense code: torch, scikit-learn) only when used, so
# admin commands (``keys``, ``audit verify``) start in a second (PEP 562).
__getattr__ = lazy_exports(__name__, {"Gateway": "app", "build_gateway": "app", "create_app": "app"})


__all__ = [
    "Account",
    "AuditLog",
    "Gateway",
    "GatewayConfig",
    "KeyStore",
    "RateLimits",
    "Refusal",
    "VerifyResult",
    "build_gateway",
    "create_app",
    "default_config",
    "load_config",
    "parse_config",
    "verify_file",
]
