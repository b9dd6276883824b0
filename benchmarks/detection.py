"""Extraction detection: queries until detection per attack, false positives per honest account,
and per-query cost at 1k vs 1M stored queries.

* Attacks: each attack of the suite runs for real against the victim through an :class:`Oracle`
  with a transcript; its recorded batches are replayed, one request per batch, at
  ``--attack-rate`` rows per second into a fresh account of the detection monitor.  Reported per
  attack: queries when PRADA alone, the content detectors (everything but rate), rate alone and
  all detectors together first fired.  The content column is also what an attacker who paces
  itself at an honest rate would face (content detectors ignore time).
* Honest accounts: ``--benign-accounts`` accounts of ``--benign-queries`` rows each, drawn from the
  victim's held-out probe half that the detectors never saw, re-rendered as new photos
  (``detect.simulate.honest_rows``), Poisson arrivals at a per-account rate around half the tier
  baseline.  An account counts as a false positive if any signal fires at any time.
* The detectors calibrate on the *other* probe half (the owner's sample of honest traffic).
* Cost: median wall time of one single-row ``observe`` for one account after 1k and after 1M of
  its queries (bounded state: the ratio should stay near 1).

    PYTHONPATH=src OMP_NUM_THREADS=1 python benchmarks/detection.py
    PYTHONPATH=src OMP_NUM_THREADS=1 python benchmarks/detection.py --benign-accounts 10 --benign-queries 2000 --attacks random,jbda --stored 1000,20000
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.table import Table

from extractguard.attacks import create_attack
from extractguard.detect import DetectionMonitor, Risk, build_monitor
from extractguard.detect.base import Observation
from extractguard.detect.simulate import honest_rows, paced_requests
from extractguard.errors import ExtractGuardError
from extractguard.oracle.oracle import MemoryTranscript, Oracle
from extractguard.victims import build_victim
from extractguard.victims.pools import structured_pool
from extractguard.oracle import OutputSpec

#: Attack rows: (attack name, pool kind). "natural" = the victim's attacker pool (same
#: distribution as honest users); "synthetic" = uniform noise rows; "structured" = natural rows
#: drowned in 3x off-task rows (victims.pools.structured_pool); "own" = the attack makes up its
#: own queries (no pool).
SUITE: dict[str, tuple[str, str]] = {
    "random": ("random", "own"),
    "jbda": ("jbda", "natural"),
    "activethief-synthetic": ("activethief", "synthetic"),
    "activethief-entropy-synthetic": ("activethief-entropy", "synthetic"),
    "knockoff": ("knockoff", "natural"),
    "knockoff-structured": ("knockoff", "structured"),
    "knockoff-adaptive-structured": ("knockoff-adaptive", "structured"),
    "activethief": ("activethief", "natural"),
    "activethief-kcenter": ("activethief-kcenter", "natural"),
    "activethief-dfal": ("activethief-dfal", "natural"),
    "equation-solving": ("equation-solving", "own"),
    "lowd-meek": ("lowd-meek", "own"),
    "path-finding": ("path-finding", "own"),
    "functionally-equivalent": ("functionally-equivalent", "own"),
}
ANALYTIC = {"equation-solving", "lowd-meek", "path-finding", "functionally-equivalent"}
COLUMNS = {"prada": lambda k: k.startswith("prada/"), "content": lambda k: not k.startswith("rate/"),
           "rate": lambda k: k.startswith("rate/"), "combined": lambda k: True}


def first_by_column(risk: Risk) -> dict[str, int | None]:
    return {c: min((q for k, q in risk.first_alarm.items() if pick(k)), default=None) for c, pick in COLUMNS.items()}


def attack_transcript(victim: Any, key: str, budget: int, seed: int, cache: Path) -> tuple[list[np.ndarray], str]:
    """The attack's real query batches (cached on disk by victim/attack/budget/seed)."""
    f = cache / f"{victim.name}-{key}-{budget}-{seed}-v2.npz"
    if f.exists():
        z = np.load(f, allow_pickle=False)
        return [z[k] for k in sorted(z.files, key=lambda s: int(s[1:]))], ""
    name, pool_kind = SUITE[key]
    schema = victim.schema
    rng = np.random.default_rng(seed)
    if pool_kind == "synthetic":
        pool = rng.uniform(schema.low, schema.high, size=(3 * budget, schema.n_features))
    elif pool_kind == "structured":
        pool, _ = structured_pool(honest_rows(victim.pool(), None, schema, rng), schema, 3.0, seed=seed)
    else:
        # Natural rows come through the same "camera" as honest users' (one rendering each), so
        # the attacker's natural data is exactly as natural as theirs.
        pool = honest_rows(victim.pool(), None, schema, rng)
    tr = MemoryTranscript()
    # Functionally equivalent extraction needs raw logits (Jagielski et al. 2020); the rest get probabilities.
    output = "logits" if name == "functionally-equivalent" else "probabilities"
    oracle = Oracle(victim.target, OutputSpec.parse(output), budget=budget, transcript=tr)
    try:
        kw = {} if name in ANALYTIC else {"surrogate": "mlp"}  # analytic attacks rebuild the model itself
        create_attack(name, pool=pool, seed=seed, **kw).fit(oracle, budget)
    except ExtractGuardError as exc:
        if not tr.batches:
            return [], str(exc)
    batches = [x for x, _ in tr.batches]
    f.parent.mkdir(parents=True, exist_ok=True)
    np.savez(f, **{f"b{i}": b for i, b in enumerate(batches)})
    return batches, ""


def replay(monitor: DetectionMonitor, victim: Any, account: str, batches: list[np.ndarray], rate: float) -> Risk:
    risk = monitor.risk(account)
    for req in paced_requests(batches, rate):
        risk = monitor.observe(account, req.X, victim.target.predict(req.X).probabilities, ts=req.ts)
    return risk


def honest_account(monitor: DetectionMonitor, account: str, table_X: np.ndarray, table_P: np.ndarray, n_rows: int,
                   rows_per_hour: float, rng: np.random.Generator) -> Risk:
    """One honest account: distinct re-rendered rows, Poisson arrivals, 1 + geometric rows per request."""
    idx = rng.permutation(len(table_X))[:n_rows]
    rate = rows_per_hour / 3600.0 / 2.0
    t, i = 0.0, 0
    risk = monitor.risk(account)
    while i < n_rows:
        t += float(rng.exponential(1.0 / rate))
        k = min(int(rng.geometric(0.5)), n_rows - i)
        j = idx[i:i + k]
        risk = monitor.observe_obs(account, Observation(table_P[j].argmax(1), t, table_X[j], table_P[j]))
        i += k
    return risk


def cost_table(monitor: DetectionMonitor, table_X: np.ndarray, table_P: np.ndarray, stored: list[int], reps: int) -> list[dict[str, Any]]:
    """Median seconds of one single-row observe after ``stored`` queries of the same account."""
    from extractguard.detect.store import pack_states

    rows, account, done, t = [], "cost", 0, 0.0
    rng = np.random.default_rng(1)
    for target in sorted(stored):
        while done < target:  # prefill in 1000-row requests through the same code path
            k = min(1000, target - done)
            j = rng.integers(0, len(table_X), size=k)
            X = table_X[j] + rng.normal(0, 1e-3, size=(k, table_X.shape[1]))  # no exact repeats
            t += k / 100.0
            monitor.observe_obs(account, Observation(table_P[j].argmax(1), t, X, table_P[j]))
            done += k
        times = []
        for r in range(reps):
            j = rng.integers(0, len(table_X), size=1)
            t += 0.01
            obs = Observation(table_P[j].argmax(1), t, table_X[j] + rng.normal(0, 1e-3, size=(1, table_X.shape[1])), table_P[j])
            t0 = time.perf_counter()
            monitor.observe_obs(account, obs)
            times.append(time.perf_counter() - t0)
        acc = monitor._accounts[account]  # noqa: SLF001 - the benchmark reports the state size
        rows.append({"stored_queries": target + reps * (stored.index(target) + 1), "median_seconds": float(np.median(times)),
                     "p90_seconds": float(np.quantile(times, 0.9)), "state_bytes": len(pack_states(acc.states))})
        done += reps
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--victim", default="mnist-cnn")
    ap.add_argument("--attacks", default=",".join(SUITE))
    ap.add_argument("--budget", type=int, default=2000, help="Queries per attack transcript.")
    ap.add_argument("--attack-rate", type=float, default=100.0, help="Rows per second of the replayed attacker.")
    ap.add_argument("--baseline", type=float, default=600.0, help="Tier baseline: honest rows per hour per account.")
    ap.add_argument("--benign-accounts", type=int, default=100)
    ap.add_argument("--benign-queries", type=int, default=10000)
    ap.add_argument("--stored", default="1000,1000000", help="History lengths for the cost table ('' to skip).")
    ap.add_argument("--reps", type=int, default=300)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=str(Path(__file__).parent / "out" / "detection.json"))
    args = ap.parse_args()
    console = Console()
    victim = build_victim(args.victim, seed=0)
    schema = victim.schema
    Xp, _ = victim.probe()
    rng = np.random.default_rng(args.seed)
    perm = rng.permutation(len(Xp))
    ref_half, honest_half = Xp[perm[: len(Xp) // 2]], Xp[perm[len(Xp) // 2:]]
    # One new rendering of each row of the reference half: the owner's sample of honest traffic
    # (one per row, so the detectors' cross-fitted calibration halves share no digit).
    reference = honest_rows(ref_half, None, schema, np.random.default_rng(args.seed + 1))

    def fresh_monitor() -> DetectionMonitor:
        return build_monitor(victim.target, reference, baseline_rows_per_hour=args.baseline, seed=args.seed)

    t0 = time.perf_counter()
    monitor = fresh_monitor()
    console.print(f"monitor fitted in {time.perf_counter() - t0:.1f} s: {', '.join(d.name for d in monitor.detectors)}")
    n_table = max(5 * args.benign_queries, 20000)
    table_X = honest_rows(honest_half, n_table, schema, np.random.default_rng(args.seed + 2))
    table_P = np.concatenate([victim.target.predict(table_X[i:i + 2000]).probabilities for i in range(0, n_table, 2000)])

    cache = Path(args.out).parent / "detection_transcripts"
    attack_rows = []
    for key in args.attacks.split(","):
        batches, refused = attack_transcript(victim, key, args.budget, args.seed, cache)
        if not batches:
            attack_rows.append({"attack": key, "queries": 0, "refused": refused})
            console.print(f"{key}: refused on {victim.name}: {refused}")
            continue
        risk = replay(monitor, victim, f"attack:{key}", batches, args.attack_rate)
        row = {"attack": key, "pool": SUITE[key][1], "queries": risk.queries, **first_by_column(risk),
               "first_alarm": risk.first_alarm, "explanation": risk.explain()}
        attack_rows.append(row)
        console.print(f"{key}: {risk.queries} queries, first alarms {first_by_column(risk)}")

    brng = np.random.default_rng(args.seed + 3)
    benign = []
    t0 = time.perf_counter()
    for a in range(args.benign_accounts):
        rate = float(np.exp(brng.normal(np.log(args.baseline / 2), 0.5)))
        risk = honest_account(monitor, f"honest:{a}", table_X, table_P, args.benign_queries, rate, brng)
        benign.append({"account": a, "rows_per_hour": rate, **first_by_column(risk), "first_alarm": risk.first_alarm})
        monitor.forget(f"honest:{a}")
    benign_seconds = time.perf_counter() - t0
    fp = {c: sum(b[c] is not None for b in benign) for c in COLUMNS}

    stored = [int(s) for s in args.stored.split(",") if s.strip()]
    costs = cost_table(fresh_monitor(), table_X, table_P, stored, args.reps) if stored else []

    def cell(v: int | None) -> str:
        return "-" if v is None else str(v)

    t = Table(title=f"Queries until detection on {victim.name} (attacker at {args.attack_rate:g} rows/s; '-' = not detected)")
    for c in ("attack", "pool", "queries", "PRADA alone", "content (paced attacker)", "rate alone", "combined"):
        t.add_column(c)
    for r in attack_rows:
        if r["queries"] == 0:
            t.add_row(r["attack"], "", "refused", "", "", "", "")
            continue
        t.add_row(r["attack"], r["pool"], str(r["queries"]), cell(r["prada"]), cell(r["content"]), cell(r["rate"]), cell(r["combined"]))
    console.print(t)
    if args.benign_accounts == 0:
        console.print("no honest accounts simulated (--benign-accounts 0)")
    t2 = Table(title=f"Honest accounts: {args.benign_accounts} x {args.benign_queries} queries ({benign_seconds:.0f} s)")
    for c in ("detectors", "accounts flagged", "false-positive rate"):
        t2.add_column(c)
    for c in COLUMNS:
        t2.add_row(c, str(fp[c]), f"{fp[c] / max(args.benign_accounts, 1):.1%}")
    console.print(t2)
    t3 = Table(title="Per-query cost of observe (one row, one account)")
    for c in ("stored queries", "median ms", "p90 ms", "state KB", "ratio to first"):
        t3.add_column(c)
    for r in costs:
        t3.add_row(f"{r['stored_queries']:,}", f"{r['median_seconds'] * 1e3:.3f}", f"{r['p90_seconds'] * 1e3:.3f}",
                   f"{r['state_bytes'] / 1024:.0f}", f"{r['median_seconds'] / costs[0]['median_seconds']:.2f}")
    console.print(t3)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"args": vars(args), "attacks": attack_rows, "benign": benign, "false_positives": fp,
                               "cost": costs}, indent=2, default=str))
    console.print(f"wrote {out}")


if __name__ == "__main__":
    main()
