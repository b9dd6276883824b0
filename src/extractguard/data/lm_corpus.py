"""Text for language-model victims that ships with every Python: CPython's ``pydoc_data``.

``pydoc_data.topics.topics`` is the reference documentation behind ``help("assert")`` etc.:
~80 topics, ~465,000 characters of English prose with code samples, present in every CPython
install (it is what ``pydoc`` shows offline).  We split it once, by paragraph, into three
disjoint parts (repeated paragraphs kept once, so no text is in two parts):

- ``train``: what the victim LM learns from (~70 % of paragraphs);
- ``heldout``: for the victim's held-out perplexity (every 10th paragraph);
- ``attacker``: the attacker's own prompts, never seen in training (every 10th, offset 1);
- ``validation``: for early stopping while training (every 10th, offset 2), so the held-out
  perplexity is not chosen on the text it is reported on.

The split is fixed (no seed): every victim seed sees the same text, so victims differ only in
their initialisation and batch order.
"""

from __future__ import annotations

from dataclasses import dataclass

from extractguard.errors import DataLoadError

#: Paragraph index modulo this decides the part: 0 -> heldout, 1 -> attacker, 2 -> validation,
#: else train.
SPLIT_MODULUS = 10
SOURCE = "CPython pydoc_data.topics (standard library reference text)"


@dataclass(frozen=True)
class TextCorpus:
    """Four disjoint lists of paragraphs (plain text)."""

    name: str
    source: str
    train: tuple[str, ...]
    heldout: tuple[str, ...]
    attacker: tuple[str, ...]
    validation: tuple[str, ...]

    def sizes(self) -> dict[str, int]:
        """Characters per part, for reports."""
        parts = ("train", "heldout", "attacker", "validation")
        return {part: sum(len(t) for t in getattr(self, part)) for part in parts}


def _paragraphs(text: str) -> list[str]:
    """Blank-line separated blocks, whitespace inside each block kept (code samples need it)."""
    out = []
    for block in text.split("\n\n"):
        block = block.strip("\n")
        if block.strip():
            out.append(block)
    return out


def load_pydoc_corpus() -> TextCorpus:
    """The ``pydoc`` corpus, split by paragraph (topics in sorted order, so the split is stable)."""
    try:
        from pydoc_data.topics import topics
    except ImportError:  # pragma: no cover - some distributions strip it
        raise DataLoadError("this Python lacks pydoc_data (the standard library's help text)") from None
    paragraphs: list[str] = []
    seen: set[str] = set()
    for key in sorted(topics):
        for para in _paragraphs(topics[key]):
            if para not in seen:  # repeated examples would leak between the parts
                seen.add(para)
                paragraphs.append(para)
    parts: dict[int, list[str]] = {0: [], 1: [], 2: [], 3: []}
    for i, para in enumerate(paragraphs):
        parts[min(i % SPLIT_MODULUS, 3)].append(para)
    if not all(parts.values()):
        raise DataLoadError("pydoc_data.topics is too small to split")
    return TextCorpus("pydoc", SOURCE, tuple(parts[3]), tuple(parts[0]), tuple(parts[1]), tuple(parts[2]))


#: Corpora an LM victim can train on, by name.
LM_CORPORA = {"pydoc": load_pydoc_corpus}


def load_lm_corpus(name: str) -> TextCorpus:
    """Look a corpus up by name; one clear error for an unknown one."""
    try:
        loader = LM_CORPORA[name]
    except KeyError:
        raise DataLoadError(f"unknown LM corpus {name!r}; known: {', '.join(sorted(LM_CORPORA))}") from None
    return loader()
