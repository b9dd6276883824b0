"""Keyed answer watermarking (DAWN: Szyller, Atli, Marchal & Asokan, ACM MM 2021).

A secret-keyed hash of each input row decides, deterministically, whether that row's answer is
watermarked (a configurable small fraction) and, if so, which wrong label it gets.  Because the
decision is a function of (key, row) only:

* repeating a query returns the same answer (an attacker cannot average the mark away);
* the owner can reproduce the whole marked set from the key and the served inputs;
* each account has its own key, derived from one master secret with HKDF (RFC 5869), so the
  marks a stolen copy carries point to the account whose queries trained it.

Two kinds of mark (``mark``):

* ``"flip"`` (DAWN's): the probabilities of the owner's label and the keyed wrong label are
  swapped: the row stays a valid, equally confident distribution (nothing stands out), but its
  top label is wrong.  It survives label-only answers and shows in a copy's labels, so even a
  label-only suspect can be tested; it costs honest users at most ``fraction`` of accuracy.
* ``"soft"``: the owner's label stays on top and the keyed label is raised to ``soft_ratio``
  times its probability (then renormalised), i.e. usually to second place.  Honest users lose no
  accuracy (only the scores of the marked rows move), and a student distilled from the scores
  learns "raise this class here" far more readily than a contradicting top label, so copies fitted
  briefly or with weight decay carry it too (benchmarks/verify.py).  It needs answers that reveal
  scores (not ``label`` / ``top-1``) and a suspect that returns scores (the rank test of
  :mod:`extractguard.verify`); a label-only suspect shows nothing of it.
Optionally (``cell_width``) the hash sees a keyed locality-sensitive *cell* of the row instead of
the exact row, so near-duplicates (an attacker's noisy augmentations, or tiny perturbations meant
to dodge the mark) get the same answer.  Measured on digits (benchmarks/verify.py): a copy
learns marked cells far more reliably than isolated marked points, which it tends to smooth over.

A second keyed, disjoint fraction of rows is kept *unaltered* as a control sample: it tells the
verifier how often a model disagrees with the owner on the same query distribution (the null
hypothesis of :mod:`extractguard.verify`).

HMAC-SHA256 and HKDF come from the standard library and ``cryptography``; nothing is hand-rolled.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from typing import Any

import numpy as np

from extractguard.errors import ConfigurationError

#: Domain-separation label of the per-account key derivation; bump if the scheme changes.
KDF_INFO = b"extractguard/watermark/v1/account:"


def canonical_rows(X: np.ndarray) -> list[bytes]:
    """One byte string per row: float32 little-endian values.

    Clients send FP32 tensors, so float32 is the precision a row really has; hashing at that
    precision makes the same row hash the same whether it arrives as FP32 or FP64 JSON.
    ``-0.0`` is folded into ``0.0`` (they are the same input).
    """
    arr = np.ascontiguousarray(np.asarray(X, dtype=np.float64).reshape(len(X), -1) + 0.0, dtype="<f4")
    return [row.tobytes() for row in arr]


def row_digest(row: np.ndarray) -> str:
    """SHA-256 (hex) of one canonical row: how records and evidence name an input."""
    return hashlib.sha256(canonical_rows(np.asarray(row).reshape(1, -1))[0]).hexdigest()


def derive_account_key(master: bytes, account: str) -> bytes:
    """The account's 32-byte watermark key: HKDF-SHA256(master, info=label + account)."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF

    if len(master) < 16:
        raise ConfigurationError("the watermark master key must be at least 16 bytes")
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=KDF_INFO + account.encode("utf-8")).derive(master)


@dataclass(frozen=True)
class WatermarkDecision:
    """What the watermark decided for a batch: marked rows, control rows, the keyed wrong labels."""

    marked: np.ndarray  # bool (n,)
    control: np.ndarray  # bool (n,)
    owner_labels: np.ndarray  # int (n,): the label the model gave before marking
    served_labels: np.ndarray  # int (n,): the keyed label on marked rows (served on top by a flip
    # mark, raised under the owner's label by a soft mark), the owner's label elsewhere
    cells: list[str]  # SHA-256 (hex) of what the keyed hash saw per row: the row, or its LSH cell


class AnswerWatermark:
    """DAWN-style keyed watermark over probability answers.

    Parameters
    ----------
    master_key:
        Secret bytes (>= 16); per-account keys are derived from it.
    fraction:
        Share of rows whose answer is altered (DAWN used 0.5-5 %; the honest-user accuracy cost
        is at most this).
    control_fraction:
        Share of rows recorded unaltered as the control sample (default: same as ``fraction``).
    mark:
        ``"flip"`` (the keyed label is served on top) or ``"soft"`` (it is raised under the
        owner's label); see the module docstring.
    soft_ratio:
        With ``mark="soft"``: the keyed label's probability becomes this share of the top one.
    """

    MARKS = ("flip", "soft")

    def __init__(
        self,
        master_key: bytes,
        fraction: float = 0.005,
        control_fraction: float | None = None,
        cell_width: float | None = None,
        projections: int = 12,
        low: np.ndarray | float = 0.0,
        high: np.ndarray | float = 1.0,
        mark: str = "flip",
        soft_ratio: float = 0.6,
    ) -> None:
        if mark not in self.MARKS:
            raise ConfigurationError(f"watermark mark must be one of {', '.join(self.MARKS)}, got {mark!r}")
        if not 0.0 < soft_ratio < 1.0:
            raise ConfigurationError(f"watermark soft_ratio must be in (0, 1), got {soft_ratio}")
        self.mark = mark
        self.soft_ratio = float(soft_ratio)
        if not 0.0 < fraction <= 0.2:
            raise ConfigurationError(f"watermark fraction must be in (0, 0.2], got {fraction}")
        control = fraction if control_fraction is None else control_fraction
        if not 0.0 <= control <= 0.2:
            raise ConfigurationError(f"watermark control_fraction must be in [0, 0.2], got {control}")
        self.fraction = float(fraction)
        self.control_fraction = float(control)
        self._master = bytes(master_key)
        if len(self._master) < 16:
            raise ConfigurationError("the watermark master key must be at least 16 bytes")
        self._keys: dict[str, bytes] = {}
        if cell_width is not None and not cell_width > 0:
            raise ConfigurationError(f"watermark cell_width must be > 0, got {cell_width}")
        if projections < 1:
            raise ConfigurationError(f"watermark projections must be >= 1, got {projections}")
        self.cell_width = None if cell_width is None else float(cell_width)
        self.projections = int(projections)
        self._low = np.asarray(low, dtype=np.float64)
        self._span = np.maximum(np.asarray(high, dtype=np.float64) - self._low, 1e-12)
        self._lsh: dict[str, tuple[np.ndarray, np.ndarray]] = {}

    @classmethod
    def from_config(cls, master_key: bytes, config: Any, low: np.ndarray | float, high: np.ndarray | float) -> AnswerWatermark:
        """Build from a tier's ``watermark:`` block (gateway/config.py ``WatermarkConfig``)."""
        return cls(master_key, config.fraction, config.control_fraction, config.cell_width, config.projections,
                   low, high, config.mark, config.soft_ratio)

    def account_key(self, account: str) -> bytes:
        key = self._keys.get(account)
        if key is None:
            key = self._keys[account] = derive_account_key(self._master, account)
        return key

    def cells(self, X: np.ndarray, account: str) -> list[bytes]:
        """What the keyed hash sees for each row: the row itself, or its keyed LSH cell.

        With ``cell_width`` set, rows are scaled to [0, 1] by the schema bounds and projected on
        ``projections`` keyed random unit directions, quantised with width ``cell_width`` and a
        keyed offset (the p-stable LSH of Datar et al. 2004).  Near-identical rows (an attacker's
        augmentations) then share one cell, hence one answer: the mark covers a small region an
        extracted copy can learn, instead of isolated points it smooths over.
        """
        X = np.asarray(X, dtype=np.float64).reshape(len(X), -1)
        if self.cell_width is None:
            return canonical_rows(X)
        lsh = self._lsh.get(account)
        if lsh is None:
            seed = int.from_bytes(hmac.new(self.account_key(account), b"lsh", hashlib.sha256).digest()[:8], "big")
            g = np.random.default_rng(seed)
            R = g.normal(size=(self.projections, X.shape[1]))
            R /= np.linalg.norm(R, axis=1, keepdims=True)
            lsh = self._lsh[account] = (R, g.uniform(0, 1, size=self.projections))
        R, b = lsh
        z = np.floor(((X - self._low) / self._span) @ R.T / self.cell_width + b).astype("<i8")
        return [row.tobytes() for row in z]

    def _draws(self, X: np.ndarray, account: str) -> tuple[np.ndarray, np.ndarray, list[str]]:
        """Two keyed uniform draws per row: u in [0, 1) for membership, r (uint64) for the label."""
        key = self.account_key(account)
        u = np.empty(len(X))
        r = np.empty(len(X), dtype=np.uint64)
        names: list[str] = []
        for i, cell in enumerate(self.cells(X, account)):
            d = hmac.new(key, cell, hashlib.sha256).digest()
            u[i] = int.from_bytes(d[:8], "big") / 2.0**64
            r[i] = int.from_bytes(d[8:16], "big")
            names.append(hashlib.sha256(cell).hexdigest())
        return u, r, names

    def decide(self, X: np.ndarray, account: str, owner_labels: np.ndarray, n_classes: int) -> WatermarkDecision:
        """Which rows are marked / control for ``account``, and the keyed wrong label of each."""
        if n_classes < 2:
            raise ConfigurationError("watermarking needs at least two classes")
        u, r, names = self._draws(X, account)
        y = np.asarray(owner_labels, dtype=np.int64)
        marked = u < self.fraction
        control = (u >= self.fraction) & (u < self.fraction + self.control_fraction)
        # Wrong label uniform over the other C-1 classes: y + 1 + (r mod (C-1)), mod C.
        offset = 1 + (r % np.uint64(n_classes - 1)).astype(np.int64)
        served = np.where(marked, (y + offset) % n_classes, y)
        return WatermarkDecision(marked, control, y, served, names)

    def apply(self, probabilities: np.ndarray, X: np.ndarray, account: str) -> tuple[np.ndarray, WatermarkDecision]:
        """Marked rows get the keyed label on top (flip) or raised under the owner's label (soft)."""
        p = np.array(probabilities, dtype=np.float64, copy=True)
        n, c = p.shape
        dec = self.decide(X, account, p.argmax(axis=1), c)
        rows = np.flatnonzero(dec.marked)
        if rows.size and self.mark == "soft":
            y, w = dec.owner_labels[rows], dec.served_labels[rows]
            p[rows, w] = np.maximum(p[rows, w], self.soft_ratio * p[rows, y])
            p[rows] /= p[rows].sum(axis=1, keepdims=True)
        elif rows.size:
            y, w = dec.owner_labels[rows], dec.served_labels[rows]
            top, other = p[rows, y].copy(), p[rows, w].copy()
            p[rows, y], p[rows, w] = other, top
            # A tie (top == other) would leave argmax ambiguous: nudge so the served label wins.
            tie = other >= top
            if tie.any():
                p[rows[tie], w[tie]] += 1e-9
                p[rows[tie]] /= p[rows[tie]].sum(axis=1, keepdims=True)
        return p, dec


def generate_master_key() -> bytes:
    """32 random bytes from the OS (:mod:`secrets`)."""
    import secrets

    return secrets.token_bytes(32)
