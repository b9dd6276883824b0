"""Equation-solving extraction of logistic and softmax regression (Tramèr et al. 2016).

Tramèr, Zhang, Juels, Reiter & Ristenpart, "Stealing Machine Learning Models via Prediction
APIs" (USENIX Security 2016), section 4.1: for a softmax model ``p = softmax(W x + b)`` the
log-ratios ``log p_k - log p_j`` are affine in ``x``, so each answered query is a set of linear
equations in the unknown parameters.  Centring the log-probabilities over classes removes the
unidentifiable per-row constant, giving one linear system ``Y = [x, 1] @ Theta`` shared by all
classes: ``d + 1`` generic queries determine it exactly, the information-theoretic minimum.
Scalers in front of the model (a StandardScaler pipeline) keep it affine in the raw input, so
the parameters are recovered in raw-input space.

Saturation: a probability that is exactly 0 (or 1) in float64 has no usable logarithm.  The
query design uses only public knowledge, the schema bounds: it starts at the centre of the input
box, and if that answer is saturated it looks for a point of another class (random points and
random corners of the box) and bisects towards
the decision boundary, where logits are moderate; the ``d`` other queries are small steps from
that anchor along each feature.  A saturated step is re-asked with half the step.  Every one of
these queries counts.

Rounded answers (``rounded:N``) break the exact equations, and a confident model rounds most
answers to one-hot vectors, which carry no log-ratio at all.  Only a probability clearly above
the rounding resolution has a usable logarithm, so the rounded mode designs its queries to land
near many class boundaries, where two or more classes share the probability mass (the boundary
search is our design, in the spirit of Tramèr et al.'s line searches and Lowd & Meek's (2005)
bisection; the paper solves rounded multiclass answers by plain cross-entropy on random points):

0. *opening*: if the box centre's answer is informative, the exact-mode design (the centre and
   one step per feature), which alone gives a usable copy at small budgets;
1. *explore*: random corners of the box (a face, with a random share of features flipped to the
   other end: a linear logit is extreme at corners), read for their labels;
2. *bisect*: segments from each seen class (rarest first) to points of other classes, halved
   until the answer has a second class above 0.1, i.e. a point next to a class boundary.  A
   class with fewer than three boundary points is *hunted*: at the box point where the running
   estimate gives it the largest margin (a linear programme), and by local search around the
   answer where it came closest; once an answer names it, it gets segments of its own;
3. *cloud*: random perturbations around boundary points until the budget is spent, always for
   the class with the fewest informative answers so far (each class needs about d + 1 of its
   own), each point's radius shrinking after an uninformative answer and growing after an
   informative one (about a third come back saturated).

It then solves weighted least squares over every informative triple ``(i, j, x)``:
``log p_i - log p_j = (w_i - w_j) . x + (b_i - b_j)`` with ``j`` the row's top class and the
softmax gauge ``w_0 = 0, b_0 = 0``.  Each equation is weighted by the inverse of its delta-method
standard error under rounding, ``0.5 * 10^-N * sqrt(1/p_i^2 + 1/p_j^2)``.  On digits-logreg (10
classes, 64 features, a victim confident over its whole box) this recovers the model from
``rounded:3`` answers in about 30(d + 1) queries (benchmarks/RESULTS.md).
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
from scipy.optimize import linprog, minimize

from extractguard.attacks.algorithmic import check_output, check_surrogate
from extractguard.attacks.base import Attack, CheckpointCallback
from extractguard.errors import ConfigurationError
from extractguard.oracle import Answer, Oracle
from extractguard.oracle.schema import InputSchema
from extractguard.surrogates.recovered import LinearSoftmaxModel


class EquationSolving(Attack):
    """Exact parameters of a (multiclass) logistic regression from ``d + 1`` queries.

    Parameters
    ----------
    step:
        Size of the design steps from the anchor, as a fraction of each feature's half range.
    spread:
        Rounded mode only: starting radius of the perturbation cloud around each boundary point,
        as a fraction of each feature's half range (then adapted per point).
    explore_fraction:
        Rounded mode only: share of the budget spent on random points read for their labels.
    n_boundaries:
        Rounded mode only: boundary points to find by bisection (default: one per 50 queries of
        the budget, at least two per class, at most eight per class).
    max_anchor_queries:
        Queries allowed for finding a non-saturated anchor before giving up.
    seed:
        Seeds the anchor search and every random choice of rounded mode.
    """

    name = "equation-solving"
    paper = "Tramèr et al. 2016, Stealing Machine Learning Models via Prediction APIs (equation solving)"
    outputs = ("probabilities", "logits", "rounded")

    def __init__(
        self,
        surrogate: str = "recovered",
        step: float = 0.1,
        spread: float = 0.25,
        max_anchor_queries: int = 64,
        explore_fraction: float = 0.1,
        n_boundaries: int | None = None,
        batch_size: int = 100,
        seed: int = 0,
    ) -> None:
        check_surrogate(self.name, surrogate)
        super().__init__(surrogate="recovered", batch_size=batch_size, seed=seed)
        if not 0 < step <= 1:
            raise ConfigurationError(f"equation-solving: step must be in (0, 1], got {step}")
        if not 0 < spread <= 1:
            raise ConfigurationError(f"equation-solving: spread must be in (0, 1], got {spread}")
        if not 0 < explore_fraction < 1:
            raise ConfigurationError(f"equation-solving: explore_fraction must be in (0, 1), got {explore_fraction}")
        if n_boundaries is not None and n_boundaries < 1:
            raise ConfigurationError(f"equation-solving: n_boundaries must be at least 1, got {n_boundaries}")
        self.step = step
        self.spread = spread
        self.explore_fraction = explore_fraction
        self.n_boundaries = n_boundaries
        self.max_anchor_queries = max_anchor_queries

    # -- the loop -------------------------------------------------------------------------
    def fit(
        self,
        oracle: Oracle,
        budget: int | None = None,
        checkpoints: Sequence[int] | None = None,
        callback: CheckpointCallback | None = None,
    ) -> EquationSolving:
        """Query until the system is determined (or, for rounded answers, the budget is spent).

        With a budget below ``d + 1`` the copy is the minimum-norm solution of the
        under-determined system: an honest partial result at the real query count.
        """
        self._check_input_kind(oracle.schema)  # text has no lines to solve along
        check_output(self.name, oracle, self.outputs)
        self._mode = oracle.output.kind
        self._decimals = int(oracle.output.decimals) if self._mode == "rounded" else 0
        super().fit(oracle, budget, checkpoints, callback)
        return self

    def _start(self, schema: InputSchema, rng: np.random.Generator) -> None:
        self._rng = rng
        self._low = np.asarray(schema.low, dtype=np.float64)
        self._high = np.asarray(schema.high, dtype=np.float64)
        self._center = (self._low + self._high) / 2
        self._half = (self._high - self._low) / 2
        # A feature the schema pins to one value cannot be varied, and never needs to be.
        self._free = np.flatnonzero(self._half > 0)
        self._n_classes = schema.n_classes
        self._phase = "anchor"
        self._pending: list[tuple[str, np.ndarray, int]] = [("anchor", self._center.copy(), 0)]
        self._anchor: np.ndarray | None = None
        self._anchor_queries = 0
        self._far: tuple[np.ndarray, int] | None = None  # saturated point and its label
        self._other: np.ndarray | None = None  # point of another label, for bisection
        self._good = 0
        self._saturated: list[np.ndarray] = []
        if self._mode == "rounded":
            self._start_rounded()

    def _is_saturated(self, answer: Answer) -> np.ndarray:
        assert answer.scores is not None
        s = answer.scores
        if self._mode == "logits":
            return ~np.all(np.isfinite(s), axis=1)
        if self._mode == "rounded":
            # Fewer than two classes clearly above the rounding resolution: no log-ratio to read.
            return (s > self._threshold).sum(axis=1) < 2
        return ~np.all(s > 0, axis=1)

    def _select(self, n: int) -> np.ndarray | None:
        if self._mode == "rounded":
            return self._select_rounded(n)
        if self._pending:
            kind = self._pending[0][0]
            take = 1 if kind != "design" else n
            rows = []
            while self._pending and len(rows) < take and self._pending[0][0] == kind:
                rows.append(self._pending.pop(0))
            self._batch = rows
            return np.stack([r[1] for r in rows])
        return None

    def _design(self, anchor: np.ndarray) -> None:
        """The anchor plus one step along each free feature, staying inside the bounds."""
        self._anchor = anchor
        self._phase = "design"
        for i in self._free:
            self._queue_step(i, self.step)

    def _queue_step(self, i: int, step: float) -> None:
        assert self._anchor is not None
        h = step * self._half[i]
        x = self._anchor.copy()
        x[i] = x[i] + h if x[i] + h <= self._high[i] else x[i] - h
        self._pending.append(("design", x, int(i)))

    def _observe(self, X: np.ndarray, answer: Answer) -> None:
        sat = self._is_saturated(answer)
        self._X.append(X)
        self._Y.append(np.asarray(answer.scores, dtype=np.float64))
        self._saturated.append(sat)
        if self._mode == "rounded":
            self._observe_rounded(np.asarray(answer.scores, dtype=np.float64), sat)
            return
        for (kind, x, i), s, label in zip(self._batch, sat, answer.labels):
            if kind == "anchor":
                self._observe_anchor(x, bool(s), int(label))
            elif kind == "design":
                if not s:
                    self._good += 1
                else:
                    # Halve the step until the answer is informative again (costs a query each).
                    dist = abs(x[i] - self._anchor[i]) / self._half[i] if self._anchor is not None else 0.0
                    if dist > 1e-9:
                        self._queue_step(i, dist / 2)
        if self._phase == "design" and not any(k == "design" for k, _, _ in self._pending):
            self._phase = "done"

    def _observe_anchor(self, x: np.ndarray, saturated: bool, label: int) -> None:
        self._anchor_queries += 1
        if not saturated:
            self._good += 1
            self._design(x)
            return
        if self._far is None:
            self._far = (x, label)
        elif label != self._far[1]:
            self._other = x
        else:
            self._far = (x, label) if self._other is not None else self._far
        if self._anchor_queries >= self.max_anchor_queries:
            raise ConfigurationError(
                f"{self.name}: every answer was saturated (probabilities of exactly 0 or 1) after "
                f"{self._anchor_queries} queries; the model is too confident on its input domain"
            )
        if self._other is None:
            # Alternate uniform points with random corners of the box: a linear logit varies
            # most between corners (its extremes over a box are corners), which matters when
            # the data, and the other class, live in a small corner of the documented domain.
            if self._anchor_queries % 2:
                nxt = np.where(self._rng.random(self._low.shape[0]) < 0.5, self._low, self._high)
            else:
                nxt = self._rng.uniform(self._low, self._high)
        else:
            # Logits are affine along the segment and change sign between the two labels.
            nxt = (self._far[0] + self._other) / 2
        self._pending.insert(0, ("anchor", nxt, 0))

    # -- rounded answers: boundary search, then perturbation clouds ----------------------------
    def _start_rounded(self) -> None:
        self._resolution = 10.0 ** -self._decimals
        # "Clearly above the resolution": the rounding error is then at most a quarter of p.
        self._threshold = 2 * self._resolution
        budget = self._budget
        c = self._n_classes
        n_explore = max(2 * c, int(self.explore_fraction * budget))
        n_explore = max(1, min(n_explore, budget // 2))
        self._explore = self._explore_points(n_explore)
        self._explore_labels: list[int] = []
        self._explore_p2: list[float] = []
        self._explore_pairs: list[tuple[int, int]] = []
        self._n_segments = self.n_boundaries or int(np.clip(budget // 50, 2 * c, 8 * c))
        self._segments: list[list[Any]] = []  # [x_fixed, label_fixed, x_other, steps]
        self._boundaries: list[np.ndarray] = []
        self._radius: list[float] = []
        self._pairs: list[tuple[int, int]] = []  # the two top classes at each boundary point
        self._turn = np.zeros(c, dtype=int)  # per class: which of its boundary points is next
        self._covered = np.zeros(c, dtype=int)  # boundary points with the class among the top two
        self._informative = np.zeros(c, dtype=int)  # answers where the class has a usable log
        self._hunt_tries = np.zeros(c)
        self._hunt: list[tuple[np.ndarray, int]] = []  # queued (point, class hunted)
        self._since_hunt = 0
        self._hunt_spent = 0
        self._hunt_every = max(25, budget // 40)
        # First the exact-mode design if the box centre is informative: d + 1 answers that
        # already give a usable copy at small budgets, and stay useful equations later.
        self._opening: list[np.ndarray] = [self._center.copy()]
        self._phase = "opening"

    def _explore_points(self, n: int) -> np.ndarray:
        """Random corners of the box: each row starts on one face and flips a random share.

        A linear logit takes its extremes at corners, so a class that wins anywhere in the box
        wins at some corner; flipping a small share (Beta(1, 3)) from a face (natural data often
        sits on one, e.g. blank pixels) reaches classes uniform points almost never hit.
        """
        d = self._low.shape[0]
        base = self._rng.random((n, 1)) < 0.5
        flip = self._rng.random((n, d)) < self._rng.beta(1.0, 3.0, size=(n, 1))
        return np.where(base ^ flip, self._high, self._low)

    def _select_rounded(self, n: int) -> np.ndarray | None:
        if self._phase == "opening":
            X = np.stack(self._opening[:n])
            del self._opening[:n]
            self._batch = [("opening", 0) for _ in range(len(X))]
            return X
        if self._phase == "explore":
            start = len(self._explore_labels)
            X = self._explore[start : start + n]
            self._batch = [("explore", start + k) for k in range(len(X))]
            return X
        if self._phase == "cloud" and self._since_hunt >= self._hunt_every:
            self._since_hunt = 0
            self._plan_hunt()
        if self._hunt:
            self._batch = [("hunt", k) for _, k in self._hunt[:n]]
            X = np.stack([x for x, _ in self._hunt[:n]])
            del self._hunt[:n]
            self._hunt_spent += len(X)
            return X
        if self._phase == "bisect":
            active = [k for k, seg in enumerate(self._segments) if seg is not None][:n]
            self._batch = [("bisect", k) for k in active]
            return np.stack([(self._segments[k][0] + self._segments[k][2]) / 2 for k in active])
        picks = self._pick_anchors(n)
        self._since_hunt += n
        d = self._low.shape[0]
        r = np.array([self._radius[k] for k in picks])[:, None]
        u = self._rng.uniform(-1.0, 1.0, size=(n, d)) * r * self._half
        X = np.clip(np.stack([self._boundaries[k] for k in picks]) + u, self._low, self._high)
        self._batch = [("cloud", k) for k in picks]
        return X

    def _observe_rounded(self, S: np.ndarray, saturated: np.ndarray) -> None:
        X = self._X[-1]
        top2 = np.sort(S, axis=1)[:, -2:] if S.shape[1] > 1 else np.column_stack([np.zeros(len(S)), S[:, 0]])
        labels = S.argmax(axis=1)
        usable = S > self._threshold
        self._informative += (usable & (usable.sum(axis=1, keepdims=True) >= 2)).sum(axis=0)
        pairs = np.argsort(S, axis=1, kind="stable")[:, -2:]
        for (kind, k), x, sat, p2, label, pair in zip(self._batch, X, saturated, top2[:, 0], labels, pairs):
            if kind == "opening" and not sat and np.array_equal(x, self._center):
                for i in self._free:
                    step = self._center.copy()
                    step[i] += self.step * self._half[i]
                    self._opening.append(step)
            if kind == "explore":
                self._explore_labels.append(int(label))
                self._explore_p2.append(float(p2))
                self._explore_pairs.append((int(pair[1]), int(pair[0])))
            elif kind == "bisect":
                seg = self._segments[k]
                seg[3] += 1
                if p2 >= 0.1 or seg[3] >= 50:  # two classes share the mass: next to a boundary
                    self._add_boundary(x, (int(pair[0]), int(pair[1])))
                    self._segments[k] = None
                elif label == seg[1]:
                    seg[0] = x
                else:  # keep the fixed (rarer) class at one end, whatever the other label is
                    seg[2] = x
            elif kind == "hunt":
                if label == k:  # found the class: bisect from it towards the commonest ones
                    self._segments_from(x, int(label), 3)
                else:
                    self._hunt_tries[k] += 1 / 8  # a round is one LP point and seven local steps
            if kind in ("hunt", "cloud") and p2 >= 0.1 and self._covered[pair].min() < 3:
                # A chance boundary point of a thinly covered class: perturb around it too.
                self._add_boundary(x, (int(pair[0]), int(pair[1])))
            if kind == "cloud":
                # Aim for about a third uninformative answers: shrink after one, grow after another.
                self._radius[k] = self._radius[k] * 0.7 if sat else min(1.0, self._radius[k] * 1.2)
        if self._phase == "opening" and not self._opening:
            self._phase = "explore"
        if self._phase == "explore" and len(self._explore_labels) == len(self._explore):
            self._plan_segments()
        if any(seg is not None for seg in self._segments):
            self._phase = "bisect"
        elif self._phase == "bisect":
            self._phase = "cloud"
            self._since_hunt = self._hunt_every  # look for classes still missing right away

    def _segments_from(self, x: np.ndarray, label: int, n: int) -> None:
        labels = np.array(self._explore_labels)
        counts = np.bincount(labels, minlength=self._n_classes)
        for b in [int(c) for c in np.argsort(-counts, kind="stable") if counts[c] > 0 and c != label][:n]:
            self._segments.append([x, label, self._explore[self._rng.choice(np.flatnonzero(labels == b))], 0])

    @staticmethod
    def _refine_cross_entropy(design: np.ndarray, S: np.ndarray, theta: np.ndarray) -> np.ndarray:
        """A few cross-entropy steps from the least-squares solution, for hunting only.

        Least squares ignores answers that round a class to zero; cross-entropy counts them as
        evidence that the class is not there, which is what steers the hunt away from misses.
        """
        P = S / np.where(S.sum(axis=1, keepdims=True) > 0, S.sum(axis=1, keepdims=True), 1.0)
        n, k = design.shape
        c = P.shape[1]

        def loss(flat: np.ndarray) -> tuple[float, np.ndarray]:
            Z = design @ flat.reshape(k, c)
            Z = Z - Z.max(axis=1, keepdims=True)
            logq = Z - np.log(np.exp(Z).sum(axis=1, keepdims=True))
            return float(-(P * logq).sum() / n), (design.T @ (np.exp(logq) - P) / n).ravel()

        res = minimize(loss, theta.ravel(), jac=True, method="L-BFGS-B", options={"maxiter": 200})
        return res.x.reshape(k, c)

    def _plan_hunt(self) -> None:
        """Query the box point the current estimate thinks most typical of each missing class.

        A class with no boundary point yet is only weakly constrained (through small
        probabilities elsewhere); the point maximising its estimated margin over every other
        class (a linear programme over the box) is where it most likely wins.  Found, it gets
        segments to bisect like the explored classes; missed, the answer still adds equations.
        """
        missing = [k for k in range(self._n_classes) if self._covered[k] < 3 and self._hunt_tries[k] < 32]
        if not missing or self._hunt_spent >= 0.2 * self._budget:  # the cloud keeps most of it
            return
        X = np.concatenate(self._X)
        S = np.concatenate(self._Y)
        U = (X[:, self._free] - self._center[self._free]) / self._half[self._free]
        design = np.column_stack([U, np.ones(U.shape[0])])
        theta = self._refine_cross_entropy(design, S, self._weighted_log_ratio_fit(design, S))
        m = U.shape[1]
        for k in missing:
            others = [j for j in range(self._n_classes) if j != k]
            G = theta[:, others] - theta[:, [k]]  # logit_j - logit_k = G[:-1].u + G[-1]
            A = np.column_stack([G[:-1].T, np.ones(len(others))])
            cost = np.zeros(m + 1)
            cost[-1] = -1.0  # maximise the margin t: logit_k - logit_j >= t for every j
            res = linprog(cost, A_ub=A, b_ub=-G[-1], bounds=[(-1, 1)] * m + [(None, None)], method="highs")
            u = res.x[:m] if res.status == 0 else self._rng.uniform(-1, 1, m)
            x = self._center.copy()
            x[self._free] += u * self._half[self._free]
            self._hunt.append((x, k))
            # And a few steps around the answer where the class came closest so far (a local
            # search that needs no estimate, for classes whose region is small).
            best = X[int(np.argmax(S[:, k]))]
            for _ in range(7):
                r = np.exp(self._rng.uniform(np.log(0.02), np.log(0.3)))
                step = self._rng.uniform(-r, r, size=best.shape) * self._half
                self._hunt.append((np.clip(best + step, self._low, self._high), k))

    def _add_boundary(self, x: np.ndarray, pair: tuple[int, int]) -> None:
        self._boundaries.append(x)
        self._radius.append(self.spread)
        self._pairs.append(pair)
        self._covered[list(pair)] += 1

    def _pick_anchors(self, n: int) -> list[int]:
        """Boundary points for the next cloud queries, neediest class first.

        Every class's parameters need about d + 1 independent equations of its own; a class
        with one small region gets one boundary point, so a plain round-robin would starve it.
        """
        counts = self._informative.astype(float).copy()
        has = self._covered > 0
        owners = [[b for b, pr in enumerate(self._pairs) if c in pr] for c in range(self._n_classes)]
        picks = []
        for _ in range(n):
            c = int(np.argmin(np.where(has, counts, np.inf)))
            b = owners[c][self._turn[c] % len(owners[c])]
            self._turn[c] += 1
            picks.append(b)
            counts[list(self._pairs[b])] += 1  # expect both classes of the pair to be informative
        return picks

    def _plan_segments(self) -> None:
        """Segments from each seen class (rarest first, in turn) to points of the other classes."""
        labels = np.array(self._explore_labels)
        counts = np.bincount(labels, minlength=self._n_classes)
        seen = [int(c) for c in np.argsort(counts, kind="stable") if counts[c] > 0]
        if len(seen) > 1:
            by_size = sorted(seen, key=lambda c: -counts[c])
            for s in range(self._n_segments):
                a = seen[s % len(seen)]
                others = [c for c in by_size if c != a]
                b = others[(s // len(seen)) % len(others)]
                xa = self._explore[self._rng.choice(np.flatnonzero(labels == a))]
                xb = self._explore[self._rng.choice(np.flatnonzero(labels == b))]
                self._segments.append([xa, a, xb, 0])
            self._phase = "bisect"
        else:
            # One label everywhere: perturb the least saturated points instead.
            for i in np.argsort(-np.array(self._explore_p2), kind="stable")[: self._n_segments]:
                self._add_boundary(self._explore[i], self._explore_pairs[i])
            self._phase = "cloud"

    def _weighted_log_ratio_fit(self, design: np.ndarray, S: np.ndarray) -> np.ndarray:
        """Weighted least squares on the log-ratios of clearly non-zero rounded probabilities.

        Rows are accumulated into a QR factor chunk by chunk, so memory stays at one chunk
        whatever the budget; a small ridge sends unconstrained directions (a class never seen
        informative) to zero instead of to whatever the noise suggests.
        """
        n, k = design.shape
        c = S.shape[1]
        top = S.argmax(axis=1)
        r_idx, i_idx = np.nonzero(S > self._threshold)
        keep = (i_idx != top[r_idx]) & (S[r_idx, top[r_idx]] > self._threshold)
        r_idx, i_idx = r_idx[keep], i_idx[keep]
        j_idx = top[r_idx]
        if r_idx.size == 0:
            return np.zeros((k, c))
        pi, pj = S[r_idx, i_idx], S[r_idx, j_idx]
        sd = 0.5 * self._resolution * np.sqrt(1 / pi**2 + 1 / pj**2)  # delta method
        rhs = (np.log(pi) - np.log(pj)) / sd
        R = np.zeros((0, (c - 1) * k + 1))
        chunk = 4096
        for start in range(0, r_idx.size, chunk):
            sl = slice(start, start + chunk)
            m = r_idx[sl].size
            M = np.zeros((m, c, k))
            rows = design[r_idx[sl]] / sd[sl, None]
            M[np.arange(m), i_idx[sl]] += rows
            M[np.arange(m), j_idx[sl]] -= rows
            block = np.column_stack([M[:, 1:].reshape(m, -1), rhs[sl]])  # gauge: class 0 is zero
            R = np.linalg.qr(np.vstack([R, block]), mode="r")
        # A small ridge (in the normalised input space, against equations weighted by 1/sd, i.e.
        # hundreds to thousands) keeps a barely constrained class from taking huge logits.
        ridge = np.column_stack([0.1 * np.eye(R.shape[1] - 1), np.zeros(R.shape[1] - 1)])
        R = np.linalg.qr(np.vstack([R, ridge]), mode="r")
        sol = np.linalg.lstsq(R[:, :-1], R[:, -1], rcond=None)[0]
        theta = np.column_stack([np.zeros(k), sol.reshape(c - 1, k).T])
        return theta - theta.mean(axis=1, keepdims=True)

    # -- solving --------------------------------------------------------------------------
    def fit_surrogate(self, schema: InputSchema) -> LinearSoftmaxModel:
        X = np.concatenate(self._X)
        S = np.concatenate(self._Y)
        sat = np.concatenate(self._saturated)
        U = (X[:, self._free] - self._center[self._free]) / self._half[self._free]
        design = np.column_stack([U, np.ones(U.shape[0])])
        if self._mode == "rounded":
            theta = self._weighted_log_ratio_fit(design, S)
        else:
            keep = ~sat
            if not keep.any():
                raise ConfigurationError(f"{self.name}: no unsaturated answer to solve from")
            Y = S[keep] if self._mode == "logits" else np.log(S[keep])
            Y = Y - Y.mean(axis=1, keepdims=True)
            # Minimum-norm solution when under-determined (budget < d + 1): a partial copy.
            theta = np.linalg.lstsq(design[keep], Y, rcond=None)[0]
        return self._to_raw(theta, schema.n_features)

    def _to_raw(self, theta: np.ndarray, n_features: int) -> LinearSoftmaxModel:
        """Undo the public normalisation ``u = (x - centre) / half_range`` on free features."""
        free = self._free
        A, a0 = theta[:-1], theta[-1]
        coef = np.zeros((theta.shape[1], n_features))
        coef[:, free] = (A / self._half[free, None]).T
        intercept = a0 - (self._center[free] / self._half[free]) @ A
        return LinearSoftmaxModel(coef, intercept)

    def params(self) -> dict[str, Any]:
        out = super().params()
        out.pop("surrogate", None)
        return out
