"""Fingerprints for models that were never watermarked (IPGuard: Cao, Jia & Gong, AsiaCCS 2021).

A model's decision boundary is its signature: points just on our side of it keep our label in a
copy that imitates our boundary, but fall on either side for a model that learned the task on its
own.  IPGuard finds such points by optimising on the owner's logits; we find them black-box, so
any owner model works (trees, pickles, ONNX, remote): for pairs of the owner's inputs with
different labels, bisection along the segment between them finds the point where our top-class
probability margin equals ``margin`` (small: close to the boundary, still our label).

Optionally the candidates are filtered for *conferrability* (Lukas, Zhang & Kerschbaum, ICLR 2021):
the owner steals its own model (any attack in the suite) to get a few copies, trains a few
independent models, and keeps the candidates that the copies label like us and the independent
models do not.  Those transfer to copies far more than to independent models.

The null rate is *calibrated*, not assumed: :meth:`Fingerprint.calibrate` measures how often
reference models the owner trains independently on the same task agree with us on the points.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from extractguard import __version__
from extractguard.errors import ConfigurationError, DataLoadError, check_readable_file
from extractguard.oracle.targets import Target


def _margin(p: np.ndarray, label: np.ndarray) -> np.ndarray:
    """Probability of ``label`` minus the largest other probability, per row."""
    rows = np.arange(len(p))
    own = p[rows, label]
    q = p.copy()
    q[rows, label] = -np.inf
    return own - q.max(axis=1)


def boundary_points(
    target: Target, X: np.ndarray, n_points: int = 200, margin: float = 0.1, steps: int = 25, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Points where the owner's margin for its label is ``margin``, between inputs of different labels.

    Returns ``(points, owner_labels)``; at most ``n_points`` (fewer if ``X`` has too few pairs).
    """
    if not 0.0 <= margin < 1.0:
        raise ConfigurationError(f"fingerprint margin must be in [0, 1), got {margin}")
    X = np.asarray(X, dtype=np.float64)
    if len(X) < 2:
        raise ConfigurationError("fingerprinting needs at least two of the owner's inputs")
    rng = np.random.default_rng(seed)
    labels = target.predict(X).probabilities.argmax(axis=1)
    if len(np.unique(labels)) < 2:
        raise ConfigurationError("the owner's inputs all get one label: no decision boundary to fingerprint")
    # Candidate pairs (a, b): different labels, a's own margin already above the target margin.
    m0 = _margin(target.predict(X).probabilities, labels)
    cand_a = rng.integers(0, len(X), size=n_points * 4)
    cand_b = rng.integers(0, len(X), size=n_points * 4)
    keep = (labels[cand_a] != labels[cand_b]) & (m0[cand_a] > margin)
    a, b = cand_a[keep][:n_points], cand_b[keep][:n_points]
    if len(a) == 0:
        raise ConfigurationError("no pair of inputs with different labels and a confident first point")
    lab = labels[a]
    lo, hi = np.zeros(len(a)), np.ones(len(a))  # margin(lo) > margin >= margin(hi) (b has another label)
    for _ in range(steps):
        mid = (lo + hi) / 2
        pts = (1 - mid)[:, None] * X[a] + mid[:, None] * X[b]
        above = _margin(target.predict(pts).probabilities, lab) > margin
        lo, hi = np.where(above, mid, lo), np.where(above, hi, mid)
    pts = (1 - lo)[:, None] * X[a] + lo[:, None] * X[b]
    final = target.predict(pts).probabilities.argmax(axis=1)
    ok = final == lab  # keep points that still carry our label (all, unless the model is discontinuous)
    return pts[ok], lab[ok]


@dataclass
class Fingerprint:
    """Fingerprint points with the owner's labels, and the null agreement rate once calibrated."""

    X: np.ndarray
    labels: np.ndarray
    margin: float
    reference_agreements: list[int] = field(default_factory=list)
    reference_names: list[str] = field(default_factory=list)
    confidence: float = 0.95
    p0: float | None = None
    created: str = ""

    @classmethod
    def create(
        cls,
        target: Target,
        X: np.ndarray,
        n_points: int = 200,
        margin: float = 0.2,
        seed: int = 0,
        copies: list[Target] | None = None,
        independents: list[Target] | None = None,
        candidates: int = 5,
    ) -> Fingerprint:
        """Boundary points; with ``copies`` and ``independents``, the most conferrable of
        ``candidates`` times as many.  The calibration references must be *other* models than
        ``independents`` (the selection is tuned against those), see :meth:`calibrate`."""
        import datetime as _dt

        select = bool(copies) and bool(independents)
        pts, lab = boundary_points(target, X, n_points=n_points * (candidates if select else 1), margin=margin, seed=seed)
        if select:
            assert copies is not None and independents is not None
            agree_c = np.mean([m.predict(pts).probabilities.argmax(axis=1) == lab for m in copies], axis=0)
            agree_i = np.mean([m.predict(pts).probabilities.argmax(axis=1) == lab for m in independents], axis=0)
            score = agree_c * (1.0 - agree_i)  # conferrability (Lukas et al. 2021, eq. 1)
            order = np.argsort(-score, kind="stable")[:n_points]
            pts, lab = pts[order], lab[order]
        return cls(pts, lab, margin, created=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"))

    def agreement(self, model: Target) -> int:
        return int((model.predict(self.X).probabilities.argmax(axis=1) == self.labels).sum())

    def calibrate(self, references: list[tuple[str, Target]], confidence: float = 0.95) -> Fingerprint:
        """Null rate p0 = upper ``confidence`` Clopper-Pearson bound of the best reference's agreement."""
        if not references:
            raise ConfigurationError("calibrating a fingerprint needs at least one independently trained reference model")
        self.reference_names = [name for name, _ in references]
        self.reference_agreements = [self.agreement(t) for _, t in references]
        self.confidence = confidence
        self.p0 = null_rate(self.reference_agreements, len(self.labels), confidence)
        return self

    # -- files ----------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {
            "format": "extractguard-fingerprint/1",
            "tool_version": __version__,
            "created": self.created,
            "method": "IPGuard-style boundary points by bisection (Cao, Jia & Gong 2021)",
            "margin": self.margin,
            "inputs": self.X.tolist(),
            "labels": self.labels.tolist(),
            "reference_names": self.reference_names,
            "reference_agreements": self.reference_agreements,
            "confidence": self.confidence,
            "p0": self.p0,
        }

    def save(self, path: Path | str) -> Path:
        p = Path(path)
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(json.dumps(self.to_dict()))
        return p

    @classmethod
    def load(cls, path: Path | str) -> Fingerprint:
        p = Path(path)
        check_readable_file(p, "fingerprint", DataLoadError)
        try:
            d = json.loads(p.read_text())
            if d.get("format") != "extractguard-fingerprint/1":
                raise ValueError("not an extractguard fingerprint")
            fp = cls(np.asarray(d["inputs"], dtype=np.float64), np.asarray(d["labels"], dtype=np.int64), float(d["margin"]),
                     [int(a) for a in d["reference_agreements"]], list(d["reference_names"]), float(d["confidence"]),
                     None if d["p0"] is None else float(d["p0"]), str(d.get("created", "")))
        except (ValueError, KeyError, TypeError) as exc:
            raise DataLoadError(f"{p.name} is not a fingerprint file: {exc}") from None
        if fp.X.ndim != 2 or len(fp.X) != len(fp.labels):
            raise DataLoadError(f"{p.name}: inputs and labels do not match")
        return fp


def null_rate(agreements: list[int], n: int, confidence: float) -> float:
    """The calibrated null: upper Clopper-Pearson bound of the highest reference agreement."""
    from extractguard.verify.ownership import clopper_pearson_upper

    return clopper_pearson_upper(max(agreements), n, 1.0 - confidence)


def own_copies(target: Target, X: np.ndarray, n_copies: int = 2, seed: int = 0) -> list[Target]:
    """Copies of the owner's model stolen by the owner, with the suite's Knockoff attack on ``X``
    (probability answers, one query per row): the "surrogates" of conferrable fingerprinting."""
    from extractguard.attacks import create_attack
    from extractguard.oracle import Oracle
    from extractguard.oracle.targets import CallableTarget

    out: list[Target] = []
    for i in range(n_copies):
        attack = create_attack("knockoff", pool=X, surrogate="auto", seed=seed + 101 + i)
        attack.fit(Oracle(target, budget=len(X)), len(X))
        out.append(CallableTarget(attack.surrogate_.predict_proba, target.schema))
    return out


def fingerprint_model(
    target: Target, X: np.ndarray, y: np.ndarray, n_points: int = 400, margin: float = 0.2,
    n_references: int = 8, seed: int = 0, augment: int = 4, noise: float = 0.06, n_selection: int = 8,
) -> Fingerprint:
    """The whole recipe on the owner's labelled data ``(X, y)``.

    Two own copies stolen with Knockoff from ``augment`` noisy versions of each row (Gaussian,
    ``noise`` times each feature's range: a thief's transfer set is rarely the owner's exact data)
    and ``n_selection`` independent models drive the conferrable selection; ``n_references`` *other*
    independent models (other seeds, 80 % subsamples) calibrate the null rate.  Defaults measured
    on digits (benchmarks/RESULTS.md): margin 0.2 separates copies from independent models best.
    """
    from extractguard.verify.references import train_references

    X = target.schema.validate(X, what="owner data")
    y = np.asarray(y, dtype=np.int64)
    if len(X) != len(y):
        raise ConfigurationError(f"owner data: {len(X)} rows but {len(y)} labels")
    rng = np.random.default_rng(seed)
    low = np.broadcast_to(np.asarray(target.schema.low, dtype=np.float64), X.shape[1:])  # finite: the schema checks
    high = np.broadcast_to(np.asarray(target.schema.high, dtype=np.float64), X.shape[1:])
    span = np.maximum(high - low, 1e-12)
    transfer = X
    if augment > 0:
        noisy = np.repeat(X, augment, axis=0) + rng.normal(size=(augment * len(X), X.shape[1])) * noise * span
        transfer = np.clip(noisy, low, high)
    copies = own_copies(target, transfer, 2, seed)
    selection = [t for _, t in train_references(X, y, target.schema, n_models=n_selection, seed=seed + 1)]
    fp = Fingerprint.create(target, X, n_points=n_points, margin=margin, seed=seed, copies=copies, independents=selection)
    return fp.calibrate(train_references(X, y, target.schema, n_models=n_references, seed=seed + 2))
