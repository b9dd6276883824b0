"""Decision-tree path finding (Tramèr et al. 2016).

Tramèr, Zhang, Juels, Reiter & Ristenpart, "Stealing Machine Learning Models via Prediction
APIs" (USENIX Security 2016), section 4.2: a tree that returns a leaf identifier, or a
confidence vector that differs between leaves, lets an attacker find every split by line
searches: moving one feature while the others stay fixed, the answer changes exactly where the
path through the tree changes.  The answer vector serves as the leaf identifier.  Leaves that
return identical vectors (pure leaves of a tree all answer ``[1, 0]``) cannot be told apart and
are merged: the rebuilt model gives the same answer on them, so nothing observable is lost, but
the copy has fewer leaves, and the search cannot rely on "one identifier = one box".

Our variant rebuilds the partition top-down over the documented input box.  In a box ``B`` it
looks for two points with different answers: the centre against random points of ``B``, then
against points on the axis lines through the centre.  Between two such points it walks a
staircase (one coordinate at a time), so one step joins two answers along a single feature, and
bisects that step to the threshold (to ``eps`` of the feature's range).  Any place where the
answer changes along an axis line is a real split of the victim, so ``B`` is cut there and both
halves are explored.  A box where no probe differs becomes a leaf.  Because merged leaves break
Tramèr's "each leaf is one box" reasoning, the leaf test is statistical: a region of another
answer that no probe of its box hits is missed, which is where fidelity below 1 comes from;
``probes`` and ``line_points`` trade queries for that risk.
"""

from __future__ import annotations

from typing import Any, Hashable

import numpy as np

from extractguard.attacks.algorithmic import AlgorithmicAttack, CountedOracle
from extractguard.errors import ConfigurationError
from extractguard.oracle import Answer
from extractguard.surrogates.recovered import RegionNode, RegionTreeModel


class PathFinding(AlgorithmicAttack):
    """Rebuild a decision tree's regions from leaf identifiers or confidence vectors.

    Parameters
    ----------
    eps:
        Threshold precision as a fraction of each feature's documented range.  Fine by default:
        tree thresholds are midpoints between training values, so natural inputs (a probe row
        equal to such a midpoint) can sit within 1e-7 of one.
    probes:
        Random points per box checked against its centre (default: twice the free features).
    line_points:
        Points on each axis line through a box's centre, ends included, checked before the box
        is declared a leaf.
    max_depth:
        Deepest split recursion (bounds the run on targets that are not trees).
    decimals:
        Answers equal to this many decimals identify the same leaf.
    seed:
        Seeds the random probes.
    """

    name = "path-finding"
    paper = "Tramèr et al. 2016, Stealing Machine Learning Models via Prediction APIs (path finding)"
    outputs = ("probabilities", "rounded", "top_k", "logits", "label")

    def __init__(
        self,
        eps: float = 1e-9,
        probes: int | None = None,
        line_points: int = 4,
        max_depth: int = 40,
        decimals: int = 10,
        surrogate: str = "recovered",
        seed: int = 0,
    ) -> None:
        super().__init__(surrogate=surrogate, seed=seed)
        if not 0 < eps < 0.5:
            raise ConfigurationError(f"path-finding: eps must be in (0, 0.5), got {eps}")
        if probes is not None and probes < 0:
            raise ConfigurationError(f"path-finding: probes must be >= 0, got {probes}")
        if line_points < 2:
            raise ConfigurationError(f"path-finding: line_points must be >= 2 (the two ends), got {line_points}")
        if max_depth < 1:
            raise ConfigurationError("path-finding: max_depth must be >= 1")
        self.eps = eps
        self.probes = probes
        self.line_points = line_points
        self.max_depth = max_depth
        self.decimals = decimals

    # -- answers as leaf identifiers --------------------------------------------------------
    def _ids(self, answer: Answer) -> list[Hashable]:
        if answer.scores is not None:
            vals = np.round(answer.scores, self.decimals)
            return [tuple(row) for row in vals.tolist()]
        if answer.top_indices is not None and answer.top_values is not None:
            vals = np.round(answer.top_values, self.decimals)
            return [(tuple(i), tuple(v)) for i, v in zip(answer.top_indices.tolist(), vals.tolist())]
        return [int(label) for label in answer.labels]

    def _ask(self, X: np.ndarray) -> tuple[list[Hashable], np.ndarray]:
        answer = self._oracle.query(X)
        return self._ids(answer), answer.soft_labels()

    # -- the attack -----------------------------------------------------------------------
    def _extract(self, oracle: CountedOracle, rng: np.random.Generator) -> RegionTreeModel:
        schema = oracle.schema
        if schema.is_text:
            raise ConfigurationError(f"{self.name} needs numeric inputs; this target takes text")
        self._oracle = oracle
        self._rng = rng
        low, high = np.asarray(schema.low, np.float64), np.asarray(schema.high, np.float64)
        self._tol = self.eps * (high - low)
        self._free = np.flatnonzero(high > low)
        if self._free.size == 0:
            raise ConfigurationError(f"{self.name}: the schema pins every feature to one value")
        self._n_probes = 2 * self._free.size if self.probes is None else int(self.probes)
        self._active: set[int] = set()
        self.leaves_ = 0
        self.splits_ = 0
        root = self._explore(low.copy(), high.copy(), 0)
        return RegionTreeModel(root, schema.n_classes, self.leaves_)

    def _explore(self, lo: np.ndarray, hi: np.ndarray, depth: int) -> RegionNode:
        c = (lo + hi) / 2
        (cid,), soft = self._ask(c[None, :])
        split = self._find_split(c, cid, lo, hi) if depth < self.max_depth else None
        if split is None:
            self.leaves_ += 1
            return RegionNode(value=soft[0])
        i, t = split
        self.splits_ += 1
        left_hi, right_lo = hi.copy(), lo.copy()
        left_hi[i], right_lo[i] = t, t
        left = self._explore(lo.copy(), left_hi, depth + 1)
        right = self._explore(right_lo, hi.copy(), depth + 1)
        return RegionNode(feature=int(i), threshold=float(t), left=left, right=right)

    def _find_split(self, c: np.ndarray, cid: Hashable, lo: np.ndarray, hi: np.ndarray) -> tuple[int, float] | None:
        """A threshold (feature, value) of the victim strictly inside the box, or None."""
        free = self._free[hi[self._free] - lo[self._free] > 2 * self._tol[self._free]]
        if free.size == 0:
            return None
        # 1. Random points of the box: cheap coverage of its volume, on every feature.
        if self._n_probes:
            P = np.repeat(c[None, :], self._n_probes, axis=0)
            P[:, free] = self._rng.uniform(lo[free], hi[free], size=(self._n_probes, free.size))
            ids, _ = self._ask(P)
            for p, pid in zip(P, ids):
                if pid != cid:
                    return self._new(*self._staircase(c, cid, p, free))
        # 2. Axis lines through the centre along the features the victim is known to split on:
        #    thin slabs that random points miss.  Features never seen splitting are left to the
        #    random points, which keeps a leaf's cost from growing with unused features.
        active = [int(i) for i in free if int(i) in self._active]
        if not active:
            return None
        grid = np.linspace(0.0, 1.0, self.line_points)
        rows, where = [], []
        for i in active:
            for g in grid:
                x = c.copy()
                x[i] = lo[i] + g * (hi[i] - lo[i])
                if x[i] != c[i]:
                    rows.append(x)
                    where.append(i)
        ids, _ = self._ask(np.stack(rows))
        # Nearest differing point on a line, so the bisection starts from a short bracket.
        best: tuple[float, int, float] | None = None
        for x, i, pid in zip(rows, where, ids):
            if pid != cid:
                dist = abs(x[i] - c[i]) / (hi[i] - lo[i])
                if best is None or dist < best[0]:
                    best = (dist, i, float(x[i]))
        if best is None:
            return None
        _, i, end = best
        return self._new(i, self._bisect(c, i, c[i], end, cid))

    def _new(self, i: int, t: float) -> tuple[int, float]:
        self._active.add(i)
        return i, t

    def _staircase(self, c: np.ndarray, cid: Hashable, p: np.ndarray, free: np.ndarray) -> tuple[int, float]:
        """From c to p one coordinate at a time; bisect the first step where the answer changes."""
        steps = []
        x = c.copy()
        for i in free:
            x = x.copy()
            x[i] = p[i]
            steps.append(x)
        # The last step is p itself, already known to differ: do not pay for it again.
        ids, _ = self._ask(np.stack(steps[:-1])) if len(steps) > 1 else ([], None)
        prev, prev_id = c, cid
        for k, i in enumerate(free):
            sid = ids[k] if k < len(ids) else None
            if k == len(free) - 1 or sid != prev_id:
                # The change is on this step, which moves feature i only.
                return int(i), self._bisect(prev, int(i), prev[i], steps[k][i], prev_id)
            prev = steps[k]
        raise AssertionError("unreachable")  # pragma: no cover

    def _bisect(self, x0: np.ndarray, i: int, inside: float, outside: float, cid: Hashable) -> float:
        """Shrink [inside, outside] on feature i (answer ``cid`` at ``inside``) to a threshold."""
        x = x0.copy()
        while abs(outside - inside) > self._tol[i]:
            x[i] = (inside + outside) / 2
            (mid,), _ = self._ask(x[None, :])
            if mid == cid:
                inside = x[i]
            else:
                outside = x[i]
        return (inside + outside) / 2

    def params(self) -> dict[str, Any]:
        return {"eps": self.eps, "probes": self.probes, "line_points": self.line_points,
                "max_depth": self.max_depth, "decimals": self.decimals, "seed": self.seed}
