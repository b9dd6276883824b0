"""Fidelity vs queries of the core attacks on the default victim, over several seeds.

Each seed trains its own victim (mnist-cnn, its own splits) and runs random and Knockoff Nets
(random strategy) once at the largest budget with nested checkpoints.  Fidelity is measured on
the victim's held-out probe split, which no attack queries.

    python benchmarks/core_fidelity.py --seeds 0,1,2 --budgets 50,100,200,500,1000,2000
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

from extractguard.attacks import create_attack
from extractguard.evaluate import ProbeSet, run_assessment
from extractguard.oracle import BudgetLadder
from extractguard.victims import build_victim


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--victim", default="mnist-cnn")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--budgets", default="50,100,200,500,1000,2000")
    ap.add_argument("--attacks", default="random,knockoff")
    ap.add_argument("--out", default=str(Path(__file__).parent / "out" / "core_fidelity.json"))
    args = ap.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    ladder = BudgetLadder.parse(args.budgets)
    rows: list[dict] = []
    for seed in seeds:
        t0 = time.perf_counter()
        victim = build_victim(args.victim, seed=seed)
        probe = ProbeSet.from_target(victim.target, *victim.probe())
        attacks = [create_attack(n, pool=victim.pool(), seed=seed) for n in args.attacks.split(",")]
        result = run_assessment(victim.target, attacks, ladder, probe, seed=seed)
        for run in result.runs:
            for p in run.points:
                rows.append({"seed": seed, "attack": run.attack, "budget": p.budget, "queries": p.queries,
                             "fidelity": p.fidelity, "accuracy": p.accuracy, "victim_accuracy": probe.victim_accuracy()})
        print(f"seed {seed}: {time.perf_counter() - t0:.0f} s")
    table = Table(title=f"{args.victim}: fidelity on the held-out probe set, mean ± std over seeds {args.seeds}")
    table.add_column("attack")
    for b in ladder:
        table.add_column(str(b), justify="right")
    summary: dict[str, dict[int, list[float]]] = {}
    for r in rows:
        summary.setdefault(r["attack"], {}).setdefault(r["budget"], []).append(r["fidelity"])
    for attack, by_budget in summary.items():
        table.add_row(attack, *[f"{np.mean(by_budget[b]):.3f} ± {np.std(by_budget[b]):.3f}" for b in ladder])
    Console().print(table)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"victim": args.victim, "seeds": seeds, "budgets": list(ladder), "rows": rows}, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
