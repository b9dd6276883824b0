"""Language-model victims: the offline pydoc corpus, the BPE tokenizer, seeded small decoders, the cache."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("tokenizers")

from extractguard.attacks.logit_subspace import LogitSubspaceAttack, numerical_rank  # noqa: E402
from extractguard.data.lm_corpus import load_pydoc_corpus  # noqa: E402
from extractguard.errors import BudgetExceededError, ConfigurationError  # noqa: E402
from extractguard.oracle.text import TextAnswerSpec, TextOracle, TextRequest, TokenBudget  # noqa: E402
from extractguard.victims.lm import TINY_LM, LMVictim, build_lm_victim  # noqa: E402
from lm_helpers import tiny  # noqa: E402


# -- data and victims -----------------------------------------------------------------------------


def test_pydoc_corpus_parts_are_disjoint_and_nonempty() -> None:
    c = load_pydoc_corpus()
    assert min(c.sizes().values()) > 10_000
    parts = [set(c.train), set(c.heldout), set(c.attacker), set(c.validation)]
    assert sum(map(len, parts)) == len(set().union(*parts))  # pairwise disjoint


def test_tiny_victim_is_deterministic_and_seed_dependent() -> None:
    a = tiny(16, 0)
    b = build_lm_victim("again", seed=0, cache_dir=None, config=replace(TINY_LM, hidden=16))
    c = tiny(16, 1)
    assert a.tokenizer.to_str() == b.tokenizer.to_str()
    assert a.tokenizer.get_vocab_size() == TINY_LM.vocab_size > 16
    for (k, va), vb in zip(a.module.state_dict().items(), b.module.state_dict().values()):
        assert torch.equal(va, vb), k
    assert a.heldout_perplexity == b.heldout_perplexity and a.best_step == b.best_step
    assert not np.allclose(a.output_projection(), c.output_projection())
    # Learned something: better than guessing uniformly over the vocabulary.
    assert a.heldout_perplexity < TINY_LM.vocab_size


def test_victim_cache_round_trip(tmp_path) -> None:
    cfg = replace(TINY_LM, steps=5)
    first = build_lm_victim("cached", seed=3, cache_dir=tmp_path, config=cfg)
    assert list((tmp_path / "lm").iterdir())
    second = build_lm_victim("cached", seed=3, cache_dir=tmp_path, config=cfg)
    assert np.array_equal(first.output_projection(), second.output_projection())
    assert second.heldout_perplexity == first.heldout_perplexity
    assert second.train_seconds == first.train_seconds  # loaded, not retrained


def test_lm_config_refuses_vocab_not_larger_than_hidden() -> None:
    with pytest.raises(ConfigurationError, match="larger than the hidden size"):
        replace(TINY_LM, vocab_size=16, hidden=16)
