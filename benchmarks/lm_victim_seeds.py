"""The softmax-bottleneck attack (full logprobs) on other training seeds of an LM victim.

    PYTHONPATH=src python benchmarks/lm_victim_seeds.py pydoc-lm64 [--seeds 1,2]

Trains (or loads from the cache) the victim at each seed and prints one JSON line per seed:
its description (held-out perplexity, training time) and the attack's result.
"""

from __future__ import annotations

import argparse
import json

from extractguard.attacks.logit_subspace import LogitSubspaceAttack
from extractguard.oracle.text import TextAnswerSpec
from extractguard.victims.lm import build_lm_victim


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("victim")
    ap.add_argument("--seeds", default="1,2")
    args = ap.parse_args()
    for seed in (int(s) for s in args.seeds.split(",")):
        v = build_lm_victim(args.victim, seed=seed)
        result = LogitSubspaceAttack(seed=0).run(v.oracle(TextAnswerSpec.parse("full")), v.corpus.attacker)
        rel = result.aligned_rms_error(v.output_projection())[1] if result.hidden_size else None
        print(json.dumps({**v.describe(), **result.to_dict(), "relative_rms": rel}), flush=True)


if __name__ == "__main__":
    main()
