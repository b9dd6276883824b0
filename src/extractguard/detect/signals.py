"""Operational signals: query rate vs a baseline, input typicality and diversity, output shifts.

Each compares an account's recent window with the owner's reference traffic.  Window thresholds
come from bootstrap windows of the owner's held-out data (:class:`~extractguard.detect._calibrate.Band`),
so an alarm reads "this account's last N queries look unlike N honest queries", with the number.
"""

from __future__ import annotations

import numpy as np

from extractguard.detect._calibrate import Band, Embedding, bootstrap_windows
from extractguard.detect.base import Detector, Observation, Reference, Signal, State, entropy, window_push
from extractguard.errors import ConfigurationError


class QueryRate(Detector):
    """Rows per minute and per hour against the tier's expected rate.

    The one signal that sees an attacker who queries *natural, in-distribution* data (Knockoff
    nets on the task's own images): content detectors cannot tell such rows from an honest
    user's, but an extraction needs thousands of rows, and honest use of a tier has a rate.
    Kesarwani et al. (2018) and Juuti et al. (2019) both note that rate alone is evadable by a
    patient attacker; quotas bound what patience buys.

    Parameters
    ----------
    baseline_rows_per_hour:
        Expected rows per hour of one honest account of this tier.
    burst:
        Alarm when one minute carries more than ``burst`` times the baseline minute.
    hourly:
        Alarm when the last hour carries more than ``hourly`` times the baseline.
    """

    name = "rate"
    paper = "operational baseline"
    context = ("baseline_rows_per_hour",)
    BUCKET_SECONDS = 10
    BUCKETS = 360  # one hour of 10-second buckets

    def __init__(self, baseline_rows_per_hour: float, burst: float = 10.0, hourly: float = 3.0) -> None:
        if baseline_rows_per_hour <= 0 or burst <= 0 or hourly <= 0:
            raise ConfigurationError("rate baseline, burst and hourly factors must be > 0")
        self.baseline_rows_per_hour = baseline_rows_per_hour
        self.burst = burst
        self.hourly = hourly

    def new_state(self) -> State:
        return {"rows": np.zeros(self.BUCKETS, np.int64), "slot": np.full(self.BUCKETS, -1, np.int64), "total": np.zeros(1, np.int64)}

    def update(self, state: State, obs: Observation) -> list[Signal]:
        slot = int(obs.ts // self.BUCKET_SECONDS)
        i = slot % self.BUCKETS
        if state["slot"][i] != slot:
            state["slot"][i], state["rows"][i] = slot, 0
        state["rows"][i] += len(obs)
        state["total"][0] += len(obs)
        age = slot - state["slot"]
        recent = state["rows"] * ((age >= 0) & (age < self.BUCKETS))
        hour = int(recent.sum())
        idx = (slot - np.arange(60 // self.BUCKET_SECONDS)) % self.BUCKETS
        minute = int(recent[idx][age[idx] < 60 // self.BUCKET_SECONDS].sum())
        allow_min = self.burst * self.baseline_rows_per_hour / 60.0
        allow_hour = self.hourly * self.baseline_rows_per_hour
        n = int(state["total"][0])
        lm, lh = minute / allow_min, hour / allow_hour
        return [
            Signal(self.name, "rows_last_minute", minute, allow_min, lm, n, "" if lm < 1 else
                   f"{minute} rows in the last minute (alarm above {allow_min:.0f}: {self.burst:g}x the tier baseline)"),
            Signal(self.name, "rows_last_hour", hour, allow_hour, lh, n, "" if lh < 1 else
                   f"{hour} rows in the last hour (alarm above {allow_hour:.0f}: {self.hourly:g}x the tier baseline)"),
        ]


class OutputShift(Detector):
    """Shift of the answers' label mix, mean entropy and confidence spread over a window.

    Synthetic queries (uniform noise, inverted or shuffled images) collapse onto few labels;
    uncertainty-seeking strategies (active learning, Jacobian augmentation near the boundary)
    raise the entropy; both change the spread of confidences.  Labels alone are enough for the
    label-mix statistic, so it also runs on label-only logs.
    """

    name = "outputs"
    paper = "operational baseline"

    def __init__(self, window: int = 200, margin: float = 1.5, n_boot: int = 2000, seed: int = 0) -> None:
        if window < 20:
            raise ConfigurationError("outputs window must be >= 20")
        self.window = window
        self.margin = margin
        self.n_boot = n_boot
        self.seed = seed

    def fit(self, reference: Reference | None) -> OutputShift:
        if reference is None:
            raise ConfigurationError("the outputs detector needs the owner's reference data")
        rng = np.random.default_rng(self.seed)
        P = reference.probabilities
        self.prior_ = np.bincount(P.argmax(1), minlength=reference.n_classes) / len(P)
        k = reference.n_classes
        labels, ent, conf = P.argmax(1), entropy(P), P.max(1)
        tv = bootstrap_windows(labels, self.window, lambda v: self._tv(v, k), self.n_boot, rng)
        self.bands_ = {
            "label_mix": Band.fit(tv, False, self.margin),
            "mean_entropy": Band.fit(bootstrap_windows(ent, self.window, np.mean, self.n_boot, rng), True, self.margin),
            "confidence_spread": Band.fit(bootstrap_windows(conf, self.window, np.std, self.n_boot, rng), True, self.margin),
        }
        return self

    def _tv(self, labels: np.ndarray, k: int) -> float:
        return 0.5 * float(np.abs(np.bincount(labels.astype(np.int64), minlength=k) / len(labels) - self.prior_).sum())

    def new_state(self) -> State:
        k = len(self.prior_)
        # Columns: one-hot label (k), has-probabilities, entropy, confidence, confidence^2.
        return {"win": np.zeros((self.window, k + 4)), "sums": np.zeros(k + 4), "n": np.zeros(1, np.int64)}

    def update(self, state: State, obs: Observation) -> list[Signal]:
        k, m = len(self.prior_), len(obs)
        vals = np.zeros((m, k + 4))
        vals[np.arange(m), obs.labels.astype(np.int64)] = 1.0
        if obs.probabilities is not None:
            conf = obs.probabilities.max(1)
            vals[:, k], vals[:, k + 1], vals[:, k + 2], vals[:, k + 3] = 1.0, entropy(obs.probabilities), conf, conf * conf
        window_push(state["win"], state["n"], state["sums"], vals)
        n = int(state["n"][0])
        if n < self.window:
            return []
        w, sums = self.window, state["sums"]
        tv = 0.5 * float(np.abs(sums[:k] / w - self.prior_).sum())
        b = self.bands_["label_mix"]
        lv = b.level(tv)
        out = [Signal(self.name, "label_mix", tv, b.threshold, lv, n, "" if lv < 1 else
                      f"label mix of the last {w} answers is {tv:.2f} (total variation) from the owner's (alarm above {b.threshold:.2f})")]
        if sums[k] >= w - 0.5:  # every answer in the window had probabilities
            mean_ent = sums[k + 1] / w
            spread = float(np.sqrt(max(sums[k + 3] / w - (sums[k + 2] / w) ** 2, 0.0)))
            for key, stat, what in (("mean_entropy", mean_ent, "mean answer entropy"),
                                    ("confidence_spread", spread, "spread (std) of top-1 confidence")):
                b = self.bands_[key]
                lv = b.level(stat)
                out.append(Signal(self.name, key, stat, b.threshold, lv, n, "" if lv < 1 else
                                  f"{what} of the last {w} answers is {stat:.3f}; owner's data {b.center:.3f} +- {b.width:.3f}"))
        return out


class InputTypicality(Detector):
    """How many of an account's recent rows lie outside the owner's data, and how far.

    A row is atypical when its distance to the nearest of ``n_centroids`` k-means centroids of
    the owner's (scaled, projected) data exceeds the ``quantile`` of held-out owner rows.
    Synthetic queries (noise, shuffled or inverted images, off-task scrapes) are atypical; honest
    users' rows are atypical about 1 - ``quantile`` of the time.  (A mean-distance statistic was
    dropped: its centre, estimated from a few hundred owner rows, drifted enough from honest
    traffic to alarm on a quarter of honest accounts over 10,000 queries.)
    """

    name = "inputs"
    paper = "operational baseline"
    context = ("n_features", "seed")
    needs_inputs = True

    def __init__(self, n_features: int, window: int = 200, n_centroids: int = 32, dim: int = 32, quantile: float = 0.995,
                 margin: float = 1.5, n_boot: int = 2000, seed: int = 0) -> None:
        if not 0.5 < quantile < 1 or window < 20:
            raise ConfigurationError("inputs needs 0.5 < quantile < 1 and window >= 20")
        self.n_features = n_features
        self.quantile = quantile
        self.window = window
        self.n_centroids = n_centroids
        self.dim = dim
        self.margin = margin
        self.n_boot = n_boot
        self.seed = seed

    def fit(self, reference: Reference | None) -> InputTypicality:
        if reference is None:
            raise ConfigurationError("the inputs detector needs the owner's reference data")
        rng = np.random.default_rng(self.seed)
        self.embedding_ = Embedding.fit(reference.X, self.n_features, self.dim, self.seed)
        Z = self.embedding_.transform(reference.X)
        k = min(self.n_centroids, len(Z) // 4)
        # Cross-fitted distances (centroids of one half, distances of the other, both ways) are
        # what honest rows the centroids never saw look like; serving uses centroids of all rows.
        halves = np.array_split(rng.permutation(len(Z)), 2)
        d_parts = []
        for a, b in ((0, 1), (1, 0)):
            self.centroids_ = self._kmeans(Z[halves[a]], k)
            d_parts.append(self._dist(Z[halves[b]]))
        d = np.concatenate(d_parts)
        self.centroids_ = self._kmeans(Z, k)
        self.cut_ = float(np.quantile(d, self.quantile))
        out = (d > self.cut_).astype(np.float64)
        # Floor of 12% atypical rows: the cut is estimated from a few hundred owner rows, so
        # honest traffic's real atypical rate can be a few times 1 - quantile.
        self.band_ = Band.fit(bootstrap_windows(out, self.window, np.mean, self.n_boot, rng), False, self.margin, 0.12)
        return self

    def _kmeans(self, Z: np.ndarray, k: int) -> np.ndarray:
        from sklearn.cluster import KMeans

        return KMeans(n_clusters=k, n_init=1, random_state=self.seed).fit(Z.astype(np.float64)).cluster_centers_.astype(np.float32)

    def _dist(self, Z: np.ndarray) -> np.ndarray:
        d2 = (Z * Z).sum(1)[:, None] - 2 * Z @ self.centroids_.T + (self.centroids_ * self.centroids_).sum(1)[None, :]
        return np.sqrt(np.maximum(d2.min(axis=1), 0.0))

    def new_state(self) -> State:
        # Column: atypical (0/1); the running sum is the window's count of atypical rows.
        return {"win": np.zeros((self.window, 1)), "sums": np.zeros(1), "n": np.zeros(1, np.int64)}

    def update(self, state: State, obs: Observation) -> list[Signal]:
        assert obs.X is not None
        d = self._dist(self.embedding_.transform(obs.X))
        window_push(state["win"], state["n"], state["sums"], (d > self.cut_).astype(np.float64)[:, None])
        n = int(state["n"][0])
        if n < self.window:
            return []
        frac = float(state["sums"][0]) / self.window
        b = self.band_
        lv = b.level(frac)
        return [Signal(self.name, "atypical_fraction", frac, b.threshold, lv, n, "" if lv < 1 else
                       f"{frac:.0%} of the last {self.window} rows lie outside the owner's data (alarm above {b.threshold:.0%})")]
