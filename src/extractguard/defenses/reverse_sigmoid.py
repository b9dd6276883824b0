"""Reverse sigmoid (Lee, Edraki & Qi 2019).

"Defending Against NN Model Stealing Attacks Using Deceptive Perturbations" (IEEE S&P
Workshops 2019).  Each probability ``y`` is pushed by the *reverse* of a sigmoid applied in
logit space::

    r(y) = beta * (sigmoid(gamma * logit(y)) - 1/2)
    y'   = normalise(y - r(y))

For a student trained with cross-entropy the perturbed confidences make the gradient point the
wrong way (the authors show the student's logits can't invert the mapping because it is
non-monotone for ``beta * gamma > 1``), while the label an honest user reads stays the same.
"""

from __future__ import annotations

import numpy as np
from scipy.special import expit

from extractguard.defenses.base import Defense
from extractguard.defenses.simplex import as_float, renormalise, restore_argmax


class ReverseSigmoid(Defense):
    """Deceptive perturbation of Lee et al. (2019); the top-1 class is always preserved.

    The paper's perturbation keeps the top-1 label for moderate parameters only; when ``beta``
    and ``gamma`` are large enough to reorder classes (or clip a row to zero) we put the
    original top class back, so this defense never costs accuracy.

    Parameters
    ----------
    beta: perturbation magnitude (> 0); the paper uses values around 0.1-1.
    gamma: sigmoid steepness in logit space (> 0); ``beta * gamma > 1`` makes the map non-invertible.
    """

    name = "reverse-sigmoid"

    def __init__(self, beta: float = 0.5, gamma: float = 2.0) -> None:
        self.beta = as_float(self.name, "beta", beta, low=0.0, low_open=True)
        self.gamma = as_float(self.name, "gamma", gamma, low=0.0, low_open=True)

    def apply(self, probabilities: np.ndarray, X: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        p = np.asarray(probabilities, dtype=np.float64)
        eps = 1e-12
        q = np.clip(p, eps, 1.0 - eps)
        s = expit(self.gamma * (np.log(q) - np.log1p(-q)))  # sigmoid(gamma * logit(q)), overflow-safe
        perturbed = p - self.beta * (s - 0.5)
        out = renormalise(perturbed, fallback=p)
        return restore_argmax(out, p.argmax(axis=1))
