"""The same extraction campaign in-process and over HTTP: does the remote path cost fidelity or queries?

One victim (default digits-logreg), one attack at a budget ladder, one seed, run four ways:

- ``local``: the in-process :class:`~extractguard.oracle.Oracle` (the reference);
- ``http``: a real uvicorn server on 127.0.0.1 (tests/servers.py) over the Open Inference Protocol;
- ``http, 30% 429``: the same server answering 429 + ``Retry-After: 1`` to 30 % of requests;
- ``http, 30% 500``: the same server failing 30 % of requests with 500.

For each: fidelity at every budget (must equal the local run: same seed, exact answers), rows the
server billed and computed (must be budget + probe rows: nothing lost, nothing paid twice),
requests, 429s, 500s, retries sent before ``Retry-After`` (must be 0), wall time and its ratio to
the local run.

    python benchmarks/remote_campaign.py --victim digits-logreg --attack knockoff --budgets 100,300,700

With ``--registry``, instead: every attack in the registry once over plain HTTP (budgets 60,120 by
default), checking that each runs against a remote target and that the server billed exactly the
queries it used plus the probe rows.

    python benchmarks/remote_campaign.py --registry --budgets 60,120
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.table import Table

from extractguard.attacks import create_attack
from extractguard.evaluate import ProbeSet, run_assessment
from extractguard.evaluate.campaign import run_campaign
from extractguard.oracle import BudgetLadder
from extractguard.oracle.target_config import parse_target_config
from extractguard.victims import build_victim

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from servers import ModelServer  # noqa: E402  (the test suite's real HTTP model server)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--victim", default="digits-logreg")
    ap.add_argument("--attack", default="knockoff")
    ap.add_argument("--budgets", default="100,300,700")
    ap.add_argument("--surrogate", default="auto")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--concurrency", type=int, default=4)
    ap.add_argument("--rows-per-request", type=int, default=32)
    ap.add_argument("--out", default=str(Path(__file__).parent / "out" / "remote_campaign.json"))
    ap.add_argument("--registry", action="store_true", help="Run every registered attack over HTTP instead.")
    args = ap.parse_args()
    ladder = BudgetLadder.parse(args.budgets)
    victim = build_victim(args.victim, seed=args.seed)
    probe_X, probe_y = victim.probe()
    schema = victim.target.schema
    results: list[dict[str, Any]] = []

    def config(url: str, d: Path, transcript: str) -> Any:
        return parse_target_config({
            "url": url, "model": "victim", "keys": ["key-1"], "backoff": 0.05,
            "concurrency": args.concurrency, "max_rows_per_request": args.rows_per_request,
            "schema": {"input_shape": list(schema.input_shape), "n_classes": schema.n_classes,
                       "low": schema.low.tolist(), "high": schema.high.tolist()},
            "transcript": str(d / transcript), "probe_data": str(d / "probe.npz"), "attacker_data": str(d / "pool.npy"),
            "authorization": {"statement": "Benchmark against our own local test server.", "owner": "bench"},
        })

    if args.registry:
        return registry(args, victim, ladder, config)

    t0 = time.perf_counter()
    attack = create_attack(args.attack, pool=victim.pool(), surrogate=args.surrogate, seed=args.seed)
    local = run_assessment(victim.target, [attack], ladder, ProbeSet.from_target(victim.target, probe_X, probe_y),
                           seed=args.seed)
    results.append({"condition": "local", "fidelity": [p.fidelity for p in local.runs[0].points],
                    "queries": local.runs[0].queries, "seconds": time.perf_counter() - t0})

    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        np.savez(d / "probe.npz", X=probe_X, y=probe_y)
        np.save(d / "pool.npy", victim.pool())
        for name, kwargs in [("http", {}), ("http, 30% 429", {"throttle": 0.3, "retry_after": 1}),
                             ("http, 30% 500", {"fail": 0.3})]:
            with ModelServer(victim.target, seed=1, **kwargs) as srv:
                cfg = config(srv.url, d, f"{len(results)}.sqlite")
                t0 = time.perf_counter()
                res = run_campaign(cfg, [args.attack], ladder, seed=args.seed, surrogate=args.surrogate)
                seconds = time.perf_counter() - t0
                c = srv.counts
            results.append({
                "condition": name, "fidelity": [p.fidelity for p in res.runs[0].points], "queries": res.runs[0].queries,
                "seconds": seconds, "server_billed_rows": c.paid_rows, "server_computed_rows": c.rows_answered,
                "expected_rows": res.runs[0].queries + len(probe_X), "requests": c.requests, "throttled": c.throttled,
                "failed": c.failed, "early_retries": len(c.violations),
                "client_retries": res.target["transcript"]["this_session"]["retries"],
            })

    base = results[0]["seconds"]
    table = Table(title=f"{args.victim}, {args.attack}, seed {args.seed}: in-process vs over HTTP "
                        f"(probe {len(probe_X)} rows, concurrency {args.concurrency}, {args.rows_per_request} rows/request)")
    for col in ["condition", *[f"fid@{b}" for b in ladder], "same as local", "billed / expected rows", "requests",
                "429", "500", "early retries", "seconds", "× local"]:
        table.add_column(col, justify="left" if col == "condition" else "right")
    for r in results:
        remote = r["condition"] != "local"
        table.add_row(
            r["condition"], *[f"{f:.3f}" for f in r["fidelity"]],
            ("yes" if r["fidelity"] == results[0]["fidelity"] else "NO") if remote else "–",
            f"{r['server_billed_rows']} / {r['expected_rows']}" if remote else "–",
            str(r.get("requests", "–")), str(r.get("throttled", "–")), str(r.get("failed", "–")),
            str(r.get("early_retries", "–")), f"{r['seconds']:.1f}", f"{r['seconds'] / base:.2f}",
        )
    Console().print(table)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"args": vars(args), "budgets": list(ladder), "results": results}, indent=2))
    print(f"wrote {out}")


def registry(args: argparse.Namespace, victim: Any, ladder: BudgetLadder, config: Any) -> None:
    """Every registered attack once over HTTP: does it run, what does it reach, what was billed."""
    from extractguard.attacks import ATTACKS
    from extractguard.errors import ExtractGuardError

    probe_X, probe_y = victim.probe()
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        np.savez(d / "probe.npz", X=probe_X, y=probe_y)
        np.save(d / "pool.npy", victim.pool())
        with ModelServer(victim.target) as srv:
            for name in sorted(ATTACKS):
                before = srv.counts.paid_rows
                t0 = time.perf_counter()
                try:
                    res = run_campaign(config(srv.url, d, f"{name}.sqlite"), [name], ladder, seed=args.seed,
                                       surrogate=args.surrogate)
                except ExtractGuardError as exc:  # e.g. needs logits, a binary task or text inputs
                    rows.append({"attack": name, "refused": str(exc)})
                    continue
                run = res.runs[0]
                rows.append({"attack": name, "fidelity": [p.fidelity for p in run.points], "queries": run.queries,
                             "billed": srv.counts.paid_rows - before, "expected": run.queries + len(probe_X),
                             "seconds": time.perf_counter() - t0})
    table = Table(title=f"Every registered attack against {args.victim} over HTTP (probe {len(probe_X)} rows)")
    for col in ["attack", *[f"fid@{b}" for b in ladder], "queries", "billed / expected", "seconds or refusal"]:
        table.add_column(col, justify="left" if col in ("attack", "seconds or refusal") else "right")
    for r in rows:
        if "refused" in r:
            table.add_row(r["attack"], *["–"] * len(ladder), "–", "–", r["refused"])
        else:
            table.add_row(r["attack"], *[f"{f:.3f}" for f in r["fidelity"]], str(r["queries"]),
                          f"{r['billed']} / {r['expected']}", f"{r['seconds']:.1f}")
    Console().print(table)
    out = Path(args.out).with_name("remote_registry.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"args": vars(args), "budgets": list(ladder), "rows": rows}, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
