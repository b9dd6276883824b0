"""Reading the user's own data files (attacker data, probe sets) with errors a user can act on."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from extractguard.errors import DataLoadError, check_readable_file

#: Column names taken as labels in CSV files and NPZ archives.
LABEL_COLUMNS: tuple[str, ...] = ("label", "target", "y", "class")


def _load_csv(path: Path, what: str) -> tuple[np.ndarray, np.ndarray | None]:
    try:
        with path.open(newline="", encoding="utf-8") as fh:
            rows = [r for r in csv.reader(fh) if r and any(c.strip() for c in r)]
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DataLoadError(f"{what} file {path} is not a readable CSV: {exc}") from None
    if not rows:
        raise DataLoadError(f"{what} file {path} is empty")
    header: list[str] | None = None
    try:
        [float(c) for c in rows[0]]
    except ValueError:
        header = [c.strip().lower() for c in rows[0]]
        rows = rows[1:]
    if not rows:
        raise DataLoadError(f"{what} file {path} has a header but no rows")
    width = len(rows[0])
    values = np.empty((len(rows), width), dtype=np.float64)
    for i, row in enumerate(rows):
        if len(row) != width:
            raise DataLoadError(f"{what} file {path}: line {i + 1 + (header is not None)} has {len(row)} columns, expected {width}")
        try:
            values[i] = [float(c) for c in row]
        except ValueError:
            raise DataLoadError(f"{what} file {path}: line {i + 1 + (header is not None)} is not all numbers") from None
    label_col = next((header.index(c) for c in LABEL_COLUMNS if header and c in header), None)
    if label_col is None:
        return values, None
    y = values[:, label_col]
    X = np.delete(values, label_col, axis=1)
    return X, y


def load_table(path: str | Path, what: str = "data") -> tuple[np.ndarray, np.ndarray | None]:
    """Load rows (and labels when present) from ``.npy``, ``.npz`` or ``.csv``.

    NPZ archives use arrays ``X`` and optionally ``y``; CSV files may carry a header, and a column
    named label/target/y/class becomes the labels.  Values are returned as float64 so the schema
    check, not this loader, decides what is acceptable (e.g. NaN is reported with its position).
    """
    p = Path(path)
    check_readable_file(p, what, DataLoadError)
    suffix = p.suffix.lower()
    try:
        if suffix == ".npy":
            X, y = np.load(p, allow_pickle=False), None
        elif suffix == ".npz":
            with np.load(p, allow_pickle=False) as z:
                keys = list(z.keys())
                if not keys:
                    raise DataLoadError(f"{what} file {p} holds no arrays")
                xk = "X" if "X" in keys else ("x" if "x" in keys else keys[0])
                X = z[xk]
                yk = next((k for k in keys if k in LABEL_COLUMNS), None)
                y = z[yk] if yk else None
        elif suffix in (".csv", ".txt"):
            X, y = _load_csv(p, what)
        else:
            raise DataLoadError(f"{what} file {p}: unsupported format {suffix or '(no extension)'}; use .csv, .npy or .npz")
    except DataLoadError:
        raise
    except (ValueError, OSError, EOFError) as exc:
        raise DataLoadError(f"{what} file {p} could not be read: {exc}") from None
    X = np.asarray(X)
    if X.dtype.kind not in "biuf":
        raise DataLoadError(f"{what} file {p} does not hold numbers (dtype {X.dtype})")
    if X.ndim == 1:
        X = X[:, None]
    if X.shape[0] == 0:
        raise DataLoadError(f"{what} file {p} has no rows")
    X = X.reshape(X.shape[0], -1).astype(np.float64)
    if y is not None:
        y = np.asarray(y)
        if y.shape[0] != X.shape[0]:
            raise DataLoadError(f"{what} file {p}: {y.shape[0]} labels for {X.shape[0]} rows")
        if y.dtype.kind == "f" and not np.all(np.isfinite(y)):
            raise DataLoadError(f"{what} file {p}: labels contain NaN or infinite values")
        if y.dtype.kind == "f" and not np.all(y == np.round(y)):
            raise DataLoadError(f"{what} file {p}: labels must be whole class indices")
        y = y.astype(np.int64)
    return X, y
