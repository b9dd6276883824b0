"""Rate limits without the app (gateway/limiter.py), on each backend: memory, SQLite and Redis.

Written for the mutation testing of issue 23: each test names the promise it protects.  The
Redis cases need ``redis-server`` (skipped without it, like the other Redis tests).
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from extractguard.errors import ConfigurationError
from extractguard.gateway import RateLimits, parse_config
from extractguard.gateway.limiter import LimitsUnavailable, Refusal

BACKENDS = ["memory", "sqlite", "redis"]


@pytest.fixture(scope="module")
def shared_redis() -> Iterator[Any]:
    """One redis-server for the module (emptied before each test that uses it): starting one per test is slow."""
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed (apt-get install -y redis-server)")
    from gateway_procs import RedisProcess

    with RedisProcess() as r:
        yield r


@pytest.fixture(params=BACKENDS)
def make(request: pytest.FixtureRequest, tmp_path: Path):  # type: ignore[no-untyped-def]
    """``make(tiers=..., global_limits=..., ip_limits=...)`` -> a RateLimits on the backend."""
    if request.param == "memory":
        uri = "memory://"
    elif request.param == "sqlite":
        uri = f"sqlite:///{tmp_path / 'limits.db'}"
    else:
        import redis

        uri = request.getfixturevalue("shared_redis").url
        redis.Redis.from_url(uri).flushall()

    def build(**cfg: Any) -> RateLimits:
        return RateLimits(parse_config({"model": {"victim": "iris-logreg"}, "state_dir": str(tmp_path), "storage": uri, **cfg}))

    return build


def test_a_batch_costs_its_rows_on_every_limit(make) -> None:  # type: ignore[no-untyped-def]
    lim = make(tiers={"t": {"limits": ["10/minute"], "quota": "100/month"}})
    assert lim.charge("k", "acme", "t", "ip", 4) is None
    assert lim.charge("k", "acme", "t", "ip", 6) is None
    assert lim.remaining("k", "acme", "t") == {"10/minute": 0, "100/month": 90}
    r = lim.charge("k", "acme", "t", "ip", 1)
    assert r is not None and (r.scope, r.limit) == ("key", "10/minute") and 1 <= r.retry_after <= 60


def test_a_batch_bigger_than_the_window_is_refused_with_the_whole_window_and_costs_nothing(make) -> None:  # type: ignore[no-untyped-def]
    lim = make(tiers={"t": {"limits": ["10/minute"]}})
    assert lim.charge("k", "acme", "t", "ip", 11) == Refusal("key", "10/minute", 60)
    assert lim.remaining("k", "acme", "t") == {"10/minute": 10}
    assert lim.charge("k", "acme", "t", "ip", 10) is None  # exactly the window fits


def test_a_refusal_by_a_later_limit_charges_none_of_the_earlier_ones(make) -> None:  # type: ignore[no-untyped-def]
    lim = make(tiers={"q": {"limits": ["10/hour"], "quota": "12/month"}})
    assert lim.charge("k1", "acct", "q", "ip", 10) is None
    r = lim.charge("k2", "acct", "q", "ip", 5)
    assert r is not None and (r.scope, r.limit) == ("quota", "12/month") and r.retry_after > 27 * 24 * 3600
    assert lim.remaining("k2", "acct", "q") == {"10/hour": 10, "12/month": 2}


def test_a_refusal_by_the_first_limit_charges_none_of_the_later_ones(make) -> None:  # type: ignore[no-untyped-def]
    lim = make(global_limits=["5/hour"], tiers={"t": {"limits": ["100/hour"]}})
    assert lim.charge("k", "a", "t", "ip", 5) is None
    r = lim.charge("k", "a", "t", "ip", 1)
    assert r is not None and (r.scope, r.limit) == ("global", "5/hour") and 1 <= r.retry_after <= 3600
    assert lim.remaining("k", "a", "t") == {"100/hour": 95}


def test_speed_limits_are_per_key_quotas_and_spend_per_account(make) -> None:  # type: ignore[no-untyped-def]
    lim = make(tiers={"t": {"limits": ["5/minute"], "quota": "8/month", "price_per_row": 0.5, "spend_cap": 4.5}})
    assert lim.charge("k1", "acme", "t", "ip", 5) is None
    assert lim.charge("k2", "acme", "t", "ip", 3) is None  # a second key has its own speed limit
    assert lim.remaining("k2", "acme", "t") == {"5/minute": 2, "8/month": 0, "spend cap 4.5 at 0.5/row": 1}
    r = lim.charge("k2", "acme", "t", "ip", 1)
    assert r is not None and r.scope == "quota"
    assert lim.charge("k3", "other", "t", "ip", 5) is None  # another account is untouched


def test_the_spend_cap_is_whole_rows_of_price(make) -> None:  # type: ignore[no-untyped-def]
    lim = make(tiers={"p": {"price_per_row": 0.1, "spend_cap": 0.3}, "z": {"price_per_row": 0.3, "spend_cap": 0.2}})
    assert lim.remaining("k", "a", "p") == {"spend cap 0.3 at 0.1/row": 3}  # 0.3 / 0.1 is 2.9999999999999996
    assert lim.charge("k", "a", "p", "ip", 3) is None
    r = lim.charge("k", "a", "p", "ip", 1)
    assert r is not None and (r.scope, r.limit) == ("spend", "spend cap 0.3 at 0.1/row")
    assert lim.charge("k", "b", "z", "ip", 1) is not None  # a cap below one row's price admits nothing


def test_ip_limits_are_per_ip_and_global_limits_cover_everyone(make) -> None:  # type: ignore[no-untyped-def]
    lim = make(ip_limits=["3/minute"], global_limits=["5/minute"], tiers={"t": {}})
    assert lim.charge("k1", "a", "t", "10.0.0.1", 3) is None
    r = lim.charge("k2", "b", "t", "10.0.0.1", 1)
    assert r is not None and (r.scope, r.limit) == ("ip", "3/minute")
    assert lim.charge("k2", "b", "t", "10.0.0.2", 2) is None
    r = lim.charge("k3", "c", "t", "10.0.0.3", 1)
    assert r is not None and r.scope == "global"
    assert lim.remaining("k1", "a", "t") == {}  # ip and global limits are not the account's


def test_a_tier_without_limits_is_never_refused(make) -> None:  # type: ignore[no-untyped-def]
    lim = make(tiers={"t": {}})
    for _ in range(3):
        assert lim.charge("k", "a", "t", "ip", 10_000) is None
    assert lim.charge("k", "a", "unknown-tier", "ip", 10_000) is None


def test_retry_after_is_when_the_window_resets(make) -> None:  # type: ignore[no-untyped-def]
    lim = make(tiers={"t": {"limits": ["2/hour"]}})
    assert lim.charge("k", "a", "t", "ip", 2) is None
    r = lim.charge("k", "a", "t", "ip", 1)
    assert r is not None and 3590 <= r.retry_after <= 3600


def test_an_unknown_storage_is_one_clear_error(tmp_path: Path) -> None:
    cfg = parse_config({"model": {"victim": "iris-logreg"}, "state_dir": str(tmp_path), "storage": "sqlite:////proc/nope/limits.db"})
    with pytest.raises(ConfigurationError, match="cannot open rate-limit storage 'sqlite:////proc/nope/limits.db'"):
        RateLimits(cfg)


def _redis(tmp_path: Path, url: str, **cfg: Any) -> RateLimits:
    return RateLimits(parse_config({"model": {"victim": "iris-logreg"}, "state_dir": str(tmp_path), "storage": url, **cfg}))


def test_a_hanging_redis_cannot_hang_requests(tmp_path: Path, shared_redis) -> None:  # type: ignore[no-untyped-def]
    """Socket timeouts are set on Redis unless the URI sets its own."""
    kwargs = _redis(tmp_path, shared_redis.url).storage.get_connection().connection_pool.connection_kwargs
    assert (kwargs["socket_timeout"], kwargs["socket_connect_timeout"]) == (2.0, 2.0)
    own = _redis(tmp_path, shared_redis.url + "?socket_timeout=7").storage.get_connection().connection_pool.connection_kwargs
    assert own.get("socket_connect_timeout") != 2.0


def test_a_stopped_redis_raises_limits_unavailable_and_recovers(tmp_path: Path, redis_proc) -> None:  # type: ignore[no-untyped-def]
    lim = _redis(tmp_path, redis_proc.url, tiers={"t": {"limits": ["5/hour"]}})
    assert lim.charge("k", "a", "t", "ip", 1) is None
    redis_proc.stop()
    with pytest.raises(LimitsUnavailable, match=r"rate-limit storage unavailable \(\w+\)"):
        lim.charge("k", "a", "t", "ip", 1)
    redis_proc.start()
    assert lim.charge("k", "a", "t", "ip", 5) is None  # this Redis kept nothing: counting starts again


def test_a_locked_sqlite_raises_limits_unavailable(tmp_path: Path) -> None:
    """A SQLite file locked past the timeout is a storage failure, not a crash."""
    import sqlite3

    lim = RateLimits(parse_config({"model": {"victim": "iris-logreg"}, "state_dir": str(tmp_path),
                                   "tiers": {"t": {"limits": ["5/hour"]}}}))
    lim.storage._conn.execute("PRAGMA busy_timeout = 0")  # do not wait 30 s for the lock
    other = sqlite3.connect(tmp_path / "limits.db", isolation_level=None)
    other.execute("BEGIN EXCLUSIVE")
    try:
        with pytest.raises(LimitsUnavailable, match=r"rate-limit storage unavailable \(OperationalError\)"):
            lim.charge("k", "a", "t", "ip", 1)
    finally:
        other.execute("ROLLBACK")
        other.close()
    assert lim.charge("k", "a", "t", "ip", 5) is None


def test_storage_errors_cover_the_backend_exceptions(tmp_path: Path) -> None:
    import sqlite3

    from limits.errors import StorageError

    lim = RateLimits(parse_config({"model": {"victim": "iris-logreg"}, "state_dir": str(tmp_path)}))
    errors = lim.storage_errors()
    assert StorageError in errors and sqlite3.Error in errors


def test_a_window_that_resets_while_refusing_says_retry_in_one_second(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Retry-After is at least 1 s and never points past the window (here: it ended a moment ago)."""
    import time

    from limits import WindowStats

    lim = RateLimits(parse_config({"model": {"victim": "iris-logreg"}, "state_dir": str(tmp_path), "storage": "memory://",
                                   "tiers": {"t": {"limits": ["2/hour"]}}}))
    assert lim.charge("k", "a", "t", "ip", 2) is None
    monkeypatch.setattr(lim.limiter, "get_window_stats", lambda *a, **k: WindowStats(time.time() - 0.5, 0))
    assert lim.charge("k", "a", "t", "ip", 1) == Refusal("key", "2/hour", 1)


def test_a_batch_as_big_as_a_partly_used_window_waits_for_its_reset(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Only a batch bigger than the whole window gets the whole window as Retry-After; one that fits waits for the reset."""
    import time

    from limits import WindowStats

    lim = RateLimits(parse_config({"model": {"victim": "iris-logreg"}, "state_dir": str(tmp_path), "storage": "memory://",
                                   "tiers": {"t": {"limits": ["2/hour"]}}}))
    assert lim.charge("k", "a", "t", "ip", 1) is None
    monkeypatch.setattr(lim.limiter, "get_window_stats", lambda *a, **k: WindowStats(time.time() + 99.5, 1))
    waits = (Refusal("key", "2/hour", 100), Refusal("key", "2/hour", 99))
    assert lim.charge("k", "a", "t", "ip", 2) in waits  # exactly the window's size, refused: 1 row is used
    assert lim.charge("k", "a", "t", "ip", 1) is None
    assert lim.charge("k", "a", "t", "ip", 1) in waits  # smaller than the window


def test_the_refusal_names_the_limit_that_refused_wherever_it_is_in_the_list(make) -> None:  # type: ignore[no-untyped-def]
    lim = make(global_limits=["100/minute"], ip_limits=["100/minute"],
               tiers={"t": {"limits": ["50/minute", "2/minute"], "quota": "1000/month"}})
    r = lim.charge("k", "a", "t", "ip", 3)  # fourth of five limits: global, ip, 50/minute, 2/minute, quota
    assert r is not None and (r.scope, r.limit) == ("key", "2/minute")
    lim = make(global_limits=["100/minute"], ip_limits=["100/minute"], tiers={"q": {"limits": ["50/minute"], "quota": "2/month"}})
    r = lim.charge("k", "a", "q", "ip", 3)  # fourth of four: the quota
    assert r is not None and (r.scope, r.limit) == ("quota", "2/month")


def test_a_refusal_is_an_immutable_value() -> None:
    import dataclasses

    r = Refusal("key", "2/hour", 5)
    assert r == Refusal("key", "2/hour", 5) and hash(r) == hash(Refusal("key", "2/hour", 5))
    with pytest.raises(dataclasses.FrozenInstanceError):
        r.retry_after = 0  # type: ignore[misc]
