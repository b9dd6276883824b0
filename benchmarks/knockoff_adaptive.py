"""Knockoff Nets adaptive vs random at equal budget, on structured attacker pools.

The adaptive policy (Orekondy, Schiele & Fritz 2019) only has something to choose when the
attacker's pool is not all on-task.  Each seed builds a structured pool
(``victims.pools.structured_pool``: the victim's natural pool split drowned in ``--ratio`` times
as many off-task rows -- noise, inverted, feature-shuffled, rotated digits, another dataset
rescaled into bounds) and runs, on that same pool, with the same student family:

* ``random``: Knockoff Nets' random strategy (``knockoff``);
* ``adaptive``: ``knockoff-adaptive`` with k-means arms (no labels: the fair default);
* ``adaptive-src``: ``knockoff-adaptive`` with the attacker's own source tags as arms (the
  paper's class-hierarchy variant; an attacker knows where each scraped row came from).

One run per (seed, attack) at the largest budget with nested checkpoints, so every budget is
compared at exactly equal queries.  Fidelity is on the victim's held-out probe split, which no
attack queries.  Also reported: the share of queries that hit on-task (natural) rows.

    PYTHONPATH=src OMP_NUM_THREADS=1 python benchmarks/knockoff_adaptive.py
    PYTHONPATH=src OMP_NUM_THREADS=1 python benchmarks/knockoff_adaptive.py --victims digits-logreg --seeds 0,1 --budgets 100,200
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

VARIANTS: dict[str, tuple[str, dict[str, Any]]] = {
    "random": ("knockoff", {}),
    "adaptive": ("knockoff-adaptive", {}),
    "adaptive-src": ("knockoff-adaptive", {"arms": "source"}),
}


def natural_share(queried: np.ndarray, pool: np.ndarray, source: np.ndarray) -> float:
    """Fraction of queried rows that are natural (on-task) pool rows."""
    nat = {r.tobytes() for r in pool[source == "natural"]}
    return float(np.mean([r.tobytes() in nat for r in queried]))


def run_one(victim_name: str, seed: int, variant: str, budgets: list[int], ratio: float, surrogate: str,
            output: str, params: dict[str, Any]) -> list[dict[str, Any]]:
    victim = build_victim(victim_name, seed=0)
    probe = ProbeSet.from_target(victim.target, *victim.probe())
    pool, source = structured_pool(victim.pool(), victim.schema, ratio, seed=seed)
    name, kw = VARIANTS[variant]
    kw = {**kw, **(params if name == "knockoff-adaptive" else {})}
    if kw.pop("arms", None) == "source":
        kw["pool_labels"] = source
    attack = create_attack(name, pool=pool, surrogate=surrogate, seed=seed, **kw)
    fids: list[float] = []
    t0 = time.perf_counter()
    attack.fit(victim.oracle(OutputSpec.parse(output), max(budgets)), max(budgets), budgets,
               callback=lambda cp: fids.append(probe.score(cp.surrogate)["fidelity"]))
    seconds = time.perf_counter() - t0
    queried = np.concatenate(attack._X)
    rows = []
    for b, cp, f in zip(budgets, attack.checkpoints_, fids):
        rows.append({"victim": victim_name, "seed": seed, "variant": variant, "budget": b, "queries": cp.queries,
                     "fidelity": f, "natural_share": natural_share(queried[: cp.queries], pool, source),
                     "seconds": seconds, "pool_rows": int(len(pool)), "natural_rows": int((source == "natural").sum())})
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--victims", default="digits-logreg,digits-mlp")
    ap.add_argument("--seeds", default="0,1,2,3,4")
    ap.add_argument("--budgets", default="100,200,400")
    ap.add_argument("--variants", default=",".join(VARIANTS))
    ap.add_argument("--ratio", type=float, default=3.0, help="off-task rows per natural row in the pool")
    ap.add_argument("--surrogate", default="mlp-64", help="student family, the same for every variant")
    ap.add_argument("--output", default="probabilities", help="oracle output mode")
    ap.add_argument("--reward", default=None, help="knockoff-adaptive reward (default: the attack's)")
    ap.add_argument("--out", default=str(Path(__file__).parent / "out" / "knockoff_adaptive.json"))
    args = ap.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    budgets = sorted(int(b) for b in args.budgets.split(","))
    variants = [v.strip() for v in args.variants.split(",")]
    params: dict[str, Any] = {"reward": args.reward} if args.reward else {}
    rows: list[dict[str, Any]] = []
    for victim in args.victims.split(","):
        for seed in seeds:
            for variant in variants:
                new = run_one(victim, seed, variant, budgets, args.ratio, args.surrogate, args.output, params)
                rows += new
                print(f"{victim} seed {seed} {variant:13s} " + " ".join(f"{r['fidelity']:.3f}" for r in new)
                      + f"  natural {new[-1]['natural_share']:.2f}  {new[-1]['seconds']:.0f} s", flush=True)
    console = Console(width=200)
    summary: list[dict[str, Any]] = []
    for victim in args.victims.split(","):
        table = Table(title=f"{victim}, pool = natural + {args.ratio:g}x off-task, student {args.surrogate}, "
                            f"{args.output}: probe fidelity, mean ± std over seeds {args.seeds}")
        table.add_column("variant")
        for b in budgets:
            table.add_column(str(b), justify="right")
        table.add_column(f"on-task share @{budgets[-1]}", justify="right")
        fid = {(v, b): [r["fidelity"] for r in rows if r["victim"] == victim and r["variant"] == v and r["budget"] == b]
               for v in variants for b in budgets}
        for v in variants:
            nat = [r["natural_share"] for r in rows if r["victim"] == victim and r["variant"] == v and r["budget"] == budgets[-1]]
            table.add_row(v, *[f"{np.mean(fid[v, b]):.3f} ± {np.std(fid[v, b]):.3f}" for b in budgets], f"{np.mean(nat):.2f}")
        if "random" in variants:
            for v in variants:
                if v == "random":
                    continue
                cells = []
                for b in budgets:
                    d = np.asarray(fid[v, b]) - np.asarray(fid["random", b])
                    wins = int((d > 0).sum())
                    cells.append(f"{d.mean():+.3f} ± {d.std():.3f} ({wins}/{len(d)})")
                    summary.append({"victim": victim, "variant": v, "budget": b, "gain_mean": float(d.mean()),
                                    "gain_std": float(d.std()), "wins": wins, "seeds": len(d)})
                table.add_row(f"{v} - random (wins)", *cells, "")
        console.print(table)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"args": vars(args), "rows": rows, "gain_vs_random": summary}, indent=2))
    console.print(f"wrote {out}")


if __name__ == "__main__":
    main()
