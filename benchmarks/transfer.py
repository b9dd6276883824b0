"""Transfer-learning attack vs a from-scratch copy on the text victims, over a budget ladder.

For each victim, seed and output mode, four attacks query the same victim through their own
oracles and are scored on the victim's held-out probe split (never queried):

- ``scratch``: Knockoff Nets random sampling with a from-scratch TF-IDF (word 1-2 grams) +
  soft-label logistic-regression student -- what an attacker without a pretrained model does;
- ``transfer``: the same queried texts (same seed, same permutation of the pool), a head on
  frozen all-MiniLM-L6-v2 embeddings joined with TF-IDF features (the attack's default);
- ``transfer-emb``: the same texts, a head on the frozen embeddings only;
- ``transfer-unc``: the default head, queries chosen by smallest margin (active learning).

One sentence encoder (and so one embedding cache) is shared by every run: both victims of a seed
share their pool and probe texts, and each text is embedded once.  The table shows mean fidelity
± std over seeds and, per budget, the ratio of the from-scratch copy's disagreement with the
victim to the transfer copy's (above 1: transfer makes fewer mistakes).

    python benchmarks/transfer.py --victims reviews-logreg,reviews-mlp --seeds 0,1,2 \\
        --budgets 25,50,100,200,400,800 --outputs probabilities,label
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
from extractguard.oracle import BudgetLadder, OutputSpec
from extractguard.surrogates.text import SentenceEncoder
from extractguard.victims import build_victim

METHODS: dict[str, tuple[str, dict[str, object]]] = {
    "scratch": ("knockoff", {}),
    "transfer": ("transfer", {}),
    "transfer-emb": ("transfer", {"features": "embedding"}),
    "transfer-unc": ("transfer", {"strategy": "uncertainty"}),
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--victims", default="reviews-logreg,reviews-mlp")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--budgets", default="25,50,100,200,400,800")
    ap.add_argument("--outputs", default="probabilities,label")
    ap.add_argument("--methods", default=",".join(METHODS))
    ap.add_argument("--batch-size", type=int, default=50)
    ap.add_argument("--out", default=str(Path(__file__).parent / "out" / "transfer.json"))
    args = ap.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    ladder = BudgetLadder.parse(args.budgets)
    methods = args.methods.split(",")
    t0 = time.perf_counter()
    encoder = SentenceEncoder()
    print(f"encoder loaded in {time.perf_counter() - t0:.0f} s")
    rows: list[dict] = []
    victim_acc: dict[str, list[float]] = {}
    for victim_name in args.victims.split(","):
        for seed in seeds:
            victim = build_victim(victim_name, seed=seed)
            pool = victim.pool()
            probe = ProbeSet.from_target(victim.target, *victim.probe())
            victim_acc.setdefault(victim_name, []).append(float(probe.victim_accuracy()))
            for output in args.outputs.split(","):
                t1 = time.perf_counter()
                attacks = []
                for m in methods:
                    name, params = METHODS[m]
                    extra = {"encoder": encoder} if name == "transfer" else {}
                    attacks.append(create_attack(name, pool=pool, seed=seed, batch_size=args.batch_size, **params, **extra))
                result = run_assessment(victim.target, attacks, ladder, probe, output=OutputSpec.parse(output), seed=seed)
                # The comparison is only fair if scratch and transfer saw the same texts.
                orders = [a._order for a, m in zip(attacks, methods) if m in ("scratch", "transfer", "transfer-emb")]
                assert all(np.array_equal(orders[0], o) for o in orders), "random-strategy attacks queried different texts"
                for m, run in zip(methods, result.runs):
                    for p in run.points:
                        rows.append({"victim": victim_name, "seed": seed, "output": output, "method": m,
                                     "budget": p.budget, "queries": p.queries, "fidelity": p.fidelity,
                                     "accuracy": p.accuracy, "seconds": run.seconds})
                print(f"{victim_name} seed {seed} {output}: {time.perf_counter() - t1:.0f} s "
                      f"({len(encoder)} texts embedded so far, {time.perf_counter() - t0:.0f} s total)", flush=True)

    console = Console(width=160)
    for victim_name in args.victims.split(","):
        for output in args.outputs.split(","):
            acc = victim_acc[victim_name]
            table = Table(title=f"{victim_name}, {output} answers: probe fidelity, mean ± std over seeds {args.seeds} "
                                f"(victim probe accuracy {np.mean(acc):.3f})")
            table.add_column("method")
            for b in ladder:
                table.add_column(str(b), justify="right")
            fid: dict[str, dict[int, list[float]]] = {}
            for r in rows:
                if r["victim"] == victim_name and r["output"] == output:
                    fid.setdefault(r["method"], {}).setdefault(r["budget"], []).append(r["fidelity"])
            for m in methods:
                table.add_row(m, *[f"{np.mean(fid[m][b]):.3f} ± {np.std(fid[m][b]):.3f}" for b in ladder])
            if "scratch" in fid and "transfer" in fid:
                table.add_row("disagreement ratio scratch / transfer",
                              *[f"{(1 - np.mean(fid['scratch'][b])) / max(1 - np.mean(fid['transfer'][b]), 1e-9):.2f}x"
                                for b in ladder])
            console.print(table)
    print(f"total {time.perf_counter() - t0:.0f} s, {len(encoder)} distinct texts embedded")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"victims": args.victims.split(","), "seeds": seeds, "budgets": list(ladder),
                               "outputs": args.outputs.split(","), "victim_accuracy": victim_acc, "rows": rows}, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
