"""Rate limits, quotas and spend caps, all counted in input rows, on the ``limits`` library.

Extraction cost is measured in queries, and one query is one input row (the project's budget
contract), so every limit is charged ``cost = rows in the batch``: sending 100 rows in one request
spends exactly what 100 single-row requests spend.

Limits are checked first and charged only when all of them pass, so a refused request costs
nothing (a caller who overshoots a monthly quota by one batch does not lose the rest of it).
The check and the charge are one atomic step: one transaction on SQLite, one Lua script on Redis
(so replicas sharing a Redis can neither overspend a limit nor charge a refused batch).  On the
memory storage (one process, tests) they are two steps.

When the storage cannot be reached (Redis down, SQLite locked past its timeout) :meth:`charge`
raises :class:`LimitsUnavailable`; the gateway then follows ``on_storage_error``: ``fail_closed``
(the default: 503 + Retry-After, nothing reaches the model uncounted) or ``fail_open`` (serve
uncounted).  The Redis client reconnects by itself on the next command, so the gateway recovers
without a restart when the storage returns.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

from limits import RateLimitItem, parse
from limits.errors import StorageError
from limits.storage import RedisStorage, Storage, storage_from_string
from limits.strategies import FixedWindowRateLimiter

from extractguard.errors import ConfigurationError, ExtractGuardError
from extractguard.gateway import storage as _sqlite_storage  # noqa: F401  (registers sqlite://)
from extractguard.gateway.config import GatewayConfig


@dataclass(frozen=True)
class Refusal:
    """Why a request was refused and when trying again can succeed."""

    scope: str  # "key", "ip", "global", "quota", "spend"
    limit: str
    retry_after: int


class LimitsUnavailable(ExtractGuardError):
    """The rate-limit storage did not answer, so nothing could be counted."""


# A Redis that hangs (rather than refusing connections) must not hang every request with it.
_REDIS_OPTIONS: dict[str, float | str | bool] = {"socket_timeout": 2.0, "socket_connect_timeout": 2.0}


# Check every limit, then charge every limit, in one atomic Redis step.  KEYS are the counters
# (limits' own key names, so its window stats still read them); ARGV = cost, then limit and
# expiry per key.  Returns 0 when charged, else the 1-based index of the first limit that would
# be exceeded (nothing charged).  The expiry rule is limits' fixed window: set on creation.
_CHECK_AND_CHARGE = """
local cost = tonumber(ARGV[1])
for i = 1, #KEYS do
    local current = tonumber(redis.call("get", KEYS[i]) or "0")
    if current + cost > tonumber(ARGV[2 * i]) then
        return i
    end
end
for i = 1, #KEYS do
    if redis.call("incrby", KEYS[i], cost) == cost then
        redis.call("expire", KEYS[i], ARGV[2 * i + 1])
    end
end
return 0
"""


@dataclass(frozen=True)
class _Rule:
    scope: str
    item: RateLimitItem
    text: str


class _Exceeded(Exception):
    def __init__(self, rule: _Rule, ids: tuple[str, ...]) -> None:
        self.rule, self.ids = rule, ids


def _rows_for_spend(cap: float, price: float) -> int:
    return max(0, int(math.floor(cap / price + 1e-9)))


class RateLimits:
    """Every limit of a gateway, on one ``limits`` storage chosen by URI."""

    def __init__(self, config: GatewayConfig, storage: Storage | None = None) -> None:
        uri = config.storage_uri
        options = _REDIS_OPTIONS if uri.startswith(("redis://", "rediss://")) and "timeout" not in uri else {}
        try:
            # wrap_exceptions: every backend's own errors (redis.ConnectionError, sqlite3.Error)
            # arrive as limits' StorageError, so one except clause covers them all.
            self.storage = storage or storage_from_string(uri, wrap_exceptions=True, **options)
        except Exception as exc:  # limits raises ConfigurationError/ImportError per backend
            raise ConfigurationError(f"cannot open rate-limit storage {config.storage_uri!r}: {exc}") from None
        self.limiter = FixedWindowRateLimiter(self.storage)
        self._script = None
        if isinstance(self.storage, RedisStorage):
            # Why our own script: limits' strategies test and hit one limit at a time, so two
            # replicas could pass the same test and overcharge, and a refusal by the second limit
            # would leave the first one charged.  redis-py reloads the script after a Redis restart.
            self._script = self.storage.get_connection().register_script(_CHECK_AND_CHARGE)
        self._global = [_Rule("global", parse(t), t) for t in config.global_limits]
        self._ip = [_Rule("ip", parse(t), t) for t in config.ip_limits]
        self._tier: dict[str, list[_Rule]] = {}
        for name, tier in config.tiers.items():
            rules = [_Rule("key", parse(t), t) for t in tier.limits]
            if tier.quota:
                rules.append(_Rule("quota", parse(tier.quota), tier.quota))
            if tier.spend_cap is not None:
                n = _rows_for_spend(tier.spend_cap, tier.price_per_row)
                text = f"{n}/month"
                rules.append(_Rule("spend", parse(text), f"spend cap {tier.spend_cap:g} at {tier.price_per_row:g}/row"))
            self._tier[name] = rules

    def _rules(self, key_id: str, account: str, tier: str, ip: str) -> list[tuple[_Rule, tuple[str, ...]]]:
        out: list[tuple[_Rule, tuple[str, ...]]] = [(r, ("global",)) for r in self._global]
        out += [(r, ("ip", ip)) for r in self._ip]
        # Speed limits are per key; quotas and spend caps belong to the account (all its keys),
        # so a second key does not double what an account may take in a month.
        for r in self._tier.get(tier, []):
            out.append((r, ("key", key_id) if r.scope == "key" else (r.scope, "account", account)))
        return out

    def _refusal(self, rule: _Rule, ids: tuple[str, ...], rows: int) -> Refusal:
        if rows > rule.item.amount:
            # No wait helps: the batch alone is bigger than the whole window.
            return Refusal(rule.scope, rule.text, int(rule.item.get_expiry()))
        reset = self.limiter.get_window_stats(rule.item, *ids).reset_time
        return Refusal(rule.scope, rule.text, max(1, math.ceil(reset - time.time())))

    def charge(self, key_id: str, account: str, tier: str, ip: str, rows: int) -> Refusal | None:
        """Charge ``rows`` to every applicable limit, or refuse (charging nothing) and say why.

        Raises :class:`LimitsUnavailable` when the storage fails.
        """
        try:
            return self._charge(key_id, account, tier, ip, rows)
        except StorageError as exc:
            raise LimitsUnavailable(f"rate-limit storage unavailable ({type(exc.storage_error).__name__})") from exc
        except self.storage_errors() as exc:  # raised outside the wrapped methods (SQLite's atomic())
            raise LimitsUnavailable(f"rate-limit storage unavailable ({type(exc).__name__})") from exc

    def storage_errors(self) -> tuple[type[Exception], ...]:
        """Exceptions meaning "the storage did not answer" (for other users of :attr:`limiter`)."""
        base = self.storage.base_exceptions
        return (StorageError, *(base if isinstance(base, tuple) else (base,)))

    def _charge(self, key_id: str, account: str, tier: str, ip: str, rows: int) -> Refusal | None:
        rules = self._rules(key_id, account, tier, ip)
        if not rules:
            return None
        if self._script is not None:
            redis_storage: RedisStorage = self.storage  # type: ignore[assignment]
            keys = [redis_storage.prefixed_key(rule.item.key_for(*ids)) for rule, ids in rules]
            args: list[int] = [rows]
            for rule, _ in rules:
                args += [rule.item.amount, rule.item.get_expiry()]
            failed = int(self._script(keys=keys, args=args))
            return None if failed == 0 else self._refusal(*rules[failed - 1], rows)
        atomic = getattr(self.storage, "atomic", None)
        if atomic is not None:
            # Our SQLite storage: charge every limit in one transaction and roll it back if any
            # limit is exceeded, so the check and the charge cannot be separated.
            try:
                with atomic():
                    for rule, ids in rules:
                        if not self.limiter.hit(rule.item, *ids, cost=rows):
                            raise _Exceeded(rule, ids)
            except _Exceeded as exc:
                return self._refusal(exc.rule, exc.ids, rows)
            return None
        for rule, ids in rules:
            if not self.limiter.test(rule.item, *ids, cost=rows):
                return self._refusal(rule, ids, rows)
        for rule, ids in rules:
            if not self.limiter.hit(rule.item, *ids, cost=rows):
                return self._refusal(rule, ids, rows)
        return None

    def remaining(self, key_id: str, account: str, tier: str) -> dict[str, int]:
        """Rows left per key/account limit."""
        out: dict[str, int] = {}
        for rule, ids in self._rules(key_id, account, tier, ""):
            if rule.scope in ("key", "quota", "spend"):
                out[rule.text] = self.limiter.get_window_stats(rule.item, *ids).remaining
        return out
