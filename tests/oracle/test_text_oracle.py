"""The token-metered text oracle: completions-style requests, answer shapes, token budget, KV-cached generation."""

from __future__ import annotations

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


# -- the text oracle ------------------------------------------------------------------------------


class CountingLM:
    """Wraps a served LM and counts forward passes, to prove refusals never reach the model."""

    def __init__(self, inner) -> None:
        self.inner = inner
        self.vocab_size = inner.vocab_size
        self.context_length = inner.context_length
        self.prefills = 0

    def encode(self, text):
        return self.inner.encode(text)

    def decode(self, ids):
        return self.inner.decode(ids)

    def prefill(self, prompts):
        self.prefills += 1
        return self.inner.prefill(prompts)

    def extend(self, cache, tokens):
        return self.inner.extend(cache, tokens)


def test_oracle_counts_and_prices_tokens() -> None:
    v = tiny()
    lm = v.language_model()
    oracle = v.oracle(TextAnswerSpec.parse("text"), TokenBudget(price_prompt_per_1k=2.0, price_completion_per_1k=10.0))
    prompts = ["The assert statement", "for x in range"]
    answers = oracle.complete([TextRequest(p, max_tokens=5, temperature=0.0) for p in prompts])
    n_prompt = sum(len(lm.encode(p)) for p in prompts)
    stats = oracle.stats()
    assert (stats.requests, stats.prompt_tokens, stats.completion_tokens) == (2, n_prompt, 10)
    assert stats.spend == pytest.approx((n_prompt * 2.0 + 10 * 10.0) / 1000)
    assert [a.completion_tokens for a in answers] == [5, 5]
    assert [e[1] for e in oracle.transcript.entries] == answers
    assert all(a.top_ids is None for a in answers)


def test_oracle_refuses_over_budget_batch_whole_before_the_model() -> None:
    v = tiny()
    lm = CountingLM(v.language_model())
    n = len(lm.encode("hello world"))
    oracle = TextOracle(lm, TextAnswerSpec.parse("full"), TokenBudget(max_tokens=2 * (n + 3)))
    oracle.complete([TextRequest("hello world", max_tokens=3)])
    before, calls = oracle.stats(), lm.prefills
    with pytest.raises(BudgetExceededError, match="token budget"):
        oracle.complete([TextRequest("hello world", max_tokens=3), TextRequest("hello world", max_tokens=1)])
    assert oracle.stats() == before and lm.prefills == calls and len(oracle.transcript.entries) == 1
    oracle.complete([TextRequest("hello world", max_tokens=3)])  # exactly fills the budget
    with pytest.raises(BudgetExceededError):
        oracle.complete([TextRequest("", max_tokens=0)])
    requests_capped = TextOracle(lm, budget=TokenBudget(max_requests=1))
    with pytest.raises(BudgetExceededError, match="request budget"):
        requests_capped.complete([TextRequest("a", max_tokens=1)] * 2)


@pytest.mark.parametrize(
    ("shape", "request_kwargs", "message"),
    [
        ("text", {"logprobs": 1}, "returns no logprobs"),
        ("top5", {"logprobs": 6}, "at most 5 logprobs"),
        ("top5", {"logit_bias": {3: 5.0}}, "does not accept logit_bias"),
        ("top5+bias", {"logit_bias": {3: 101.0}}, "bias in"),
        ("full+bias", {"logit_bias": {10_000: 1.0}}, "token id"),
        ("full", {"max_tokens": 40}, "exceeds the context"),
    ],
)
def test_oracle_refuses_what_the_api_shape_does_not_allow(shape, request_kwargs, message) -> None:
    oracle = tiny().oracle(TextAnswerSpec.parse(shape))
    with pytest.raises(ConfigurationError, match=message):
        oracle.complete([TextRequest("x", **{"max_tokens": 1, **request_kwargs})])
    assert oracle.stats().requests == 0


def test_answer_shape_parsing() -> None:
    assert str(TextAnswerSpec.parse("TOP5+bias")) == "top5+bias"
    assert TextAnswerSpec.parse("full").logit_bias is False
    with pytest.raises(ConfigurationError):
        TextAnswerSpec.parse("top+bias")


def test_kv_cached_batched_generation_matches_full_recompute() -> None:
    v = tiny()
    oracle = v.oracle(TextAnswerSpec.parse("top5"))
    prompts = ["The assert statement", "The for loop", "class Foo"]
    answers = oracle.complete([TextRequest(p, max_tokens=6, temperature=0.0, logprobs=5) for p in prompts])
    lm = v.language_model()
    for p, a in zip(prompts, answers):
        ids = lm.encode(p)
        with torch.no_grad():
            logits, _ = v.module(torch.tensor([ids + list(a.tokens)]))
        greedy = logits[0, len(ids) - 1 : len(ids) - 1 + 6].argmax(-1).tolist()
        assert list(a.tokens) == greedy
        logp = torch.log_softmax(logits[0, len(ids) - 1].double(), -1)
        assert a.top_ids[0, 0] == a.tokens[0]
        assert a.top_logprobs[0] == pytest.approx(logp[a.top_ids[0]].numpy(), abs=1e-5)


def test_sampling_is_seeded() -> None:
    v = tiny()
    req = [TextRequest("The", max_tokens=8, temperature=1.0)]
    assert v.oracle(seed=5).complete(req)[0].tokens == v.oracle(seed=5).complete(req)[0].tokens
