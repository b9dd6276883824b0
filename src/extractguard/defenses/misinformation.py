"""Adaptive Misinformation (Kariyappa & Qureshi, CVPR 2020).

"Defending Against Model Stealing Attacks with Adaptive Misinformation".  Extraction attacks
without the victim's training data query out-of-distribution (OOD) inputs; honest users mostly
do not.  The defense scores each query's OOD-ness by the victim's maximum softmax probability
(Hendrycks & Gimpel 2017) and answers with a blend of the true output ``y`` and the output ``y^``
of a *misinformation* model trained to be wrong::

    alpha = 1 / (1 + exp(nu * (max_c y_c - tau)))
    y'    = (1 - alpha) * y + alpha * y^

Confident (in-distribution) queries get ``alpha ~ 0`` and are answered truthfully; uncertain
ones get misinformation, which poisons the attacker's training set.
"""

from __future__ import annotations

import numpy as np
from scipy.special import expit

from extractguard.defenses.base import Defense
from extractguard.defenses.owner_models import WrongModel, owner_rows
from extractguard.defenses.simplex import as_float, as_int
from extractguard.errors import ConfigurationError
from extractguard.oracle.targets import Target


class AdaptiveMisinformation(Defense):
    """Blend in a misinformation model's answer as the victim's confidence drops below ``tau``.

    Parameters
    ----------
    tau: confidence threshold in (0, 1); queries whose top probability is below it count as OOD.
    nu: steepness of the switch (> 0); large values make it a hard threshold.
    misinformation_steps: optimiser steps for the misinformation model fitted in :meth:`fit`.
    seed: seeds the misinformation model.
    """

    name = "adaptive-misinformation"

    def __init__(self, tau: float = 0.9, nu: float = 100.0, misinformation_steps: int = 300, seed: int = 0) -> None:
        self.tau = as_float(self.name, "tau", tau, low=0.0, high=1.0, low_open=True, high_open=True)
        self.nu = as_float(self.name, "nu", nu, low=0.0, low_open=True)
        self.misinformation_steps = as_int(self.name, "misinformation_steps", misinformation_steps, low=1)
        self.seed = as_int(self.name, "seed", seed)

    def fit(self, target: Target, X: np.ndarray | None = None) -> AdaptiveMisinformation:
        rows = owner_rows(self.name, target, X)
        self.misinformation_ = WrongModel(steps=self.misinformation_steps, seed=self.seed).fit(target, rows)
        return self

    def ood_weight(self, probabilities: np.ndarray) -> np.ndarray:
        """``alpha`` per row: 0 = answer truthfully, 1 = answer with misinformation."""
        msp = np.asarray(probabilities, dtype=np.float64).max(axis=1)
        return expit(-self.nu * (msp - self.tau))

    def apply(self, probabilities: np.ndarray, X: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        if not hasattr(self, "misinformation_"):
            raise ConfigurationError(
                "defense 'adaptive-misinformation' must be fitted (fit(target, owner_data)) before use"
            )
        y = np.asarray(probabilities, dtype=np.float64)
        alpha = self.ood_weight(y)[:, None]
        out = (1.0 - alpha) * y + alpha * self.misinformation_.predict_proba(X)
        return out / out.sum(axis=1, keepdims=True)
