"""Random noise on the answer: the baseline every perturbation defense is compared with."""

from __future__ import annotations

import numpy as np

from extractguard.defenses.base import Defense
from extractguard.defenses.simplex import as_bool, as_choice, as_float, renormalise, restore_argmax
from extractguard.oracle.answer import softmax


class GaussianNoise(Defense):
    """Add Gaussian noise to each answer, then map it back onto the simplex.

    Noise is the naive defense the extraction papers use as a baseline (e.g. Orekondy et al.
    2020, Sec. 6; Lee et al. 2019): it hurts honest users as much as attackers, because it is
    not aimed at anything.  ``space="probabilities"`` adds ``N(0, sigma^2)`` to each probability
    and clips/renormalises; ``space="logits"`` adds it to the log-probabilities (logits up to a
    per-row constant) and applies softmax, so relative confidences are jittered multiplicatively.
    ``keep_argmax`` restores the original top-1 class, making accuracy free.

    Parameters
    ----------
    sigma: standard deviation of the noise (> 0).
    space: ``probabilities`` or ``logits``.
    keep_argmax: whether to preserve each row's top-1 class exactly.
    """

    name = "gaussian-noise"

    def __init__(self, sigma: float = 0.05, space: str = "probabilities", keep_argmax: bool = False) -> None:
        self.sigma = as_float(self.name, "sigma", sigma, low=0.0, low_open=True)
        self.space = as_choice(self.name, "space", space, ("probabilities", "logits"))
        self.keep_argmax = as_bool(self.name, "keep_argmax", keep_argmax)

    def apply(self, probabilities: np.ndarray, X: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        p = np.asarray(probabilities, dtype=np.float64)
        noise = rng.normal(0.0, self.sigma, size=p.shape)
        if self.space == "logits":
            out = softmax(np.log(np.clip(p, 1e-12, None)) + noise)
        else:
            out = renormalise(p + noise, fallback=p)
        if self.keep_argmax:
            out = restore_argmax(out, p.argmax(axis=1))
        return out
