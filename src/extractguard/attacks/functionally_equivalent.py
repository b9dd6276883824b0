"""Functionally-equivalent extraction of one-hidden-layer ReLU networks from logits.

Jagielski, Carlini, Berthelot, Kurakin & Papernot, "High Accuracy and High Fidelity Extraction
of Neural Networks" (USENIX Security 2020), and Carlini, Jagielski & Mironov, "Cryptanalytic
Extraction of Neural Network Models" (CRYPTO 2020).  For ``f(x) = A relu(W x + b) + c`` the
logits are piecewise linear in ``x``; along a line they bend exactly where one hidden unit
switches (a *critical point*).  Around a critical point of unit ``j`` the logit Jacobian jumps
by the rank-one matrix ``A_j W_j^T``, so finite differences on both sides give ``W_j`` up to
scale, and ``b_j = -W_j . x*``.  The signs are fixed algebraically: ``relu(-z) = relu(z) - z``,
so fitting the output layer together with a linear skip term ``L x`` puts ``-A_j W_j^T`` into
``L`` for exactly the units whose sign is wrong; they are flipped and the output layer is
re-solved by least squares on every answer already paid for.

Differences from IBM ART's ``FunctionallyEquivalentExtraction`` (1.20.1), which looped past
15 s, miscounted critical points or crashed on dtypes in our runs: the hidden width need not be
known (units are counted by de-duplicating critical points on hyperplanes already found, and the
search stops once several lines bring nothing new *and* the rebuilt network reproduces every
answer); kinks are located by intersecting the two linear pieces (4 queries per isolated kink,
not a bisection); everything runs in float64 on the oracle's answers; and the number of lines,
the recursion depth and the budget bound each run.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from extractguard.attacks.algorithmic import AlgorithmicAttack, CountedOracle
from extractguard.errors import ConfigurationError
from extractguard.surrogates.recovered import ReLUNetworkModel


class FunctionallyEquivalent(AlgorithmicAttack):
    """Recover a one-hidden-layer ReLU network, up to unit permutation and scaling, from logits.

    Parameters
    ----------
    max_lines:
        Most random lines searched for critical points (bounds the run).
    patience:
        Stop after this many consecutive lines bring no new hidden unit and the rebuilt network
        reproduces every answer so far.
    extent:
        Lines run through the box ``[-extent, extent]`` in half ranges around the centre of the
        documented domain.  Hidden hyperplanes are infinite, so a long line crosses nearly all of
        them, while a chord of the domain box often misses those that only clip the corner where
        the data lives.  Targets whose schema enforces its bounds get ``extent = 1``.
    tol:
        Relative tolerance for "the logits are linear here" and for the final reproduction check.
    seed:
        Seeds the random lines.
    """

    name = "functionally-equivalent"
    paper = "Jagielski et al. 2020, High Accuracy and High Fidelity Extraction of Neural Networks; Carlini, Jagielski & Mironov 2020"
    outputs = ("logits",)

    def __init__(
        self,
        max_lines: int = 60,
        patience: int = 3,
        extent: float = 20.0,
        tol: float = 1e-9,
        surrogate: str = "recovered",
        seed: int = 0,
    ) -> None:
        super().__init__(surrogate=surrogate, seed=seed)
        if max_lines < 1 or patience < 1:
            raise ConfigurationError("functionally-equivalent: max_lines and patience must be >= 1")
        if not 0 < tol < 1e-2:
            raise ConfigurationError(f"functionally-equivalent: tol must be in (0, 0.01), got {tol}")
        if extent < 1:
            raise ConfigurationError(f"functionally-equivalent: extent must be >= 1, got {extent}")
        self.max_lines = max_lines
        self.patience = patience
        self.extent = extent
        self.tol = tol

    # -- oracle access in normalised coordinates u = (x - centre) / half_range ---------------
    def _f(self, U: np.ndarray) -> np.ndarray:
        U = np.atleast_2d(U)
        X = np.repeat(self._center[None, :], U.shape[0], axis=0)
        X[:, self._free] = self._center[self._free] + U * self._half[self._free]
        answer = self._oracle.query(X)
        F = np.asarray(answer.scores, dtype=np.float64)
        self._U.append(U.copy())
        self._F.append(F)
        return F

    def _g(self, u0: np.ndarray, v: np.ndarray, t: float) -> np.ndarray:
        return self._f(u0 + t * v)[0]

    def _close(self, a: np.ndarray, b: np.ndarray, scale: float) -> bool:
        return bool(np.max(np.abs(a - b)) <= self.tol * scale)

    # -- critical points along a line ------------------------------------------------------
    def _kinks(
        self, u0: np.ndarray, v: np.ndarray, a: float, fa: np.ndarray, b: float, fb: np.ndarray, depth: int
    ) -> list[tuple[float, float, float]]:
        """Kinks in (a, b) as (t*, left, right): t* with a kink-free bracket around it."""
        scale = 1.0 + max(np.abs(fa).max(), np.abs(fb).max())
        m = (a + b) / 2
        fm = self._g(u0, v, m)
        if self._close(fm, (fa + fb) / 2, scale):
            return []
        if depth <= 0 or b - a < 1e-9:
            return []
        # Assume one kink: intersect the linear pieces seen from both ends, then check.
        eta = 1e-3 * (b - a)
        fa2 = self._g(u0, v, a + eta)
        fb2 = self._g(u0, v, b - eta)
        sa, sb = (fa2 - fa) / eta, (fb - fb2) / eta
        ds = sa - sb
        if np.abs(ds).max() > 0:
            rhs = fb - fa - sb * b + sa * a
            t = float(ds @ rhs / (ds @ ds))
            if a + eta < t < b - eta:
                ft = self._g(u0, v, t)
                if self._close(ft, fa + sa * (t - a), scale) and self._close(ft, fb + sb * (t - b), scale):
                    return [(t, a + eta, b - eta)]
        return self._kinks(u0, v, a, fa, m, fm, depth - 1) + self._kinks(u0, v, m, fm, b, fb, depth - 1)

    # -- one hidden unit from the Jacobian jump at a critical point -------------------------
    def _unit(self, u_star: np.ndarray, v: np.ndarray, room: float) -> np.ndarray | None:
        """Unit-norm weight row (sign unknown), or None if the two sides did not give rank one."""
        n = u_star.shape[0]
        delta = min(1e-2, room / 4)
        eps = delta * 1e-2
        rows = []
        for side in (1.0, -1.0):
            base = u_star + side * delta * v
            rows.append(base)
            rows.extend(base + eps * np.eye(n))
        F = self._f(np.stack(rows))
        grads = [(F[k * (n + 1) + 1 : (k + 1) * (n + 1)] - F[k * (n + 1)]).T / eps for k in (0, 1)]
        G = grads[0] - grads[1]  # (C, n): A_j w_j^T up to sign
        _, s, Vt = np.linalg.svd(G, full_matrices=False)
        if s[0] <= 0 or (len(s) > 1 and s[1] > 1e-4 * s[0]):
            return None
        return Vt[0]

    # -- output layer and signs -----------------------------------------------------------
    def _solve_output(self, W: np.ndarray, b: np.ndarray, U: np.ndarray, F: np.ndarray, skip: bool) -> tuple[np.ndarray, float]:
        H = np.maximum(U @ W.T + b, 0.0)
        cols = [H, U, np.ones((U.shape[0], 1))] if skip else [H, np.ones((U.shape[0], 1))]
        D = np.column_stack(cols)
        theta = np.linalg.lstsq(D, F, rcond=None)[0]
        resid = float(np.abs(D @ theta - F).max())
        return theta, resid

    def _fix_signs(self, W: np.ndarray, b: np.ndarray, U: np.ndarray, F: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        h = W.shape[0]
        theta, _ = self._solve_output(W, b, U, F, skip=True)
        A = theta[:h].T  # (C, h)
        L = theta[h : h + U.shape[1]].T  # (C, n)
        beta = np.linalg.lstsq(W.T, L.T, rcond=None)[0].T  # L = beta @ W, beta (C, h)
        for j in range(h):
            if np.linalg.norm(beta[:, j] + A[:, j]) < np.linalg.norm(beta[:, j]):
                W[j], b[j] = -W[j], -b[j]
        return W, b

    def _rebuild(self) -> tuple[ReLUNetworkModel | None, float]:
        U, F = np.concatenate(self._U), np.concatenate(self._F)
        scale = 1.0 + float(np.abs(F).max())
        if not self._units:
            return None, np.inf
        W = np.stack([w for w, _ in self._units])
        b = np.array([c for _, c in self._units])
        W, b = self._fix_signs(W.copy(), b.copy(), U, F)
        theta, resid = self._solve_output(W, b, U, F, skip=False)
        h = W.shape[0]
        A, c, L = theta[:h].T, theta[h], None
        if resid > 1e3 * self.tol * scale:
            # A unit that never switches inside the domain acts linearly there: keep a skip term.
            theta2, resid2 = self._solve_output(W, b, U, F, skip=True)
            if resid2 < resid:
                A, L, c, resid = theta2[:h].T, theta2[h : h + U.shape[1]].T, theta2[-1], resid2
        return self._to_raw(W, b, A, c, L), resid / scale

    def _to_raw(self, W: np.ndarray, b: np.ndarray, A: np.ndarray, c: np.ndarray, L: np.ndarray | None) -> ReLUNetworkModel:
        free, d = self._free, self._center.shape[0]
        Wr = np.zeros((W.shape[0], d))
        Wr[:, free] = W / self._half[free]
        br = b - W @ (self._center[free] / self._half[free])
        Lr = None
        cr = c.copy()
        if L is not None:
            Lr = np.zeros((L.shape[0], d))
            Lr[:, free] = L / self._half[free]
            cr = cr - L @ (self._center[free] / self._half[free])
        return ReLUNetworkModel(Wr, br, A, cr, Lr)

    # -- the attack -----------------------------------------------------------------------
    def _extract(self, oracle: CountedOracle, rng: np.random.Generator) -> ReLUNetworkModel:
        schema = oracle.schema
        self._oracle = oracle
        low, high = np.asarray(schema.low, np.float64), np.asarray(schema.high, np.float64)
        self._center, self._half = (low + high) / 2, (high - low) / 2
        self._free = np.flatnonzero(self._half > 0)
        n = self._free.shape[0]
        if n == 0:
            raise ConfigurationError(f"{self.name}: the schema pins every feature to one value")
        self._U: list[np.ndarray] = []
        self._F: list[np.ndarray] = []
        self._units: list[tuple[np.ndarray, float]] = []
        R = 1.0 if schema.enforce_bounds else float(self.extent)
        quiet = 0
        model: ReLUNetworkModel | None = None
        self.lines_ = 0
        for _ in range(self.max_lines):
            self.lines_ += 1
            u0 = rng.uniform(-1.0, 1.0, n)
            v = rng.normal(size=n)
            v /= np.linalg.norm(v)
            # The chord of the box [-R, R]^n along the line.
            with np.errstate(divide="ignore"):
                t1, t2 = (-R - u0) / v, (R - u0) / v
            lo, hi = float(np.max(np.minimum(t1, t2))), float(np.min(np.maximum(t1, t2)))
            f_lo, f_hi = self._g(u0, v, lo), self._g(u0, v, hi)
            new = 0
            for t, left, right in self._kinks(u0, v, lo, f_lo, hi, f_hi, depth=40):
                u_star = u0 + t * v
                if any(abs(w @ u_star + c) < 1e-6 for w, c in self._units):
                    continue  # a hyperplane we already know
                w = self._unit(u_star, v, min(t - left, right - t))
                if w is not None:
                    self._units.append((w, float(-w @ u_star)))
                    new += 1
            quiet = 0 if new else quiet + 1
            if quiet >= self.patience:
                model, err = self._rebuild()
                if model is not None and err <= 1e3 * self.tol:
                    break
        if model is None or quiet < self.patience:
            model, err = self._rebuild()
        if model is None:
            raise ConfigurationError(
                f"{self.name}: no critical point found on {self.lines_} lines; the logits look linear "
                "(is this a ReLU network served with logits?)"
            )
        self.hidden_units_ = len(self._units)
        self.reproduction_error_ = err
        return model

    def params(self) -> dict[str, Any]:
        return {"max_lines": self.max_lines, "patience": self.patience, "extent": self.extent, "tol": self.tol, "seed": self.seed}
