"""Transfer-learning extraction of text classifiers with a frozen pretrained sentence encoder.

Krishna et al. (ICLR 2020, "Thieves on Sesame Street! Model Extraction of BERT-based APIs")
showed that an attacker who starts from a public pretrained language model needs far fewer
queries than one who learns from scratch: the encoder already knows which sentences mean similar
things, so each answer teaches the copy about a whole neighbourhood.  Here the encoder
(all-MiniLM-L6-v2, shipped offline in a PyPI package) stays frozen and only a small head is
trained on the victim's soft answers, which keeps the attack cheap on a CPU; the queries are
natural texts drawn from the attacker's own pool without replacement, as in Knockoff Nets
(Orekondy et al. 2019).

``strategy="uncertainty"`` spends all but a seed batch on the pool texts the current copy is
least sure about (smallest top-2 margin), one of the active-learning selections that Pal et al.
(AAAI 2020, ActiveThief) evaluated for extraction; it costs one embedding pass over the pool.
"""

from __future__ import annotations

import numpy as np

from extractguard.attacks.base import Attack
from extractguard.errors import ConfigurationError
from extractguard.oracle.schema import InputSchema
from extractguard.surrogates.text import FEATURES, HEADS, EncoderHeadSurrogate, SentenceEncoder

STRATEGIES: tuple[str, ...] = ("random", "uncertainty")


class TransferAttack(Attack):
    """Query natural texts, train a head on frozen sentence embeddings of the answers.

    Parameters
    ----------
    pool:
        The attacker's own unlabelled texts (1-D array or list of ``str``).
    surrogate:
        The head: ``auto``/``logreg`` (soft-label logistic regression) or ``mlp``.
    encoder:
        Name of a bundled sentence encoder (see ``surrogates.text.ENCODERS``), or a
        :class:`SentenceEncoder` to share its embedding cache between runs (benchmarks that
        attack several victims over the same texts embed each text once).
    strategy:
        ``random`` (Knockoff-style sampling) or ``uncertainty`` (margin-based active learning).
    features:
        ``embedding+tfidf`` (default) or ``embedding`` only; see ``EncoderHeadSurrogate``.
    C:
        Inverse L2 strength of the logistic head.
    """

    name = "transfer"
    paper = "Krishna et al. 2020, Thieves on Sesame Street! Model Extraction of BERT-based APIs (frozen-encoder variant)"
    needs_pool = True
    supports_text = True

    def __init__(
        self,
        pool: np.ndarray,
        surrogate: str = "auto",
        encoder: str | SentenceEncoder = "all-MiniLM-L6-v2",
        strategy: str = "random",
        features: str = "embedding+tfidf",
        C: float = 100.0,
        batch_size: int = 100,
        seed: int = 0,
    ) -> None:
        head = "logreg" if surrogate == "auto" else surrogate
        if head not in HEADS:
            raise ConfigurationError(f"the transfer attack's head (--surrogate) must be auto, {' or '.join(HEADS)}; got {surrogate!r}")
        if strategy not in STRATEGIES:
            raise ConfigurationError(f"unknown strategy {strategy!r}; choose one of {', '.join(STRATEGIES)}")
        if features not in FEATURES:
            raise ConfigurationError(f"unknown features {features!r}; choose one of {', '.join(FEATURES)}")
        super().__init__(surrogate=surrogate, batch_size=batch_size, seed=seed)
        self.pool = pool
        self.encoder = encoder
        self.strategy = strategy
        self.features = features
        self.C = C

    def params(self) -> dict[str, object]:
        out = super().params()
        out["pool"] = f"{len(self.pool)} texts"
        out["encoder"] = getattr(self.encoder, "name", self.encoder)
        return out

    @property
    def _head(self) -> str:
        return "logreg" if self.surrogate == "auto" else self.surrogate

    def _start(self, schema: InputSchema, rng: np.random.Generator) -> None:
        if not schema.is_text:
            raise ConfigurationError(
                "the transfer attack embeds texts with a sentence encoder; this target takes numeric rows "
                "(use knockoff or random)"
            )
        pool = schema.validate(self.pool, what="attacker pool")
        # Loaded here, before any query, so a missing 'text' extra costs no budget.
        self.encoder_ = self.encoder if isinstance(self.encoder, SentenceEncoder) else SentenceEncoder(self.encoder)
        self._pool = pool
        self._rng = rng
        self._order = rng.permutation(pool.shape[0])
        self._used = np.zeros(pool.shape[0], dtype=bool)
        self._next = 0

    def _select(self, n: int) -> np.ndarray | None:
        free = np.flatnonzero(~self._used)
        if free.size == 0:
            return None
        if self.strategy == "uncertainty" and self._X and len(np.unique(np.concatenate(self._Y).argmax(1))) > 1:
            copy = self._fit_head()
            p = np.sort(copy.predict_proba(self._pool[free]), axis=1)
            margin = p[:, -1] - p[:, -2]
            idx = free[np.argsort(margin, kind="stable")[:n]]
        else:
            order = self._order[~self._used[self._order]]
            idx = order[:n]
        self._used[idx] = True
        return self._pool[idx]

    def _fit_head(self) -> EncoderHeadSurrogate:
        X = np.concatenate(self._X)
        Y = np.concatenate(self._Y)
        return EncoderHeadSurrogate(
            self.encoder_, Y.shape[1], head=self._head, C=self.C, features=self.features, seed=self.seed
        ).fit(X, Y)

    def fit_surrogate(self, schema: InputSchema) -> EncoderHeadSurrogate:
        """A fresh head on every answer so far; the encoder (and its cache) is shared."""
        return self._fit_head()
