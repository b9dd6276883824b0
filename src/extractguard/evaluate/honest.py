"""What a defense costs honest users: their answers through the cell pipeline vs the real model's."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from extractguard.evaluate.cell_pipeline import build_cell_pipeline, timeline
from extractguard.evaluate.matrix_config import DefenseVariant
from extractguard.evaluate.matrix_data import Prepared
from extractguard.evaluate.results import Detection, HonestUtility


def honest_utility(prep: Prepared, variant: DefenseVariant, seed: int, workdir: Path, rows_per_hour: float) -> HonestUtility:
    """What honest users get through this defense: agreement with the real model, accuracy,
    L1 distance of the served scores, and whether their account was flagged (a false positive)."""
    pipe = build_cell_pipeline(prep, variant, "honest-user", seed + 7, workdir, rows_per_hour / 3600.0)
    oracle = pipe.oracle()
    X = prep.honest_X
    served_parts, rng = [], np.random.default_rng(seed + 3)
    i = 0
    while i < len(X):  # honest requests carry a few rows each (1 + geometric, mean 2)
        k = min(int(rng.geometric(0.5)), len(X) - i)
        served_parts.append(oracle.query(X[i:i + k]).soft_labels())
        i += k
    served = np.concatenate(served_parts)
    if pipe.record is not None:
        pipe.record.close()
    real = prep.target.predict(X).probabilities
    return measure_honest(real, served, prep.honest_y, Detection.from_dict(timeline(pipe)))


def measure_honest(real: np.ndarray, served: np.ndarray, y: np.ndarray | None, detection: Detection,
                   note: str | None = None) -> HonestUtility:
    """Honest users' answers ``served`` against the real model's ``real`` (and the labels ``y``)."""
    from extractguard.evaluate.metrics import accuracy, fidelity, mean_l1

    return HonestUtility(
        rows=int(len(served)),
        agreement=round(fidelity(real, served), 6),
        accuracy=None if y is None else round(accuracy(y, served), 6),
        model_accuracy=None if y is None else round(accuracy(y, real), 6),
        mean_l1=round(mean_l1(real, served), 6),
        flagged=detection.flagged,
        detection=detection,
        note=note,
    )
