"""Fidelity vs budget of the learning-based attacks, side by side with the core ones.

For each victim and seed, every attack runs once at the largest budget with nested checkpoints
(so all attacks are compared at exactly equal query counts) from the same attacker pool, with
the same student family; fidelity is on the victim's held-out probe split, which no attack
queries.  ``--pool structured`` drowns the natural pool in off-task rows
(``victims.pools.structured_pool``), the setting where choosing rows matters.

    PYTHONPATH=src OMP_NUM_THREADS=1 python benchmarks/learning_attacks.py             # default, ~10 min on 1 idle core
    PYTHONPATH=src OMP_NUM_THREADS=1 python benchmarks/learning_attacks.py --victims digits-mlp --budgets 100,200 --seeds 0
    PYTHONPATH=src OMP_NUM_THREADS=1 python benchmarks/learning_attacks.py --pool structured --output label
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
from extractguard.evaluate import ProbeSet
from extractguard.victims import build_victim
from extractguard.victims.pools import structured_pool
from extractguard.oracle import OutputSpec

DEFAULT_ATTACKS = ("random", "knockoff", "knockoff-adaptive", "activethief-entropy", "activethief-kcenter",
                   "activethief-dfal", "jbda")
#: Round sizes that keep the default run short: five ActiveThief rounds, a bounded DFAL
#: candidate set (DeepFool costs one backward pass per class per iteration).
PARAMS: dict[str, dict[str, Any]] = {
    "activethief-entropy": {"initial": 0.2, "per_round": 0.2, "max_candidates": 1000},
    "activethief-kcenter": {"initial": 0.2, "per_round": 0.2, "max_candidates": 1000},
    "activethief-dfal": {"initial": 0.2, "per_round": 0.2, "max_candidates": 300},
    "knockoff-adaptive": {"retrain_every": 0.25},
    "jbda": {"per_round": 0.2},
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--victims", default="mnist-cnn,digits-mlp,breast_cancer-mlp")
    ap.add_argument("--seeds", default="0")
    ap.add_argument("--budgets", default="100,250,500")
    ap.add_argument("--attacks", default=",".join(DEFAULT_ATTACKS))
    ap.add_argument("--surrogate", default="auto", help="student family, the same for every attack")
    ap.add_argument("--output", default="probabilities", help="oracle output mode")
    ap.add_argument("--pool", choices=("natural", "structured"), default="natural")
    ap.add_argument("--ratio", type=float, default=3.0, help="off-task rows per natural row (--pool structured)")
    ap.add_argument("--out", default=str(Path(__file__).parent / "out" / "learning_attacks.json"))
    args = ap.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    budgets = sorted(int(b) for b in args.budgets.split(","))
    attacks = [a.strip() for a in args.attacks.split(",")]
    victims = [v.strip() for v in args.victims.split(",")]
    rows: list[dict[str, Any]] = []
    t_all = time.perf_counter()
    for victim_name in victims:
        victim = build_victim(victim_name, seed=0)
        probe = ProbeSet.from_target(victim.target, *victim.probe())
        for seed in seeds:
            pool = victim.pool()
            if args.pool == "structured":
                pool, _ = structured_pool(pool, victim.schema, args.ratio, seed=seed)
            for name in attacks:
                attack = create_attack(name, pool=pool, surrogate=args.surrogate, seed=seed, **PARAMS.get(name, {}))
                fids: list[float] = []
                t0 = time.perf_counter()
                attack.fit(victim.oracle(OutputSpec.parse(args.output), max(budgets)), max(budgets), budgets,
                           callback=lambda cp: fids.append(probe.score(cp.surrogate)["fidelity"]))
                seconds = time.perf_counter() - t0
                for b, cp, f in zip(budgets, attack.checkpoints_, fids):
                    rows.append({"victim": victim_name, "seed": seed, "attack": name, "budget": b, "queries": cp.queries,
                                 "fidelity": f, "seconds": seconds})
                print(f"{victim_name} seed {seed} {name:20s} " + " ".join(f"{f:.3f}" for f in fids) + f"  {seconds:.0f} s",
                      flush=True)
    console = Console(width=200)
    for victim_name in victims:
        table = Table(title=f"{victim_name}, {args.pool} pool, student {args.surrogate}, {args.output}: "
                            f"probe fidelity, mean ± std over seeds {args.seeds}")
        table.add_column("attack")
        for b in budgets:
            table.add_column(str(b), justify="right")
        table.add_column("seconds", justify="right")
        for name in attacks:
            sel = [r for r in rows if r["victim"] == victim_name and r["attack"] == name]
            cells = []
            for b in budgets:
                at = [r for r in sel if r["budget"] == b]
                f = [r["fidelity"] for r in at]
                used = min(r["queries"] for r in at)
                # a strategy that ran out of pool rows stops early: say how many queries it used
                cells.append(f"{np.mean(f):.3f} ± {np.std(f):.3f}" + (f" ({used} q)" if used < b else ""))
            table.add_row(name, *cells, f"{np.mean([r['seconds'] for r in sel if r['budget'] == budgets[-1]]):.0f}")
        console.print(table)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"args": vars(args), "rows": rows}, indent=2))
    console.print(f"wrote {out} ({time.perf_counter() - t_all:.0f} s)")


if __name__ == "__main__":
    main()
