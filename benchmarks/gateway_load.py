"""The gateway under load and faults: two replicas sharing a real Redis, 64 locust users.

Set-up (all on 127.0.0.1, each a separate process): one ``redis-server`` (append-only file,
fsynced on every write, so counters survive a Redis restart) and two ``extractguard serve``
replicas with the same config.  The replicas share

- the Redis storage for every limit and quota (counted in rows, atomically, across replicas);
- the key database and the audit log: one SQLite file each in the shared ``state_dir``.  The audit
  log is ONE hash chain for both replicas: every append is a ``BEGIN IMMEDIATE`` transaction that
  reads the head and writes the next record, so appends from two processes are serialised and the
  chain stays linear.  One chain means one ``audit verify`` and one exact count per key.

Keys: ``--accounts`` limited accounts with ``--keys-per-account`` keys each (tier ``limited``:
``--key-limit`` rows per hour per key and ``--quota`` rows per month per account, so the account
quota binds before the keys' limits), plus ``--bulk-keys`` keys without a binding limit, so the
replicas keep serving (and auditing) at full rate after the limited keys are spent.  Every locust
request picks a key at random and 1-8 rows.

Scenarios (default: both, one after the other, each on fresh state):

- ``load``: ``--users`` users for ``--duration`` seconds.  Pass: zero 5xx, zero transport errors,
  no key or account admitted beyond its limit (rows summed from the audit log), the audit chain
  verifies, every acknowledged answer (a 200 the client received) is in the audit log.
- ``faults``: the same load, and during it replica B is SIGKILLed (then restarted) and Redis is
  stopped for ``--redis-down`` seconds (then restarted on its append-only file).  Pass: the only
  5xx are 503s naming the storage (fail_closed, the default policy), the same limits hold, the
  chain verifies, no acknowledged answer is missing.  Transport errors are expected only while
  replica B is dead.

    PYTHONPATH=src OMP_NUM_THREADS=1 python benchmarks/gateway_load.py            # ~2 minutes
    PYTHONPATH=src OMP_NUM_THREADS=1 python benchmarks/gateway_load.py --scenario load --duration 60

Needs ``redis-server`` on PATH and ``pip install extractguard[load]`` (locust).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # the process helpers the tests use
from gateway_procs import GatewayProcess, RedisProcess, cli_env, create_key  # noqa: E402

OUT = Path(__file__).resolve().parent / "out"
LOCUSTFILE = Path(__file__).resolve().parent / "gateway_locustfile.py"


def _config(state: Path, redis_url: str, victim: str, key_limit: int, quota: int) -> Path:
    cfg = state.parent / "gateway.yaml"
    cfg.write_text(
        f"model: {{name: m, victim: {victim}}}\n"
        f"state_dir: {state}\n"
        f"storage: {redis_url}\n"
        "on_storage_error: fail_closed\n"
        "max_rows_per_request: 64\n"
        "tiers:\n"
        f"  limited: {{output: probabilities, limits: ['{key_limit}/hour'], quota: '{quota}/month'}}\n"
        "  bulk: {output: probabilities, limits: ['100000000/hour']}\n"
    )
    return cfg


class _Faults(threading.Thread):
    """Stop Redis (then restart it), then SIGKILL replica B (then restart it) during the run.

    In that order because a replica takes a while to come back (Python, torch, the model), and
    the Redis outage should hit both replicas under full load."""

    def __init__(self, duration: float, replica: GatewayProcess, redis: RedisProcess, redis_down: float) -> None:
        super().__init__(daemon=True)
        self.duration, self.replica, self.redis, self.redis_down = duration, replica, redis, redis_down
        self.events: list[dict[str, Any]] = []
        self.error: str | None = None

    def _event(self, t0: float, what: str) -> None:
        self.events.append({"t": round(time.monotonic() - t0, 2), "event": what})

    def run(self) -> None:
        t0 = time.monotonic()
        try:
            time.sleep(0.15 * self.duration)
            self._event(t0, "stop Redis")
            self.redis.stop()
            time.sleep(self.redis_down)
            self.redis.start()
            self._event(t0, "Redis back (append-only file replayed)")
            time.sleep(max(0.0, 0.35 * self.duration - (time.monotonic() - t0)))
            self._event(t0, "SIGKILL replica B")
            self.replica.kill()
            self.replica.start()
            self._event(t0, "replica B live again (same state, same port)")
        except Exception as exc:  # reported, and fails the scenario
            self.error = repr(exc)


def _scenario(name: str, args: argparse.Namespace, root: Path) -> dict[str, Any]:
    from extractguard.gateway import AuditLog, verify_file
    from extractguard.victims import build_victim

    work = root / name
    state = work / "state"
    state.mkdir(parents=True)
    schema = build_victim(args.victim, seed=0).target.schema  # also fills the cache both replicas load from
    redis = RedisProcess(data_dir=work / "redis").start()
    cfg = _config(state, redis.url, args.victim, args.key_limit, args.quota)
    limited = {f"acct{a}": [create_key(state / "keys.db", f"acct{a}", "limited") for _ in range(args.keys_per_account)]
               for a in range(args.accounts)}
    bulk = [create_key(state / "keys.db", f"bulk{b}", "bulk") for b in range(args.bulk_keys)]
    keys = [k for ks in limited.values() for k in ks] + bulk
    replicas = [GatewayProcess(cfg, log=work / f"replica-{r}.log") for r in "AB"]
    for rep in replicas:
        rep.start()
    load_cfg = work / "load.json"
    load_cfg.write_text(json.dumps({"replicas": [r.url for r in replicas], "keys": keys, "model": "m",
                                    "n_features": schema.n_features, "low": float(np.min(schema.low)), "high": float(np.max(schema.high))}))
    result_file = work / "locust-result.json"
    env = {**cli_env(), "EG_LOAD_CONFIG": str(load_cfg), "EG_LOAD_OUT": str(result_file), "EG_LOAD_WAIT": str(args.wait)}
    duration = args.fault_duration if name == "faults" else args.duration
    faults = _Faults(duration, replicas[1], redis, args.redis_down) if name == "faults" else None
    cmd = [sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--headless", "-u", str(args.users), "-r", str(args.users),
           "-t", f"{int(round(duration))}s", "--stop-timeout", "30", "--only-summary", "--loglevel", "ERROR"]
    t0 = time.monotonic()
    try:
        locust = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=(work / "locust.log").open("wb"))
        if faults is not None:
            faults.start()
        locust.wait(timeout=duration + 300)
        if faults is not None:
            faults.join(timeout=300)
        wall = time.monotonic() - t0
    finally:
        for rep in replicas:
            rep.stop()  # graceful: the test of SIGKILL is the fault above, not this
        redis.stop()

    if not result_file.is_file():
        raise RuntimeError(f"locust wrote no results (exit {locust.returncode}): {(work / 'locust.log').read_text()[-3000:]}")
    res = json.loads(result_file.read_text())
    verified = verify_file(state / "audit.db")
    log = AuditLog(state / "audit.db", read_only=True)
    records = log.records()
    log.close()
    served = [r for r in records if r.get("request_id")]
    logged_ids = [r["request_id"] for r in served]
    key_account = {k.split("_")[1]: a for a, ks in limited.items() for k in ks}
    admitted_key: dict[str, int] = defaultdict(int)
    admitted_account: dict[str, int] = defaultdict(int)
    for r in served:
        if r["key_id"] in key_account:
            admitted_key[r["key_id"]] += r["n_rows"]
            admitted_account[r["account"]] += r["n_rows"]
    acked = res["acked"]
    acked_ids = [a[0] for a in acked]
    missing = sorted(set(acked_ids) - set(logged_ids))
    statuses = Counter({int(k): v for k, v in res["statuses"].items()})
    five_xx = {s: n for s, n in statuses.items() if s >= 500}
    other_5xx = sum(n for s, n in five_xx.items() if s != 503)
    unclear_503 = sum(n for msg, n in res["unavailable"].items() if "rate-limit storage unavailable" not in msg or "Retry-After=5" not in msg)
    lat = np.asarray(res["latency_ms"]) if res["latency_ms"] else np.zeros(1)
    over_key = {k: v for k, v in admitted_key.items() if v > args.key_limit}
    over_account = {a: v for a, v in admitted_account.items() if v > args.quota}
    out = {
        "scenario": name,
        "users": args.users,
        "duration_s": duration,
        "wall_s": round(wall, 1),
        "requests": int(sum(statuses.values())),
        "statuses": {str(k): v for k, v in sorted(statuses.items())},
        "answered_per_s": round(statuses.get(200, 0) / duration, 1),
        "requests_per_s": round(sum(statuses.values()) / duration, 1),
        "latency_ms": {"p50": round(float(np.percentile(lat, 50)), 1), "p95": round(float(np.percentile(lat, 95)), 1),
                       "p99": round(float(np.percentile(lat, 99)), 1)},
        "5xx_other_than_503": other_5xx,
        "503_storage_unavailable": five_xx.get(503, 0),
        "503_without_clear_message": unclear_503,
        "transport_errors": statuses.get(0, 0),
        "limit_per_key": args.key_limit,
        "quota_per_account": args.quota,
        "limited_keys": len(key_account),
        "admitted_rows_per_key": {"min": min(admitted_key.values(), default=0), "max": max(admitted_key.values(), default=0)},
        "admitted_rows_per_account": {"min": min(admitted_account.values(), default=0), "max": max(admitted_account.values(), default=0)},
        "keys_over_limit": over_key,
        "accounts_over_quota": over_account,
        "audit_verified": verified.ok,
        "audit_problem": verified.problem,
        "audit_records": verified.records,
        "acknowledged": len(acked_ids),
        "acknowledged_missing_from_audit": len(missing),
        "audit_records_without_ack": len(set(logged_ids) - set(acked_ids)),
        "duplicate_request_ids": len(logged_ids) - len(set(logged_ids)),
        "by_replica": dict(Counter(a[3] for a in acked)),
        "fault_events": faults.events if faults is not None else [],
        "fault_error": faults.error if faults is not None else None,
        "error_samples": res["errors"][:5],
        "unavailable_messages": res["unavailable"],
    }
    allowed_transport = name == "faults"
    out["passed"] = bool(
        other_5xx == 0 and unclear_503 == 0 and not over_key and not over_account and verified.ok and not missing
        and out["duplicate_request_ids"] == 0 and (allowed_transport or (statuses.get(0, 0) == 0 and five_xx.get(503, 0) == 0))
        and (faults is None or faults.error is None) and statuses.get(200, 0) > 0
        and not any(e["status"] in (400, 401, 403, 404, 413) for e in res["errors"])
    )
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--scenario", choices=["load", "faults", "both"], default="both")
    p.add_argument("--users", type=int, default=64)
    p.add_argument("--duration", type=float, default=30.0, help="Seconds of load in the load scenario.")
    p.add_argument("--fault-duration", type=float, default=40.0,
                   help="Seconds of load in the faults scenario (Redis stops at 15%%, replica B is killed at 35%%).")
    p.add_argument("--wait", type=float, default=0.05, help="Each user waits uniform(0, WAIT) s between requests.")
    p.add_argument("--victim", default="iris-logreg")
    p.add_argument("--accounts", type=int, default=8)
    p.add_argument("--keys-per-account", type=int, default=2)
    p.add_argument("--bulk-keys", type=int, default=4)
    p.add_argument("--key-limit", type=int, default=300, help="Rows per hour per limited key.")
    p.add_argument("--quota", type=int, default=500, help="Rows per month per limited account (all its keys).")
    p.add_argument("--redis-down", type=float, default=3.0, help="Seconds Redis stays stopped in the faults scenario.")
    p.add_argument("--out", type=Path, default=OUT / "gateway_load.json")
    args = p.parse_args()

    scenarios = ["load", "faults"] if args.scenario == "both" else [args.scenario]
    with tempfile.TemporaryDirectory(prefix="eg-load-") as tmp:
        results = [_scenario(s, args, Path(tmp)) for s in scenarios]
    rows = [
        ("requests (answered 200 / s)", lambda r: f"{r['requests']} ({r['answered_per_s']}/s)"),
        ("status counts", lambda r: " ".join(f"{k}:{v}" for k, v in r["statuses"].items())),
        ("latency p50 / p95 / p99 ms", lambda r: "{p50} / {p95} / {p99}".format(**r["latency_ms"])),
        ("5xx other than 503", lambda r: r["5xx_other_than_503"]),
        ("503 storage unavailable (clear msg)", lambda r: f"{r['503_storage_unavailable']} ({r['503_storage_unavailable'] - r['503_without_clear_message']})"),
        ("transport errors", lambda r: r["transport_errors"]),
        ("max rows admitted / key (limit)", lambda r: f"{r['admitted_rows_per_key']['max']} ({r['limit_per_key']})"),
        ("max rows admitted / account (quota)", lambda r: f"{r['admitted_rows_per_account']['max']} ({r['quota_per_account']})"),
        ("keys / accounts over limit", lambda r: f"{len(r['keys_over_limit'])} / {len(r['accounts_over_quota'])}"),
        ("audit chain verifies (records)", lambda r: f"{r['audit_verified']} ({r['audit_records']})"),
        ("acknowledged / missing from audit", lambda r: f"{r['acknowledged']} / {r['acknowledged_missing_from_audit']}"),
        ("passed", lambda r: r["passed"]),
    ]
    width = max(len(n) for n, _ in rows)
    print(f"gateway under load: {args.users} locust users, 2 replicas + Redis, victim {args.victim}; "
          + ", ".join(f"{r['scenario']} {r['duration_s']:g} s" for r in results))
    print(f"{'':{width}}  " + "  ".join(f"{r['scenario']:>28}" for r in results))
    for label, fn in rows:
        print(f"{label:{width}}  " + "  ".join(f"{str(fn(r)):>28}" for r in results))
    for r in results:
        for e in r["fault_events"]:
            print(f"  [{r['scenario']}] t={e['t']:>5} s  {e['event']}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, "results": results}, indent=2))
    print(f"wrote {args.out}")
    if not all(r["passed"] for r in results):
        sys.exit(1)


if __name__ == "__main__":
    main()
