"""Language-model victims, the token-metered text oracle and the softmax-bottleneck attack."""

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

_VICTIMS: dict[tuple[int, int], LMVictim] = {}


def tiny(hidden: int = 16, seed: int = 0) -> LMVictim:
    """Tiny victims train in about a second; memoised across tests (never written to disk)."""
    key = (hidden, seed)
    if key not in _VICTIMS:
        _VICTIMS[key] = build_lm_victim(f"tiny{hidden}", seed=seed, cache_dir=None, config=replace(TINY_LM, hidden=hidden))
    return _VICTIMS[key]


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


# -- the softmax-bottleneck attack ----------------------------------------------------------------


def test_numerical_rank_measures_against_the_noise_floor() -> None:
    rng = np.random.default_rng(0)
    # Rank 7, the 7th direction 100x weaker (like a small LayerNorm bias), noise 1e-7.
    scales = np.array([1, 1, 1, 1, 1, 1, 0.01])
    M = (rng.normal(size=(60, 7)) * scales) @ rng.normal(size=(7, 200)) + 1e-7 * rng.normal(size=(60, 200))
    s = np.linalg.svd(M, compute_uv=False)
    rank, gap = numerical_rank(s)
    assert rank == 7 and gap > 3
    # With the 7th direction 10^4 times weaker, the largest drop is inside the signal and would
    # say 6; the floor still says 7.
    scales[-1] = 1e-4
    M = (rng.normal(size=(60, 7)) * scales) @ rng.normal(size=(7, 200)) + 1e-7 * rng.normal(size=(60, 200))
    s_weak = np.linalg.svd(M, compute_uv=False)
    assert np.argmax(-np.diff(np.log10(s_weak))) + 1 == 6
    assert numerical_rank(s_weak)[0] == 7
    # No floor (full rank), or too few trailing values: no answer rather than a guess.
    assert numerical_rank(np.linalg.svd(rng.normal(size=(60, 200)), compute_uv=False))[0] is None
    assert numerical_rank(s[:20])[0] is None


@pytest.mark.parametrize("hidden", [16, 24])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_full_logprobs_give_exact_hidden_size_and_projection(hidden, seed) -> None:
    v = tiny(hidden, seed)
    oracle = v.oracle(TextAnswerSpec.parse("full"))
    result = LogitSubspaceAttack(seed=seed).run(oracle, v.corpus.attacker)
    assert result.hidden_size == hidden
    assert result.gap_log10 > 3
    rms, rel = result.aligned_rms_error(v.output_projection())
    assert rel < 1e-3
    assert result.stats.requests == result.n_prompts <= hidden + 48
    # A wrong hidden size cannot align: one fewer dimension leaves a large error.
    short = replace(result, projection=result.projection[:, :-1])
    assert short.aligned_rms_error(v.output_projection())[1] > 100 * rel


@pytest.mark.parametrize(("hidden", "seed"), [(16, 0), (24, 1)])
def test_topk_with_logit_bias_reconstructs_the_same_subspace(hidden, seed) -> None:
    v = tiny(hidden, seed)
    oracle = v.oracle(TextAnswerSpec.parse("top5+bias"))
    result = LogitSubspaceAttack(seed=seed).run(oracle, v.corpus.attacker)
    assert result.hidden_size == hidden
    assert result.aligned_rms_error(v.output_projection())[1] < 1e-3
    per_prompt = -(-(v.config.vocab_size - 1) // 4)  # ceil((V-1)/(K-1)) requests per prompt
    assert result.stats.requests == per_prompt * result.n_prompts


@pytest.mark.parametrize("shape", ["text", "text+bias", "top5", "top1"])
def test_shapes_that_give_too_little_are_refused_in_one_line(shape) -> None:
    oracle = tiny().oracle(TextAnswerSpec.parse(shape))
    with pytest.raises(ConfigurationError) as info:
        LogitSubspaceAttack().run(oracle, tiny().corpus.attacker)
    assert "\n" not in str(info.value) and "logit-subspace" in str(info.value)
    assert oracle.stats().requests == 0


def test_top1_with_logit_bias_finds_hidden_size() -> None:
    v = tiny(16, 2)
    oracle = v.oracle(TextAnswerSpec.parse("top1+bias"))
    result = LogitSubspaceAttack(seed=2).run(oracle, v.corpus.attacker)
    assert result.hidden_size == 16
    assert result.aligned_rms_error(v.output_projection())[1] < 1e-3


class LowRankLM:
    """A synthetic 'model' whose logits are W x(prompt) with a wide range (tens of nats), so the
    top-1 reconstruction needs its second pass; no torch involved."""

    vocab_size, context_length = 300, 64

    def __init__(self, hidden: int, scale: float, seed: int) -> None:
        self.W = np.random.default_rng(seed).normal(size=(self.vocab_size, hidden)) * scale
        self.hidden = hidden

    def encode(self, text):
        return [0, *text.encode()[:40]]

    def decode(self, ids):
        return ""

    def prefill(self, prompts):
        X = np.stack([np.random.default_rng(list(p)).normal(size=self.hidden) for p in prompts])
        return X @ self.W.T, None

    def extend(self, cache, tokens):  # pragma: no cover - one-token requests only
        raise NotImplementedError


@pytest.mark.parametrize("shape", ["full", "top4+bias", "top1+bias"])
def test_every_shape_reconstructs_exact_logprobs_of_a_wide_range_model(shape) -> None:
    lm = LowRankLM(hidden=8, scale=3.0, seed=0)
    prompts = ["alpha beta", "gamma", "delta epsilon zeta"]
    truth = TextOracle(lm, TextAnswerSpec.parse("full")).complete(
        [TextRequest(p, max_tokens=1, logprobs=lm.vocab_size) for p in prompts]
    )
    oracle = TextOracle(lm, TextAnswerSpec.parse(shape))
    rows = LogitSubspaceAttack().reconstruct(oracle, prompts)
    for row, a in zip(rows, truth):
        want = np.empty(lm.vocab_size)
        want[a.top_ids[0]] = a.top_logprobs[0]
        assert np.ptp(want) > 20  # the regime where a single fixed bias would not do
        got, want = row - row.mean(), want - want.mean()
        assert np.abs(got - want).max() < 1e-8
    if shape == "top1+bias":
        assert oracle.stats().requests > len(prompts) * lm.vocab_size  # the second pass ran
    texts = [f"w{i} x{7 * i} y{13 * i}" for i in range(40)]
    result = LogitSubspaceAttack(prompts_per_round=8, margin=8).run(TextOracle(lm, TextAnswerSpec.parse(shape)), texts)
    assert result.hidden_size == 8


def test_budget_too_small_reports_no_hidden_size() -> None:
    v = tiny(24, 0)
    oracle = v.oracle(TextAnswerSpec.parse("full"), TokenBudget(max_requests=40))
    result = LogitSubspaceAttack().run(oracle, v.corpus.attacker)
    assert result.hidden_size is None and result.projection is None
    assert result.stats.requests <= 40
