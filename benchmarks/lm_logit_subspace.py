"""Softmax-bottleneck extraction of the LM victims (issue 18, attack 1), with the victims' cost.

    PYTHONPATH=src python benchmarks/lm_logit_subspace.py [--seeds 10] [--shapes full,top5+bias]

Per victim: held-out perplexity, training time (from the cache's meta, i.e. the first build),
generation throughput through the text oracle (tokens/s, batched, KV cache).  Per victim, API
shape and attack seed: hidden size found vs true, the spectral gap, the aligned RMS error of the
recovered output projection (absolute and relative to the centred truth), requests, tokens and
cost at $0.0015 / 1k prompt tokens and $0.002 / 1k completion tokens (OpenAI's list price for
gpt-3.5-turbo-instruct), and the attacker's wall and CPU time.  Writes
benchmarks/out/lm_logit_subspace.json and prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from extractguard.attacks.logit_subspace import LogitSubspaceAttack
from extractguard.oracle.text import TextAnswerSpec, TextRequest, TokenBudget
from extractguard.victims.lm import build_lm_victim, list_lm_victims

PRICE = TokenBudget(price_prompt_per_1k=0.0015, price_completion_per_1k=0.002)


def throughput(victim) -> float:
    """Completion tokens per second: 32 prompts x 32 new tokens, sampled at temperature 1."""
    oracle = victim.oracle(TextAnswerSpec.parse("text"))
    words = " ".join(victim.corpus.attacker).split()
    prompts = [" ".join(words[i * 7 : i * 7 + 4]) for i in range(32)]
    oracle.complete([TextRequest(p, max_tokens=32, temperature=1.0) for p in prompts])
    s = oracle.stats()
    return s.completion_tokens / s.seconds_in_model


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seeds", type=int, default=10)
    ap.add_argument("--shapes", default="full,top5+bias")
    ap.add_argument("--victims", default=",".join(list_lm_victims()))
    ap.add_argument("--out", default="benchmarks/out/lm_logit_subspace.json")
    args = ap.parse_args()
    rows, victims = [], []
    for name in args.victims.split(","):
        v = build_lm_victim(name, seed=0)
        info = {**v.describe(), "tokens_per_second": round(throughput(v), 1)}
        victims.append(info)
        print(json.dumps(info), flush=True)
        W = v.output_projection()
        for shape in args.shapes.split(","):
            for seed in range(args.seeds):
                oracle = v.oracle(TextAnswerSpec.parse(shape), PRICE)
                w0, c0 = time.perf_counter(), time.process_time()
                result = LogitSubspaceAttack(seed=seed).run(oracle, v.corpus.attacker)
                wall, cpu = time.perf_counter() - w0, time.process_time() - c0
                rms, rel = result.aligned_rms_error(W) if result.hidden_size else (float("nan"), float("nan"))
                row = {
                    "victim": name,
                    "true_hidden": v.hidden_size,
                    "vocab": v.config.vocab_size,
                    "seed": seed,
                    **result.to_dict(),
                    "rms": rms,
                    "relative_rms": rel,
                    "attacker_wall_s": round(wall, 2),
                    "attacker_cpu_s": round(cpu, 2),
                }
                rows.append(row)
                print(json.dumps(row), flush=True)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"victims": victims, "runs": rows}, indent=1))
    print("\n| victim | true h | API shape | h found (seeds) | gap (decades) | rel. RMS (max) | requests | tokens | cost $ | attacker wall s |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    keys = sorted({(r["victim"], r["api_shape"]) for r in rows}, key=lambda k: (k[0], k[1]))
    for victim, shape in keys:
        rs = [r for r in rows if r["victim"] == victim and r["api_shape"] == shape]
        ok = sum(r["hidden_size_found"] == r["true_hidden"] for r in rs)
        found = sorted({r["hidden_size_found"] for r in rs}, key=str)
        print(
            f"| {victim} | {rs[0]['true_hidden']} | {shape} | {'/'.join(map(str, found))} ({ok}/{len(rs)} exact) "
            f"| {min(r['gap_log10'] for r in rs):.1f}-{max(r['gap_log10'] for r in rs):.1f} "
            f"| {max(r['relative_rms'] for r in rs):.1e} "
            f"| {np.mean([r['requests'] for r in rs]):.0f} | {np.mean([r['tokens'] for r in rs]):.0f} "
            f"| {np.mean([r['spend'] for r in rs]):.4f} | {np.mean([r['attacker_wall_s'] for r in rs]):.1f} |"
        )


if __name__ == "__main__":
    main()
