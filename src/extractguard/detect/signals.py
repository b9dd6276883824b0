"""Operational signals: query rate vs a baseline, input typicality and diversity, output shifts.

Each compares an account's recent window with the owner's reference traffic.  Window thresholds
come from bootstrap windows of the owner's held-out data (:class:`~extractguard.detect._calibrate.Band`),
so an alarm reads "this account's last N queries look unlike N honest queries", with the number.
"""

from __future__ import annotations

import numpy as np

from extractguard.detect._calibrate import Band, Embedding, bootstrap_windows
from extractguard.detect.base import Detector, Observation, Reference, Signal, State, entropy, ring_push, ring_view
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
        minute = int(state["rows"][(age >= 0) & (age < 60 // self.BUCKET_SECONDS)].sum())
        hour = int(state["rows"][(age >= 0) & (age < self.BUCKETS)].sum())
        allow_min = self.burst * self.baseline_rows_per_hour / 60.0
        allow_hour = self.hourly * self.baseline_rows_per_hour
        n = int(state["total"][0])
        return [
            Signal(self.name, "rows_last_minute", minute, allow_min, minute / allow_min, n,
                   f"{minute} rows in the last minute (alarm above {allow_min:.0f}: {self.burst:g}x the tier baseline)"),
            Signal(self.name, "rows_last_hour", hour, allow_hour, hour / allow_hour, n,
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
        w = self.window
        return {"labels": np.zeros(w, np.int64), "ent": np.full(w, np.nan), "conf": np.full(w, np.nan), "n": np.zeros(1, np.int64)}

    def update(self, state: State, obs: Observation) -> list[Signal]:
        n0 = state["n"].copy()
        ring_push(state["labels"], state["n"], obs.labels)
        if obs.probabilities is not None:
            ent, conf = entropy(obs.probabilities), obs.probabilities.max(1)
        else:
            ent = conf = np.full(len(obs), np.nan)
        for key, vals in (("ent", ent), ("conf", conf)):
            c = n0.copy()
            ring_push(state[key], c, vals)
        n = int(state["n"][0])
        if n < self.window:
            return []
        k = len(self.prior_)
        out = []
        tv = self._tv(state["labels"], k)
        b = self.bands_["label_mix"]
        out.append(Signal(self.name, "label_mix", tv, b.threshold, b.level(tv), n,
                          f"label mix of the last {self.window} answers is {tv:.2f} (total variation) from the owner's (alarm above {b.threshold:.2f})"))
        if not np.isnan(state["ent"]).any():
            for key, stat, what in (("mean_entropy", float(state["ent"].mean()), "mean answer entropy"),
                                    ("confidence_spread", float(state["conf"].std()), "spread (std) of top-1 confidence")):
                b = self.bands_[key]
                out.append(Signal(self.name, key, stat, b.threshold, b.level(stat), n,
                                  f"{what} of the last {self.window} answers is {stat:.3f}; owner's data {b.center:.3f} +- {b.width:.3f}"))
        return out


class InputTypicality(Detector):
    """How many of an account's recent rows lie outside the owner's data, and how far.

    A row is atypical when its distance to the nearest of ``n_centroids`` k-means centroids of
    the owner's (scaled, projected) data exceeds the 99th percentile of held-out owner rows.
    Synthetic queries (noise, shuffled or inverted images, off-task scrapes) are atypical; honest
    users' rows are atypical about 1% of the time.  The mean log-distance catches the opposite
    too: rows crowded near a few seeds (low diversity).
    """

    name = "inputs"
    paper = "operational baseline"
    needs_inputs = True

    def __init__(self, n_features: int, window: int = 100, n_centroids: int = 32, dim: int = 32, margin: float = 1.5,
                 n_boot: int = 2000, seed: int = 0) -> None:
        self.n_features = n_features
        self.window = window
        self.n_centroids = n_centroids
        self.dim = dim
        self.margin = margin
        self.n_boot = n_boot
        self.seed = seed

    def fit(self, reference: Reference | None) -> InputTypicality:
        from sklearn.cluster import KMeans

        if reference is None:
            raise ConfigurationError("the inputs detector needs the owner's reference data")
        rng = np.random.default_rng(self.seed)
        self.embedding_ = Embedding.fit(reference.X, self.n_features, self.dim, self.seed)
        Z = self.embedding_.transform(reference.X).astype(np.float64)
        order = rng.permutation(len(Z))
        fit_rows, held = Z[order[: len(Z) // 2]], Z[order[len(Z) // 2:]]
        k = min(self.n_centroids, len(fit_rows))
        self.centroids_ = KMeans(n_clusters=k, n_init=1, random_state=self.seed).fit(fit_rows).cluster_centers_.astype(np.float32)
        d = self._dist(held.astype(np.float32))
        self.cut_ = float(np.quantile(d, 0.99))
        out = (d > self.cut_).astype(np.float64)
        logd = np.log1p(d)
        self.bands_ = {
            "atypical_fraction": Band.fit(bootstrap_windows(out, self.window, np.mean, self.n_boot, rng), False, self.margin, 0.02),
            "mean_log_distance": Band.fit(bootstrap_windows(logd, self.window, np.mean, self.n_boot, rng), True, self.margin),
        }
        return self

    def _dist(self, Z: np.ndarray) -> np.ndarray:
        d2 = (Z * Z).sum(1)[:, None] - 2 * Z @ self.centroids_.T + (self.centroids_ * self.centroids_).sum(1)[None, :]
        return np.sqrt(np.maximum(d2.min(axis=1), 0.0))

    def new_state(self) -> State:
        return {"dist": np.zeros(self.window, np.float64), "n": np.zeros(1, np.int64)}

    def update(self, state: State, obs: Observation) -> list[Signal]:
        assert obs.X is not None
        ring_push(state["dist"], state["n"], self._dist(self.embedding_.transform(obs.X)))
        n = int(state["n"][0])
        if n < self.window:
            return []
        d = ring_view(state["dist"], state["n"])
        frac, logd = float((d > self.cut_).mean()), float(np.log1p(d).mean())
        b1, b2 = self.bands_["atypical_fraction"], self.bands_["mean_log_distance"]
        return [
            Signal(self.name, "atypical_fraction", frac, b1.threshold, b1.level(frac), n,
                   f"{frac:.0%} of the last {self.window} rows lie outside the owner's data (alarm above {b1.threshold:.0%})"),
            Signal(self.name, "mean_log_distance", logd, b2.threshold, b2.level(logd), n,
                   f"mean log-distance of the last {self.window} rows to the owner's data is {logd:.2f}; owner's data {b2.center:.2f} +- {b2.width:.2f}"),
        ]
