"""HODA-style hardness histograms: how hard the owner's model finds an account's queries.

Sadeghzadeh, Dehghan & Amini (2021), "HODA: Hardness-Oriented Detection of Model Extraction
Attacks", compare the histogram of an account's sample *hardness* with the histogram of honest
samples by Pearson distance; attack queries (from a surrogate dataset, or synthesised) have a
different mix of easy and hard samples.  HODA measures hardness as the training epoch after which
a sample's prediction stops changing, which needs the owner's training checkpoints; a gateway
holds only the final model, so we use the final model's *margin* (top-1 minus top-2 probability)
as a single-checkpoint hardness (hard = small margin), in equal-width bins.  We chose HODA over
SEAT (Zhang et al., 2021) because SEAT needs a similarity encoder adversarially trained for each
victim, which the owner would have to train and ship; HODA's histogram needs only the model the
gateway already serves.

Like PRADA, it cannot see an attacker whose queries are drawn from the honest distribution
itself (Knockoff nets on in-distribution data): their hardness histogram *is* the honest one.
"""

from __future__ import annotations

import numpy as np

from extractguard.detect._calibrate import Band, bootstrap_windows
from extractguard.detect.base import Detector, Observation, Reference, Signal, State, window_push
from extractguard.errors import ConfigurationError


def margin_hardness(P: np.ndarray) -> np.ndarray:
    """1 - (top-1 - top-2 probability): 0 for a sure answer, 1 for a tie."""
    top = np.sort(P, axis=1)[:, -2:]
    return 1.0 - (top[:, 1] - top[:, 0])


def pearson_distance(h: np.ndarray, ref: np.ndarray) -> float:
    """1 - Pearson correlation of two histograms (HODA's distance)."""
    a, b = h - h.mean(), ref - ref.mean()
    den = float(np.sqrt((a @ a) * (b @ b)))
    return 1.0 if den == 0 else 1.0 - float(a @ b) / den


class HardnessHistogram(Detector):
    """Pearson distance between an account's hardness histogram and the owner's (HODA, 2021).

    Parameters
    ----------
    window:
        Recent queries in the account's histogram (HODA uses a few hundred).
    bins:
        Equal-width hardness bins over [0, 1].
    """

    name = "hardness"
    paper = "Sadeghzadeh et al. 2021 (HODA)"
    needs_probabilities = True

    def __init__(self, window: int = 200, bins: int = 10, margin: float = 1.5, n_boot: int = 2000, seed: int = 0) -> None:
        if window < 20 or bins < 3:
            raise ConfigurationError("hardness needs window >= 20 and bins >= 3")
        self.window = window
        self.bins = bins
        self.margin = margin
        self.n_boot = n_boot
        self.seed = seed

    def _hist(self, h: np.ndarray) -> np.ndarray:
        idx = np.minimum((h * self.bins).astype(np.int64), self.bins - 1)
        return np.bincount(idx, minlength=self.bins) / max(len(h), 1)

    def fit(self, reference: Reference | None) -> HardnessHistogram:
        if reference is None:
            raise ConfigurationError("the hardness detector needs the owner's reference data")
        h = margin_hardness(reference.probabilities)
        self.reference_hist_ = self._hist(h)
        rng = np.random.default_rng(self.seed)
        dist = bootstrap_windows(h, self.window, lambda v: pearson_distance(self._hist(v), self.reference_hist_), self.n_boot, rng)
        self.band_ = Band.fit(dist, False, self.margin, 0.01)
        return self

    def new_state(self) -> State:
        # One-hot hardness bin per query; the running column sums are the window's histogram.
        return {"win": np.zeros((self.window, self.bins)), "sums": np.zeros(self.bins), "n": np.zeros(1, np.int64)}

    def update(self, state: State, obs: Observation) -> list[Signal]:
        assert obs.probabilities is not None
        h = margin_hardness(obs.probabilities)
        onehot = np.zeros((len(h), self.bins))
        onehot[np.arange(len(h)), np.minimum((h * self.bins).astype(np.int64), self.bins - 1)] = 1.0
        window_push(state["win"], state["n"], state["sums"], onehot)
        n = int(state["n"][0])
        if n < self.window:
            return []
        d = pearson_distance(state["sums"] / self.window, self.reference_hist_)
        b = self.band_
        lv = b.level(d)
        return [Signal(self.name, "pearson_distance", d, b.threshold, lv, n, "" if lv < 1 else
                       f"hardness histogram of the last {self.window} queries is {d:.3f} (Pearson distance) from the owner's (alarm above {b.threshold:.3f})")]
