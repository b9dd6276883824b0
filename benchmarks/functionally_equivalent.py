"""Functionally-equivalent extraction of one-hidden-layer ReLU nets: success rate, queries, error, time.

For each width (breast_cancer-mlp4, breast_cancer-mlp8: float64 victims served with logits) and
each seed, the victim is trained on its own split and attacked once (attack seed = victim seed).
A run succeeds when it finishes and the copy's logits match the victim's on the held-out probe
split to < 1e-6 (max absolute error, after removing the per-row constant softmax cannot see).

Side by side, in the same run, a learning-based copy at the *same* number of queries: Knockoff
Nets (random strategy over the attacker's pool) with an MLP student, scored by label fidelity
and max probability error on the same probe rows; the ratio column shows how much closer the
analytic copy gets.

    python benchmarks/functionally_equivalent.py --seeds 0-9 --widths 4,8
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

from extractguard.attacks import FunctionallyEquivalent, KnockoffNets
from extractguard.errors import ExtractGuardError
from extractguard.oracle.answer import softmax
from extractguard.victims import build_victim
from extractguard.oracle import OutputSpec


def parse_seeds(text: str) -> list[int]:
    if "-" in text:
        a, b = text.split("-")
        return list(range(int(a), int(b) + 1))
    return [int(s) for s in text.split(",")]


def centred(z: np.ndarray) -> np.ndarray:
    return z - z.mean(axis=1, keepdims=True)


def run_one(width: int, seed: int, budget: int, baseline: bool) -> dict:
    victim = build_victim(f"breast_cancer-mlp{width}", seed=seed)
    X = victim.probe()[0].astype(np.float64)
    zv = victim.target.predict(X).logits
    pv = softmax(zv)
    row: dict = {"width": width, "seed": seed}
    oracle = victim.oracle(OutputSpec("logits"), budget=budget)
    t0 = time.perf_counter()
    try:
        attack = FunctionallyEquivalent(seed=seed).fit(oracle)
    except ExtractGuardError as exc:
        row.update(ok=False, error=str(exc), seconds=time.perf_counter() - t0, queries=oracle.queries_used)
        return row
    seconds = time.perf_counter() - t0
    zs = attack.surrogate_.decision_function(X)
    err = float(np.abs(centred(zv) - centred(zs)).max())
    ps = attack.surrogate_.predict_proba(X)
    row.update(
        ok=err < 1e-6, seconds=seconds, queries=attack.queries_, units=attack.hidden_units_, lines=attack.lines_,
        max_logit_error=err, max_prob_error=float(np.abs(pv - ps).max()),
        fidelity=float(np.mean(pv.argmax(1) == ps.argmax(1))),
    )
    if baseline:
        # Knockoff Nets at the same query count, MLP student on soft labels.
        knock = KnockoffNets(victim.pool(), surrogate="mlp", seed=seed).fit(
            victim.oracle(OutputSpec("probabilities"), budget=attack.queries_)
        )
        qs = knock.surrogate_.predict_proba(X)
        row.update(
            knockoff_queries=knock.queries_, knockoff_fidelity=float(np.mean(pv.argmax(1) == qs.argmax(1))),
            knockoff_max_prob_error=float(np.abs(pv - qs).max()),
        )
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", default="0-9")
    ap.add_argument("--widths", default="4,8")
    ap.add_argument("--budget", type=int, default=20_000, help="query budget per run (a hard stop)")
    ap.add_argument("--no-baseline", action="store_true", help="skip the Knockoff Nets comparison")
    ap.add_argument("--out", default=str(Path(__file__).parent / "out" / "functionally_equivalent.json"))
    args = ap.parse_args()
    seeds = parse_seeds(args.seeds)
    widths = [int(w) for w in args.widths.split(",")]
    rows = []
    for width in widths:
        for seed in seeds:
            row = run_one(width, seed, args.budget, not args.no_baseline)
            rows.append(row)
            status = "ok" if row["ok"] else f"FAIL {row.get('error', '')}"
            print(f"mlp{width} seed {seed}: {row['queries']} queries, "
                  f"max logit error {row.get('max_logit_error', float('nan')):.2e}, {row['seconds']:.2f} s, {status}")
    table = Table(title=f"functionally-equivalent on breast_cancer-mlpW (float64, logits), seeds {args.seeds}")
    for col in ("victim", "success", "queries (median, max)", "max logit error (worst)", "seconds (median, max)",
                "FE max prob error", "knockoff fidelity", "knockoff max prob error", "error ratio knockoff/FE"):
        table.add_column(col, justify="right")
    summary = []
    for width in widths:
        rs = [r for r in rows if r["width"] == width]
        good = [r for r in rs if r["ok"]]
        q = [r["queries"] for r in rs]
        s = [r["seconds"] for r in rs]
        worst = max((r.get("max_logit_error", np.inf) for r in rs), default=np.inf)
        fe_p = max((r.get("max_prob_error", np.inf) for r in rs), default=np.inf)
        kf = [r["knockoff_fidelity"] for r in rs if "knockoff_fidelity" in r]
        kp = [r["knockoff_max_prob_error"] for r in rs if "knockoff_max_prob_error" in r]
        ratio = (np.median(kp) / max(fe_p, 1e-300)) if kp else float("nan")
        summary.append({"width": width, "success": len(good), "runs": len(rs), "queries_median": float(np.median(q)),
                        "queries_max": int(max(q)), "worst_logit_error": worst, "seconds_median": float(np.median(s)),
                        "seconds_max": float(max(s)), "fe_worst_prob_error": fe_p,
                        "knockoff_fidelity_mean": float(np.mean(kf)) if kf else None,
                        "knockoff_prob_error_median": float(np.median(kp)) if kp else None})
        table.add_row(
            f"mlp{width}", f"{len(good)}/{len(rs)}", f"{np.median(q):.0f}, {max(q)}", f"{worst:.1e}",
            f"{np.median(s):.2f}, {max(s):.2f}", f"{fe_p:.1e}",
            f"{np.mean(kf):.3f}" if kf else "-", f"{np.median(kp):.3f}" if kp else "-",
            f"{ratio:.1e}" if kp else "-",
        )
    Console(width=200).print(table)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"seeds": seeds, "widths": widths, "budget": args.budget, "summary": summary,
                               "rows": rows}, indent=2, default=float))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
