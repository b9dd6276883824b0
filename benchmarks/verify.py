"""Ownership verification: copies stolen through a watermarking gateway vs independent models.

One owner model per seed (digits-mlp, ``--seeds``) answers through the gateway's watermark code path
(:class:`WatermarkedTarget`: the same ``AnswerWatermark.apply`` and ``WatermarkRecord.add`` calls as
the gateway's ``infer`` route), each attack under its own account.  digits' attacker pool is
719 rows, so the attacker's pool is that split augmented 8x with Gaussian pixel noise (sigma = 1 on
the 0-16 scale): 5,752 rows, enough for 5,000 queries.  At each budget two copies are scored:

- ``suite``: the surrogate the attack itself fits (the suite's quick recipe, ~20 epochs, weight
  decay);
- ``converged``: the same transcript (rows and answers, nothing else) refit to convergence (MLP
  256x128, 6,000 steps, no weight decay): what an attacker maximising fidelity trains.

Independent models (>= 20): eight families x seeds trained with true labels on the pool split
(disjoint from the owner's training split), plus digits-mlp/-cnn zoo models of other seeds (their
own seeded splits).  Every suspect gets every attacker account's watermark test plus the
fingerprint test (IPGuard boundary points, conferrable selection, null calibrated on 8 further
independent models); Bonferroni over all of them, accused if below ``--alpha``.  The watermark
test is the rank test when the suspect returns scores (all of these do), ``--method`` forces one.

Also measured: what the watermark costs honest users (share of marked answers and accuracy change
on the natural held-out rows: probe and pool splits, none of them queried by an attacker here).

    python benchmarks/verify.py                          # ~10 CPU-minutes per seed
    python benchmarks/verify.py --seeds 0,1,2            # + a summary over seeds
    python benchmarks/verify.py --attacks knockoff --budgets 1000,5000 --independents 20
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.table import Table

from extractguard.attacks import create_attack
from extractguard.oracle import Oracle
from extractguard.oracle.targets import CallableTarget, Target
from extractguard.surrogates import TorchClassifier
from extractguard.verify import verify_suspect
from extractguard.verify.fingerprint import fingerprint_model
from extractguard.verify.references import train_references
from extractguard.victims import build_victim
from extractguard.watermark import AnswerWatermark, WatermarkedTarget, WatermarkRecord

MASTER = bytes(range(32))  # a fixed key keeps the benchmark reproducible; deployments use a random one


def converged_copy(X: np.ndarray, Y: np.ndarray, shape: tuple[int, ...], c: int, steps: int, seed: int) -> TorchClassifier:
    return TorchClassifier("mlp", shape, c, hidden=(256, 128), epochs=1000, min_steps=steps, max_steps=steps,
                           weight_decay=0.0, seed=seed).fit(X, Y)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--victim", default="digits-mlp")
    ap.add_argument("--attacks", default="knockoff,activethief-entropy,random,jbda")
    ap.add_argument("--budgets", default="1000,2500,5000")
    ap.add_argument("--fraction", type=float, default=0.01, help="share of answers watermarked")
    ap.add_argument("--cell-width", type=float, default=0.3, help="LSH cell width; 0 = exact rows (plain DAWN)")
    ap.add_argument("--projections", type=int, default=8)
    ap.add_argument("--mark", default="flip", choices=("flip", "soft"), help="flip: keyed label on top; soft: raised under ours")
    ap.add_argument("--independents", type=int, default=24, help="independent models of the references' families")
    ap.add_argument("--steps", type=int, default=6000, help="training steps of the converged copy")
    ap.add_argument("--margin", type=float, default=0.2, help="fingerprint margin")
    ap.add_argument("--alpha", type=float, default=1e-6)
    ap.add_argument("--method", default="auto", choices=("auto", "rank", "conditional"), help="watermark test")
    ap.add_argument("--seeds", default="0", help="comma-separated; each seed is a new owner model, key-independent run")
    ap.add_argument("--out", default="benchmarks/out/verify.json")
    args = ap.parse_args()
    console = Console()
    t_start = time.perf_counter()
    runs = [run_seed(args, int(s), console) for s in args.seeds.split(",") if s.strip()]
    if len(runs) > 1:
        summarise(runs, console)
    seconds = time.perf_counter() - t_start
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"args": vars(args), "runs": runs, "seconds": seconds}, indent=1))
    console.print(f"written {out} in {seconds:.0f} s")


def summarise(runs: list[dict[str, Any]], console: Console) -> None:
    """Across seeds: how often each (attack, budget, copy) was accused, and its worst (largest) p-value."""
    table = Table(title=f"Over {len(runs)} seeds: copies accused (Bonferroni p < alpha)")
    for col in ("attack", "queries", "copy", "fidelity (mean)", "accused", "watermark p (median)", "watermark p (worst)", "Bonferroni p (worst)"):
        table.add_column(col, justify="left" if col in ("attack", "copy") else "right")
    keys = dict.fromkeys((c["attack"], c["budget"], c["copy"]) for r in runs for c in r["copies"])
    for attack, budget, kind in keys:
        rows = [c for r in runs for c in r["copies"] if (c["attack"], c["budget"], c["copy"]) == (attack, budget, kind)]
        table.add_row(attack, str(budget), kind, f"{np.mean([c['fidelity'] for c in rows]):.3f}",
                      f"{sum(c['accused'] for c in rows)}/{len(rows)}", f"{np.median([c['wm_p'] for c in rows]):.2g}",
                      f"{max(c['wm_p'] for c in rows):.2g}", f"{max(c['p_bonferroni'] for c in rows):.2g}")
    console.print(table)
    indep = [i for r in runs for i in r["independents"]]
    console.print(f"independent models accused over all seeds: {sum(i['accused'] for i in indep)} of {len(indep)}; "
                  f"smallest Bonferroni p {min(i['p_bonferroni'] for i in indep):.3g}, smallest watermark p "
                  f"{min(i['min_wm_p'] for i in indep):.3g}; honest-user cost per seed: "
                  + ", ".join(f"{100 * r['honest_cost']['marked_share']:.2f}% marked / {100 * r['honest_cost']['accuracy_cost']:.2f} pts"
                              for r in runs))


def run_seed(args: argparse.Namespace, seed: int, console: Console) -> dict[str, Any]:
    """One owner model (victim seed), its watermark, every attack at every budget, the independents."""
    attacks = [a.strip() for a in args.attacks.split(",") if a.strip()]
    budgets = sorted(int(b) for b in args.budgets.split(","))
    console.rule(f"seed {seed}")
    v = build_victim(args.victim, seed=seed)
    schema, X_all, y_all = v.schema, v.dataset.X, v.dataset.y
    rng = np.random.default_rng(seed)
    pool = v.pool()
    aug = np.clip(np.repeat(pool, 8, 0) + rng.normal(0, 1.0, size=(8 * len(pool), pool.shape[1])), schema.low, schema.high)
    wm = AnswerWatermark(MASTER, fraction=args.fraction, cell_width=args.cell_width or None,
                         projections=args.projections, low=schema.low, high=schema.high, mark=args.mark)
    workdir = Path(tempfile.mkdtemp(prefix="eg-verify-"))
    record = WatermarkRecord(workdir / "watermarks.db")

    # Honest-user cost on natural held-out rows (probe + pool splits).
    natural = np.concatenate([v.splits.test, v.splits.pool])
    p_true = v.target.predict(X_all[natural]).probabilities
    served, dec = wm.apply(p_true, X_all[natural], "honest-user")
    cost = {
        "rows": int(len(natural)),
        "marked_share": float(dec.marked.mean()),
        "accuracy_model": float(np.mean(p_true.argmax(1) == y_all[natural])),
        "accuracy_served": float(np.mean(served.argmax(1) == y_all[natural])),
    }
    cost["accuracy_cost"] = cost["accuracy_model"] - cost["accuracy_served"]
    console.print(f"honest users ({cost['rows']} natural rows): {100 * cost['marked_share']:.2f}% answers marked, accuracy "
                  f"{cost['accuracy_model']:.4f} -> {cost['accuracy_served']:.4f} (cost {100 * cost['accuracy_cost']:.2f} points)")

    # Fingerprint (owner side, before any theft): owner's training split only.
    t0 = time.perf_counter()
    fp = fingerprint_model(v.target, X_all[v.splits.train], y_all[v.splits.train], n_points=400, margin=args.margin,
                           n_references=8, seed=seed + 1)
    console.print(f"fingerprint: {len(fp.labels)} points, reference agreement {fp.reference_agreements}, p0 = {fp.p0:.3f} "
                  f"({time.perf_counter() - t0:.0f} s)")

    probe_X, probe_y = v.probe()
    own_probe = v.target.predict(probe_X).probabilities.argmax(1)
    copies: list[dict[str, Any]] = []
    for name in attacks:
        account = f"attacker-{name}"
        t0 = time.perf_counter()
        attack = create_attack(name, pool=aug, seed=seed)
        oracle = Oracle(WatermarkedTarget(v.target, wm, account, record), budget=budgets[-1])

        def on_checkpoint(cp: Any, name: str = name, account: str = account, attack: Any = attack) -> None:
            rec = record.load(account)
            X = np.concatenate(attack._X)[: cp.queries]
            Y = np.concatenate(attack._Y)[: cp.queries]
            for kind, model in (("suite", cp.surrogate), ("converged", converged_copy(X, Y, schema.input_shape, schema.n_classes, args.steps, seed))):
                t = CallableTarget(model.predict_proba, schema)
                verdict = verify_suspect(t, [rec], fp, alpha=args.alpha, method=args.method)
                wt, ft = verdict.tests
                # The owner does not know which account leaked: correct for testing every attacker
                # account plus the fingerprint, as the independents below are.
                p_all = min(1.0, min(wt.p_value, ft.p_value) * (len(attacks) + 1))
                copies.append({
                    "attack": name, "budget": cp.budget, "queries": cp.queries, "copy": kind,
                    "fidelity": float(np.mean(t.predict(probe_X).probabilities.argmax(1) == own_probe)),
                    "marked_cells": wt.extra["marked_rows"], "wm_method": wt.extra["method"], "wm_k": wt.k, "wm_n": wt.n, "wm_p": wt.p_value,
                    "fp_k": ft.k, "fp_n": ft.n, "fp_p": ft.p_value, "p_bonferroni": p_all, "accused": p_all < args.alpha,
                })
                console.print(f"  {name} @{cp.queries} {kind}: fidelity {copies[-1]['fidelity']:.3f}, watermark {wt.k}/{wt.n} "
                              f"p={wt.p_value:.2g}, fingerprint {ft.k}/{ft.n} p={ft.p_value:.2g}")

        attack.fit(oracle, budgets[-1], checkpoints=budgets, callback=on_checkpoint)
        console.print(f"{name}: {time.perf_counter() - t0:.0f} s")

    # Independent models: never saw a watermarked answer.
    records = [record.load(f"attacker-{a}") for a in attacks]
    t0 = time.perf_counter()
    independents: list[tuple[str, Target]] = train_references(
        X_all[v.splits.pool], y_all[v.splits.pool], schema, n_models=args.independents, seed=seed + 50)
    for arch, seeds in (("mlp", (seed + 1, seed + 2, seed + 3)), ("cnn", (seed + 1, seed + 2))):
        for s in seeds:
            other = build_victim(f"{v.dataset.name}-{arch}", seed=s)
            independents.append((f"zoo {other.name} seed {s}", other.target))
    indep_rows: list[dict[str, Any]] = []
    for name, model in independents:
        verdict = verify_suspect(model, records, fp, alpha=args.alpha, method=args.method)
        wm_ps = [t.p_value for t in verdict.tests if t.name == "watermark"]
        ft = verdict.tests[-1]
        indep_rows.append({
            "model": name, "fidelity": float(np.mean(model.predict(probe_X).probabilities.argmax(1) == own_probe)),
            "accuracy": float(np.mean(model.predict(probe_X).probabilities.argmax(1) == probe_y)),
            "min_wm_p": float(min(wm_ps)), "fp_k": ft.k, "fp_p": ft.p_value, "p_bonferroni": verdict.p_value, "accused": verdict.is_copy,
        })
    console.print(f"{len(independents)} independent models: {time.perf_counter() - t0:.0f} s")

    table = Table(title=f"Copies stolen through a {100 * args.fraction:g}% watermark ({args.victim}, "
                        f"{'cells ' + str(args.cell_width) if args.cell_width else 'exact rows'}, {args.mark} marks); alpha = {args.alpha:g}")
    for col in ("attack", "queries", "copy", "fidelity", "marked cells", "wm k/n", "wm p", "fp k/n", "fp p", "accused"):
        table.add_column(col, justify="left" if col in ("attack", "copy") else "right")
    for r in copies:
        table.add_row(r["attack"], str(r["queries"]), r["copy"], f"{r['fidelity']:.3f}", str(r["marked_cells"]),
                      f"{r['wm_k']}/{r['wm_n']}", f"{r['wm_p']:.2g}", f"{r['fp_k']}/{r['fp_n']}", f"{r['fp_p']:.2g}",
                      "yes" if r["accused"] else "no")
    console.print(table)
    it = Table(title=f"{len(indep_rows)} independent models (tested against {len(records)} accounts + fingerprint)")
    for col in ("model", "fidelity", "accuracy", "min wm p", "fp k", "fp p", "Bonferroni p", "accused"):
        it.add_column(col, justify="left" if col == "model" else "right")
    for r in indep_rows:
        it.add_row(r["model"], f"{r['fidelity']:.3f}", f"{r['accuracy']:.3f}", f"{r['min_wm_p']:.2g}", str(r["fp_k"]),
                   f"{r['fp_p']:.2g}", f"{r['p_bonferroni']:.2g}", "YES" if r["accused"] else "no")
    console.print(it)
    accused = sum(r["accused"] for r in indep_rows)
    console.print(f"independent models accused: {accused} of {len(indep_rows)}; smallest Bonferroni p among them: "
                  f"{min(r['p_bonferroni'] for r in indep_rows):.3g}; fingerprint p0 = {fp.p0:.3f} "
                  f"({max(fp.reference_agreements)}/{len(fp.labels)} best reference)")
    record.close()
    return {"seed": seed, "honest_cost": cost, "fingerprint": {"points": len(fp.labels), "p0": fp.p0,
            "reference_agreements": fp.reference_agreements}, "copies": copies, "independents": indep_rows}

if __name__ == "__main__":
    main()
