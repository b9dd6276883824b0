"""Cost of protection: the full gateway vs the bare model behind plain uvicorn.

Both servers run the same model on the same machine, one after the other (never at once, so they
do not compete for cores), each as its own uvicorn process on 127.0.0.1:

- ``bare``: a minimal FastAPI app that decodes the OIP request, calls the model, encodes the answer;
- ``gateway``: ``extractguard.gateway.create_app`` with the full chain — API-key auth, per-key,
  per-IP, global limits and a monthly quota on SQLite (the embedded default), a defense chain
  (temperature) and top-3 output, Prometheus metrics, JSON logs to a file, hash-chained audit log.

Load: async httpx clients on loopback, bounded in time and request count.  Latency is measured
with one request in flight (p50/p90/p99); throughput with ``--concurrency`` requests in flight
spread over ``--clients`` load-generator processes (one Python client would be the bottleneck).
Rounds alternate bare/gateway to spread machine noise evenly; the table reports medians over
rounds and the ratios the project targets (p50 within 2 ms of bare, throughput >= 60% of bare).
Each server's own CPU time per request (from /proc) is reported too: on a shared machine the
wall-clock gap includes waiting for a core, the CPU gap is what the protection itself costs.

    PYTHONPATH=src OMP_NUM_THREADS=1 python benchmarks/gateway.py --victim mnist-cnn
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from fastapi import Request  # module level: FastAPI resolves the handler's annotations here

OUT = Path(__file__).resolve().parent / "out"
HUGE = "1000000000/minute"


def _cpu_seconds(pid: int) -> float | None:
    """User + system CPU time of a process so far (Linux /proc), or None elsewhere.

    Wall-clock latency on a shared machine includes time spent waiting for a core; the server's
    own CPU time per request is the load-independent part of the gateway's cost.
    """
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _bare_app(victim: str) -> Any:
    from fastapi import FastAPI
    from fastapi.responses import Response

    from extractguard.oracle.answer import Answer, OutputSpec
    from extractguard.oracle.oip import decode_request, encode_response
    from extractguard.victims import build_victim

    target = build_victim(victim).target
    spec = OutputSpec("probabilities")
    app = FastAPI()

    @app.post("/v2/models/{model}/infer")
    async def infer(model: str, request: Request) -> Response:
        X = decode_request(json.loads(await request.body()), target.schema.n_features)
        answer = Answer.from_probabilities(target.predict(X).probabilities, spec)
        return Response(json.dumps(encode_response(answer, model)), media_type="application/json")

    return app


def _gateway_config(victim: str, state: Path) -> dict[str, Any]:
    return {
        "model": {"name": "m", "victim": victim},
        "state_dir": str(state),  # SQLite limits + keys + audit: the embedded default
        "tiers": {
            "bench": {
                "output": "top-3",
                "defenses": [{"name": "temperature", "temperature": 2.0}],
                "limits": [HUGE],
                "quota": "1000000000/month",
            }
        },
        "ip_limits": [HUGE],
        "global_limits": [HUGE],
        "trusted_proxies": ["10.0.0.0/8"],
        "seed": 0,
    }


def serve(role: str, victim: str, port: int, state: Path) -> None:
    """Run one server in this process (called in a child process)."""
    import uvicorn

    if role == "bare":
        app = _bare_app(victim)
    else:
        from extractguard.gateway import create_app, parse_config
        from extractguard.gateway.logs import configure_json_logging

        app = create_app(parse_config(_gateway_config(victim, state)))
        configure_json_logging(stream=open(state / "gateway-log.jsonl", "a"))  # noqa: SIM115
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False, proxy_headers=False)


class Server:
    def __init__(self, role: str, victim: str, state: Path) -> None:
        self.role, self.port = role, _free_port()
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        self.proc = subprocess.Popen(
            [sys.executable, __file__, "--serve", role, "--victim", victim, "--port", str(self.port), "--state", str(state)],
            env=env, stdout=subprocess.DEVNULL,
        )
        self.url = f"http://127.0.0.1:{self.port}"

    def wait(self, body: dict[str, Any], headers: dict[str, str]) -> None:
        import httpx

        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise SystemExit(f"{self.role} server exited with code {self.proc.returncode}")
            try:
                if httpx.post(f"{self.url}/v2/models/m/infer", json=body, headers=headers, timeout=5).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        raise SystemExit(f"{self.role} server did not become ready")

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=30)


async def _latency(url: str, body: bytes, headers: dict[str, str], n: int, seconds: float) -> list[float]:
    import httpx

    out: list[float] = []
    async with httpx.AsyncClient(base_url=url, timeout=30) as c:
        for _ in range(20):  # warm-up
            await c.post("/v2/models/m/infer", content=body, headers=headers)
        stop = time.perf_counter() + seconds
        while len(out) < n and time.perf_counter() < stop:
            t = time.perf_counter()
            r = await c.post("/v2/models/m/infer", content=body, headers=headers)
            out.append(time.perf_counter() - t)
            if r.status_code != 200:
                raise SystemExit(f"unexpected HTTP {r.status_code}: {r.text[:200]}")
    return out


async def _throughput(url: str, body: bytes, headers: dict[str, str], n: int, seconds: float, concurrency: int) -> tuple[int, float]:
    import httpx

    done = 0
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, timeout=30, limits=limits) as c:
        start = time.perf_counter()
        stop = start + seconds

        async def worker() -> None:
            nonlocal done
            while done < n and time.perf_counter() < stop:
                r = await c.post("/v2/models/m/infer", content=body, headers=headers)
                if r.status_code != 200:
                    raise SystemExit(f"unexpected HTTP {r.status_code}: {r.text[:200]}")
                done += 1

        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return done, time.perf_counter() - start


def _client_process(url: str, body: bytes, headers: dict[str, str], n: int, seconds: float, concurrency: int,
                    barrier: Any, results: Any) -> None:
    """One load-generator process of the throughput phase: (requests, seconds, client CPU seconds)."""
    barrier.wait()
    cpu = time.process_time()
    try:
        done, secs = asyncio.run(_throughput(url, body, headers, n, seconds, concurrency))
    except BaseException as exc:  # report instead of dying silently
        results.put(("error", repr(exc)))
        return
    results.put((done, secs, time.process_time() - cpu))


def _throughput_processes(url: str, body: bytes, headers: dict[str, str], n: int, seconds: float,
                          concurrency: int, clients: int) -> tuple[int, float, float]:
    """Throughput with ``clients`` load-generator processes sharing ``concurrency`` requests in flight.

    A single Python client needs about as much CPU per request as the server, so it would measure
    itself; several processes keep the server the bottleneck.  Returns (requests, seconds, client
    CPU seconds).
    """
    import multiprocessing as mp

    ctx = mp.get_context("spawn")  # the parent holds torch; do not fork it
    barrier, results = ctx.Barrier(clients + 1), ctx.Queue()
    per = [concurrency // clients + (i < concurrency % clients) for i in range(clients)]
    procs = [ctx.Process(target=_client_process, args=(url, body, headers, n // clients, seconds, c, barrier, results))
             for c in per]
    for p in procs:
        p.start()
    barrier.wait(timeout=300)
    outs = [results.get(timeout=seconds + 300) for _ in procs]
    for p in procs:
        p.join(timeout=30)
    errors = [o[1] for o in outs if o[0] == "error"]
    if errors:
        raise SystemExit(f"load generator failed: {errors[0]}")
    return sum(o[0] for o in outs), max(o[1] for o in outs), sum(o[2] for o in outs)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--victim", default="mnist-cnn", help="zoo victim served by both (default mnist-cnn)")
    ap.add_argument("--rows", type=int, default=1, help="input rows per request")
    ap.add_argument("--requests", type=int, default=2000, help="max requests per latency and per throughput phase")
    ap.add_argument("--seconds", type=float, default=10.0, help="max seconds per phase")
    ap.add_argument("--concurrency", type=int, default=8, help="requests in flight in the throughput phase")
    ap.add_argument("--clients", type=int, default=4, help="load-generator processes in the throughput phase")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--serve", choices=["bare", "gateway"], help=argparse.SUPPRESS)
    ap.add_argument("--port", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--state", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.serve:
        serve(args.serve, args.victim, args.port, args.state)
        return

    from extractguard.gateway import KeyStore, parse_config
    from extractguard.oracle.oip import encode_request
    from extractguard.victims import build_victim

    victim = build_victim(args.victim)  # trains and caches once, before any timing
    X = victim.pool()[: args.rows]
    body = json.dumps(encode_request(X)).encode()
    results: dict[str, list[dict[str, float]]] = {"bare": [], "gateway": []}
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        state = Path(tmp)
        cfg = parse_config(_gateway_config(args.victim, state))
        key = KeyStore(cfg.keys_path).create("bench", "bench")
        headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
        for rnd in range(args.rounds):
            for role in ("bare", "gateway"):
                srv = Server(role, args.victim, state)
                try:
                    srv.wait(json.loads(body), headers)
                    cpu0 = _cpu_seconds(srv.proc.pid)
                    lat = asyncio.run(_latency(srv.url, body, headers, args.requests, args.seconds))
                    cpu1 = _cpu_seconds(srv.proc.pid)
                    n, secs, client_cpu = _throughput_processes(srv.url, body, headers, args.requests, args.seconds,
                                                                args.concurrency, args.clients)
                finally:
                    srv.stop()
                ms = np.array(lat) * 1000
                res = {"p50_ms": float(np.percentile(ms, 50)), "p90_ms": float(np.percentile(ms, 90)),
                       "p99_ms": float(np.percentile(ms, 99)), "latency_requests": len(lat),
                       "throughput_rps": n / secs, "rows_per_s": n * args.rows / secs, "throughput_requests": n,
                       "client_cpu_ms_per_request": client_cpu * 1000 / max(n, 1)}
                if cpu0 is not None and cpu1 is not None:  # 20 warm-up requests are inside the window
                    res["server_cpu_ms_per_request"] = (cpu1 - cpu0) * 1000 / (len(lat) + 20)
                results[role].append(res)
                cpu = res.get("server_cpu_ms_per_request", float("nan"))
                print(f"round {rnd + 1} {role:8s} p50 {res['p50_ms']:.2f} ms  p99 {res['p99_ms']:.2f} ms  "
                      f"{res['throughput_rps']:.0f} req/s  server CPU {cpu:.2f} ms/request  load {os.getloadavg()[0]:.1f}", flush=True)
        from extractguard.gateway import verify_file

        check = verify_file(cfg.audit_path)  # every gateway answer above must be in an intact chain
        audit_records = check.records if check.ok else f"BROKEN: {check.problem}"

    med = {role: {k: statistics.median(r[k] for r in rs) for k in rs[0]} for role, rs in results.items()}
    b, g = med["bare"], med["gateway"]
    summary: dict[str, Any] = {
        "p50_overhead_ms": g["p50_ms"] - b["p50_ms"],
        "p99_overhead_ms": g["p99_ms"] - b["p99_ms"],
        "throughput_ratio": g["throughput_rps"] / b["throughput_rps"],
        "p50_target_met": g["p50_ms"] - b["p50_ms"] <= 2.0,
        "throughput_target_met": g["throughput_rps"] / b["throughput_rps"] >= 0.6,
        "load_average_1min_before_after": [load_before[0], os.getloadavg()[0]],
        "cpu_cores": os.cpu_count(),
    }
    if "server_cpu_ms_per_request" in b and "server_cpu_ms_per_request" in g:
        summary["server_cpu_overhead_ms_per_request"] = g["server_cpu_ms_per_request"] - b["server_cpu_ms_per_request"]
        # Requests one saturated core can serve, gateway over bare: the load-independent throughput ratio.
        summary["server_cpu_capacity_ratio"] = b["server_cpu_ms_per_request"] / g["server_cpu_ms_per_request"]
    print()
    print(f"victim {args.victim}, {args.rows} row(s)/request, concurrency {args.concurrency} over {args.clients} client "
          f"processes, {args.rounds} rounds (medians)")
    print(f"{'':10s}{'p50 ms':>9s}{'p90 ms':>9s}{'p99 ms':>9s}{'req/s':>9s}{'server CPU ms/req':>19s}")
    for role in ("bare", "gateway"):
        m = med[role]
        cpu = m.get("server_cpu_ms_per_request", float("nan"))
        print(f"{role:10s}{m['p50_ms']:9.2f}{m['p90_ms']:9.2f}{m['p99_ms']:9.2f}{m['throughput_rps']:9.0f}{cpu:19.2f}")
    print(f"gateway - bare: p50 +{summary['p50_overhead_ms']:.2f} ms (target <= 2 ms: {'met' if summary['p50_target_met'] else 'MISSED'}), "
          f"throughput ratio {summary['throughput_ratio']:.2f} (target >= 0.60: {'met' if summary['throughput_target_met'] else 'MISSED'})")
    if "server_cpu_overhead_ms_per_request" in summary:
        print(f"gateway - bare server CPU: +{summary['server_cpu_overhead_ms_per_request']:.2f} ms/request, "
              f"capacity per core {summary['server_cpu_capacity_ratio']:.2f} of bare "
              f"(load average {summary['load_average_1min_before_after'][0]:.1f} -> "
              f"{summary['load_average_1min_before_after'][1]:.1f} on {os.cpu_count()} cores)")
    print(f"audit log verified intact: {audit_records} records")
    OUT.mkdir(parents=True, exist_ok=True)
    out = OUT / "gateway.json"
    out.write_text(json.dumps({"args": {k: v for k, v in vars(args).items() if k not in ("serve", "port", "state")},
                               "rounds": results, "median": med, "summary": summary,
                               "audit_records": audit_records}, indent=2, default=str))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
