"""Write the attacker and probe data that examples/target.yaml names, for the local demo.

The gateway in examples/remote-demo-gateway.yaml serves the ``digits-logreg`` zoo victim (seed 0).
Its attacker pool and held-out probe split were never used to train it, so they are what a red
team would hold: natural inputs (no labels) to query with, and labelled rows to measure fidelity.

    python examples/remote_demo_data.py      # writes examples/attacker.npy and examples/probe.npz
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from extractguard.victims import build_victim


def main() -> None:
    here = Path(__file__).resolve().parent
    victim = build_victim("digits-logreg", seed=0)
    np.save(here / "attacker.npy", victim.pool())
    X, y = victim.probe()
    np.savez(here / "probe.npz", X=X, y=y)
    print(f"wrote {here / 'attacker.npy'} ({len(victim.pool())} rows) and {here / 'probe.npz'} ({len(X)} rows)")


if __name__ == "__main__":
    main()
