"""Output defenses: what they cost honest users and what they leave to a Knockoff attacker.

For every defense at a few parameter settings, on each victim:

- honest-user cost on the held-out probe split (``evaluate_defense``): top-1 agreement with the
  undefended model, accuracy change, calibration change (ECE, NLL), mean L1 perturbation;
- fidelity of copies stolen *through* the defense (the gateway's ``ServingPipeline`` + ``Oracle`` +
  ``create_attack``), measured against the undefended victim on the same probe split, which no
  attack queried.  Two attackers: one trains on the (defended) probability vectors, one keeps
  only the top-1 label, the obvious adaptation to argmax-preserving defenses.

Defenses that need owner data (MAD, adaptive misinformation) are fitted on the victim's training
split.  One run compares every setting side by side, with fidelity also as a ratio of the
undefended run's.

    python benchmarks/defenses.py                      # mnist-cnn + digits-cnn, ~10 CPU-minutes
    python benchmarks/defenses.py --victims digits-cnn --seeds 0,1,2 --out benchmarks/out/defenses_digits_3seeds.json
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
from extractguard.defenses import build_chain
from extractguard.evaluate import ProbeSet, evaluate_defense
from extractguard.oracle import Oracle, OutputSpec
from extractguard.serving import ServingPipeline
from extractguard.victims import build_victim

#: (label, chain spec) pairs; every defense at two or three settings.
SETTINGS: list[tuple[str, list[dict[str, Any]]]] = [
    ("none", []),
    ("noise σ=0.05", [{"name": "gaussian-noise", "sigma": 0.05}]),
    ("noise σ=0.2", [{"name": "gaussian-noise", "sigma": 0.2}]),
    ("noise logits σ=3 keep-argmax", [{"name": "gaussian-noise", "sigma": 3.0, "space": "logits", "keep_argmax": True}]),
    ("reverse_sigmoid β=0.1 γ=1", [{"name": "reverse-sigmoid", "beta": 0.1, "gamma": 1.0}]),
    ("reverse_sigmoid β=0.3 γ=5", [{"name": "reverse-sigmoid", "beta": 0.3, "gamma": 5.0}]),
    ("reverse_sigmoid β=0.7 γ=0.2", [{"name": "reverse-sigmoid", "beta": 0.7, "gamma": 0.2}]),
    ("mad ε=0.5", [{"name": "mad", "epsilon": 0.5}]),
    ("mad ε=1.0", [{"name": "mad", "epsilon": 1.0}]),
    ("mad-argmax ε=0.5", [{"name": "mad", "epsilon": 0.5, "argmax": True}]),
    ("mad-argmax ε=1.0", [{"name": "mad", "epsilon": 1.0, "argmax": True}]),
    ("adaptive_misinf τ=0.7 ν=100", [{"name": "adaptive-misinformation", "tau": 0.7, "nu": 100}]),
    ("adaptive_misinf τ=0.9 ν=100", [{"name": "adaptive-misinformation", "tau": 0.9, "nu": 100}]),
]

#: victim -> (budgets, attacks).  digits' attacker pool has 719 rows, hence its smaller budgets.
#: The random (uniform-noise) attack runs on digits only: its models are unconfident on noise, so
#: it shows adaptive misinformation at work (MNIST's CNN answers noise with one class anyway).
VICTIMS: dict[str, tuple[list[int], list[str]]] = {
    "mnist-cnn": ([500, 2000], ["knockoff"]),
    "digits-cnn": ([100, 700], ["knockoff", "random"]),
    "digits-mlp": ([100, 700], ["knockoff", "random"]),
}
DEFAULT_VICTIMS = "mnist-cnn,digits-cnn"
OUTPUTS = {"soft": "probabilities", "label": "label"}


def steal(victim: Any, target: Any, attack: str, output: str, budgets: list[int], probe: ProbeSet, seed: int) -> dict[int, float]:
    oracle = Oracle(target, output=OutputSpec.parse(output), budget=max(budgets))
    result: dict[int, float] = {}
    atk = create_attack(attack, pool=victim.pool(), seed=seed)
    atk.fit(oracle, budget=max(budgets), checkpoints=budgets, callback=lambda cp: result.__setitem__(cp.budget, probe.score(cp.surrogate)["fidelity"]))
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--victims", default=DEFAULT_VICTIMS, help=f"any of {', '.join(VICTIMS)}")
    ap.add_argument("--seeds", default="0")
    ap.add_argument("--only", default="", help="comma-separated substrings of setting labels to run (plus 'none')")
    ap.add_argument("--out", default=str(Path(__file__).parent / "out" / "defenses.json"))
    args = ap.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    settings = [s for s in SETTINGS if s[0] == "none" or not args.only or any(k in s[0] for k in args.only.split(","))]
    rows: list[dict[str, Any]] = []
    console = Console(width=220)
    for vname in args.victims.split(","):
        budgets, attacks = VICTIMS[vname]
        for seed in seeds:
            victim = build_victim(vname, seed=seed)
            X_probe, y_probe = victim.probe()
            probe = ProbeSet.from_target(victim.target, X_probe, y_probe)
            owner = victim.dataset.X[victim.splits.train]
            for label, spec in settings:
                t0 = time.perf_counter()
                chain = build_chain(spec).fit(victim.target, owner)
                fit_s = time.perf_counter() - t0
                cost = evaluate_defense(victim.target, chain, X_probe, y_probe, seed=seed)
                row: dict[str, Any] = {"victim": vname, "seed": seed, "defense": label, "chain": chain.describe(),
                                       "fit_seconds": round(fit_s, 2), "cost": cost.to_dict(), "fidelity": {}}
                for attack in attacks:
                    for okey, output in OUTPUTS.items():
                        if attack == "random" and okey == "label":
                            continue
                        defended = ServingPipeline(victim.target, OutputSpec.parse(output), chain=chain, rng=np.random.default_rng(seed))
                        fid = steal(victim, defended, attack, output, budgets, probe, seed)
                        for b, f in fid.items():
                            row["fidelity"][f"{attack}/{okey}@{b}"] = f
                row["seconds"] = round(time.perf_counter() - t0, 1)
                rows.append(row)
                console.print(f"{vname} seed {seed} {label}: {row['seconds']} s", highlight=False)
    # Ratios to the undefended run of the same victim and seed, then averages over seeds.
    base = {(r["victim"], r["seed"]): r["fidelity"] for r in rows if r["defense"] == "none"}
    for r in rows:
        b = base.get((r["victim"], r["seed"]))
        if b:
            r["fidelity_ratio"] = {k: v / b[k] for k, v in r["fidelity"].items() if b.get(k)}
    for vname in args.victims.split(","):
        vrows = [r for r in rows if r["victim"] == vname]
        keys = list(vrows[0]["fidelity"]) if vrows else []
        table = Table(title=f"{vname}: honest-user cost (probe split) and stolen-copy fidelity vs the undefended victim; seeds {args.seeds}")
        for col in ("defense", "agree", "Δacc", "ECE", "NLL", "L1"):
            table.add_column(col, justify="left" if col == "defense" else "right")
        for k in keys:
            table.add_column(k.replace("knockoff", "KO").replace("random", "rnd"), justify="right")
        for label, _ in settings:
            rs = [r for r in vrows if r["defense"] == label]
            if not rs:
                continue
            m = lambda f: float(np.mean([f(r) for r in rs]))  # noqa: E731
            cells = [
                label,
                f"{m(lambda r: r['cost']['agreement']):.3f}",
                f"{m(lambda r: r['cost']['accuracy_change']):+.3f}",
                f"{m(lambda r: r['cost']['ece_defended']):.3f}",
                f"{m(lambda r: r['cost']['nll_defended']):.2f}",
                f"{m(lambda r: r['cost']['mean_l1']):.2f}",
            ]
            for k in keys:
                fid = m(lambda r: r["fidelity"][k])
                ratio = m(lambda r: r.get("fidelity_ratio", {}).get(k, float("nan")))
                cells.append(f"{fid:.3f} ({ratio:.2f})")
            table.add_row(*cells)
        console.print(table)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"victims": {v: VICTIMS[v][0] for v in args.victims.split(",")}, "seeds": seeds, "rows": rows}, indent=2))
    console.print(f"wrote {out}")


if __name__ == "__main__":
    main()
