"""The assessment matrix against a deployed gateway, side by side with the other two ways to measure it.

A real gateway (uvicorn on 127.0.0.1) serves digits-logreg with one tier per defense, and the same
attacks x budgets are measured three ways:

- ``matrix/http``: ``assess --config`` with ``target.remote`` (evaluate/matrix_remote.py), cells
  over HTTP, one API key per tier;
- ``variants/http``: ``assess --target`` with ``variants:`` (evaluate/comparison.py), the earlier
  way to compare tiers over HTTP; same probe rows, same seed: fidelity must be identical;
- ``matrix/sim``: ``assess --config`` with the victim in process and each defense read from the
  gateway's tier (``gateway: {config, tier}``): the simulated pipeline, on the victim's full probe
  set (a different yardstick, so close but not equal numbers are expected).

Prints, per defense, the best attack's fidelity at each budget and the honest agreement for each
way, and wall seconds with ratios; writes JSON.

    python benchmarks/remote_matrix.py --attacks random,knockoff --budgets 50,200,700
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from rich.console import Console
from rich.table import Table

from extractguard.evaluate.comparison import run_variant_comparison
from extractguard.evaluate.matrix import load_matrix_config, run_matrix
from extractguard.gateway import create_app, parse_config
from extractguard.oracle.target_config import load_target_config
from extractguard.victims import build_victim

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from gateway_helpers import UvicornThread  # noqa: E402  (a real uvicorn server in a thread)

TIERS: dict[str, dict[str, Any]] = {
    "open": {"output": "probabilities"},
    "rounded": {"output": "rounded:1"},
    "label": {"output": "label"},
    "reverse-sigmoid": {"output": "probabilities", "defenses": [{"name": "reverse_sigmoid", "beta": 0.7, "gamma": 0.2}]},
    "mad-argmax": {"output": "probabilities", "defenses": [{"name": "mad", "epsilon": 1.0, "argmax": True}]},
    "watermark": {"output": "probabilities", "watermark": {"fraction": 0.05}},
}


def best(cells: list[dict[str, Any]], defense: str) -> dict[int, float]:
    out: dict[int, float] = {}
    for c in cells:
        if c["defense"] == defense:
            for p in c["points"]:
                out[p["budget"]] = max(out.get(p["budget"], 0.0), p["fidelity"])
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--attacks", default="random,knockoff")
    ap.add_argument("--budgets", default="50,200,700")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=str(Path(__file__).parent / "out" / "remote_matrix.json"))
    args = ap.parse_args()
    attacks = [a.strip() for a in args.attacks.split(",")]
    budgets = sorted(int(b) for b in args.budgets.split(","))
    console = Console()
    victim = build_victim("digits-logreg", seed=args.seed)
    with tempfile.TemporaryDirectory(prefix="eg-remote-matrix-") as tmp:
        d = Path(tmp)
        gw = {"model": {"name": "digits", "victim": "digits-logreg"}, "state_dir": str(d / "state"),
              "storage": "memory://", "tiers": TIERS, "max_rows_per_request": 100, "seed": args.seed}
        (d / "gateway.yaml").write_text(yaml.safe_dump(gw))
        app = create_app(parse_config(gw), target=victim.target, owner_data=victim.dataset.X[victim.splits.train])
        variants = []
        for tier in TIERS:
            var = f"EG_BENCH_KEY_{tier.upper().replace('-', '_')}"
            os.environ[var] = app.state.gateway.keys.create(f"bench-{tier}", tier)
            variants.append({"name": tier, "key_env": [var], "output": TIERS[tier]["output"]})
        np.save(d / "attacker.npy", victim.pool())
        probe_X, probe_y = victim.probe()
        np.savez(d / "probe.npz", X=probe_X, y=probe_y)
        grid = {"attacks": attacks, "budgets": budgets, "seed": args.seed}
        results: dict[str, Any] = {}
        with UvicornThread(app) as server:
            target = {"url": server.url, "protocol": "oip", "model": "digits", "output": "probabilities",
                      "schema": {"input_shape": [1, 8, 8], "n_classes": 10, "low": 0, "high": 16},
                      "attacker_data": "attacker.npy", "probe_data": "probe.npz", "transcript": "variants.sqlite",
                      "authorization": {"statement": "Benchmark gateway on loopback, owned by this script.", "owner": "bench"},
                      "variants": variants}
            (d / "target.yaml").write_text(yaml.safe_dump(target))
            remote = {**grid, "target": {"remote": "target.yaml"},
                      "defenses": {t: {"variant": t, "gateway": {"config": "gateway.yaml", "tier": t}} for t in TIERS}}
            (d / "remote.yaml").write_text(yaml.safe_dump(remote))
            t0 = time.perf_counter()
            rep = run_matrix(load_matrix_config(d / "remote.yaml"), workdir=d / "remote-out").to_dict()
            results["matrix/http"] = {"seconds": time.perf_counter() - t0,
                                      "fidelity": {t: best(rep["cells"], t) for t in TIERS},
                                      "honest": {t: rep["defenses"][t]["honest"]["agreement"] for t in TIERS},
                                      "watermark_p": {c["attack"]: c["points"][-1]["watermark_p"] for c in rep["cells"]
                                                      if c["defense"] == "watermark"}}
            t0 = time.perf_counter()
            cmp_ = run_variant_comparison(load_target_config(d / "target.yaml"), attacks, budgets, seed=args.seed)
            results["variants/http"] = {
                "seconds": time.perf_counter() - t0,
                "fidelity": {v.name: {int(b): f for b, f in v.best_fidelity.items()} for v in cmp_.variants},
                "honest": {v.name: 1.0 if v.honest_user.agreement is None else v.honest_user.agreement
                           for v in cmp_.variants},
            }
        sim = {**grid, "target": {"victim": "digits-logreg"}, "jobs": 1,
               "defenses": {t: {"gateway": {"config": "gateway.yaml", "tier": t}} for t in TIERS}}
        (d / "sim.yaml").write_text(yaml.safe_dump(sim))
        t0 = time.perf_counter()
        rep = run_matrix(load_matrix_config(d / "sim.yaml")).to_dict()
        results["matrix/sim"] = {"seconds": time.perf_counter() - t0,
                                 "fidelity": {t: best(rep["cells"], t) for t in TIERS},
                                 "honest": {t: rep["defenses"][t]["honest"]["agreement"] for t in TIERS},
                                 "watermark_p": {c["attack"]: c["points"][-1]["watermark_p"] for c in rep["cells"]
                                                 if c["defense"] == "watermark"}}
    ways = list(results)
    table = Table(title=f"Best stolen fidelity at {budgets[-1]} queries / honest agreement ({', '.join(attacks)}; digits-logreg)")
    table.add_column("defense")
    for w in ways:
        table.add_column(f"{w} fid", justify="right")
        table.add_column(f"{w} honest", justify="right")
    identical = True
    for t in TIERS:
        row = [t]
        for w in ways:
            row += [f"{results[w]['fidelity'][t][budgets[-1]]:.3f}", f"{results[w]['honest'][t]:.3f}"]
        table.add_row(*row)
        a, b = results["matrix/http"], results["variants/http"]
        identical &= all(abs(a["fidelity"][t][k] - b["fidelity"][t][k]) < 1e-6 for k in budgets)
        identical &= abs(a["honest"][t] - b["honest"][t]) < 1e-6
    console.print(table)
    base = results["matrix/http"]["seconds"]
    console.print("wall seconds: " + ", ".join(f"{w} {results[w]['seconds']:.1f} ({results[w]['seconds'] / base:.2f}x)" for w in ways))
    console.print(f"matrix/http and variants/http identical at every budget and in honest agreement: {identical}")
    console.print(f"watermark p at {budgets[-1]}: http {results['matrix/http']['watermark_p']}, sim {results['matrix/sim']['watermark_p']}")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"args": vars(args), "identical_http": identical, "results": results}, indent=2, default=str))
    console.print(f"wrote {out}")


if __name__ == "__main__":
    main()
