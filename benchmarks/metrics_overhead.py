"""Cost of the monitoring metrics in the gateway's request path, side by side in one run.

Two comparisons, in microseconds per answered request (median of rounds, one thread):

1. the answer-confidence histogram: prometheus-client's ``Histogram.observe`` once per row (the
   library's only way) vs ``BatchHistogram.observe_many`` (one numpy bucketing per batch);
2. everything the request path records for one answered request: the metrics that existed before
   monitoring (requests, rows, latency) vs all of them with ``per_account`` off and on (spend,
   confidence, watermark counters, per-account series).

    PYTHONPATH=src OMP_NUM_THREADS=1 python benchmarks/metrics_overhead.py
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from prometheus_client import CollectorRegistry, Histogram

from extractguard.gateway.metrics import CONFIDENCE_BUCKETS, BatchHistogram, GatewayMetrics

OUT = Path(__file__).resolve().parent / "out"


def per_call_us(fn: Callable[[], None], calls: int, rounds: int) -> float:
    """Median over rounds of the mean time of one call, in microseconds."""
    fn()  # warm up (label children created)
    times = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        for _ in range(calls):
            fn()
        times.append((time.perf_counter() - t0) / calls * 1e6)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--batches", default="1,32,1024", help="rows per request")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--accounts", type=int, default=100, help="accounts the requests rotate over")
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    rows_list = [int(b) for b in args.batches.split(",")]
    results = []
    for rows in rows_list:
        p = rng.dirichlet(np.ones(10), size=rows)
        top1 = p.max(axis=1)
        calls = max(20, 20000 // rows)
        hist = Histogram("h_ratio", "h", ["model", "tier"], buckets=CONFIDENCE_BUCKETS, registry=CollectorRegistry()).labels("m", "t")
        batch = BatchHistogram("b_ratio", "b", ("model", "tier"), CONFIDENCE_BUCKETS, CollectorRegistry())

        def per_row() -> None:
            for v in top1.tolist():
                hist.observe(v)

        def batched() -> None:
            batch.observe_many(("m", "t"), top1)

        accounts = [f"acct-{i}" for i in range(args.accounts)]
        counter = iter(range(10**9))

        def before(m: GatewayMetrics = GatewayMetrics(per_account=False)) -> None:
            m.requests.labels("m", "t", "200").inc()
            m.rows.labels("m", "t").inc(rows)
            m.latency.labels("m").observe(0.003)

        def full(m: GatewayMetrics) -> None:
            account = accounts[next(counter) % len(accounts)]
            before(m)
            m.watermarked("m", "t", account, 1, 0)
            m.served("m", "t", account, rows, 0.003, 0.001, p)

        off, on = GatewayMetrics(per_account=False), GatewayMetrics(per_account=True)
        r = {
            "rows": rows,
            "histogram_per_row_us": per_call_us(per_row, calls, args.rounds),
            "histogram_batch_us": per_call_us(batched, calls, args.rounds),
            "metrics_before_us": per_call_us(before, calls, args.rounds),
            "metrics_all_per_account_off_us": per_call_us(lambda: full(off), calls, args.rounds),
            "metrics_all_per_account_on_us": per_call_us(lambda: full(on), calls, args.rounds),
        }
        r["histogram_speedup"] = r["histogram_per_row_us"] / r["histogram_batch_us"]
        results.append(r)

    head = f"{'rows':>5} | {'hist per-row':>12} {'hist batch':>10} {'speedup':>8} | {'before':>7} {'all, acct off':>13} {'all, acct on':>12} (us/request)"
    print(head)
    print("-" * len(head))
    for r in results:
        print(f"{r['rows']:>5} | {r['histogram_per_row_us']:>12.1f} {r['histogram_batch_us']:>10.1f} {r['histogram_speedup']:>7.1f}x | "
              f"{r['metrics_before_us']:>7.1f} {r['metrics_all_per_account_off_us']:>13.1f} {r['metrics_all_per_account_on_us']:>12.1f}")
    OUT.mkdir(exist_ok=True)
    path = OUT / "metrics_overhead.json"
    path.write_text(json.dumps({"args": vars(args), "results": results}, indent=2))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
