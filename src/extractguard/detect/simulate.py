"""Traffic for evaluating detectors: honest accounts and replayed attack transcripts, with timestamps.

Honest users of a digit classifier send *new* photos of digits, not byte-identical copies of a
test set: :func:`honest_rows` draws rows of the owner's held-out distribution and re-renders each
one slightly (a small affine warp for images, sensor noise), so that ten thousand
honest queries drawn from a few hundred held-out rows are not ten thousand exact duplicates.
Arrivals are a Poisson process at a per-account rate, requests carry a few rows each.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from extractguard.oracle.schema import InputSchema


def honest_rows(X: np.ndarray, n: int | None, schema: InputSchema, rng: np.random.Generator, noise: float = 0.01) -> np.ndarray:
    """``n`` rows resampled from ``X`` and re-rendered: images of at least 16x16 pixels get a small
    random affine transform (rotation <= 10 degrees, scale 0.9-1.1, shift <= 1.5 pixels, as a new
    photo of the same digit would), every row gets sensor noise of ``noise`` x its range.
    ``n=None`` renders each row of ``X`` once."""
    from scipy.ndimage import affine_transform

    if n is None:  # every row once, in order
        rows, n = np.array(X, dtype=np.float64), len(X)
    else:
        rows = np.asarray(X, dtype=np.float64)[rng.integers(0, len(X), size=n)].copy()
    low, high = np.broadcast_to(schema.low, (schema.n_features,)), np.broadcast_to(schema.high, (schema.n_features,))
    span = np.where(high > low, high - low, 1.0)
    if schema.is_image and len(schema.input_shape) >= 2 and min(schema.input_shape[-2:]) >= 16:
        h, w = schema.input_shape[-2:]
        imgs = rows.reshape(n, -1, h, w)
        center = np.array([(h - 1) / 2.0, (w - 1) / 2.0])
        for i in range(n):
            a = np.deg2rad(rng.uniform(-10, 10))
            s = rng.uniform(0.9, 1.1)
            M = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]]) / s
            offset = center - M @ center + rng.uniform(-1.5, 1.5, size=2)
            for ch in range(imgs.shape[1]):
                imgs[i, ch] = affine_transform(imgs[i, ch], M, offset=offset, order=1, mode="constant", cval=float(low.min()))
        rows = imgs.reshape(n, -1)
    rows = rows + rng.normal(0.0, noise, size=rows.shape) * span
    return np.clip(rows, low, high)


@dataclass(frozen=True)
class Request:
    ts: float
    X: np.ndarray


def honest_requests(X: np.ndarray, n_rows: int, schema: InputSchema, rows_per_hour: float, rng: np.random.Generator,
                    mean_rows_per_request: float = 2.0, start: float = 0.0) -> Iterator[Request]:
    """An honest account's requests: Poisson arrivals at ``rows_per_hour``, 1 + geometric rows each."""
    rate = rows_per_hour / 3600.0 / mean_rows_per_request  # requests per second
    t, sent = start, 0
    while sent < n_rows:
        t += float(rng.exponential(1.0 / rate))
        k = min(int(rng.geometric(1.0 / mean_rows_per_request)), n_rows - sent)
        yield Request(t, honest_rows(X, k, schema, rng))
        sent += k


def paced_requests(batches: list[np.ndarray], rows_per_second: float, start: float = 0.0,
                   rows_per_request: int | None = None) -> Iterator[Request]:
    """An attacker's transcript replayed at ``rows_per_second``: one request per recorded batch, or
    the same rows re-cut into requests of ``rows_per_request`` (a patient attacker mimics honest use)."""
    if rows_per_request is not None:
        rows = np.concatenate(batches)
        batches = [rows[i:i + rows_per_request] for i in range(0, len(rows), rows_per_request)]
    t = start
    for B in batches:
        yield Request(t, B)
        t += len(B) / rows_per_second
