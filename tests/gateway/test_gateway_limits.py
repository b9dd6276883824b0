"""Gateway limits: charged per row, 429 + Retry-After, refusals cost nothing, SQLite quotas
survive a restart, per-IP limits honour only trusted proxies, and two app instances sharing a
real Redis enforce one limit."""

from __future__ import annotations

from pathlib import Path

import httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient

from gateway_helpers import CountingTarget, UvicornThread, infer_body, make_app

URL = "/v2/models/iris/infer"


def rows(n: int) -> np.ndarray:
    return np.tile([[5.1, 3.5, 1.4, 0.2]], (n, 1))


def post(client, key: str, n: int, **headers: str):  # type: ignore[no-untyped-def]
    return client.post(URL, json=infer_body(rows(n)), headers={"Authorization": f"Bearer {key}", **headers})


def test_limits_are_charged_per_row_not_per_request(tmp_path: Path, iris) -> None:  # type: ignore[no-untyped-def]
    target = CountingTarget(iris)
    app = make_app(tmp_path, target=target)  # tier free: 10/minute
    client = TestClient(app)
    key = app.state.gateway.keys.create("a", "free")
    assert post(client, key, 10).status_code == 200  # one batch spends the whole minute
    r = post(client, key, 1)
    assert r.status_code == 429
    assert 1 <= int(r.headers["Retry-After"]) <= 60
    assert "10/minute" in r.json()["error"]
    assert target.rows == 10 and target.calls == 1


def test_a_batch_larger_than_the_window_is_refused_whole(tmp_path: Path, iris) -> None:  # type: ignore[no-untyped-def]
    target = CountingTarget(iris)
    app = make_app(tmp_path, target=target)
    client = TestClient(app)
    key = app.state.gateway.keys.create("a", "free")
    r = post(client, key, 11)
    assert r.status_code == 429 and r.headers["Retry-After"] == "60"
    assert target.calls == 0
    assert post(client, key, 10).status_code == 200  # the refused batch cost nothing


def test_refused_batch_does_not_spend_the_quota(tmp_path: Path, iris) -> None:  # type: ignore[no-untyped-def]
    app = make_app(tmp_path, target=iris, tiers={"q": {"quota": "10/month"}})
    client = TestClient(app)
    k1 = app.state.gateway.keys.create("acme", "q")
    k2 = app.state.gateway.keys.create("acme", "q")  # same account: one quota
    assert post(client, k1, 8).status_code == 200
    r = post(client, k2, 5)
    assert r.status_code == 429 and "quota" in r.json()["error"]
    assert int(r.headers["Retry-After"]) > 29 * 24 * 3600
    assert post(client, k2, 2).status_code == 200
    assert post(client, k1, 1).status_code == 429


def test_spend_cap_in_rows_of_price(tmp_path: Path, iris) -> None:  # type: ignore[no-untyped-def]
    app = make_app(tmp_path, target=iris, tiers={"paid": {"price_per_row": 0.25, "spend_cap": 1.5}})
    client = TestClient(app)
    key = app.state.gateway.keys.create("acme", "paid")
    assert post(client, key, 6).status_code == 200  # 6 * 0.25 = 1.5
    r = post(client, key, 1)
    assert r.status_code == 429 and "spend cap" in r.json()["error"]


def test_global_limit_covers_all_accounts(tmp_path: Path, iris) -> None:  # type: ignore[no-untyped-def]
    app = make_app(tmp_path, target=iris, global_limits=["7/minute"])
    client = TestClient(app)
    a = app.state.gateway.keys.create("a", "raw")
    b = app.state.gateway.keys.create("b", "raw")
    assert post(client, a, 4).status_code == 200
    assert post(client, b, 3).status_code == 200
    r = post(client, b, 1)
    assert r.status_code == 429 and "global" in r.json()["error"]


def test_quota_survives_a_restart_with_sqlite(tmp_path: Path, iris) -> None:  # type: ignore[no-untyped-def]
    overrides = {"storage": None, "tiers": {"q": {"quota": "12/month"}}}
    app = make_app(tmp_path, target=iris, **overrides)
    assert app.state.gateway.config.storage_uri.startswith("sqlite:////")
    key = app.state.gateway.keys.create("acme", "q")
    assert post(TestClient(app), key, 9).status_code == 200
    app.state.gateway.close()
    del app

    restarted = make_app(tmp_path, target=iris, **overrides)  # same state_dir, fresh process state
    client = TestClient(restarted)
    r = post(client, key, 4)
    assert r.status_code == 429 and "quota" in r.json()["error"]
    assert post(client, key, 3).status_code == 200
    assert (tmp_path / "limits.db").is_file()


def test_sqlite_storage_speaks_the_limits_api(tmp_path: Path) -> None:
    from limits import parse
    from limits.storage import storage_from_string
    from limits.strategies import FixedWindowRateLimiter

    import extractguard.gateway.storage  # noqa: F401  (registers sqlite://)

    s = storage_from_string(f"sqlite:///{tmp_path}/x.db")
    lim = FixedWindowRateLimiter(s)
    item = parse("5/hour")
    assert lim.hit(item, "k", cost=3) and lim.hit(item, "k", cost=2) and not lim.test(item, "k")
    assert lim.get_window_stats(item, "k").remaining == 0
    assert lim.get_window_stats(item, "other").remaining == 5
    s.clear(item.key_for("k"))
    assert lim.test(item, "k", cost=5) and s.check()
    # An expired window restarts at the new amount; a live one grows.
    assert s.incr("w", 0, 5) == 5 and s.incr("w", 3600, 2) == 2 and s.incr("w", 3600, 3) == 5
    # atomic(): a failure inside the block charges nothing.
    with pytest.raises(RuntimeError), s.atomic():
        s.incr("w", 3600, 100)
        raise RuntimeError
    assert s.get("w") == 5


def test_sqlite_limits_shared_by_threads_and_instances_never_overspend(tmp_path: Path) -> None:
    import threading

    from extractguard.gateway import RateLimits, parse_config

    cfg = parse_config({"model": {"victim": "iris-logreg"}, "state_dir": str(tmp_path),
                        "tiers": {"t": {"limits": ["40/hour"], "quota": "1000/month"}}})
    limiters = [RateLimits(cfg), RateLimits(cfg)]  # two connections to one file, as two replicas
    served: list[int] = []

    def client(i: int) -> None:
        for _ in range(20):
            if limiters[i % 2].charge("k", "acme", "t", "127.0.0.1", 1) is None:
                served.append(1)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(served) == 40
    assert limiters[0].remaining("k", "acme", "t") == {"40/hour": 0, "1000/month": 960}


def _ip_server(tmp_path: Path, iris, trusted: list[str]):  # type: ignore[no-untyped-def]
    app = make_app(tmp_path, target=iris, ip_limits=["5/minute"], trusted_proxies=trusted)
    return app, app.state.gateway.keys.create("a", "raw")


def test_client_ip_from_x_forwarded_for_only_behind_a_trusted_proxy(tmp_path: Path, iris) -> None:  # type: ignore[no-untyped-def]
    # Untrusted peer: X-Forwarded-For is ignored, so forging it does not buy a fresh IP budget.
    app, key = _ip_server(tmp_path / "a", iris, trusted=[])
    with UvicornThread(app) as srv, httpx.Client(base_url=srv.url) as c:
        assert post(c, key, 5, **{"X-Forwarded-For": "203.0.113.1"}).status_code == 200
        r = post(c, key, 1, **{"X-Forwarded-For": "203.0.113.2"})
        assert r.status_code == 429 and "ip limit" in r.json()["error"]

    # Trusted proxy (the loopback peer): each forwarded client has its own budget; the rightmost
    # untrusted hop is the client, so a spoofed leftmost entry changes nothing.
    app, key = _ip_server(tmp_path / "b", iris, trusted=["127.0.0.0/8"])
    with UvicornThread(app) as srv, httpx.Client(base_url=srv.url) as c:
        assert post(c, key, 5, **{"X-Forwarded-For": "203.0.113.1"}).status_code == 200
        assert post(c, key, 5, **{"X-Forwarded-For": "203.0.113.2"}).status_code == 200
        r = post(c, key, 1, **{"X-Forwarded-For": "198.51.100.7, 203.0.113.1"})
        assert r.status_code == 429
        recs = app.state.gateway.audit.records()
        assert [x["client_ip"] for x in recs] == ["203.0.113.1", "203.0.113.2"]


def test_two_gateway_instances_sharing_redis_enforce_one_limit(tmp_path: Path, iris, redis_proc) -> None:  # type: ignore[no-untyped-def]
    t1, t2 = CountingTarget(iris), CountingTarget(iris)
    # Two replicas: separate processes' worth of state except the shared Redis and key database.
    shared = {"storage": redis_proc.url, "keys_db": str(tmp_path / "keys.db"), "tiers": {"free": {"limits": ["10/minute"]}}}
    a = make_app(tmp_path / "a", target=t1, **shared)
    b = make_app(tmp_path / "b", target=t2, **shared)
    key = a.state.gateway.keys.create("acme", "free")
    ca, cb = TestClient(a), TestClient(b)
    assert post(ca, key, 4).status_code == 200
    assert post(cb, key, 4).status_code == 200
    assert post(ca, key, 2).status_code == 200
    ra, rb = post(ca, key, 1), post(cb, key, 1)
    assert ra.status_code == rb.status_code == 429
    assert "Retry-After" in rb.headers
    assert t1.rows + t2.rows == 10
    # Revoking through one replica's key store locks the key out of the other at once.
    a.state.gateway.keys.revoke(key)
    assert post(cb, key, 1).status_code == 401
