"""What every streaming extraction detector shares.

A detector is a small fitted object (parameters + what it learnt from the owner's reference data)
and holds *no* per-account state itself: :meth:`Detector.new_state` makes a fresh state (a dict of
numpy arrays of fixed size) and :meth:`Detector.update` advances one account's state by one
request.  Keeping state explicit and bounded is what makes it cheap to persist (one blob per
account in SQLite), identical online (gateway) and offline (``extractguard detect LOGS``), and
flat in cost however long an account's history grows.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from extractguard.errors import ConfigurationError

State = dict[str, np.ndarray]


@dataclass(frozen=True)
class Observation:
    """One answered request as a detector sees it.

    ``X`` is ``None`` when only outputs were logged (a gateway audit log stores a digest of the
    inputs, not the inputs); ``probabilities`` is ``None`` when only labels are known.
    """

    labels: np.ndarray
    ts: float
    X: np.ndarray | None = None
    probabilities: np.ndarray | None = None

    def __len__(self) -> int:
        return int(self.labels.shape[0])


@dataclass(frozen=True)
class Signal:
    """One statistic of one detector for one account.

    ``level`` is the statistic scaled so that 1.0 is the detector's calibrated alarm threshold:
    levels from different detectors are comparable and ``level >= 1`` means the signal fired.
    """

    detector: str
    name: str
    value: float
    threshold: float
    level: float
    queries: int
    detail: str

    @property
    def fired(self) -> bool:
        return self.level >= 1.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "detector": self.detector, "signal": self.name, "value": round(float(self.value), 6),
            "threshold": round(float(self.threshold), 6), "level": round(float(self.level), 4),
            "queries": int(self.queries), "detail": self.detail,
        }


@dataclass
class Reference:
    """The owner's view of normal traffic: held-out rows and the model's probabilities on them.

    Detectors calibrate their thresholds on it (bootstrap windows of honest-looking traffic), so
    an alarm means "unlike the owner's own data", not an arbitrary constant.  Held-out rows are
    better than training rows: a model is over-confident on the rows it was trained on.
    """

    X: np.ndarray
    probabilities: np.ndarray

    def __post_init__(self) -> None:
        self.X = np.asarray(self.X, dtype=np.float64).reshape(len(self.X), -1)
        self.probabilities = np.asarray(self.probabilities, dtype=np.float64)
        if len(self.X) < 50:
            raise ConfigurationError(f"detection needs at least 50 reference rows of the owner's data, got {len(self.X)}")
        if len(self.X) != len(self.probabilities):
            raise ConfigurationError("reference rows and probabilities differ in length")

    @classmethod
    def from_target(cls, target: Any, X: np.ndarray, max_rows: int = 4000, seed: int = 0) -> Reference:
        """Ask the owner's model (a :class:`~extractguard.oracle.targets.Target`) about ``X``."""
        X = np.asarray(X, dtype=np.float64).reshape(len(X), -1)
        if len(X) > max_rows:
            X = X[np.random.default_rng(seed).choice(len(X), max_rows, replace=False)]
        return cls(X, target.predict(X).probabilities)

    @property
    def n_classes(self) -> int:
        return int(self.probabilities.shape[1])

    @property
    def n_features(self) -> int:
        return int(self.X.shape[1])


class Detector(ABC):
    """Base class: ``fit(reference)`` once, then ``update(state, observation)`` per request."""

    name: ClassVar[str] = ""
    paper: ClassVar[str] = ""
    needs_inputs: ClassVar[bool] = False
    needs_probabilities: ClassVar[bool] = False
    #: What :func:`~extractguard.detect.monitor.build_detectors` passes the constructor by keyword,
    #: out of ``n_classes``, ``n_features``, ``baseline_rows_per_hour`` and ``seed``; one uniform
    #: build step instead of a branch per detector.
    context: ClassVar[tuple[str, ...]] = ("seed",)

    def fit(self, reference: Reference | None) -> Detector:
        """Calibrate on the owner's data (detectors that need none ignore it)."""
        return self

    def usable(self, obs: Observation) -> bool:
        return (obs.X is not None or not self.needs_inputs) and (obs.probabilities is not None or not self.needs_probabilities)

    @abstractmethod
    def new_state(self) -> State:
        """A fresh, fixed-size state for one account."""

    @abstractmethod
    def update(self, state: State, obs: Observation) -> list[Signal]:
        """Advance ``state`` in place by one request; the account's current signals."""


def check_state(detector: Detector, state: State) -> bool:
    """Whether a stored state fits this detector (same keys, shapes, dtypes)."""
    fresh = detector.new_state()
    return set(fresh) == set(state) and all(fresh[k].shape == state[k].shape and fresh[k].dtype == state[k].dtype for k in fresh)


def entropy(p: np.ndarray) -> np.ndarray:
    """Shannon entropy (nats) of each row of probabilities."""
    q = np.clip(p, 1e-12, 1.0)
    return -(q * np.log(q)).sum(axis=1)


def ring_push(buf: np.ndarray, count: np.ndarray, values: np.ndarray) -> None:
    """Append ``values`` to the ring ``buf`` whose total pushes so far is ``count[0]``."""
    cap = buf.shape[0]
    n = len(values)
    if n == 0:
        return
    if n >= cap:
        values, start = values[-cap:], int(count[0]) + n - cap
    else:
        start = int(count[0])
    idx = (start + np.arange(len(values))) % cap
    buf[idx] = values
    count[0] += n


def ring_view(buf: np.ndarray, count: np.ndarray) -> np.ndarray:
    """The filled part of a ring (order does not matter to its users)."""
    return buf[: min(int(count[0]), buf.shape[0])]


def window_push(buf: np.ndarray, count: np.ndarray, sums: np.ndarray, values: np.ndarray) -> None:
    """Push rows into the ring ``buf`` keeping ``sums`` = column sums of its filled rows.

    O(rows pushed), whatever the window: the statistics of a window come from running sums
    instead of a pass over the whole window on every request.
    """
    cap, n = buf.shape[0], len(values)
    if n == 0:
        return
    start = int(count[0])
    if n >= cap:
        buf[(start + n - cap + np.arange(cap)) % cap] = values[-cap:]
        sums[:] = buf.sum(axis=0)
    else:
        idx = (start + np.arange(n)) % cap if start + n > cap or n > 1 else np.array([start % cap])
        if start >= cap:
            sums -= buf[idx].sum(axis=0)
        elif start + n > cap:
            old = idx[idx < start]
            sums -= buf[old].sum(axis=0)
        buf[idx] = values
        sums += values.sum(axis=0)
    count[0] += n
    if (start // (16 * cap)) != (int(count[0]) // (16 * cap)):  # bound floating-point drift
        sums[:] = buf[: min(int(count[0]), cap)].sum(axis=0)
