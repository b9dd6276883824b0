"""Prediction poisoning with MAD (Orekondy, Schiele & Fritz, ICLR 2020).

"Prediction Poisoning: Towards Defenses Against DNN Model Stealing Attacks".  An attacker's
student learns from the gradient of its loss on our answer.  MAD answers ``y~`` instead of the
true ``y`` so that this gradient points as far as possible from where ``y`` would send it,
while staying within an L1 ball ``||y~ - y||_1 <= epsilon`` (the honest user's utility cost)::

    max_{y~ in simplex}  || G^T y~ / ||G^T y~||  -  G^T y / ||G^T y|| ||^2
    G = d log F(x; w) / d w           (Jacobian of a stand-in student F, K x D)

Choices we make, and why:

- The stand-in student ``F`` is a small network distilled from the victim on the owner's data
  in :meth:`MAD.fit` (the attacker's student is unknown; one trained like it is the best guess).
- ``G`` is taken with respect to the student's last linear layer, as the paper's reference code
  does by default to keep per-query cost low.  With a softmax head its rows are
  ``(e_i - p) (x) [h; 1]`` (``p`` the student's probabilities, ``h`` its penultimate features), so
  ``G^T y = (y - p) (x) [h; 1]`` and the angle between ``G^T y~`` and ``G^T y`` is exactly the
  angle between ``y~ - p`` and ``y - p``: closed form, no autograd per query.
- The paper's heuristic solver picks the simplex vertex with the largest objective and moves
  towards it until the L1 budget is spent.  We do the same, but score every vertex by the
  objective at the point actually answered (the budget-limited blend), which is never worse.
- ``argmax=True`` is the paper's MAD-argmax: only moves that keep the top-1 class are allowed, so
  honest users' labels are untouched.
"""

from __future__ import annotations

import numpy as np

from extractguard.defenses.base import Defense
from extractguard.defenses.owner_models import fit_student, owner_rows
from extractguard.defenses.simplex import as_bool, as_float, as_int
from extractguard.errors import ConfigurationError
from extractguard.oracle.targets import Target


def gradient_deviation(y: np.ndarray, y_new: np.ndarray, p_student: np.ndarray) -> np.ndarray:
    """Per row, ``||u~ - u||^2`` for the unit last-layer gradients of ``y~`` and ``y`` (0 to 4)."""
    a = y_new - p_student
    b = y - p_student
    na = np.linalg.norm(a, axis=-1)
    nb = np.linalg.norm(b, axis=-1)
    cos = (a * b).sum(axis=-1) / np.maximum(na * nb, 1e-12)
    return 2.0 - 2.0 * np.clip(cos, -1.0, 1.0)


class MAD(Defense):
    """Maximizing Angular Deviation (Orekondy et al. 2020), optionally argmax-preserving.

    Parameters
    ----------
    epsilon: L1 budget per answer, in (0, 2]; the most an honest user's vector may move.
    argmax: keep every row's top-1 class (MAD-argmax).
    student_steps: optimiser steps for the stand-in student fitted in :meth:`fit`.
    seed: seeds the stand-in student.
    """

    name = "mad"

    def __init__(self, epsilon: float = 0.5, argmax: bool = False, student_steps: int = 300, seed: int = 0) -> None:
        self.epsilon = as_float(self.name, "epsilon", epsilon, low=0.0, high=2.0, low_open=True)
        self.argmax = as_bool(self.name, "argmax", argmax)
        self.student_steps = as_int(self.name, "student_steps", student_steps, low=1)
        self.seed = as_int(self.name, "seed", seed)

    def fit(self, target: Target, X: np.ndarray | None = None) -> MAD:
        rows = owner_rows(self.name, target, X)
        self.student_ = fit_student(target, rows, self.student_steps, self.seed)
        return self

    def apply(self, probabilities: np.ndarray, X: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        if not hasattr(self, "student_"):
            raise ConfigurationError("defense 'mad' must be fitted (fit(target, owner_data)) before use")
        y = np.asarray(probabilities, dtype=np.float64)
        n, k = y.shape
        p = self.student_.predict_proba(X)
        vertices = np.eye(k)[None, :, :]  # (1, K, K): candidate targets e_j
        step = vertices - y[:, None, :]  # (n, K, K)
        l1 = np.abs(step).sum(axis=2)  # = 2 (1 - y_j)
        alpha = np.minimum(1.0, self.epsilon / np.maximum(l1, 1e-12))
        top = y.argmax(axis=1)
        if self.argmax:
            # Moving towards e_j (j != top) keeps `top` ahead while (1-a) y_top > (1-a) y_j + a.
            gap = y[np.arange(n), top][:, None] - y
            cap = gap / (1.0 + gap)
            alpha = np.where(np.arange(k)[None, :] == top[:, None], alpha, np.minimum(alpha, cap * (1 - 1e-9)))
        cand = y[:, None, :] + alpha[:, :, None] * step
        score = gradient_deviation(y[:, None, :], cand, p[:, None, :])
        if self.argmax:
            score = np.where(cand.argmax(axis=2) == top[:, None], score, -np.inf)
        best = score.argmax(axis=1)
        out = cand[np.arange(n), best]
        out = np.clip(out, 0.0, None)
        return out / out.sum(axis=1, keepdims=True)
